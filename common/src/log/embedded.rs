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

use bytes::{Buf, BufMut, Bytes, BytesMut};
use redb::{Database, ReadableTable, TableDefinition};
use tokio::sync::{oneshot, watch};
use tokio::task::spawn_blocking;
use tracing::{debug, info, warn};

use super::murmur2;
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
        .await
        .map_err(|_| Error::Closed)?
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

/// The writer thread's state: partition counts and each partition's end, kept in memory so that
/// appends need no reads.
struct Writer {
    db: Arc<Database>,
    commits: watch::Sender<u64>,
    retention: Duration,
    topics: HashMap<String, (u32, bool)>,
    ends: HashMap<(String, u32), (u64, i64)>,
    round_robin: u32,
}

impl Writer {
    fn load(db: Arc<Database>, commits: watch::Sender<u64>, retention: Duration) -> Result<Self> {
        let txn = db.begin_read().map_err(Error::storage)?;
        let mut topics = HashMap::new();
        for e in txn
            .open_table(TOPICS)
            .map_err(Error::storage)?
            .iter()
            .map_err(Error::storage)?
        {
            let (k, v) = e.map_err(Error::storage)?;
            topics.insert(k.value().to_owned(), v.value());
        }
        let mut ends = HashMap::new();
        for e in txn
            .open_table(ENDS)
            .map_err(Error::storage)?
            .iter()
            .map_err(Error::storage)?
        {
            let (k, v) = e.map_err(Error::storage)?;
            let (t, p) = k.value();
            ends.insert((t.to_owned(), p), v.value());
        }
        Ok(Self {
            db,
            commits,
            retention,
            topics,
            ends,
            round_robin: 0,
        })
    }

    fn run(&mut self, rx: mpsc::Receiver<Op>) {
        const MAX_OPS_PER_COMMIT: usize = 4096;
        let mut last_cleanup = std::time::Instant::now();
        loop {
            let first = match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(op) => op,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.maybe_clean(&mut last_cleanup);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let mut ops = vec![first];
            while ops.len() < MAX_OPS_PER_COMMIT {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            self.apply(ops);
            self.maybe_clean(&mut last_cleanup);
        }
    }

    fn maybe_clean(&mut self, last: &mut std::time::Instant) {
        if last.elapsed() >= Duration::from_secs(60) {
            *last = std::time::Instant::now();
            if let Err(e) = self.clean() {
                warn!(error = %e, "embedded log retention failed");
            }
        }
    }

    /// Applies a group of operations in one transaction: one fsync for all of them.
    fn apply(&mut self, ops: Vec<Op>) {
        let saved_ends = self.ends.clone();
        let saved_topics = self.topics.clone();
        let mut replies: Vec<(Op, Result<Vec<Position>>)> = Vec::with_capacity(ops.len());
        let result = (|| -> Result<()> {
            let txn = self.db.begin_write().map_err(Error::storage)?;
            {
                let mut records = txn.open_table(RECORDS).map_err(Error::storage)?;
                let mut topics = txn.open_table(TOPICS).map_err(Error::storage)?;
                let mut ends = txn.open_table(ENDS).map_err(Error::storage)?;
                let mut times = txn.open_table(TIMES).map_err(Error::storage)?;
                let mut groups = txn.open_table(GROUPS).map_err(Error::storage)?;
                let now = chrono::Utc::now().timestamp_millis();
                for op in ops {
                    let outcome = match &op {
                        Op::Topics { specs, .. } => {
                            for s in specs {
                                if !self.topics.contains_key(&s.name) {
                                    let v = (s.partitions.max(1) as u32, s.compacted);
                                    topics.insert(s.name.as_str(), v).map_err(Error::storage)?;
                                    self.topics.insert(s.name.clone(), v);
                                    info!(topic = %s.name, partitions = v.0, "created topic");
                                }
                            }
                            Ok(Vec::new())
                        }
                        Op::Write {
                            appends, commits, ..
                        } => {
                            if let Some((t, _)) =
                                appends.iter().find(|(t, _)| !self.topics.contains_key(t))
                            {
                                Err(Error::Topic(t.clone(), "does not exist".into()))
                            } else {
                                let mut positions = Vec::with_capacity(appends.len());
                                for (topic, r) in appends {
                                    let n = self.topics[topic].0;
                                    let partition = match &r.key {
                                        Some(k) => murmur2::partition(k, n as i32) as u32,
                                        None => {
                                            self.round_robin = self.round_robin.wrapping_add(1);
                                            self.round_robin % n
                                        }
                                    };
                                    let ts = r.timestamp_ms.unwrap_or(now);
                                    let end = self
                                        .ends
                                        .entry((topic.clone(), partition))
                                        .or_insert((0, i64::MIN));
                                    let offset = end.0;
                                    records
                                        .insert(
                                            (topic.as_str(), partition, offset),
                                            encode(r, ts).as_ref(),
                                        )
                                        .map_err(Error::storage)?;
                                    if ts > end.1 {
                                        times
                                            .insert((topic.as_str(), partition, ts), offset)
                                            .map_err(Error::storage)?;
                                        end.1 = ts;
                                    }
                                    end.0 += 1;
                                    ends.insert((topic.as_str(), partition), *end)
                                        .map_err(Error::storage)?;
                                    positions.push(Position {
                                        partition: partition as i32,
                                        offset: offset as i64,
                                    });
                                }
                                for (group, o) in commits {
                                    groups
                                        .insert(
                                            (group.as_str(), o.topic.as_str(), o.partition as u32),
                                            o.offset.max(0) as u64,
                                        )
                                        .map_err(Error::storage)?;
                                }
                                Ok(positions)
                            }
                        }
                    };
                    replies.push((op, outcome));
                }
            }
            txn.commit().map_err(Error::storage)?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                debug!(ops = replies.len(), "embedded log commit");
                self.commits.send_modify(|n| *n += 1);
                for (op, outcome) in replies {
                    match op {
                        Op::Write { reply, .. } => {
                            let _ = reply.send(outcome);
                        }
                        Op::Topics { reply, .. } => {
                            let _ = reply.send(outcome.map(|_| ()));
                        }
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, "embedded log commit failed");
                self.ends = saved_ends;
                self.topics = saved_topics;
                for (op, _) in replies {
                    let err = Err(Error::Storage(e.to_string()));
                    match op {
                        Op::Write { reply, .. } => {
                            let _ = reply.send(err);
                        }
                        Op::Topics { reply, .. } => {
                            let _ = reply.send(err.map(|_| ()));
                        }
                    }
                }
            }
        }
    }

    /// Deletes records that every group that reads a topic has committed past, once they are
    /// older than the retention period. The compacted streams topic is kept whole.
    fn clean(&mut self) -> Result<()> {
        let cutoff = chrono::Utc::now().timestamp_millis()
            - i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
        let txn = self.db.begin_write().map_err(Error::storage)?;
        let mut deleted = 0usize;
        {
            let mut records = txn.open_table(RECORDS).map_err(Error::storage)?;
            let mut times = txn.open_table(TIMES).map_err(Error::storage)?;
            let groups = txn.open_table(GROUPS).map_err(Error::storage)?;
            let mut min_committed: HashMap<(String, u32), u64> = HashMap::new();
            for e in groups.iter().map_err(Error::storage)? {
                let (k, v) = e.map_err(Error::storage)?;
                let (_, t, p) = k.value();
                let m = min_committed.entry((t.to_owned(), p)).or_insert(u64::MAX);
                *m = (*m).min(v.value());
            }
            for ((topic, p), consumed) in min_committed {
                if self.topics.get(&topic).is_none_or(|t| t.1) {
                    continue;
                }
                // The first offset at or after the cutoff: everything before it is older.
                let young = times
                    .range((topic.as_str(), p, cutoff)..=(topic.as_str(), p, i64::MAX))
                    .map_err(Error::storage)?
                    .next()
                    .transpose()
                    .map_err(Error::storage)?
                    .map(|(_, v)| v.value())
                    .unwrap_or_else(|| self.ends.get(&(topic.clone(), p)).map_or(0, |e| e.0));
                let upto = consumed.min(young);
                if upto == 0 {
                    continue;
                }
                records
                    .retain_in((topic.as_str(), p, 0)..(topic.as_str(), p, upto), |_, _| {
                        deleted += 1;
                        false
                    })
                    .map_err(Error::storage)?;
                times
                    .retain_in(
                        (topic.as_str(), p, i64::MIN)..(topic.as_str(), p, cutoff),
                        |_, o| o >= upto,
                    )
                    .map_err(Error::storage)?;
            }
        }
        txn.commit().map_err(Error::storage)?;
        if deleted > 0 {
            info!(deleted, "embedded log retention removed consumed records");
        }
        Ok(())
    }
}

/// `timestamp i64 | key len i32 (-1: none) | key | value len i32 (-1: tombstone) | value |
/// header count u32 | (name len u32 | name | value len u32 | value)*`, little-endian.
fn encode(r: &Record, ts: i64) -> Bytes {
    let mut b = BytesMut::with_capacity(
        24 + r.key.as_ref().map_or(0, |k| k.len())
            + r.value.as_ref().map_or(0, |v| v.len())
            + r.headers
                .iter()
                .map(|(k, v)| 8 + k.len() + v.len())
                .sum::<usize>(),
    );
    b.put_i64_le(ts);
    for part in [&r.key, &r.value] {
        match part {
            Some(p) => {
                b.put_i32_le(p.len() as i32);
                b.put_slice(p);
            }
            None => b.put_i32_le(-1),
        }
    }
    b.put_u32_le(r.headers.len() as u32);
    for (k, v) in &r.headers {
        b.put_u32_le(k.len() as u32);
        b.put_slice(k.as_bytes());
        b.put_u32_le(v.len() as u32);
        b.put_slice(v);
    }
    b.freeze()
}

fn decode(topic: &str, partition: i32, offset: i64, mut b: &[u8]) -> Result<Consumed> {
    let corrupt = || Error::Storage(format!("corrupt record {topic}/{partition}@{offset}"));
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Some(head)
    }
    if b.len() < 16 {
        return Err(corrupt());
    }
    let timestamp_ms = b.get_i64_le();
    let opt = |b: &mut &[u8]| -> Result<Option<Bytes>> {
        if b.len() < 4 {
            return Err(corrupt());
        }
        let n = b.get_i32_le();
        if n < 0 {
            return Ok(None);
        }
        take(b, n as usize)
            .map(|s| Some(Bytes::copy_from_slice(s)))
            .ok_or_else(corrupt)
    };
    let key = opt(&mut b)?;
    let value = opt(&mut b)?;
    if b.len() < 4 {
        return Err(corrupt());
    }
    let n = b.get_u32_le() as usize;
    // A header takes at least 8 bytes: a corrupt count cannot reserve more than the record holds.
    let mut headers = Vec::with_capacity(n.min(b.len() / 8));
    for _ in 0..n {
        if b.len() < 4 {
            return Err(corrupt());
        }
        let kl = b.get_u32_le() as usize;
        let k = take(&mut b, kl).ok_or_else(corrupt)?;
        if b.len() < 4 {
            return Err(corrupt());
        }
        let vl = b.get_u32_le() as usize;
        let v = take(&mut b, vl).ok_or_else(corrupt)?;
        headers.push((
            String::from_utf8_lossy(k).into_owned(),
            Bytes::copy_from_slice(v),
        ));
    }
    Ok(Consumed {
        topic: topic.to_owned(),
        partition,
        offset,
        timestamp_ms,
        key,
        value,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_the_encoding() {
        let r = Record::new("17", "{\"t\":1}")
            .header("tt.entry_id", "abc")
            .header("empty", "");
        let c = decode("t", 2, 9, &encode(&r, 42)).unwrap();
        assert_eq!(c.timestamp_ms, 42);
        assert_eq!(c.key.as_deref(), Some(&b"17"[..]));
        assert_eq!(c.value.as_deref(), Some(&b"{\"t\":1}"[..]));
        assert_eq!(c.headers, r.headers);
        let tombstone = Record {
            key: Some(Bytes::from_static(b"k")),
            ..Record::default()
        };
        let c = decode("t", 0, 0, &encode(&tombstone, 1)).unwrap();
        assert_eq!(c.value, None);
        assert!(decode("t", 0, 0, &encode(&r, 1)[..20]).is_err());
    }
}
