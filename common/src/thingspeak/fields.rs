//! ThingSpeak's `field1`..`field8`, and the stream properties they map onto.

use crate::stream::StreamRecord;

/// The most fields a channel has: `field1` to `field8`.
pub const MAX_FIELDS: usize = 8;

/// The name of the field at `index` (from 0): `field1` for 0, up to `field8`.
pub fn field_key(index: usize) -> String {
    format!("field{}", index + 1)
}

/// A stream's fields as a channel has them: (`fieldN`, the property it maps onto), at most
/// [`MAX_FIELDS`], in order.
pub fn channel_fields(stream: &StreamRecord) -> Vec<(String, String)> {
    stream
        .field_names()
        .into_iter()
        .take(MAX_FIELDS)
        .enumerate()
        .map(|(i, name)| (field_key(i), name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::tests::sample;

    #[test]
    fn fields_are_numbered_from_one() {
        assert_eq!(field_key(0), "field1");
        assert_eq!(field_key(MAX_FIELDS - 1), "field8");
        assert_eq!(
            channel_fields(&sample(1)),
            [
                ("field1".to_owned(), "temperature".to_owned()),
                ("field2".to_owned(), "humidity".to_owned()),
                ("field3".to_owned(), "door".to_owned()),
            ]
        );
    }
}
