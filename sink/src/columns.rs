//! The archive's columns: fixed ones, then one typed column per schema property.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde_json::Value;
use thingtotal_common::archive::property_column;
use thingtotal_common::envelope::ValidEntry;
use thingtotal_common::stream::{schema_type, StreamRecord};
use thingtotal_common::time::parse_device_time;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Float,
    Bool,
    Text,
    Time,
    /// Nested, untyped or an array: its JSON text.
    Json,
}

/// How one stream version's entries become columns.
#[derive(Debug, Clone)]
pub(crate) struct Columns {
    schema: Arc<Schema>,
    properties: Vec<(String, Kind)>,
}

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

impl Columns {
    /// The columns of `stream`'s current version.
    pub(crate) fn of(stream: &StreamRecord) -> Self {
        let mut fields = vec![
            Field::new("entry_id", DataType::Utf8, false),
            Field::new("seq", DataType::Int64, false),
            Field::new("ts", utc_micros(), false),
            Field::new("received_at", utc_micros(), false),
            Field::new("stream_version", DataType::Int32, false),
        ];
        let mut properties = Vec::new();
        if let Some(props) = stream.schema.get("properties").and_then(Value::as_object) {
            for (name, p) in props {
                let kind = match schema_type(p) {
                    Some("integer") => Kind::Int,
                    Some("number") => Kind::Float,
                    Some("boolean") => Kind::Bool,
                    Some("string")
                        if p.get("format").and_then(Value::as_str) == Some("date-time") =>
                    {
                        Kind::Time
                    }
                    Some("string") => Kind::Text,
                    _ => Kind::Json,
                };
                let data_type = match kind {
                    Kind::Int => DataType::Int64,
                    Kind::Float => DataType::Float64,
                    Kind::Bool => DataType::Boolean,
                    Kind::Time => utc_micros(),
                    Kind::Text | Kind::Json => DataType::Utf8,
                };
                let column = property_column(name);
                fields.push(Field::new(column, data_type, true));
                properties.push((name.clone(), kind));
            }
        }
        Self {
            schema: Arc::new(Schema::new(fields)),
            properties,
        }
    }

    /// The Arrow schema.
    pub(crate) fn schema(&self) -> Arc<Schema> {
        self.schema.clone()
    }

    /// One record batch of `rows`.
    pub(crate) fn batch(&self, rows: &[ValidEntry]) -> arrow::error::Result<RecordBatch> {
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
        for (name, kind) in &self.properties {
            let values = rows
                .iter()
                .map(|r| r.data.get(name).filter(|v| !v.is_null()));
            let array: ArrayRef = match kind {
                Kind::Int => Arc::new(
                    values
                        .map(|v| v.and_then(Value::as_i64))
                        .collect::<arrow::array::Int64Array>(),
                ),
                Kind::Float => Arc::new(
                    values
                        .map(|v| v.and_then(Value::as_f64))
                        .collect::<arrow::array::Float64Array>(),
                ),
                Kind::Bool => Arc::new(
                    values
                        .map(|v| v.and_then(Value::as_bool))
                        .collect::<arrow::array::BooleanArray>(),
                ),
                Kind::Text => Arc::new(
                    values
                        .map(|v| v.and_then(Value::as_str))
                        .collect::<arrow::array::StringArray>(),
                ),
                Kind::Json => Arc::new(
                    values
                        .map(|v| v.map(Value::to_string))
                        .collect::<arrow::array::StringArray>(),
                ),
                Kind::Time => {
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
        RecordBatch::try_new(self.schema.clone(), columns)
    }
}
