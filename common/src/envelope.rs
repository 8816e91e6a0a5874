//! Header names and the validated entry envelope that travel between the parts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::stream::StreamId;

/// Raw entry header: the entry's UUIDv7, assigned at the edge.
pub const ENTRY_ID: &str = "tt.entry_id";
/// Raw entry header: when the edge received it, RFC 3339 with microseconds, UTC.
pub const RECEIVED_AT: &str = "tt.received_at";
/// Raw entry header: how it arrived (`http`, `thingspeak`, …).
pub const SOURCE: &str = "tt.source";
/// Raw entry header, optional: the time a device gave its reading outside the reading's data
/// (ThingSpeak's `created_at` on a stream without a `timestamp_field`), RFC 3339 with
/// microseconds, UTC. The validator takes `ts` from it when the stream has no `timestamp_field`.
pub const CREATED_AT: &str = "tt.created_at";

/// Dead-letter headers, following Kafka Connect's conventions.
pub mod dlq {
    /// The topic the rejected record was read from.
    pub const TOPIC: &str = "__connect.errors.topic";
    /// Its partition.
    pub const PARTITION: &str = "__connect.errors.partition";
    /// Its offset.
    pub const OFFSET: &str = "__connect.errors.offset";
    /// The stage that rejected it: `VALIDATE`, `SINK_INFLUX`, …
    pub const STAGE: &str = "__connect.errors.stage";
    /// The error kind.
    pub const CLASS: &str = "__connect.errors.exception.class.name";
    /// A human-readable message.
    pub const MESSAGE: &str = "__connect.errors.exception.message";
    /// ThingTotal's error kind.
    pub const KIND: &str = "tt.error.kind";
    /// The stream version the record was checked against.
    pub const STREAM_VERSION: &str = "tt.stream_version";
    /// A JSON array of the first violations (bounded; see [`crate::dead_letter`]).
    pub const DETAILS: &str = "tt.error.details";
    /// How many violations there were, listed or not.
    pub const VIOLATIONS_TOTAL: &str = "tt.error.violations_total";
    /// What was left out of the dead letter to fit the log's limit, as `part:bytes` pairs
    /// (`value`, `headers`, `key`); absent when nothing was.
    pub const OMITTED: &str = "tt.error.omitted";
}

/// A validated entry on `entries.valid`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidEntry<D = serde_json::Value> {
    /// The UUIDv7 assigned at the edge.
    pub entry_id: Uuid,
    /// The entry's offset in `entries.raw` plus one: unique and growing within a stream.
    pub seq: u64,
    /// The stream it belongs to.
    pub stream_id: StreamId,
    /// The stream version it was validated against.
    pub stream_version: u32,
    /// The reading's time: its `timestamp_field`, or `received_at`.
    pub ts: DateTime<Utc>,
    /// When the edge received it.
    pub received_at: DateTime<Utc>,
    /// The entry's data, as sent.
    pub data: D,
}

/// Formats a time as the headers carry it: RFC 3339, microseconds, UTC.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_have_microseconds_and_z() {
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_time(t), "2026-01-02T03:04:05.123456Z");
    }

    #[test]
    fn envelope_has_the_documented_members() {
        let e = ValidEntry {
            entry_id: Uuid::nil(),
            seq: 1,
            stream_id: 7,
            stream_version: 2,
            ts: DateTime::UNIX_EPOCH,
            received_at: DateTime::UNIX_EPOCH,
            data: serde_json::json!({"t": 1}),
        };
        let v = serde_json::to_value(&e).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "entry_id",
                "seq",
                "stream_id",
                "stream_version",
                "ts",
                "received_at",
                "data"
            ]
        );
    }
}
