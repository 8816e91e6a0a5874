//! The archive's columns: fixed ones, then one typed column per schema property.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use thingtotal_common::archive::{property_column, FIXED_COLUMNS};
use thingtotal_common::stream::{LeafType, StreamRecord};
use thingtotal_common::time::{envelope_micros, parse_device_time};

/// How one stream version's entries become columns.
#[derive(Debug, Clone)]
pub(crate) struct Columns {
    schema: Arc<Schema>,
    properties: Vec<(String, LeafType)>,
    /// Property name → its index in `properties`.
    index: HashMap<String, usize>,
}

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

impl Columns {
    /// The columns of `stream`'s current version.
    pub(crate) fn of(stream: &StreamRecord) -> Self {
        let [entry_id, seq, ts, received_at, stream_version] = FIXED_COLUMNS;
        let mut fields = vec![
            Field::new(entry_id, DataType::Utf8, false),
            Field::new(seq, DataType::Int64, false),
            Field::new(ts, utc_micros(), false),
            Field::new(received_at, utc_micros(), false),
            Field::new(stream_version, DataType::Int32, false),
        ];
        let mut properties = Vec::new();
        if let Some(props) = stream.schema.get("properties").and_then(Value::as_object) {
            for (name, p) in props {
                // A nested object is one column of its JSON text.
                let kind = LeafType::of(p);
                let data_type = match kind {
                    LeafType::Integer => DataType::Int64,
                    LeafType::Float => DataType::Float64,
                    LeafType::Boolean => DataType::Boolean,
                    LeafType::Time => utc_micros(),
                    LeafType::String | LeafType::Json => DataType::Utf8,
                };
                let column = property_column(name);
                fields.push(Field::new(column, data_type, true));
                properties.push((name.clone(), kind));
            }
        }
        let index = properties
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.clone(), i))
            .collect();
        Self {
            schema: Arc::new(Schema::new(fields)),
            properties,
            index,
        }
    }

    /// The Arrow schema.
    pub(crate) fn schema(&self) -> Arc<Schema> {
        self.schema.clone()
    }

    /// One record batch of the envelopes `rows`, decoded straight into the column builders: no
    /// `serde_json::Value` is built for an entry's data, and strings are borrowed from the
    /// envelope. A record that is not an envelope is skipped, and counted in the second value.
    pub(crate) fn decode(
        &self,
        rows: &[bytes::Bytes],
    ) -> arrow::error::Result<(RecordBatch, usize)> {
        let n = rows.len();
        let mut entry_id = StringBuilder::with_capacity(n, n * 36);
        let mut seq = Int64Builder::with_capacity(n);
        let mut ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut received = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut version = Int32Builder::with_capacity(n);
        let mut builders: Vec<Builder> = self
            .properties
            .iter()
            .map(|(_, kind)| Builder::new(*kind, n))
            .collect();
        let mut cells: Vec<Option<Cell<'_>>> = vec![None; self.properties.len()];
        let mut skipped = 0;
        for row in rows {
            cells.iter_mut().for_each(|c| *c = None);
            let mut de = serde_json::Deserializer::from_slice(row);
            let head = EnvelopeSeed {
                columns: self,
                cells: &mut cells,
            }
            .deserialize(&mut de)
            .and_then(|head| de.end().map(|()| head));
            let Ok(head) = head else {
                skipped += 1;
                continue;
            };
            let mut id = uuid::Uuid::encode_buffer();
            entry_id.append_value(head.entry_id.hyphenated().encode_lower(&mut id));
            seq.append_value(head.seq as i64);
            ts.append_value(head.ts);
            received.append_value(head.received_at);
            version.append_value(head.stream_version as i32);
            for (builder, cell) in builders.iter_mut().zip(&cells) {
                builder.append(cell.as_ref());
            }
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(entry_id.finish()),
            Arc::new(seq.finish()),
            Arc::new(ts.finish()),
            Arc::new(received.finish()),
            Arc::new(version.finish()),
        ];
        columns.extend(builders.into_iter().map(Builder::finish));
        Ok((RecordBatch::try_new(self.schema.clone(), columns)?, skipped))
    }
}

/// One property's value in one entry, as the envelope holds it.
#[derive(Debug, Clone, PartialEq)]
enum Cell<'de> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'de, str>),
    /// An object or an array.
    Nested(Value),
}

impl Cell<'_> {
    fn as_i64(&self) -> Option<i64> {
        match self {
            Cell::Int(i) => Some(*i),
            Cell::UInt(u) => i64::try_from(*u).ok(),
            _ => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            Cell::Int(i) => Some(*i as f64),
            Cell::UInt(u) => Some(*u as f64),
            Cell::Float(f) => Some(*f),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Cell::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Its JSON text, as `Value::to_string` writes it.
    fn json(&self) -> Option<String> {
        Some(match self {
            Cell::Null => return None,
            Cell::Bool(b) => b.to_string(),
            Cell::Int(i) => i.to_string(),
            Cell::UInt(u) => u.to_string(),
            Cell::Float(f) => Value::from(*f).to_string(),
            Cell::Str(s) => Value::from(s.as_ref()).to_string(),
            Cell::Nested(v) => v.to_string(),
        })
    }
}

struct CellVisitor;

impl<'de> Visitor<'de> for CellVisitor {
    type Value = Cell<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Cell<'de>, E> {
        Ok(Cell::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Cell<'de>, E> {
        Ok(Cell::Int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Cell<'de>, E> {
        Ok(Cell::UInt(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Cell<'de>, E> {
        Ok(Cell::Float(v))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cell<'de>, E> {
        Ok(Cell::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Cell<'de>, E> {
        Ok(Cell::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Cell<'de>, E> {
        Ok(Cell::Str(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Cell<'de>, E> {
        Ok(Cell::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Cell<'de>, A::Error> {
        Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Cell::Nested)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Cell<'de>, A::Error> {
        Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(Cell::Nested)
    }
}

impl<'de> Deserialize<'de> for Cell<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CellVisitor)
    }
}

/// The envelope members that become the fixed columns.
struct FixedValues {
    entry_id: uuid::Uuid,
    seq: u64,
    stream_version: u32,
    ts: i64,
    received_at: i64,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Member {
    EntryId,
    Seq,
    StreamVersion,
    Ts,
    ReceivedAt,
    Data,
    #[serde(other)]
    Other,
}

/// Decodes one envelope: the fixed members into a [`FixedValues`], the data's properties into `cells`.
struct EnvelopeSeed<'c, 'r, 'de> {
    columns: &'c Columns,
    cells: &'r mut [Option<Cell<'de>>],
}

impl<'de> DeserializeSeed<'de> for EnvelopeSeed<'_, '_, 'de> {
    type Value = FixedValues;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<FixedValues, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EnvelopeSeed<'_, '_, 'de> {
    type Value = FixedValues;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an entry envelope")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FixedValues, A::Error> {
        fn time<E: de::Error>(cell: Cell<'_>) -> Result<i64, E> {
            cell.as_str()
                .and_then(envelope_micros)
                .ok_or_else(|| E::custom("a time is not RFC 3339"))
        }
        let (mut entry_id, mut seq, mut version, mut ts, mut received) =
            (None, None, None, None, None);
        let mut data = false;
        while let Some(member) = map.next_key::<Member>()? {
            match member {
                Member::EntryId => {
                    let id = map.next_value::<Cell<'de>>()?;
                    entry_id = Some(
                        id.as_str()
                            .and_then(|s| uuid::Uuid::try_parse(s).ok())
                            .ok_or_else(|| de::Error::custom("entry_id is not a UUID"))?,
                    );
                }
                Member::Seq => seq = Some(map.next_value::<u64>()?),
                Member::StreamVersion => version = Some(map.next_value::<u32>()?),
                Member::Ts => ts = Some(time(map.next_value::<Cell<'de>>()?)?),
                Member::ReceivedAt => received = Some(time(map.next_value::<Cell<'de>>()?)?),
                Member::Data => {
                    data = true;
                    map.next_value_seed(DataSeed {
                        columns: self.columns,
                        cells: &mut *self.cells,
                    })?;
                }
                Member::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let missing = |what| de::Error::custom(format!("the envelope has no {what}"));
        if !data {
            return Err(missing("data"));
        }
        Ok(FixedValues {
            entry_id: entry_id.ok_or_else(|| missing("entry_id"))?,
            seq: seq.ok_or_else(|| missing("seq"))?,
            stream_version: version.ok_or_else(|| missing("stream_version"))?,
            ts: ts.ok_or_else(|| missing("ts"))?,
            received_at: received.ok_or_else(|| missing("received_at"))?,
        })
    }
}

/// Decodes an entry's data: each property that has a column into its cell, the rest skipped.
struct DataSeed<'c, 'r, 'de> {
    columns: &'c Columns,
    cells: &'r mut [Option<Cell<'de>>],
}

impl<'de> DeserializeSeed<'de> for DataSeed<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// The column index of a property name, if it has one.
struct PropertySeed<'c>(&'c Columns);

impl<'de> DeserializeSeed<'de> for PropertySeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for PropertySeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a property name")
    }

    fn visit_str<E>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.0.index.get(v).copied())
    }
}

impl<'de> Visitor<'de> for DataSeed<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an entry's data")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(index) = map.next_key_seed(PropertySeed(self.columns))? {
            match index {
                // A repeated member: the last one counts, as in a `serde_json::Value`.
                Some(i) => self.cells[i] = Some(map.next_value::<Cell<'de>>()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    // Data that is not an object has no properties: every property column is null.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// One property column being built.
enum Builder {
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Text(StringBuilder),
    Time(TimestampMicrosecondBuilder),
    Json(StringBuilder),
}

impl Builder {
    fn new(kind: LeafType, n: usize) -> Self {
        match kind {
            LeafType::Integer => Builder::Int(Int64Builder::with_capacity(n)),
            LeafType::Float => Builder::Float(Float64Builder::with_capacity(n)),
            LeafType::Boolean => Builder::Bool(BooleanBuilder::with_capacity(n)),
            LeafType::String => Builder::Text(StringBuilder::with_capacity(n, n * 8)),
            LeafType::Time => {
                Builder::Time(TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC"))
            }
            LeafType::Json => Builder::Json(StringBuilder::with_capacity(n, n * 16)),
        }
    }

    /// Appends a cell; one of another type than the column's is null, as is a missing one.
    fn append(&mut self, cell: Option<&Cell<'_>>) {
        match self {
            Builder::Int(b) => b.append_option(cell.and_then(Cell::as_i64)),
            Builder::Float(b) => b.append_option(cell.and_then(Cell::as_f64)),
            Builder::Bool(b) => b.append_option(match cell {
                Some(Cell::Bool(v)) => Some(*v),
                _ => None,
            }),
            Builder::Text(b) => b.append_option(cell.and_then(Cell::as_str)),
            Builder::Time(b) => b.append_option(cell.and_then(Cell::as_str).and_then(|s| {
                envelope_micros(s).or_else(|| parse_device_time(s).map(|t| t.timestamp_micros()))
            })),
            Builder::Json(b) => b.append_option(cell.and_then(Cell::json)),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Builder::Int(mut b) => Arc::new(b.finish()),
            Builder::Float(mut b) => Arc::new(b.finish()),
            Builder::Bool(mut b) => Arc::new(b.finish()),
            Builder::Text(mut b) | Builder::Json(mut b) => Arc::new(b.finish()),
            Builder::Time(mut b) => Arc::new(b.finish()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use thingtotal_common::envelope::ValidEntry;

    /// The record batch of `rows` as the archiver built it through `serde_json::Value`: the
    /// reference the direct decoder must match.
    fn oracle(c: &Columns, rows: &[ValidEntry]) -> arrow::error::Result<RecordBatch> {
        let n = rows.len();
        let mut entry_id = StringBuilder::with_capacity(n, n * 36);
        let mut seq = Int64Builder::with_capacity(n);
        let mut ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut received = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut version = Int32Builder::with_capacity(n);
        for r in rows {
            entry_id.append_value(r.entry_id.to_string());
            seq.append_value(r.seq as i64);
            ts.append_value(r.ts.timestamp_micros());
            received.append_value(r.received_at.timestamp_micros());
            version.append_value(r.stream_version as i32);
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(entry_id.finish()),
            Arc::new(seq.finish()),
            Arc::new(ts.finish()),
            Arc::new(received.finish()),
            Arc::new(version.finish()),
        ];
        for (name, kind) in &c.properties {
            let values = rows
                .iter()
                .map(|r| r.data.get(name).filter(|v| !v.is_null()));
            let array: ArrayRef = match kind {
                LeafType::Integer => Arc::new(
                    values
                        .map(|v| v.and_then(Value::as_i64))
                        .collect::<arrow::array::Int64Array>(),
                ),
                LeafType::Float => Arc::new(
                    values
                        .map(|v| v.and_then(Value::as_f64))
                        .collect::<arrow::array::Float64Array>(),
                ),
                LeafType::Boolean => Arc::new(
                    values
                        .map(|v| v.and_then(Value::as_bool))
                        .collect::<arrow::array::BooleanArray>(),
                ),
                LeafType::String => Arc::new(
                    values
                        .map(|v| v.and_then(Value::as_str))
                        .collect::<arrow::array::StringArray>(),
                ),
                LeafType::Json => Arc::new(
                    values
                        .map(|v| v.map(Value::to_string))
                        .collect::<arrow::array::StringArray>(),
                ),
                LeafType::Time => {
                    let mut b = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
                    for v in values {
                        b.append_option(
                            v.and_then(Value::as_str)
                                .and_then(parse_device_time)
                                .map(|t| t.timestamp_micros()),
                        );
                    }
                    Arc::new(b.finish())
                }
            };
            columns.push(array);
        }
        RecordBatch::try_new(c.schema.clone(), columns)
    }

    fn stream() -> StreamRecord {
        serde_json::from_value(json!({
            "id": 7, "name": "s", "version": 2,
            "schema": {"type": "object", "properties": {
                "n": {"type": "integer"},
                "t": {"type": "number"},
                "on": {"type": "boolean"},
                "label": {"type": "string"},
                "at": {"type": "string", "format": "date-time"},
                "pos": {"type": "object"},
                "any": {},
                "seq": {"type": "integer"}
            }},
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "write_key_sha256": "", "read_key_sha256": ""
        }))
        .unwrap()
    }

    #[test]
    fn the_direct_decoder_builds_what_the_value_path_built() {
        let columns = Columns::of(&stream());
        let data = [
            json!({"n": 1, "t": 21.5, "on": true, "label": "a", "at": "2026-01-02T03:04:05Z",
                   "pos": {"lat": 1.5, "long": [2, 3]}, "any": 7, "seq": 9}),
            json!({"label": "esc\"aped \u{e9}\n", "any": "text", "t": 3, "extra": {"x": [1]}}),
            json!({"n": 2.5, "t": "warm", "on": 1, "label": 5, "at": "yesterday", "any": [1, "2"]}),
            json!({"n": 18446744073709551615u64, "t": 18446744073709551615u64, "any": 1.0e-7,
                   "at": "2026-01-02 03:04:05", "pos": null, "label": null}),
            json!({"n": -9223372036854775808i64, "t": -4, "any": {"nested": {"deep": true}}, "on": false}),
            json!({}),
            json!([1, 2]),
            json!("not an object"),
        ];
        let entries: Vec<ValidEntry> = data
            .iter()
            .enumerate()
            .map(|(i, d)| ValidEntry {
                entry_id: uuid::Uuid::now_v7(),
                seq: 1000 + i as u64,
                stream_id: 7,
                stream_version: 2,
                ts: chrono::DateTime::from_timestamp_micros(1_767_225_600_123_456 + i as i64)
                    .unwrap(),
                received_at: chrono::DateTime::UNIX_EPOCH,
                data: d.clone(),
            })
            .collect();
        let envelopes: Vec<bytes::Bytes> = entries
            .iter()
            .map(|e| serde_json::to_vec(e).unwrap().into())
            .collect();
        let (batch, skipped) = columns.decode(&envelopes).unwrap();
        assert_eq!(skipped, 0);
        assert_eq!(batch, oracle(&columns, &entries).unwrap());
        assert_eq!(batch.num_rows(), data.len());
        assert_eq!(batch.schema().field(12).name(), "data.seq");
    }

    #[test]
    fn a_repeated_member_keeps_the_last_value_and_records_that_are_not_envelopes_are_skipped() {
        let columns = Columns::of(&stream());
        let good = r#"{"entry_id":"0190c1e0-0000-7000-8000-000000000000","seq":5,"stream_id":7,
            "stream_version":2,"ts":"2026-01-02T03:04:05.000001Z",
            "received_at":"2026-01-02T03:04:05.5+01:00","data":{"n":1,"n":2},"later":[1]}"#;
        let rows: Vec<bytes::Bytes> = [
            good,
            "not json",
            r#"{"entry_id":"x","seq":1,"stream_version":1,"ts":"2026-01-02T03:04:05Z","received_at":"2026-01-02T03:04:05Z","data":{}}"#,
            r#"{"entry_id":"0190c1e0-0000-7000-8000-000000000000","seq":1,"stream_version":1,"ts":"2026-01-02T03:04:05Z","received_at":"2026-01-02T03:04:05Z"}"#,
            r#"{"entry_id":"0190c1e0-0000-7000-8000-000000000000","seq":1,"stream_version":1,"ts":"soon","received_at":"2026-01-02T03:04:05Z","data":{}}"#,
            &format!("{good} trailing"),
        ]
        .into_iter()
        .map(|s| bytes::Bytes::from(s.to_owned()))
        .collect();
        let (batch, skipped) = columns.decode(&rows).unwrap();
        assert_eq!((batch.num_rows(), skipped), (1, 5));
        let n = batch
            .column_by_name("n")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap();
        assert_eq!(n.value(0), 2);
        let received = batch
            .column_by_name("received_at")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(received.value(0), 1_767_319_445_500_000);
    }
}
