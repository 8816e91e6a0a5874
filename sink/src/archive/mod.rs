//! The Parquet archiver: a consumer group on `entries.valid` that writes Hive-partitioned Parquet
//! files and commits its offsets only up to what is durable.
//!
//! Layout: `<archive>/stream=<id>/date=<YYYY-MM-DD>/<topic>+<partition>+<first offset, 20
//! digits>.parquet`. There is one open file per (Kafka partition, stream, date) ([`files`]); it
//! is written when it reaches the row or byte limit, when it is older than the age limit (so an
//! idle stream is flushed too), when an entry of a new stream version arrives, and at shutdown.
//! A file is written to a temporary name, fsynced, linked into place and its directory fsynced
//! (in an object store: one atomic `PUT`) ([`write`], [`crate::durable`]); only then can the
//! group's position move past its rows. Neither ever replaces a file: a member that lost its
//! partitions while it wrote (its poll interval ran out during a slow flush) would otherwise
//! replace the new owner's file with its own, shorter one. The second writer of a name is
//! refused, rereads the archive, and goes on after the file that stands. Each file's footer records the first and last offset it
//! holds, so after a crash the archiver reads which offsets are already archived and skips them
//! ([`recover`]): no row is written twice and none is missed.
//!
//! The archiver is a handler of the consumer driver ([`thingtotal_common::consumer`]): after a
//! rebalance it drops its open files, has the group rewind, and rereads the archive before it
//! writes anything, since another member may have archived the partitions it gets back.

mod files;
mod recover;
mod write;

use std::time::{Duration, Instant};

use thingtotal_common::archive::{file_name, Archive};
use thingtotal_common::consumer::{self, Commit, Drain, Handled, Handler};
use thingtotal_common::log::{
    Consumed, GroupConsumer, GroupOptions, Log, Rebalances, TopicPartitionOffset,
};
use thingtotal_common::part::Part;
use thingtotal_common::stream::StreamRecord;
use thingtotal_common::{CancellationToken, Result};
use tracing::{info, warn};

pub use files::Rollover;
pub(crate) use recover::{FIRST_OFFSET, LAST_OFFSET};

use crate::columns::Columns;
use crate::telemetry;
use files::{FileKey, OpenFiles, Placed};
use recover::{recover, Archived};

/// How many empty polls after shutdown count as caught up even if the ends cannot be read.
const EMPTY_POLLS_TO_STOP: u32 = 3;

/// The archiver as a handler of the consumer driver.
struct Archiver {
    part: Part,
    archive: Archive,
    group: String,
    files: OpenFiles,
    archived: Archived,
    /// The archive must be read again before anything is written (after a rebalance).
    reread: bool,
    /// Empty polls in a row since shutdown.
    empty_polls: u32,
}

/// Archives `entries.valid` into `archive` until `shutdown`; at shutdown every open file is
/// written and committed.
pub(crate) async fn run(
    part: Part,
    archive: Archive,
    rollover: Rollover,
    group: String,
    drain: Drain,
    shutdown: CancellationToken,
) -> Result<()> {
    if let Some(root) = archive.local() {
        std::fs::create_dir_all(root)?;
    }
    let archived = recover(&archive, &part.topics.valid).await?;
    info!(%group, archive = %archive.describe(), files = archived.values().map(|f| f.len()).sum::<usize>(), "archiver consuming");
    let rollover = Rollover {
        age: rollover.age.max(Duration::from_millis(100)),
        ..rollover
    };
    let settings = consumer::Settings {
        group: GroupOptions {
            group: group.clone(),
            topics: vec![part.topics.valid.clone()],
            transactional: false,
            instance_id: String::new(),
        },
        batch_max: 10_000,
        linger: (rollover.age / 4).min(Duration::from_secs(1)),
        drain,
    };
    let log = part.log.clone();
    let archiver = Archiver {
        part,
        archive,
        group,
        files: OpenFiles::new(rollover),
        archived,
        reread: false,
        empty_polls: 0,
    };
    consumer::run(&log, settings, archiver, shutdown).await
}

/// Where in the archive `key`'s file whose first row is at offset `first` goes.
fn rel_path(topic: &str, key: &FileKey, first: i64) -> String {
    format!(
        "stream={}/date={}/{}",
        key.stream,
        key.date.format("%Y-%m-%d"),
        file_name(topic, key.partition, first)
    )
}

impl Archiver {
    /// Writes the open file `key` and records its offsets as archived.
    async fn flush(&mut self, key: &FileKey) -> Result<()> {
        let Some(file) = self.files.take(key) else {
            return Ok(());
        };
        // A file holds one stream version, and is written with that version's columns and
        // schema: the rows were validated against it, whatever the stream is now.
        let registry = &self.part.registry;
        let timeout = Duration::from_secs(5);
        let stream = match registry
            .lookup_version(key.stream, file.version, timeout)
            .await?
        {
            Some(s) => Some(s),
            None => {
                let current = registry.get(key.stream);
                if let Some(c) = &current {
                    // A stream created before versions were kept may lack its older ones.
                    warn!(
                        stream = key.stream,
                        version = file.version,
                        current = c.version,
                        "this version of the stream is not kept; archiving with the current one's columns"
                    );
                }
                current
            }
        };
        let (columns, schema_json) = match &stream {
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
        let path = rel_path(&self.part.topics.valid, key, file.first_offset);
        let metadata = write::footer(key, &file, schema_json);
        let (rows, bytes, first, last) = (
            file.rows.len(),
            file.bytes,
            file.first_offset,
            file.last_offset,
        );
        let started = Instant::now();
        // On failure nothing is recorded as archived: the rows are consumed again after a rewind.
        if let Err(e) =
            write::write_file(&self.archive, path.clone(), columns, file.rows, metadata).await
        {
            if e.is_already_exists() {
                // Another member archived these offsets under this name first: one that lost
                // this partition while it wrote, or its new owner. Its file stands; read the
                // archive again before writing anything, and go on after its last offset.
                warn!(%path, "this file exists already; rereading the archive");
                self.reread = true;
            }
            return Err(e);
        }
        telemetry::archive_file_written(rows, bytes, started.elapsed());
        self.archived
            .entry((key.partition, key.stream, key.date))
            .or_default()
            .insert(first, last);
        info!(%path, rows, "archived");
        Ok(())
    }

    async fn archive(&mut self, batch: &[Consumed], stopping: bool) -> Result<()> {
        for c in batch {
            if let Placed::Roll(key) = self.files.place(c, &self.archived) {
                self.flush(&key).await?;
                self.files.place(c, &self.archived);
            }
            // A file that reached its row or byte limit is written at once.
            if let Some(full) = self.files.take_full() {
                self.flush(&full).await?;
            }
        }
        // Stopping writes every open file.
        for key in self.files.due(stopping) {
            self.flush(&key).await?;
        }
        Ok(())
    }
}

impl Handler for Archiver {
    async fn handle(
        &mut self,
        batch: Vec<Consumed>,
        stopping: bool,
        _consumer: &GroupConsumer,
    ) -> Result<Handled> {
        if !batch.is_empty() {
            self.empty_polls = 0;
        }
        self.archive(&batch, stopping).await?;
        Ok(Handled::Commit(Commit::Positions(
            self.files.durable_positions(&self.part.topics.valid),
        )))
    }

    /// The fetch positions no longer match what this member holds: a partition may have been
    /// taken away, or taken and given back, in the same poll. Drop what is held, start over from
    /// the committed positions, and reread what every member has archived before writing.
    fn rebalanced(&mut self, _changes: &Rebalances) -> bool {
        self.files.clear();
        self.reread = true;
        true
    }

    fn reset(&mut self) {
        self.files.clear();
    }

    fn committed(&mut self, positions: &[TopicPartitionOffset]) {
        self.files.committed(positions);
    }

    async fn prepare(&mut self) -> Result<()> {
        if self.reread {
            self.archived = recover(&self.archive, &self.part.topics.valid).await?;
            self.reread = false;
        }
        Ok(())
    }

    /// Open files are not committed yet, so "caught up" is about what was read, not committed.
    async fn caught_up(&mut self, consumer: &GroupConsumer, log: &Log, topic: &str) -> bool {
        self.empty_polls += 1;
        self.empty_polls >= EMPTY_POLLS_TO_STOP
            || self.files.read_to_end(consumer, log, topic).await
    }

    fn lag_gauge(&self) -> metrics::Gauge {
        telemetry::sink_lag(&self.group)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::ops::Range;

    use chrono::NaiveDate;

    use super::*;
    use crate::testing::{consumed, stream, TOPIC};

    /// What one member does between two polls: it places the records at `offsets` against what
    /// it knows is `archived`, in files of `rows` rows, and publishes its first full file as
    /// [`Archiver::flush`] does.
    async fn publish(
        archive: &Archive,
        rows: usize,
        offsets: Range<i64>,
        archived: &Archived,
    ) -> Result<()> {
        let age = Duration::from_secs(3600);
        let mut files = OpenFiles::new(Rollover {
            rows,
            bytes: usize::MAX,
            age,
        });
        let mut full = None;
        for o in offsets {
            files.place(&consumed(o), archived);
            full = full.or(files.take_full());
        }
        let key = full.expect("a full file");
        let file = files.take(&key).unwrap();
        let metadata = write::footer(&key, &file, stream().schema.to_string());
        let rel = rel_path(TOPIC, &key, file.first_offset);
        write::write_file(archive, rel, Columns::of(&stream()), file.rows, metadata).await
    }

    /// The offset ranges archived for stream 7's partition 0 on 1970-01-01.
    async fn ranges(archive: &Archive) -> BTreeMap<i64, i64> {
        let day = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let mut archived = recover(archive, TOPIC).await.unwrap();
        archived.remove(&(0, 7, day)).unwrap_or_default()
    }

    /// Two members that both think they own partition 0, and both start from offset 0: the
    /// new owner, and one that lost the partition while it was writing (its poll interval ran
    /// out) and publishes late. Whichever publishes a name first wins; the other publishes
    /// nothing, and every offset is archived exactly once.
    #[tokio::test]
    async fn a_member_that_lost_its_partition_never_replaces_the_new_owners_file() {
        let root = tempfile::tempdir().unwrap();
        let archive = Archive::Local(root.path().to_owned());
        let before = recover(&archive, TOPIC).await.unwrap();
        // The new owner publishes 0..=199, then the stale member its shorter 0..=150.
        publish(&archive, 200, 0..200, &before).await.unwrap();
        let e = publish(&archive, 151, 0..151, &before).await.unwrap_err();
        assert!(e.is_already_exists(), "{e}");
        assert_eq!(ranges(&archive).await, BTreeMap::from([(0, 199)]));
    }

    #[tokio::test]
    async fn a_new_owner_that_publishes_second_archives_only_what_follows_the_stale_file() {
        let root = tempfile::tempdir().unwrap();
        let archive = Archive::Local(root.path().to_owned());
        let before = recover(&archive, TOPIC).await.unwrap();
        publish(&archive, 151, 0..151, &before).await.unwrap();
        let e = publish(&archive, 200, 0..200, &before).await.unwrap_err();
        assert!(e.is_already_exists(), "{e}");
        // What the refused flush leads to: the archive read again, the partition read again
        // from the committed position, and the next file after the stale member's.
        let reread = recover(&archive, TOPIC).await.unwrap();
        publish(&archive, 49, 0..200, &reread).await.unwrap();
        assert_eq!(
            ranges(&archive).await,
            BTreeMap::from([(0, 150), (151, 199)])
        );
        let leftovers: Vec<_> = files(root.path())
            .into_iter()
            .filter(|f| f.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    /// Every file name under `root`.
    fn files(root: &std::path::Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut dirs = vec![root.to_owned()];
        while let Some(dir) = dirs.pop() {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                if e.path().is_dir() {
                    dirs.push(e.path());
                } else {
                    out.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        out
    }
}
