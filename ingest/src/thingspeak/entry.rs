//! One update as sent, and the stream entry it becomes: each field's value converted to the
//! type the schema gives its property.

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use thingtotal_common::stream::{LeafType, StreamRecord};
use thingtotal_common::thingspeak::{channel_fields, field_key, MAX_FIELDS};
use thingtotal_common::time::parse_device_time;

use super::params::WriteParams;

/// Converts a form value to the JSON type the schema gives the property (the first of its
/// types the value reads as); a value that reads as none stays a string, so that the validator
/// rejects it with the reason.
pub(super) fn typed(value: &str, property: Option<&Value>) -> Value {
    let value = value.trim_end_matches(['\r', '\n']);
    let Some(property) = property else {
        return Value::String(value.to_owned());
    };
    if value.is_empty() && LeafType::nullable(property) {
        return Value::Null;
    }
    LeafType::each_of(property)
        .into_iter()
        .find_map(|t| t.from_text(value))
        .unwrap_or_else(|| Value::String(value.to_owned()))
}

/// One ThingSpeak update, as sent.
#[derive(Debug, Default)]
pub(super) struct Update {
    fields: [Option<String>; MAX_FIELDS],
    latitude: Option<String>,
    longitude: Option<String>,
    elevation: Option<String>,
    status: Option<String>,
    /// The reading's time, when the update gave one.
    pub(super) created_at: Option<DateTime<Utc>>,
}

impl Update {
    /// The update that `p` sends.
    pub(super) fn from_params(p: &WriteParams) -> Self {
        let get = |names: &[&str]| names.iter().find_map(|n| p.get(*n).cloned());
        let mut u = Update {
            latitude: get(&["lat", "latitude"]),
            longitude: get(&["long", "longitude"]),
            elevation: get(&["elevation"]),
            status: get(&["status"]),
            // ThingSpeak ignores a created_at it cannot parse and uses the server time.
            created_at: get(&["created_at"]).and_then(|s| parse_device_time(&s)),
            ..Update::default()
        };
        for (i, f) in u.fields.iter_mut().enumerate() {
            *f = get(&[&field_key(i), &format!("{}", i + 1)]);
        }
        u
    }

    /// The entry's data in the stream's shape.
    pub(super) fn entry(&self, stream: &StreamRecord) -> Bytes {
        let properties = stream.schema.get("properties").and_then(Value::as_object);
        let property = |name: &str| properties.and_then(|p| p.get(name));
        let mut data = Map::new();
        for ((_, name), value) in channel_fields(stream).iter().zip(&self.fields) {
            if let Some(v) = value {
                data.insert(name.clone(), typed(v, property(name)));
            }
        }
        for (names, value) in [
            (&["lat", "latitude"][..], &self.latitude),
            (&["long", "longitude"][..], &self.longitude),
            (&["elevation"][..], &self.elevation),
            (&["status"][..], &self.status),
        ] {
            if let (Some(v), Some(name)) = (value, names.iter().find(|n| property(n).is_some())) {
                data.insert((*name).to_owned(), typed(v, property(name)));
            }
        }
        if let (Some(t), Some(field)) = (self.created_at, &stream.timestamp_field) {
            data.insert(
                field.clone(),
                json!(t.to_rfc3339_opts(SecondsFormat::Micros, true)),
            );
        }
        Bytes::from(serde_json::to_vec(&Value::Object(data)).expect("a JSON object serialises"))
    }

    /// The time that travels in the `tt.created_at` header: `created_at`, when the stream has
    /// no `timestamp_field` to hold it in the entry's data.
    pub(super) fn header_time(&self, stream: &StreamRecord) -> Option<DateTime<Utc>> {
        self.created_at.filter(|_| stream.timestamp_field.is_none())
    }

    /// ThingSpeak's entry object: values as strings, compact.
    pub(super) fn answer(
        &self,
        stream: &StreamRecord,
        seq: u64,
        created_at: DateTime<Utc>,
    ) -> Value {
        let mut o = Map::new();
        o.insert("channel_id".into(), json!(stream.id));
        o.insert(
            "created_at".into(),
            json!(created_at.to_rfc3339_opts(SecondsFormat::Secs, true)),
        );
        o.insert("entry_id".into(), json!(seq));
        for (i, v) in self.fields.iter().enumerate() {
            o.insert(field_key(i), json!(v));
        }
        o.insert("latitude".into(), json!(self.latitude));
        o.insert("longitude".into(), json!(self.longitude));
        o.insert("elevation".into(), json!(self.elevation));
        o.insert("status".into(), json!(self.status));
        Value::Object(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_take_the_schema_type() {
        let p = |t: &str| json!({"type": t});
        assert_eq!(typed("21.5", Some(&p("number"))), json!(21.5));
        assert_eq!(typed("21", Some(&p("number"))), json!(21.0));
        assert_eq!(typed("7", Some(&p("integer"))), json!(7));
        assert_eq!(typed("7.0", Some(&p("integer"))), json!(7));
        assert_eq!(
            typed("7.5", Some(&p("integer"))),
            json!("7.5"),
            "left for the validator to reject"
        );
        assert_eq!(typed("1", Some(&p("boolean"))), json!(true));
        assert_eq!(typed("FALSE", Some(&p("boolean"))), json!(false));
        assert_eq!(typed("0042", Some(&p("string"))), json!("0042"));
        assert_eq!(typed("abc", Some(&p("number"))), json!("abc"));
        assert_eq!(typed("NaN", Some(&p("number"))), json!("NaN"));
        assert_eq!(
            typed("", Some(&json!({"type": ["number", "null"]}))),
            Value::Null
        );
        assert_eq!(typed("3\r\n", Some(&p("integer"))), json!(3));
        assert_eq!(typed("x", None), json!("x"));
    }
}
