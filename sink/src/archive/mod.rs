//! The Parquet archiver: a consumer group on `entries.valid` that writes Hive-partitioned Parquet
//! files and commits its offsets only up to what is durable.
//!
//! Layout: `<archive>/stream=<id>/date=<YYYY-MM-DD>/<topic>+<partition>+<first offset, 20
//! digits>.parquet`. There is one open file per (Kafka partition, stream, date) ([`files`]); it
//! is written when it reaches the row or byte limit, when it is older than the age limit (so an
//! idle stream is flushed too), when an entry of a new stream version arrives, and at shutdown.
//! A file is written to a temporary name, fsynced, renamed into place and its directory fsynced
//! (in an object store: one atomic `PUT`) ([`write`], [`crate::durable`]); only then can the
//! group's position move past its rows. Each file's footer records the first and last offset it
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

impl Archiver {
    /// Writes the open file `key` and records its offsets as archived.
    async fn flush(&mut self, key: &FileKey) -> Result<()> {
        let Some(file) = self.files.take(key) else {
            return Ok(());
        };
        let stream = self
            .part
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
            file_name(&self.part.topics.valid, key.partition, file.first_offset)
        );
        let metadata = write::footer(key, &file, schema_json);
        let (rows, bytes, first, last) = (
            file.rows.len(),
            file.bytes,
            file.first_offset,
            file.last_offset,
        );
        let started = Instant::now();
        // On failure nothing is recorded as archived: the rows are consumed again after a rewind.
        write::write_file(&self.archive, path.clone(), columns, file.rows, metadata).await?;
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
