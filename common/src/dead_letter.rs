//! The one way a record becomes a dead letter on `entries.dlq`, whichever stage refused it.
//!
//! A dead letter is the refused record unchanged (key, value, headers, timestamp) plus headers that
//! say where it came from and why, following Kafka Connect's conventions
//! ([`crate::envelope::dlq`]): its topic, partition and offset, the stage, the kind (as the
//! exception class and as `tt.error.kind`), a message, the stream version it was checked
//! against, and every violation as a JSON array in `tt.error.details`.

use bytes::Bytes;
use serde::Serialize;

use crate::envelope::dlq;
use crate::log::{Consumed, Record};

/// Why a record was dead-lettered: a closed set that readers filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The entry is not JSON.
    MalformedJson,
    /// Its stream does not exist (or was deleted).
    UnknownStream,
    /// It breaks its stream's schema.
    SchemaViolation,
    /// Its time is missing, unreadable or out of range.
    BadTimestamp,
    /// A sink's store refused it (InfluxDB rejected the point).
    SinkRejected,
}

impl Kind {
    /// The kind as the headers and the API name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::MalformedJson => "malformed_json",
            Kind::UnknownStream => "unknown_stream",
            Kind::SchemaViolation => "schema_violation",
            Kind::BadTimestamp => "bad_timestamp",
            Kind::SinkRejected => "sink_rejected",
        }
    }
}

/// The stage that refused a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The validator.
    Validate,
    /// The InfluxDB writer.
    SinkInflux,
}

impl Stage {
    /// The stage as `__connect.errors.stage` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Validate => "VALIDATE",
            Stage::SinkInflux => "SINK_INFLUX",
        }
    }
}

/// One violation, as `tt.error.details` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// JSON Pointer to the offending value in the entry.
    pub instance_path: String,
    /// JSON Pointer to the schema keyword that failed.
    pub schema_path: String,
    /// The keyword (`type`, `required`, …), or the store for a sink's refusal.
    pub keyword: String,
    /// What is wrong.
    pub message: String,
}

/// Why a record is refused, and by whom.
#[derive(Debug, Clone)]
pub struct Reason {
    /// The stage that refused it.
    pub stage: Stage,
    /// The kind of refusal.
    pub kind: Kind,
    /// A human-readable message.
    pub message: String,
    /// Every violation.
    pub violations: Vec<Violation>,
    /// The stream version the record was checked against, if it got that far.
    pub stream_version: Option<u32>,
}

impl Reason {
    /// The dead letter of the consumed record `c`. A record of an unknown stream loses its key,
    /// so that such letters do not pile up on one partition under a key nobody owns.
    pub fn dead_letter(self, c: Consumed) -> Record {
        let mut headers = c.headers;
        let mut add = |k: &str, v: String| headers.push((k.to_owned(), Bytes::from(v)));
        add(dlq::TOPIC, c.topic);
        add(dlq::PARTITION, c.partition.to_string());
        add(dlq::OFFSET, c.offset.to_string());
        add(dlq::STAGE, self.stage.as_str().into());
        add(dlq::CLASS, self.kind.as_str().into());
        add(dlq::MESSAGE, self.message);
        add(dlq::KIND, self.kind.as_str().into());
        if let Some(v) = self.stream_version {
            add(dlq::STREAM_VERSION, v.to_string());
        }
        add(
            dlq::DETAILS,
            serde_json::to_string(&self.violations).expect("violations serialise"),
        );
        Record {
            key: if self.kind == Kind::UnknownStream {
                None
            } else {
                c.key
            },
            value: c.value,
            headers,
            timestamp_ms: Some(c.timestamp_ms),
        }
    }
}
