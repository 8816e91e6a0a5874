//! The embedded log's one writer thread: group commit, partition ends kept in memory, and
//! retention.

use std::collections::HashMap;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use redb::{Database, ReadableTable};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::codec::encode;
use super::{Op, ENDS, GROUPS, RECORDS, TIMES, TOPICS};
use crate::log::murmur2;
use crate::log::Position;
use crate::{Error, Result};

/// The writer thread's state: partition counts and each partition's end, kept in memory so that
/// appends need no reads.
pub(super) struct Writer {
    db: Arc<Database>,
    commits: watch::Sender<u64>,
    retention: Duration,
    topics: HashMap<String, (u32, bool)>,
    ends: HashMap<(String, u32), (u64, i64)>,
    round_robin: u32,
}

impl Writer {
    pub(super) fn load(
        db: Arc<Database>,
        commits: watch::Sender<u64>,
        retention: Duration,
    ) -> Result<Self> {
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

    pub(super) fn run(&mut self, rx: mpsc::Receiver<Op>) {
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
                        Op::Write { claim, .. } if !claim.take() => {
                            // Its requester gave up waiting and was told so: never store it.
                            continue;
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
