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
use std::sync::atomic::{AtomicU8, Ordering};
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
    ops: mpsc::SyncSender<Op>,
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

/// Operations waiting for the writer, at most; an append that finds the queue full is refused
/// ([`Error::Busy`]) rather than queued without bound.
const WRITE_QUEUE: usize = 1024;

/// The storage's page cache. redb's default (1 GiB) let the process grow with the data it
/// wrote, a gigabyte before it stopped; the records that are read are the newest ones, which
/// a small cache holds.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Who settles a write first: the writer taking it into a transaction, or its requester
/// withdrawing it after its deadline. Exactly one of them wins.
#[derive(Debug, Default)]
struct Claim(AtomicU8);

impl Claim {
    const PENDING: u8 = 0;
    const TAKEN: u8 = 1;
    const WITHDRAWN: u8 = 2;

    /// The writer takes the write; false if it was withdrawn.
    fn take(&self) -> bool {
        self.0
            .compare_exchange(
                Self::PENDING,
                Self::TAKEN,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// The requester withdraws the write; false if the writer has taken it already.
    fn withdraw(&self) -> bool {
        self.0
            .compare_exchange(
                Self::PENDING,
                Self::WITHDRAWN,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }
}

enum Op {
    Write {
        appends: Vec<(String, Record)>,
        commits: Vec<(String, TopicPartitionOffset)>,
        claim: Arc<Claim>,
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
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| match e {
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
        let (tx, rx) = mpsc::sync_channel(WRITE_QUEUE);
        let (commits_tx, commits) = watch::channel(0);
        let mut writer = Writer::load(db.clone(), commits_tx, options.retention)?;
        std::thread::Builder::new()
            .name("embedded-log-writer".into())
            .spawn(move || writer.run(rx))?;
        info!(path = %path.display(), "embedded log open");
        Ok(Self {
            inner: Arc::new(Shared {
                db,
                ops: tx,
                commits,
                members: Mutex::new(HashSet::new()),
                path,
            }),
        })
    }

    /// Queues an operation for the writer and waits for its outcome. With a full queue, an
    /// operation that may be refused (`refusable`: a device's append) is refused at once; the
    /// others (topics, a group's produce-and-commit) wait for room.
    async fn submit<T>(&self, op: impl FnOnce(Reply<T>) -> Op, refusable: bool) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.enqueue(op(reply), refusable).await?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Puts `op` in the writer's queue: refused with [`Error::Busy`] when the queue is full and
    /// the op is `refusable`, otherwise waiting for room.
    async fn enqueue(&self, op: Op, refusable: bool) -> Result<()> {
        match self.inner.ops.try_send(op) {
            Ok(()) => Ok(()),
            Err(mpsc::TrySendError::Full(_)) if refusable => Err(Error::Busy),
            Err(mpsc::TrySendError::Full(op)) => {
                let ops = self.inner.ops.clone();
                spawn_blocking(move || ops.send(op))
                    .await?
                    .map_err(|_| Error::Closed)
            }
            Err(mpsc::TrySendError::Disconnected(_)) => Err(Error::Closed),
        }
    }

    /// Appends `records`, waiting at most `deadline` for them to be stored. When the deadline
    /// passes before the writer has taken them into a transaction, they are withdrawn and never
    /// stored: a timed-out append is not stored. Once taken, it waits for that commit.
    pub(super) async fn append_within(
        &self,
        topic: &str,
        records: Vec<Record>,
        deadline: Duration,
    ) -> Result<Vec<Position>> {
        let appends = records.into_iter().map(|r| (topic.to_owned(), r)).collect();
        let claim = Arc::new(Claim::default());
        let (reply, mut rx) = oneshot::channel();
        let op = Op::Write {
            appends,
            commits: Vec::new(),
            claim: claim.clone(),
            reply,
        };
        self.enqueue(op, true).await?;
        tokio::select! {
            outcome = &mut rx => return outcome.map_err(|_| Error::Closed)?,
            _ = tokio::time::sleep(deadline) => {}
        }
        if claim.withdraw() {
            return Err(Error::Timeout {
                what: "the embedded log storing an append",
                after: deadline,
            });
        }
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
        self.submit(|reply| Op::Topics { specs, reply }, false)
            .await
    }

    /// Appends `records` and waits for them to be stored, for room in the writer's queue too:
    /// the parts' own appends (stream changes, dead letters) wait rather than fail; only a
    /// device's append, which has a deadline and a client to retry, is refused.
    pub(super) async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Position>> {
        let appends = records.into_iter().map(|r| (topic.to_owned(), r)).collect();
        self.submit(
            |reply| Op::Write {
                appends,
                commits: Vec::new(),
                claim: Arc::default(),
                reply,
            },
            false,
        )
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
    pub(super) fn seek(&mut self, partition: i32, offset: i64) {
        self.partition = partition;
        self.position = offset.max(0);
    }

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
            .submit(
                |reply| Op::Write {
                    appends: Vec::new(),
                    commits,
                    claim: Arc::default(),
                    reply,
                },
                false,
            )
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
            .submit(
                |reply| Op::Write {
                    appends: records,
                    commits,
                    claim: Arc::default(),
                    reply,
                },
                false,
            )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topics::Topics;
    use bytes::Bytes;

    /// Records of 1 kB that keep the writer busy for far longer than the waits below.
    const BUSY: usize = 30_000;

    async fn open(dir: &std::path::Path) -> (EmbeddedLog, String) {
        let log = EmbeddedLog::open(EmbeddedOptions {
            dir: dir.to_owned(),
            retention: Duration::from_secs(3600),
        })
        .unwrap();
        let topics = Topics::new("t");
        log.ensure_topics(&topics.specs(1, 1, crate::limits::SizeLimits::default(), None))
            .await
            .unwrap();
        (log, topics.raw)
    }

    async fn values(log: &EmbeddedLog, topic: &str) -> Vec<Bytes> {
        let mut reader = log.reader(topic, 0, 0);
        let mut out = Vec::new();
        loop {
            let batch = reader
                .read(100_000, Duration::from_millis(100))
                .await
                .unwrap();
            if batch.is_empty() {
                return out;
            }
            out.extend(batch.into_iter().filter_map(|c| c.value));
        }
    }

    /// A device told "not stored" (a 503 after the deadline) must not find its entry stored
    /// afterwards: the append is withdrawn before the writer takes it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_append_that_timed_out_is_never_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (log, topic) = open(dir.path()).await;
        // Keep the writer busy for far longer than the deadline below.
        let big: Vec<Record> = (0..BUSY)
            .map(|_| Record::new("k", vec![b'x'; 1000]))
            .collect();
        let mut busy = Box::pin(log.append(&topic, big));
        assert!(
            futures::poll!(&mut busy).is_pending(),
            "queued, not stored yet"
        );
        let late = log
            .append_within(
                &topic,
                vec![Record::new("k", "late")],
                Duration::from_millis(1),
            )
            .await;
        assert!(
            matches!(late, Err(Error::Timeout { .. })),
            "the writer was busy: {late:?}"
        );
        busy.await.unwrap();
        log.append(&topic, vec![Record::new("k", "after")])
            .await
            .unwrap();
        let stored = values(&log, &topic).await;
        assert_eq!(stored.len(), BUSY + 1);
        assert!(!stored.iter().any(|v| &v[..] == b"late"));
        assert_eq!(&stored[BUSY][..], b"after");
        // Within its deadline, the same append is stored.
        let on_time = log
            .append_within(
                &topic,
                vec![Record::new("k", "on time")],
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(on_time[0].offset, BUSY as i64 + 1);
    }

    /// Appends with a deadline (a device's) that find the write queue full are refused at once
    /// instead of queueing without bound; a part's own append waits for room.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_beyond_the_write_queue_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (log, topic) = open(dir.path()).await;
        let big: Vec<Record> = (0..BUSY)
            .map(|_| Record::new("k", vec![b'x'; 1000]))
            .collect();
        let mut busy = Box::pin(log.append(&topic, big));
        assert!(futures::poll!(&mut busy).is_pending());
        // Let the writer take it into its transaction, so that the queue holds only what
        // follows.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut queued = Vec::new();
        let mut refused = 0;
        for i in 0..2 * WRITE_QUEUE {
            let mut append = Box::pin(log.append_within(
                &topic,
                vec![Record::new("k", i.to_string())],
                Duration::from_secs(600),
            ));
            match futures::poll!(&mut append) {
                std::task::Poll::Ready(Err(Error::Busy)) => refused += 1,
                std::task::Poll::Ready(other) => panic!("{other:?}"),
                std::task::Poll::Pending => queued.push(append),
            }
        }
        assert!(queued.len() <= WRITE_QUEUE, "{} queued", queued.len());
        assert!(refused >= WRITE_QUEUE, "{refused} refused");
        let mut own = Box::pin(log.append(&topic, vec![Record::new("k", "own")]));
        assert!(
            futures::poll!(&mut own).is_pending(),
            "a part's append waits"
        );
        busy.await.unwrap();
        for a in queued {
            a.await.unwrap();
        }
        assert_eq!(own.await.unwrap().len(), 1);
    }
}
