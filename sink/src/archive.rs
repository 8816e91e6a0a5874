//! The Parquet archiver: a consumer group on `entries.valid` that writes Hive-partitioned Parquet
//! files and commits its offsets only up to what is durable.
//!
//! Layout: `<archive>/stream=<id>/date=<YYYY-MM-DD>/<topic>+<partition>+<first offset, 20
//! digits>.parquet`. There is one open file per (Kafka partition, stream, date); it is written when
//! it reaches the row or byte limit, when it is older than the age limit (so an idle stream is
//! flushed too), when an entry of a new stream version arrives, and at shutdown. A file is written
//! to a temporary name, fsynced, renamed into place and its directory fsynced (in an object
//! store: one atomic `PUT`); only then can the group's position move past its rows. Each file's footer records the first and last offset it
//! holds, so after a crash the archiver reads which offsets are already archived and skips them:
//! no row is written twice and none is missed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use thingtotal_common::archive::Archive;
use thingtotal_common::archive::{file_name, partition_of};
use thingtotal_common::log::{Consumed, Drain, GroupOptions, TopicPartitionOffset};
use thingtotal_common::runtime::Runtime;
use thingtotal_common::stream::{StreamId, StreamRecord};
use thingtotal_common::time::envelope_micros;
use thingtotal_common::{CancellationToken, Error, Result};
use tracing::{info, warn};

use crate::columns::Columns;

pub(crate) const FIRST_OFFSET: &str = "thingtotal.first_offset";
pub(crate) const LAST_OFFSET: &str = "thingtotal.last_offset";

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

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct FileKey {
    partition: i32,
    stream: StreamId,
    date: NaiveDate,
}

struct OpenFile {
    version: u32,
    first_offset: i64,
    last_offset: i64,
    /// The envelopes as they were read: decoded only when the file is written, so an open file
    /// holds about its input's bytes (a decoded envelope takes several times more memory).
    rows: Vec<bytes::Bytes>,
    bytes: usize,
    opened: Instant,
}

/// Offsets already archived, per (partition, stream, date): first offset → last offset. A stream's
/// entries of one date and partition go to one file at a time, in offset order, so every offset
/// between a file's first and last of that key is in that file.
type Archived = HashMap<(i32, StreamId, NaiveDate), BTreeMap<i64, i64>>;

/// Reads every archived file of `topic` and the offsets its footer says it holds; in a local
/// archive, removes temporary files a crash left behind.
async fn recover(archive: &Archive, topic: &str) -> Result<Archived> {
    let mut archived = Archived::new();
    for f in archive.list("").await? {
        let Some((stream, date, name)) = f.place() else {
            continue;
        };
        if name.ends_with(".tmp") {
            if let Some(root) = archive.local() {
                remove_if_stale(&root.join(&f.path));
            }
            continue;
        }
        let Some(partition) = partition_of(name, topic) else {
            continue;
        };
        let meta = match archive.metadata(&f).await {
            Ok(m) => m,
            Err(e) => {
                // Not ours to judge: skip it rather than refuse to start.
                warn!(path = %f.path, error = %e, "skipping an unreadable archive file");
                continue;
            }
        };
        let kv = meta
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .cloned()
            .unwrap_or_default();
        let get = |k: &str| {
            kv.iter()
                .find(|e| e.key == k)
                .and_then(|e| e.value.as_deref()?.parse::<i64>().ok())
        };
        if let (Some(first), Some(last)) = (get(FIRST_OFFSET), get(LAST_OFFSET)) {
            archived
                .entry((partition, stream, date))
                .or_default()
                .insert(first, last);
        }
    }
    Ok(archived)
}

/// Removes a temporary file a crash left; a live writer's temporary file is seconds old.
fn remove_if_stale(path: &Path) {
    let stale = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > Duration::from_secs(600)));
    if stale {
        let _ = std::fs::remove_file(path);
    }
}

fn is_archived(archived: &Archived, key: &FileKey, offset: i64) -> bool {
    archived
        .get(&(key.partition, key.stream, key.date))
        .and_then(|ranges| ranges.range(..=offset).next_back())
        .is_some_and(|(_, last)| offset <= *last)
}

/// The temporary name a file is written under before it is renamed into place. It does not end
/// in `.parquet`, so readers globbing the archive never see a half-written file.
pub(crate) fn temporary(path: &Path, what: &str) -> PathBuf {
    let dir = path.parent().expect("archive files have a directory");
    dir.join(format!(
        ".{}.{what}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ))
}

/// Writes `batches` as a zstd Parquet file at `tmp` and fsyncs it.
pub(crate) fn write_synced(
    tmp: &Path,
    schema: arrow::datatypes::SchemaRef,
    metadata: Vec<KeyValue>,
    batches: impl Iterator<Item = Result<arrow::record_batch::RecordBatch>>,
) -> Result<()> {
    if let Some(dir) = tmp.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::File::create(tmp)?;
    encode(file, schema, metadata, batches)?.sync_all()?;
    Ok(())
}

/// Encodes `batches` as a zstd Parquet file into `out`.
pub(crate) fn encode<W: std::io::Write + Send>(
    out: W,
    schema: arrow::datatypes::SchemaRef,
    metadata: Vec<KeyValue>,
    batches: impl Iterator<Item = Result<arrow::record_batch::RecordBatch>>,
) -> Result<W> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(256 * 1024))
        .set_key_value_metadata(Some(metadata))
        .build();
    let storage = |e: parquet::errors::ParquetError| Error::Storage(e.to_string());
    let mut writer = ArrowWriter::try_new(out, schema, Some(props)).map_err(storage)?;
    for batch in batches {
        writer.write(&batch?).map_err(storage)?;
    }
    writer.into_inner().map_err(storage)
}

/// Renames `tmp` to `path` (replacing it atomically if it exists) and fsyncs the directory.
pub(crate) fn publish(tmp: &Path, path: &Path) -> Result<()> {
    std::fs::rename(tmp, path)?;
    sync_dir(path)
}

/// Fsyncs the directory of `path`, so that a rename or removal in it is durable.
pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    let dir = path.parent().expect("archive files have a directory");
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// What the archiver reads of an envelope to place it: the rest is decoded when its file is
/// written.
#[derive(serde::Deserialize)]
struct Head<'a> {
    stream_id: StreamId,
    stream_version: u32,
    #[serde(borrow)]
    ts: std::borrow::Cow<'a, str>,
}

/// Envelopes decoded into one record batch at a time while a file is written.
const DECODE_CHUNK: usize = 16 * 1024;

/// The record batches of the envelopes `rows`, decoded chunk by chunk straight into columns. A
/// record that is not an envelope is skipped with a warning, as anything on `entries.valid`
/// that is not an envelope is.
fn batches<'a>(
    columns: &'a Columns,
    rows: &'a [bytes::Bytes],
) -> impl Iterator<Item = Result<arrow::record_batch::RecordBatch>> + 'a {
    rows.chunks(DECODE_CHUNK).map(|chunk| {
        let (batch, skipped) = columns
            .decode(chunk)
            .map_err(|e| Error::Storage(e.to_string()))?;
        if skipped > 0 {
            warn!(skipped, "skipping records that are not valid envelopes");
        }
        Ok(batch)
    })
}

/// Writes one file of a local archive atomically: temporary name, fsync, rename, fsync of the
/// directory.
pub(crate) fn write_local(
    path: &Path,
    schema: arrow::datatypes::SchemaRef,
    metadata: Vec<KeyValue>,
    batches: impl Iterator<Item = Result<arrow::record_batch::RecordBatch>>,
) -> Result<()> {
    let tmp = temporary(path, "write");
    write_synced(&tmp, schema, metadata, batches)?;
    publish(&tmp, path)
}

/// Writes one file at `rel`: in a directory as [`write_local`] does, in an object store with
/// one `PUT` of the whole file.
async fn write_file(
    archive: &Archive,
    rel: String,
    columns: Columns,
    rows: Vec<bytes::Bytes>,
    metadata: Vec<KeyValue>,
) -> Result<()> {
    match archive {
        Archive::Local(root) => {
            let path = root.join(&rel);
            tokio::task::spawn_blocking(move || {
                write_local(&path, columns.schema(), metadata, batches(&columns, &rows))
            })
            .await
            .map_err(|_| Error::Closed)?
        }
        Archive::Remote { .. } => {
            let bytes = tokio::task::spawn_blocking(move || {
                encode(
                    Vec::new(),
                    columns.schema(),
                    metadata,
                    batches(&columns, &rows),
                )
            })
            .await
            .map_err(|_| Error::Closed)??;
            archive.put(&rel, bytes.into()).await
        }
    }
}

struct Archiver {
    rt: Runtime,
    archive: Archive,
    rollover: Rollover,
    open: HashMap<FileKey, OpenFile>,
    archived: Archived,
    /// Per partition: the offset after the last record seen.
    seen: HashMap<i32, i64>,
    committed: HashMap<i32, i64>,
    /// The file the last record filled to its limit.
    full: Option<FileKey>,
}

impl Archiver {
    /// Writes the open file `key` and records its offsets as archived.
    async fn flush(&mut self, key: &FileKey) -> Result<()> {
        let Some(file) = self.open.remove(key) else {
            return Ok(());
        };
        let stream = self
            .rt
            .registry
            .lookup(key.stream, Duration::from_secs(5))
            .await?;
        let (columns, schema_json) = match &stream {
            // Files are written with the schema of the version their rows were validated against;
            // if the registry has moved on, the rows still fit the current columns by name.
            Some(s) => (Columns::of(s), s.schema.to_string()),
            None => {
                warn!(
                    stream = key.stream,
                    "archiving rows of a deleted stream with only the fixed columns"
                );
                let empty: StreamRecord = serde_json::from_value(serde_json::json!({
                    "id": key.stream, "name": "", "version": file.version, "schema": {},
                    "created_at": "1970-01-01T00:00:00Z", "updated_at": "1970-01-01T00:00:00Z",
                    "write_key_sha256": "", "read_key_sha256": ""}))?;
                (Columns::of(&empty), "{}".to_owned())
            }
        };
        let path = format!(
            "stream={}/date={}/{}",
            key.stream,
            key.date.format("%Y-%m-%d"),
            file_name(&self.rt.topics.valid, key.partition, file.first_offset)
        );
        let metadata = vec![
            KeyValue::new(FIRST_OFFSET.to_owned(), file.first_offset.to_string()),
            KeyValue::new(LAST_OFFSET.to_owned(), file.last_offset.to_string()),
            KeyValue::new("thingtotal.stream_id".to_owned(), key.stream.to_string()),
            KeyValue::new(
                "thingtotal.stream_version".to_owned(),
                file.version.to_string(),
            ),
            KeyValue::new("thingtotal.schema".to_owned(), schema_json),
        ];
        let rows = file.rows.len();
        let bytes = file.bytes;
        let started = Instant::now();
        let written = write_file(&self.archive, path.clone(), columns, file.rows, metadata).await;
        // On failure nothing is recorded as archived: the rows are consumed again after a rewind.
        written?;
        metrics::counter!("thingtotal_sink_archive_files_total").increment(1);
        metrics::counter!("thingtotal_sink_archive_rows_total").increment(rows as u64);
        metrics::counter!("thingtotal_sink_archive_bytes_total").increment(bytes as u64);
        metrics::histogram!("thingtotal_sink_archive_write_seconds")
            .record(started.elapsed().as_secs_f64());
        self.archived
            .entry((key.partition, key.stream, key.date))
            .or_default()
            .insert(file.first_offset, file.last_offset);
        info!(%path, rows, "archived");
        Ok(())
    }

    fn add(&mut self, c: &Consumed) -> Result<Option<FileKey>> {
        self.seen.insert(c.partition, c.offset + 1);
        let head = serde_json::from_slice::<Head<'_>>(c.value.as_deref().unwrap_or_default())
            .map_err(|e| e.to_string())
            .and_then(|h| {
                let date = envelope_micros(&h.ts)
                    .and_then(chrono::DateTime::from_timestamp_micros)
                    .ok_or_else(|| format!("ts {:?} is not RFC 3339", h.ts))?;
                Ok((h.stream_id, h.stream_version, date.date_naive()))
            });
        let (stream, version, date) = match head {
            Ok(h) => h,
            Err(e) => {
                warn!(partition = c.partition, offset = c.offset, error = %e, "skipping a record that is not a valid envelope");
                return Ok(None);
            }
        };
        let key = FileKey {
            partition: c.partition,
            stream,
            date,
        };
        if is_archived(&self.archived, &key, c.offset) {
            return Ok(None);
        }
        // A new stream version starts a new file.
        let mut roll = None;
        if self.open.get(&key).is_some_and(|f| f.version != version) {
            roll = Some(key.clone());
        }
        let size = c.value.as_ref().map_or(0, |v| v.len());
        Ok(roll.or_else(|| {
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
            let full = file.rows.len() >= self.rollover.rows || file.bytes >= self.rollover.bytes;
            if full {
                self.full = Some(key.clone());
            }
            None
        }))
    }

    /// Files due by size or age.
    fn due(&self, all: bool) -> Vec<FileKey> {
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

    /// Whether every partition has been read to its end.
    async fn caught_up(&self, consumer: &thingtotal_common::log::GroupConsumer) -> bool {
        let topic = &self.rt.topics.valid;
        let (Ok(ends), Ok(committed)) = (
            self.rt.log.end_offsets(topic).await,
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

    /// Positions that are durable: before the first row of any open file, or after everything seen.
    fn durable_positions(&self) -> Vec<TopicPartitionOffset> {
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
                    topic: self.rt.topics.valid.clone(),
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
}

/// Archives `entries.valid` into `archive` until `shutdown`; at shutdown every open file is
/// written and committed.
pub(crate) async fn run(
    rt: Runtime,
    archive: Archive,
    rollover: Rollover,
    group: String,
    mut drain: Drain,
    shutdown: CancellationToken,
) -> Result<()> {
    if let Some(root) = archive.local() {
        std::fs::create_dir_all(root)?;
    }
    let archived = recover(&archive, &rt.topics.valid).await?;
    let mut consumer = rt
        .log
        .consumer(GroupOptions {
            group: group.clone(),
            topics: vec![rt.topics.valid.clone()],
            transactional: false,
            instance_id: String::new(),
        })
        .await?;
    info!(%group, archive = %archive.describe(), files = archived.values().map(BTreeMap::len).sum::<usize>(), "archiver consuming");
    let mut a = Archiver {
        rt: rt.clone(),
        archive,
        rollover: Rollover {
            age: rollover.age.max(Duration::from_millis(100)),
            ..rollover
        },
        open: HashMap::new(),
        archived,
        seen: HashMap::new(),
        committed: HashMap::new(),
        full: None,
    };
    let linger = (a.rollover.age / 4).min(Duration::from_secs(1));
    let mut last_lag = Instant::now();
    let mut stopping = false;
    let mut needs_reread = false;
    let mut empty_polls = 0u32;
    loop {
        if needs_reread {
            match recover(&a.archive, &rt.topics.valid).await {
                Ok(archived) => {
                    a.archived = archived;
                    needs_reread = false;
                }
                _ => {
                    warn!("rereading the archive after a rebalance failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if shutdown.is_cancelled() {
                        break;
                    }
                    continue;
                }
            }
        }
        // Never cancelled half-way: a dropped poll would lose the records it had fetched.
        let wait = if shutdown.is_cancelled() {
            Duration::from_millis(100)
        } else {
            linger
        };
        let batch = match consumer.poll(10_000, wait).await {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "polling entries.valid failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                Vec::new()
            }
        };
        // After a rebalance the fetch positions no longer match what this member holds: a
        // partition may have been taken away, or taken and given back, in the same poll. Drop
        // what was polled and held, start over from the committed positions, and reread what
        // every member has archived before writing anything.
        let changes = consumer.take_rebalances();
        if !changes.revoked.is_empty() || !changes.assigned.is_empty() {
            a.open.clear();
            a.seen.clear();
            a.committed.clear();
            needs_reread = true;
            if consumer.rewind_until_done(&shutdown).await.is_err() {
                break;
            }
            continue;
        }
        let polled_empty = batch.is_empty();
        let result: Result<()> = async {
            for c in &batch {
                if let Some(roll) = a.add(c)? {
                    a.flush(&roll).await?;
                    a.add(c)?;
                }
                // A file that reached its row or byte limit is written at once.
                if let Some(full) = a.full.take() {
                    a.flush(&full).await?;
                }
            }
            // Stopping writes every open file, once caught up or when the drain limit passes.
            empty_polls = if polled_empty { empty_polls + 1 } else { 0 };
            let stop = shutdown.is_cancelled()
                && (drain.expired(&rt.topics.valid)
                    || (polled_empty && (empty_polls >= 3 || a.caught_up(&consumer).await)));
            if stop {
                stopping = true;
            }
            for key in a.due(stop) {
                a.flush(&key).await?;
            }
            let positions = a.durable_positions();
            if !positions.is_empty() {
                consumer.commit(&positions).await?;
                for p in positions {
                    a.committed.insert(p.partition, p.offset);
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            warn!(error = %e, "archiving failed; dropping open files and rewinding");
            a.open.clear();
            a.seen.clear();
            a.committed.clear();
            if consumer.rewind_until_done(&shutdown).await.is_err() || shutdown.is_cancelled() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if stopping {
            break;
        }
        crate::publish_lag(&rt, &consumer, &group, &mut last_lag).await;
    }
    info!("archiver stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_and_sort_by_offset() {
        let name = file_name("tt.entries.valid", 3, 42);
        assert_eq!(partition_of(&name, "tt.entries.valid"), Some(3));
        assert_eq!(partition_of(&name, "tt.entries"), None);
        assert_eq!(
            partition_of(
                ".tt.entries.valid+3+1.parquet.write.tmp",
                "tt.entries.valid"
            ),
            None
        );
        assert_eq!(
            file_name("tt.entries.valid", 3, 42),
            "tt.entries.valid+3+00000000000000000042.parquet"
        );
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 1, d).unwrap();
        let key = |partition, stream, date| FileKey {
            partition,
            stream,
            date,
        };
        let mut a = Archived::new();
        a.entry((1, 7, day(1))).or_default().insert(10, 20);
        a.entry((1, 7, day(1))).or_default().insert(30, 35);
        let k = key(1, 7, day(1));
        assert!(is_archived(&a, &k, 10) && is_archived(&a, &k, 20) && is_archived(&a, &k, 33));
        assert!(!is_archived(&a, &k, 9) && !is_archived(&a, &k, 21) && !is_archived(&a, &k, 36));
        assert!(
            !is_archived(&a, &key(2, 7, day(1)), 15) && !is_archived(&a, &key(1, 8, day(1)), 15)
        );
        // Another date's file of the same stream and partition can interleave its offsets.
        assert!(!is_archived(&a, &key(1, 7, day(2)), 15));
    }
}
