//! The shared crate's error type.

use std::time::Duration;

/// Everything that can go wrong in the shared crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Kafka (librdkafka) reported an error.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The embedded log's storage engine failed.
    #[error("embedded log storage: {0}")]
    Storage(String),
    /// A file system operation failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A record or configuration did not parse as JSON.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// An operation did not finish in time.
    #[error("{what} did not finish within {after:?}")]
    Timeout {
        /// What was being waited for.
        what: &'static str,
        /// How long it was waited for.
        after: Duration,
    },
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// A topic is missing or has an unexpected shape.
    #[error("topic {0}: {1}")]
    Topic(String, String),
    /// The log is busy: its write queue is full; try again shortly.
    #[error("the log's write queue is full")]
    Busy,
    /// The log is shutting down: its background task has ended.
    #[error("the log is closed")]
    Closed,
    /// The Parquet archive failed: encoding or reading a file, or its object store.
    #[error("archive: {0}")]
    Archive(String),
    /// A background task panicked or was cancelled.
    #[error("a background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Result with the shared crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn storage(e: impl std::fmt::Display) -> Self {
        Error::Storage(e.to_string())
    }

    /// Whether a file or object that was to be created exists already.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Error::Io(e) if e.kind() == std::io::ErrorKind::AlreadyExists)
    }
}
