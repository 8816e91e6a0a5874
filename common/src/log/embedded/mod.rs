//! The embedded adapter of the log port: a durable single-process log on redb.
//!
//! One writer thread owns every write. It takes all the operations that queued while the previous
//! commit was being fsynced and applies them in one redb transaction, so many appends share one
//! fsync (group commit), and an acknowledged append is on disk. Appends and group commits made in
//! the same operation are atomic, which is the embedded form of a Kafka transaction. Offsets,
//! group positions and the streams topic live in the same file and survive restarts. Records that
//! every group has consumed are deleted once they are older than the retention period.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use redb::{Database, TableDefinition};
use tokio::sync::{oneshot, watch};
use tokio::task::spawn_blocking;
use tracing::info;

mod codec;
mod writer;

use codec::decode;
use writer::Writer;

use super::{Consumed, GroupOptions, Position, Record, TopicPartitionOffset, TopicSpec};
use crate::{Error, Result};

/// (topic, partition, offset) → encoded record.
const RECORDS: TableDefinition<'_, (&str, u32, u64), &[u8]> = TableDefinition::new("records");
/// topic → (partitions, compacted).
const TOPICS: TableDefinition<'_, &str, (u32, bool)> = TableDefinition::new("topics");
/// (topic, partition) → (end offset, highest timestamp so far).
const ENDS: TableDefinition<'_, (&str, u32), (u64, i64)> = TableDefinition::new("ends");
/// (topic, partition, timestamp) → the first offset whose timestamp reached it. Sparse: an entry
/// is added only when a partition's highest timestamp grows, as in Kafka's time index.
const TIMES: TableDefinition<'_, (&str, u32, i64), u64> = TableDefinition::new("times");
/// (group, topic, partition) → committed position.
const GROUPS: TableDefinition<'_, (&str, &str, u32), u64> = TableDefinition::new("groups");

/// Where and how the embedded log keeps its data.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// The data directory; the log is `<dir>/log.redb`.
    pub dir: PathBuf,
    /// How long consumed records are kept.
    pub retention: Duration,
}

/// The embedded adapter. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedLog {
    inner: Arc<Shared>,
}

struct Shared {
    db: Arc<Database>,
    ops: Mutex<mpsc::Sender<Op>>,
    /// Bumped after every commit, so that readers waiting for new records wake up.
    commits: watch::Receiver<u64>,
    members: Mutex<HashSet<String>>,
    path: PathBuf,
}

impl std::fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLog")
            .field("path", &self.inner.path)
            .finish()
    }
}

type Reply<T> = oneshot::Sender<Result<T>>;

enum Op {
    Write {
        appends: Vec<(String, Record)>,
        commits: Vec<(String, TopicPartitionOffset)>,
        reply: Reply<Vec<Position>>,
    },
    Topics {
        specs: Vec<TopicSpec>,
        reply: Reply<()>,
    },
}

impl EmbeddedLog {
    /// Opens (or creates) the log in `options.dir`. Fails if another process has it open.
    pub fn open(options: EmbeddedOptions) -> Result<Self> {
        std::fs::create_dir_all(&options.dir)?;
        let path = options.dir.join("log.redb");
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::Storage(format!(
                "{} is already open in another process: the embedded log belongs to one \
                 `thingtotal up`; run the parts separately with --kafka-brokers",
                path.display()
            )),
            e => Error::storage(e),
        })?;
        let db = Arc::new(db);
        {
            let txn = db.begin_write().map_err(Error::storage)?;
            txn.open_table(RECORDS).map_err(Error::storage)?;
            txn.open_table(TOPICS).map_err(Error::storage)?;
            txn.open_table(ENDS).map_err(Error::storage)?;
            txn.open_table(TIMES).map_err(Error::storage)?;
            txn.open_table(GROUPS).map_err(Error::storage)?;
            txn.commit().map_err(Error::storage)?;
        }
        let (tx, rx) = mpsc::channel();
        let (commits_tx, commits) = watch::channel(0);
        let mut writer = Writer::load(db.clone(), commits_tx, options.retention)?;
        std::thread::Builder::new()
            .name("embedded-log-writer".into())
            .spawn(move || writer.run(rx))?;
        info!(path = %path.display(), "embedded log open");
        Ok(Self {
            inner: Arc::new(Shared {
                db,
                ops: Mutex::new(tx),
                commits,
                members: Mutex::new(HashSet::new()),
                path,
            }),
        })
    }

    async fn submit<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .ops
            .lock()
            .expect("ops lock")
            .send(op(reply))
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.inner.db.clone();
        spawn_blocking(move || {
            let txn = db.begin_read().map_err(Error::storage)?;
            f(&txn)
        })
        .await?
    }

    pub(super) async fn ensure_topics(&self, specs: &[TopicSpec]) -> Result<()> {
        let specs = specs.to_vec();
        self.submit(|reply| Op::Topics { specs, reply }).await
    }

    pub(super) async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Position>> {
        let appends = records.into_iter().map(|r| (topic.to_owned(), r)).collect();
        self.submit(|reply| Op::Write {
            appends,
            commits: Vec::new(),
            reply,
        })
        .await
    }

    pub(super) async fn end_offsets(&self, topic: &str) -> Result<Vec<i64>> {
        let topic = topic.to_owned();
        self.read(move |txn| {
            let n = partitions(txn, &topic)?;
            let ends = txn.open_table(ENDS).map_err(Error::storage)?;
            (0..n)
                .map(|p| {
                    Ok(ends
                        .get((topic.as_str(), p))
                        .map_err(Error::storage)?
                        .map_or(0, |v| v.value().0 as i64))
                })
                .collect()
        })
        .await
    }

    pub(super) async fn offsets_for_time(
        &self,
        topic: &str,
        timestamp_ms: i64,
    ) -> Result<Vec<i64>> {
        let ends = self.end_offsets(topic).await?;
        let topic = topic.to_owned();
        self.read(move |txn| {
            let times = txn.open_table(TIMES).map_err(Error::storage)?;
            ends.iter()
                .enumerate()
                .map(|(p, end)| {
                    let p = p as u32;
                    let mut range = times
                        .range((topic.as_str(), p, timestamp_ms)..=(topic.as_str(), p, i64::MAX))
                        .map_err(Error::storage)?;
                    Ok(match range.next() {
                        Some(e) => e.map_err(Error::storage)?.1.value() as i64,
                        None => *end,
                    })
                })
                .collect()
        })
        .await
    }

    pub(super) fn reader(&self, topic: &str, partition: i32, offset: i64) -> EmbeddedReader {
        EmbeddedReader {
            log: self.clone(),
            topic: topic.to_owned(),
            partition,
            position: offset.max(0),
        }
    }

    pub(super) fn consumer(&self, options: GroupOptions) -> Result<EmbeddedGroup> {
        if !self
            .inner
            .members
            .lock()
            .expect("members lock")
            .insert(options.group.clone())
        {
            return Err(Error::Config(format!(
                "group {} already has a member: the embedded log gives each group one member",
                options.group
            )));
        }
        Ok(EmbeddedGroup {
            log: self.clone(),
            options,
            positions: None,
            next_start: 0,
        })
    }

    /// Records of one partition from `from`, at most `max`.
    async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        max: usize,
    ) -> Result<Vec<Consumed>> {
        let topic = topic.to_owned();
        self.read(move |txn| fetch(txn, &topic, partition, from, max))
            .await
    }

    async fn committed_positions(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<HashMap<(String, i32), i64>> {
        let group = group.to_owned();
        let topics = topics.to_vec();
        self.read(move |txn| {
            let groups = txn.open_table(GROUPS).map_err(Error::storage)?;
            let mut out = HashMap::new();
            for t in &topics {
                for p in 0..partitions(txn, t)? {
                    let pos = groups
                        .get((group.as_str(), t.as_str(), p))
                        .map_err(Error::storage)?
                        .map_or(0, |v| v.value() as i64);
                    out.insert((t.clone(), p as i32), pos);
                }
            }
            Ok(out)
        })
        .await
    }
}

fn partitions(txn: &redb::ReadTransaction, topic: &str) -> Result<u32> {
    let topics = txn.open_table(TOPICS).map_err(Error::storage)?;
    let n = topics
        .get(topic)
        .map_err(Error::storage)?
        .ok_or_else(|| Error::Topic(topic.to_owned(), "does not exist".into()))?
        .value()
        .0;
    Ok(n)
}

fn fetch(
    txn: &redb::ReadTransaction,
    topic: &str,
    partition: i32,
    from: i64,
    max: usize,
) -> Result<Vec<Consumed>> {
    let records = txn.open_table(RECORDS).map_err(Error::storage)?;
    let p = partition as u32;
    let range = records
        .range((topic, p, from.max(0) as u64)..=(topic, p, u64::MAX))
        .map_err(Error::storage)?;
    let mut out = Vec::new();
    for entry in range.take(max) {
        let (k, v) = entry.map_err(Error::storage)?;
        let (_, _, offset) = k.value();
        out.push(decode(topic, partition, offset as i64, v.value())?);
    }
    Ok(out)
}

/// Reads one partition of the embedded log.
#[derive(Debug)]
pub struct EmbeddedReader {
    log: EmbeddedLog,
    topic: String,
    partition: i32,
    position: i64,
}

impl EmbeddedReader {
    pub(super) async fn read(&mut self, max: usize, wait: Duration) -> Result<Vec<Consumed>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut commits = self.log.inner.commits.clone();
        loop {
            commits.borrow_and_update();
            let batch = self
                .log
                .fetch(&self.topic, self.partition, self.position, max)
                .await?;
            if let Some(last) = batch.last() {
                self.position = last.offset + 1;
                return Ok(batch);
            }
            match tokio::time::timeout_at(deadline, commits.changed()).await {
                Err(_) => return Ok(Vec::new()),
                Ok(Err(_)) => return Err(Error::Closed),
                Ok(Ok(())) => {}
            }
        }
    }
}

/// The one member of a group on the embedded log: it is assigned every partition.
#[derive(Debug)]
pub struct EmbeddedGroup {
    log: EmbeddedLog,
    options: GroupOptions,
    /// Loaded from the committed positions on the first poll and after a rewind.
    positions: Option<Vec<((String, i32), i64)>>,
    next_start: usize,
}

impl Drop for EmbeddedGroup {
    fn drop(&mut self) {
        if let Ok(mut m) = self.log.inner.members.lock() {
            m.remove(&self.options.group);
        }
    }
}

impl EmbeddedGroup {
    pub(super) async fn poll(&mut self, max: usize, linger: Duration) -> Result<Vec<Consumed>> {
        if self.positions.is_none() {
            let mut p: Vec<_> = self
                .log
                .committed_positions(&self.options.group, &self.options.topics)
                .await?
                .into_iter()
                .collect();
            p.sort();
            // Record the group's positions, so that retention keeps what it has not read yet
            // even before its first commit.
            let offsets: Vec<TopicPartitionOffset> = p
                .iter()
                .map(|((topic, partition), offset)| TopicPartitionOffset {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: *offset,
                })
                .collect();
            self.commit(&offsets).await?;
            self.positions = Some(p);
        }
        let deadline = tokio::time::Instant::now() + linger;
        let mut commits = self.log.inner.commits.clone();
        let mut out = Vec::new();
        loop {
            commits.borrow_and_update();
            let positions = self.positions.as_mut().expect("positions loaded");
            let n = positions.len();
            // Start at a different partition every time, so that none is starved.
            for i in 0..n {
                if out.len() >= max {
                    break;
                }
                let ((topic, partition), position) = &mut positions[(self.next_start + i) % n];
                let batch = match self
                    .log
                    .fetch(topic, *partition, *position, max - out.len())
                    .await
                {
                    Ok(b) => b,
                    Err(e) => {
                        // Positions moved past records that are not returned: reload them.
                        self.positions = None;
                        return Err(e);
                    }
                };
                if let Some(last) = batch.last() {
                    *position = last.offset + 1;
                }
                out.extend(batch);
            }
            self.next_start = self.next_start.wrapping_add(1);
            if out.len() >= max {
                return Ok(out);
            }
            match tokio::time::timeout_at(deadline, commits.changed()).await {
                Err(_) => return Ok(out),
                Ok(Err(_)) => return Err(Error::Closed),
                Ok(Ok(())) => {}
            }
        }
    }

    fn tag(&self, offsets: &[TopicPartitionOffset]) -> Vec<(String, TopicPartitionOffset)> {
        offsets
            .iter()
            .map(|o| (self.options.group.clone(), o.clone()))
            .collect()
    }

    pub(super) async fn commit(&mut self, offsets: &[TopicPartitionOffset]) -> Result<()> {
        let commits = self.tag(offsets);
        self.log
            .submit(|reply| Op::Write {
                appends: Vec::new(),
                commits,
                reply,
            })
            .await
            .map(|_| ())
    }

    pub(super) async fn produce_and_commit(
        &mut self,
        records: Vec<(String, Record)>,
        offsets: &[TopicPartitionOffset],
    ) -> Result<()> {
        let commits = self.tag(offsets);
        self.log
            .submit(|reply| Op::Write {
                appends: records,
                commits,
                reply,
            })
            .await
            .map(|_| ())
    }

    pub(super) async fn rewind(&mut self) -> Result<()> {
        self.positions = None;
        Ok(())
    }

    pub(super) fn committed(&self, topic: &str) -> Result<Vec<Option<i64>>> {
        let txn = self.log.inner.db.begin_read().map_err(Error::storage)?;
        let groups = txn.open_table(GROUPS).map_err(Error::storage)?;
        (0..partitions(&txn, topic)?)
            .map(|p| {
                Ok(groups
                    .get((self.options.group.as_str(), topic, p))
                    .map_err(Error::storage)?
                    .map(|v| v.value() as i64))
            })
            .collect()
    }
}
