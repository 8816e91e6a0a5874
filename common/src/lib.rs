//! What every ThingTotal part shares: configuration blocks, topic names, the entry envelope and
//! stream record, the log port with its Kafka and embedded adapters, the stream registry, and
//! telemetry.
//!
//! Delivery guarantees start here. The log port acknowledges an append only once the record is
//! durable: replicated with `acks=all` on Kafka, fsynced on the embedded log. Its atomic
//! produce-and-commit is what gives the validator exactly-once, and group positions are only ever
//! moved by an explicit commit, so a part that crashes resumes from its last durable output.

pub mod archive;
pub mod config;
pub mod consumer;
pub mod dead_letter;
pub mod envelope;
pub mod error;
pub mod http;
pub mod keys;
pub mod limits;
pub mod log;
pub mod openapi;
pub mod part;
pub mod problem;
pub mod registry;
pub mod stream;
pub mod telemetry;
pub mod thingspeak;
pub mod time;
pub mod topics;

pub use error::{Error, Result};
pub use tokio_util::sync::CancellationToken;
