//! The log port: the one interface through which the parts read and write topics.
//!
//! Two adapters implement it. [`KafkaLog`] is the production adapter on rdkafka: consumer groups,
//! transactions and `acks=all`. [`EmbeddedLog`] is a durable single-process log on redb, for
//! `thingtotal up` on one machine. The parts hold a [`Log`] and never know which one it is.
//!
//! The port is only as large as the parts need:
//! - [`Log::append`] appends records and waits for their acknowledgement, returning the
//!   partition and offset each one got;
//! - [`Log::reader`] reads one partition from an offset, and [`Log::end_offsets`] tells where
//!   each partition ends;
//! - [`Log::consumer`] consumes as a named group with committed positions, and
//!   [`GroupConsumer::produce_and_commit`] atomically produces records and commits positions;
//! - [`Log::offsets_for_time`] finds the first offset at or after a time.

mod embedded;
mod kafka;
mod murmur2;
mod record;

use std::time::Duration;

pub use embedded::{EmbeddedGroup, EmbeddedLog, EmbeddedOptions, EmbeddedReader};
pub use kafka::{
    producer_config, transactional_producer_config, KafkaGroup, KafkaLog, KafkaOptions,
    KafkaReader, TopicSettings,
};
pub use record::{
    positions_after, wire_size, Consumed, Position, Record, TopicPartitionOffset, TopicSpec,
};

use crate::Result;

/// A handle on the log, cheap to clone.
#[derive(Debug, Clone)]
pub enum Log {
    /// Apache Kafka through rdkafka.
    Kafka(KafkaLog),
    /// The embedded, single-process log in the data directory.
    Embedded(EmbeddedLog),
}

/// How a group consumer reads and commits.
#[derive(Debug, Clone)]
pub struct GroupOptions {
    /// The consumer group's name.
    pub group: String,
    /// The topics the group consumes.
    pub topics: Vec<String>,
    /// Whether the consumer will call [`GroupConsumer::produce_and_commit`]; on Kafka this sets
    /// up a transactional producer fenced by the group's metadata.
    pub transactional: bool,
    /// A stable name for this instance, used in Kafka's `transactional.id`.
    pub instance_id: String,
}

/// A member of a consumer group.
#[derive(Debug)]
pub enum GroupConsumer {
    /// A Kafka consumer group member.
    Kafka(KafkaGroup),
    /// The embedded log's (single) group member.
    Embedded(EmbeddedGroup),
}

/// Partitions a group member gained or lost since it was last asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rebalances {
    /// (topic, partition) assigned to this member.
    pub assigned: Vec<(String, i32)>,
    /// (topic, partition) taken from this member.
    pub revoked: Vec<(String, i32)>,
}

/// Reads one partition of one topic in order.
#[derive(Debug)]
pub enum Reader {
    /// A Kafka partition reader.
    Kafka(KafkaReader),
    /// An embedded log partition reader.
    Embedded(EmbeddedReader),
}

impl Log {
    /// Which adapter this is: `kafka` or `embedded`.
    pub fn kind(&self) -> &'static str {
        match self {
            Log::Kafka(_) => "kafka",
            Log::Embedded(_) => "embedded",
        }
    }

    /// Creates the topics that are missing. Existing topics are left as they are; on Kafka, each
    /// setting of one that is weaker than its spec asks (fewer replicas, a shorter retention, a
    /// smaller `max.message.bytes`, …) is logged as a warning.
    pub async fn ensure_topics(&self, specs: &[TopicSpec]) -> Result<()> {
        match self {
            Log::Kafka(l) => l.ensure_topics(specs).await,
            Log::Embedded(l) => l.ensure_topics(specs).await,
        }
    }

    /// How many brokers hold the log: Kafka's cluster size, 1 for the embedded log.
    pub async fn broker_count(&self) -> Result<usize> {
        match self {
            Log::Kafka(l) => l.broker_count().await,
            Log::Embedded(_) => Ok(1),
        }
    }

    /// Appends records to `topic` and waits until every one is acknowledged. Records with the same
    /// key go to the same partition, in order. Returns each record's position, in input order.
    pub async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Position>> {
        match self {
            Log::Kafka(l) => l.append(topic, records).await,
            Log::Embedded(l) => l.append(topic, records).await,
        }
    }

    /// [`Log::append`], waiting at most `deadline`; [`Error::Timeout`](crate::Error::Timeout)
    /// after it. On the embedded log, a timed-out append is never stored: it is withdrawn
    /// unless the writer has already taken it into a transaction, and then this waits for that
    /// transaction. On Kafka, records of a timed-out append may still be stored afterwards (the
    /// producer cannot take back what it has sent), so a client that retries can store an entry
    /// twice. [`Error::Busy`](crate::Error::Busy) at once when the embedded log's write queue is
    /// full (where [`Log::append`] waits for room).
    pub async fn append_within(
        &self,
        topic: &str,
        records: Vec<Record>,
        deadline: Duration,
    ) -> Result<Vec<Position>> {
        match self {
            Log::Kafka(l) => tokio::time::timeout(deadline, l.append(topic, records))
                .await
                .map_err(|_| crate::Error::Timeout {
                    what: "Kafka acknowledging an append",
                    after: deadline,
                })?,
            Log::Embedded(l) => l.append_within(topic, records, deadline).await,
        }
    }

    /// The end offset (the offset the next record will get) of every partition of `topic`,
    /// indexed by partition.
    pub async fn end_offsets(&self, topic: &str) -> Result<Vec<i64>> {
        match self {
            Log::Kafka(l) => l.end_offsets(topic).await,
            Log::Embedded(l) => l.end_offsets(topic).await,
        }
    }

    /// For every partition of `topic`, the first offset whose timestamp is at or after
    /// `timestamp_ms`, or the end offset if there is none.
    pub async fn offsets_for_time(&self, topic: &str, timestamp_ms: i64) -> Result<Vec<i64>> {
        match self {
            Log::Kafka(l) => l.offsets_for_time(topic, timestamp_ms).await,
            Log::Embedded(l) => l.offsets_for_time(topic, timestamp_ms).await,
        }
    }

    /// A reader of one partition, starting at `offset` (or the log start if that is earlier).
    pub async fn reader(&self, topic: &str, partition: i32, offset: i64) -> Result<Reader> {
        Ok(match self {
            Log::Kafka(l) => Reader::Kafka(l.reader(topic, partition, offset).await?),
            Log::Embedded(l) => Reader::Embedded(l.reader(topic, partition, offset)),
        })
    }

    /// Joins a consumer group. Positions start at the group's committed offsets, or at the
    /// beginning of the log for partitions the group never committed.
    pub async fn consumer(&self, options: GroupOptions) -> Result<GroupConsumer> {
        Ok(match self {
            Log::Kafka(l) => GroupConsumer::Kafka(l.consumer(options).await?),
            Log::Embedded(l) => GroupConsumer::Embedded(l.consumer(options)?),
        })
    }

    /// Checks that the log answers: a metadata request on Kafka, always true when embedded.
    pub async fn check(&self) -> Result<()> {
        match self {
            Log::Kafka(l) => l.check().await,
            Log::Embedded(_) => Ok(()),
        }
    }
}

impl Reader {
    /// Up to `max` records, waiting at most `wait` for the first one. Empty when none arrived.
    pub async fn read(&mut self, max: usize, wait: Duration) -> Result<Vec<Consumed>> {
        match self {
            Reader::Kafka(r) => r.read(max, wait).await,
            Reader::Embedded(r) => r.read(max, wait).await,
        }
    }

    /// Moves the reader to `offset` (or the log start if that is earlier) of `partition` of
    /// the same topic, so that one reader serves one search after another. The next
    /// [`Reader::read`] returns nothing fetched before the move.
    pub fn seek(&mut self, partition: i32, offset: i64) -> Result<()> {
        match self {
            Reader::Kafka(r) => r.seek(partition, offset),
            Reader::Embedded(r) => {
                r.seek(partition, offset);
                Ok(())
            }
        }
    }
}

impl GroupConsumer {
    /// Up to `max` records from the assigned partitions, waiting at most `linger` to fill the
    /// batch. A batch may be empty. Within a partition, records come in offset order.
    ///
    /// Not cancel-safe: a poll dropped half-way loses the records it had fetched (until the next
    /// rewind), so loops let it finish; `linger` bounds the wait.
    pub async fn poll(&mut self, max: usize, linger: Duration) -> Result<Vec<Consumed>> {
        match self {
            GroupConsumer::Kafka(g) => g.poll(max, linger).await,
            GroupConsumer::Embedded(g) => g.poll(max, linger).await,
        }
    }

    /// The partitions assigned and revoked since the last call. A member that keeps state per
    /// partition across batches (the archiver's open files) drops it for revoked partitions;
    /// records of a revoked partition that were already polled must not be written either. The
    /// embedded log's single member is never rebalanced.
    pub fn take_rebalances(&self) -> Rebalances {
        match self {
            GroupConsumer::Kafka(g) => g.take_rebalances(),
            GroupConsumer::Embedded(_) => Rebalances::default(),
        }
    }

    /// Commits positions (the next offset to read, per partition) for the group.
    pub async fn commit(&mut self, offsets: &[TopicPartitionOffset]) -> Result<()> {
        match self {
            GroupConsumer::Kafka(g) => g.commit(offsets).await,
            GroupConsumer::Embedded(g) => g.commit(offsets).await,
        }
    }

    /// Atomically appends `records` (topic, record) and commits `offsets`: either both happen or
    /// neither does. A Kafka transaction, or one storage transaction on the embedded log.
    pub async fn produce_and_commit(
        &mut self,
        records: Vec<(String, Record)>,
        offsets: &[TopicPartitionOffset],
    ) -> Result<()> {
        match self {
            GroupConsumer::Kafka(g) => g.produce_and_commit(records, offsets).await,
            GroupConsumer::Embedded(g) => g.produce_and_commit(records, offsets).await,
        }
    }

    /// Moves every assigned partition back to its committed position, dropping whatever was
    /// polled since. Call it after a failed commit so that nothing is skipped.
    pub async fn rewind(&mut self) -> Result<()> {
        match self {
            GroupConsumer::Kafka(g) => g.rewind().await,
            GroupConsumer::Embedded(g) => g.rewind().await,
        }
    }

    /// How many records of `topic` the group has not committed yet, over all partitions.
    pub async fn lag(&self, log: &Log, topic: &str) -> Result<i64> {
        let ends = log.end_offsets(topic).await?;
        let committed = self.committed(topic).await?;
        Ok(ends
            .iter()
            .zip(committed)
            .map(|(end, c)| (end - c.unwrap_or(0)).max(0))
            .sum())
    }

    /// Rewinds, retrying until it succeeds: polling on after a failed rewind would let the next
    /// commit skip the records of the failed batch. Gives up only when `shutdown` is cancelled,
    /// and then the caller must stop without committing.
    pub async fn rewind_until_done(
        &mut self,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Result<()> {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.rewind().await {
                Ok(()) => return Ok(()),
                Err(e) if shutdown.is_cancelled() => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "rewind failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// The group's committed position of each partition of `topic`, `None` where it never
    /// committed.
    pub async fn committed(&self, topic: &str) -> Result<Vec<Option<i64>>> {
        match self {
            GroupConsumer::Kafka(g) => g.committed(topic).await,
            GroupConsumer::Embedded(g) => g.committed(topic),
        }
    }
}
