//! A stream's dead letters, read straight from the `entries.dlq` topic.
//!
//! The dead-letter topic already is the durable, ordered record of every rejection, with the
//! original bytes and the reason in its headers, and it is keyed by stream id. Searching it by
//! time (the log's offsets-for-time) costs no second store that would have to be kept exactly in
//! step with it, and works the same on Kafka and on the embedded log. What it holds is bounded by
//! the topic's retention, which is what "recent" means here. A search reads forward from the
//! start time and stops at `limit` matches or after scanning [`MAX_SCANNED`] records, in which
//! case the answer says it is partial and where to go on from.
//!
//! Searches share a few partition readers ([`DeadLetters`]): at most `--dead-letter-searches`
//! run at once, each on a reader of its own that moves from partition to partition, so that
//! neither a burst of searches nor a topic of many partitions opens more than that many
//! consumers. A search that finds them all busy waits up to [`QUEUE_WAIT`], then gets 503.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use thingtotal_common::envelope::{self, dlq};

use crate::telemetry;
use thingtotal_common::log::{Consumed, Log, Reader};
use thingtotal_common::problem::Problem;
use tokio::sync::Semaphore;
use utoipa::ToSchema;
use warp::http::StatusCode;

/// The most dead letters one search reads, over all partitions.
pub(crate) const MAX_SCANNED: usize = 200_000;
/// How long a read waits for more records before taking the partition as read to its end.
const READ_WAIT: Duration = Duration::from_millis(300);
/// How long the first read after a reader moved waits for a record.
const SEEK_WAIT: Duration = Duration::from_secs(3);
/// How long a search waits for a turn before it is answered 503.
pub(crate) const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// The dead-letter topic's readers, shared by every search (see the module's documentation).
#[derive(Debug, Clone)]
pub(crate) struct DeadLetters {
    log: Log,
    topic: String,
    turns: Arc<Semaphore>,
    /// Readers not in use; never more than `turns` permits' worth exist.
    idle: Arc<Mutex<Vec<Reader>>>,
}

impl DeadLetters {
    /// Searches of `topic` on `log`, at most `searches` at a time.
    pub(crate) fn new(log: Log, topic: &str, searches: usize) -> Self {
        Self {
            log,
            topic: topic.to_owned(),
            turns: Arc::new(Semaphore::new(searches.max(1))),
            idle: Arc::default(),
        }
    }

    /// The dead letters of stream `key` from `start_ms` on, oldest first, at most `limit`.
    pub(crate) async fn search(
        &self,
        key: &[u8],
        start_ms: i64,
        limit: usize,
    ) -> Result<RejectedPage, Problem> {
        let Ok(Ok(_turn)) = tokio::time::timeout(QUEUE_WAIT, self.turns.acquire()).await else {
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many searches of rejected entries at once; retry",
            ));
        };
        let idle = self.idle.lock().expect("idle readers").pop();
        let mut reader = match idle {
            Some(r) => r,
            None => {
                telemetry::dead_letter_reader_opened();
                self.log
                    .reader(&self.topic, 0, 0)
                    .await
                    .map_err(|e| unavailable(&e))?
            }
        };
        let page = scan(&self.log, &self.topic, &mut reader, key, start_ms, limit).await;
        // A reader that failed may be broken; the next search opens a new one.
        if page.is_ok() {
            self.idle.lock().expect("idle readers").push(reader);
        }
        page
    }
}

fn unavailable(e: &thingtotal_common::Error) -> Problem {
    Problem::unavailable("the dead-letter topic could not be read", e)
}

/// One rejected entry.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Rejected {
    /// The entry's id, assigned at the edge.
    pub entry_id: Option<String>,
    /// When the edge received it.
    pub received_at: Option<String>,
    /// When it was dead-lettered.
    pub rejected_at: String,
    /// The stage that rejected it: `VALIDATE`, `SINK_INFLUX`.
    pub stage: Option<String>,
    /// `malformed_json`, `unknown_stream`, `schema_violation`, `bad_timestamp`, `too_large`,
    /// `sink_rejected`.
    pub kind: Option<String>,
    /// A one-line reason.
    pub message: Option<String>,
    /// The stream version it was checked against.
    pub stream_version: Option<u32>,
    /// The first violations (at most 100): `instance_path`, `schema_path`, `keyword`,
    /// `message`.
    #[schema(value_type = Vec<Object>)]
    pub violations: Value,
    /// The entry exactly as it was sent (UTF-8; invalid bytes replaced); empty if it was too
    /// large to keep in the dead letter.
    pub body: String,
    /// Where it is in the dead-letter topic: `partition:offset`.
    pub position: String,
}

/// A page of rejected entries.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RejectedPage {
    /// Oldest first.
    pub rejected: Vec<Rejected>,
    /// True when the search stopped at its scan limit before the end of the topic; search again
    /// from the last entry's `rejected_at`.
    pub partial: bool,
}

fn header(c: &Consumed, name: &str) -> Option<String> {
    c.header(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

impl Rejected {
    fn of(c: &Consumed) -> Self {
        Self {
            entry_id: header(c, envelope::ENTRY_ID),
            received_at: header(c, envelope::RECEIVED_AT),
            rejected_at: chrono::DateTime::from_timestamp_millis(c.timestamp_ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_default(),
            stage: header(c, dlq::STAGE),
            kind: header(c, dlq::KIND),
            message: header(c, dlq::MESSAGE),
            stream_version: header(c, dlq::STREAM_VERSION).and_then(|v| v.parse().ok()),
            violations: header(c, dlq::DETAILS)
                .and_then(|d| serde_json::from_str(&d).ok())
                .unwrap_or(Value::Array(Vec::new())),
            body: String::from_utf8_lossy(c.value.as_deref().unwrap_or_default()).into_owned(),
            position: format!("{}:{}", c.partition, c.offset),
        }
    }
}

/// The dead letters of stream `key` from `start_ms` on, oldest first, at most `limit`, read
/// with `reader`.
async fn scan(
    log: &Log,
    topic: &str,
    reader: &mut Reader,
    key: &[u8],
    start_ms: i64,
    limit: usize,
) -> Result<RejectedPage, Problem> {
    let starts = log
        .offsets_for_time(topic, start_ms)
        .await
        .map_err(|e| unavailable(&e))?;
    let ends = log.end_offsets(topic).await.map_err(|e| unavailable(&e))?;
    let mut found: Vec<Consumed> = Vec::new();
    let mut scanned = 0;
    let mut partial = false;
    for (partition, (&from, &end)) in starts.iter().zip(&ends).enumerate() {
        if from < 0 || from >= end {
            continue;
        }
        reader
            .seek(partition as i32, from)
            .map_err(|e| unavailable(&e))?;
        let mut matched = 0;
        // A reader just moved may take a while to fetch again; after that, a read that finds
        // nothing means the partition is read to its end (transaction markers, which are never
        // delivered, can stand between the last record and `end`).
        let mut wait = SEEK_WAIT;
        'partition: loop {
            let batch = reader.read(1000, wait).await.map_err(|e| unavailable(&e))?;
            if batch.is_empty() {
                break;
            }
            wait = READ_WAIT;
            for c in batch {
                scanned += 1;
                let at_end = c.offset + 1 >= end;
                if c.key.as_deref() == Some(key) {
                    found.push(c);
                    matched += 1;
                }
                // Enough from this partition: later records cannot be among the oldest `limit`.
                if at_end || matched >= limit {
                    break 'partition;
                }
                if scanned >= MAX_SCANNED {
                    partial = true;
                    break 'partition;
                }
            }
        }
        if partial {
            break;
        }
    }
    found.sort_by_key(|c| (c.timestamp_ms, c.partition, c.offset));
    found.truncate(limit);
    Ok(RejectedPage {
        rejected: found.iter().map(Rejected::of).collect(),
        partial,
    })
}
