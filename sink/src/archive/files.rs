//! The archiver's open files: which rows it holds, per (partition, stream, date), and which
//! positions are therefore durable.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use thingtotal_common::log::{Consumed, GroupConsumer, Log, TopicPartitionOffset};
use thingtotal_common::stream::StreamId;
use thingtotal_common::time::envelope_micros;
use tracing::warn;

use super::recover::{is_archived, Archived};

/// When files roll over.
#[derive(Debug, Clone)]
pub struct Rollover {
    /// Rows per file.
    pub rows: usize,
    /// Bytes of entry data per file (an estimate of the file's input).
    pub bytes: usize,
    /// Age of a file's first row.
    pub age: Duration,
}

/// Which file a row goes to: one per Kafka partition, stream and date.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct FileKey {
    pub(crate) partition: i32,
    pub(crate) stream: StreamId,
    pub(crate) date: NaiveDate,
}

impl FileKey {
    fn archived_key(&self) -> (i32, StreamId, NaiveDate) {
        (self.partition, self.stream, self.date)
    }
}

/// A file being filled.
#[derive(Debug)]
pub(crate) struct OpenFile {
    /// The stream version of its rows.
    pub(crate) version: u32,
    pub(crate) first_offset: i64,
    pub(crate) last_offset: i64,
    /// The envelopes as they were read: decoded only when the file is written, so an open file
    /// holds about its input's bytes (a decoded envelope takes several times more memory).
    pub(crate) rows: Vec<bytes::Bytes>,
    pub(crate) bytes: usize,
    opened: Instant,
}

/// What the archiver reads of an envelope to place it: the rest is decoded when its file is
/// written.
#[derive(serde::Deserialize)]
struct Placement<'a> {
    stream_id: StreamId,
    stream_version: u32,
    #[serde(borrow)]
    ts: std::borrow::Cow<'a, str>,
}

/// What became of a consumed record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Placed {
    /// Held in its open file (or skipped: already archived, or not an envelope).
    Held,
    /// Its file holds another stream version: write that file first, then place the record again.
    Roll(FileKey),
}

/// Every open file of one archiver, and where each partition was read and committed to.
#[derive(Debug)]
pub(crate) struct OpenFiles {
    rollover: Rollover,
    open: HashMap<FileKey, OpenFile>,
    /// Per partition: the offset after the last record seen.
    seen: HashMap<i32, i64>,
    committed: HashMap<i32, i64>,
    /// The file the last record filled to its limit.
    full: Option<FileKey>,
}

impl OpenFiles {
    pub(crate) fn new(rollover: Rollover) -> Self {
        Self {
            rollover,
            open: HashMap::new(),
            seen: HashMap::new(),
            committed: HashMap::new(),
            full: None,
        }
    }

    /// Forgets every open file and position: their rows will be read again.
    pub(crate) fn clear(&mut self) {
        self.open.clear();
        self.seen.clear();
        self.committed.clear();
        self.full = None;
    }

    /// Puts a consumed record in its open file, unless `archived` already holds it.
    pub(crate) fn place(&mut self, c: &Consumed, archived: &Archived) -> Placed {
        self.seen.insert(c.partition, c.offset + 1);
        let placement =
            serde_json::from_slice::<Placement<'_>>(c.value.as_deref().unwrap_or_default())
                .map_err(|e| e.to_string())
                .and_then(|h| {
                    let date = envelope_micros(&h.ts)
                        .and_then(chrono::DateTime::from_timestamp_micros)
                        .ok_or_else(|| format!("ts {:?} is not RFC 3339", h.ts))?;
                    Ok((h.stream_id, h.stream_version, date.date_naive()))
                });
        let (stream, version, date) = match placement {
            Ok(h) => h,
            Err(e) => {
                warn!(partition = c.partition, offset = c.offset, error = %e, "skipping a record that is not a valid envelope");
                return Placed::Held;
            }
        };
        let key = FileKey {
            partition: c.partition,
            stream,
            date,
        };
        if is_archived(archived, key.archived_key(), c.offset) {
            return Placed::Held;
        }
        // A new stream version starts a new file.
        if self.open.get(&key).is_some_and(|f| f.version != version) {
            return Placed::Roll(key);
        }
        let size = c.value.as_ref().map_or(0, |v| v.len());
        let file = self.open.entry(key.clone()).or_insert_with(|| OpenFile {
            version,
            first_offset: c.offset,
            last_offset: c.offset,
            rows: Vec::new(),
            bytes: 0,
            opened: Instant::now(),
        });
        file.last_offset = c.offset;
        file.bytes += size;
        file.rows.push(c.value.clone().unwrap_or_default());
        if file.rows.len() >= self.rollover.rows || file.bytes >= self.rollover.bytes {
            self.full = Some(key);
        }
        Placed::Held
    }

    /// The file the last record filled to its limit, if any.
    pub(crate) fn take_full(&mut self) -> Option<FileKey> {
        self.full.take()
    }

    /// Takes the open file `key` out, to be written.
    pub(crate) fn take(&mut self, key: &FileKey) -> Option<OpenFile> {
        self.open.remove(key)
    }

    /// Files due by size or age; every file with `all`.
    pub(crate) fn due(&self, all: bool) -> Vec<FileKey> {
        self.open
            .iter()
            .filter(|(_, f)| {
                all || f.rows.len() >= self.rollover.rows
                    || f.bytes >= self.rollover.bytes
                    || f.opened.elapsed() >= self.rollover.age
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Whether every partition of `topic` has been read to its end.
    pub(crate) async fn read_to_end(
        &self,
        consumer: &GroupConsumer,
        log: &Log,
        topic: &str,
    ) -> bool {
        let (Ok(ends), Ok(committed)) = (
            log.end_offsets(topic).await,
            consumer.committed(topic).await,
        ) else {
            return false;
        };
        ends.iter().enumerate().all(|(p, end)| {
            let read = self
                .seen
                .get(&(p as i32))
                .copied()
                .or(committed.get(p).copied().flatten());
            read.unwrap_or(0) >= *end
        })
    }

    /// Positions that are durable and not committed yet: before the first row of any open file,
    /// or after everything seen.
    pub(crate) fn durable_positions(&self, topic: &str) -> Vec<TopicPartitionOffset> {
        self.seen
            .iter()
            .map(|(p, seen)| {
                let open = self
                    .open
                    .iter()
                    .filter(|(k, _)| k.partition == *p)
                    .map(|(_, f)| f.first_offset)
                    .min();
                TopicPartitionOffset {
                    topic: topic.to_owned(),
                    partition: *p,
                    offset: open.unwrap_or(*seen),
                }
            })
            .filter(|t| {
                self.committed
                    .get(&t.partition)
                    .is_none_or(|c| t.offset > *c)
            })
            .collect()
    }

    /// These positions were committed.
    pub(crate) fn committed(&mut self, positions: &[TopicPartitionOffset]) {
        for p in positions {
            self.committed.insert(p.partition, p.offset);
        }
    }
}
