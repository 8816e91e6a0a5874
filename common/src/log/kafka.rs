//! The Kafka adapter of the log port, on rdkafka.
//!
//! One idempotent producer (`acks=all`) per process serves every append. Group consumers commit
//! explicitly and read with `isolation.level=read_committed`. A transactional group consumer owns
//! its own transactional producer, and sends the consumer's group metadata with the offsets, so a
//! member that lost its partitions in a rebalance is fenced rather than committing twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, Timestamp, TopicPartitionList};
use tokio::task::spawn_blocking;
use tracing::{debug, info, warn};

use super::{Consumed, GroupOptions, Position, Record, TopicPartitionOffset, TopicSpec};
use crate::{Error, Result};

/// How to reach Kafka.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// librdkafka settings passed through to every client (TLS, SASL, tuning).
    pub options: Vec<(String, String)>,
    /// How long blocking metadata, commit and transaction calls may take.
    pub request_timeout: Duration,
}

impl KafkaOptions {
    /// Options for `brokers` with nothing passed through.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            options: Vec::new(),
            request_timeout: Duration::from_secs(10),
        }
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        c.set("client.id", "thingtotal");
        for (k, v) in &self.options {
            c.set(k, v);
        }
        c
    }
}

/// The Kafka adapter. Cheap to clone: clones share the producer.
#[derive(Clone)]
pub struct KafkaLog {
    inner: Arc<Inner>,
}

struct Inner {
    options: KafkaOptions,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    meta: BaseConsumer,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("brokers", &self.inner.options.brokers)
            .finish()
    }
}

impl KafkaLog {
    /// Connects the shared producer, admin client and metadata consumer. Connections are made
    /// lazily by librdkafka; [`KafkaLog::check`] tells whether the brokers answer.
    pub fn connect(options: KafkaOptions) -> Result<Self> {
        let mut p = options.client_config();
        let producer: FutureProducer = producer_config(options.client_config()).create()?;
        let admin: AdminClient<DefaultClientContext> = p.create()?;
        p.set(
            "group.id",
            format!("thingtotal-meta-{}", uuid::Uuid::now_v7()),
        )
        .set("enable.auto.commit", "false");
        let meta: BaseConsumer = p.create()?;
        Ok(Self {
            inner: Arc::new(Inner {
                options,
                producer,
                admin,
                meta,
            }),
        })
    }

    fn timeout(&self) -> Duration {
        self.inner.options.request_timeout
    }

    /// A metadata request to the brokers.
    pub async fn check(&self) -> Result<()> {
        let this = self.clone();
        spawn_blocking(move || {
            this.inner
                .meta
                .fetch_metadata(None, Duration::from_secs(3))
                .map(|_| ())
        })
        .await??;
        Ok(())
    }

    pub(super) async fn ensure_topics(&self, specs: &[TopicSpec]) -> Result<()> {
        let configs: Vec<Vec<(&str, &str)>> = specs
            .iter()
            .map(|s| {
                if s.compacted {
                    vec![("cleanup.policy", "compact")]
                } else {
                    vec![]
                }
            })
            .collect();
        let new: Vec<NewTopic<'_>> = specs
            .iter()
            .zip(&configs)
            .map(|(s, cfg)| {
                let mut t = NewTopic::new(
                    &s.name,
                    s.partitions,
                    TopicReplication::Fixed(s.replication),
                );
                for (k, v) in cfg {
                    t = t.set(k, v);
                }
                t
            })
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(self.timeout()));
        let results = self.inner.admin.create_topics(&new, &opts).await?;
        for r in results {
            match r {
                Ok(name) => info!(topic = %name, "created topic"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(Error::Topic(name, format!("could not be created: {code}")));
                }
            }
        }
        // Creation is acknowledged by the controller before every broker knows the topic.
        for s in specs {
            let deadline = tokio::time::Instant::now() + self.timeout();
            loop {
                match self.partition_count(&s.name).await {
                    Ok(n) if n > 0 => break,
                    _ if tokio::time::Instant::now() >= deadline => {
                        return Err(Error::Topic(
                            s.name.clone(),
                            "not visible in metadata".into(),
                        ))
                    }
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
        Ok(())
    }

    /// The number of partitions of `topic`, once every one of them has a leader.
    async fn partition_count(&self, topic: &str) -> Result<usize> {
        let this = self.clone();
        let topic = topic.to_owned();
        spawn_blocking(move || {
            let md = this
                .inner
                .meta
                .fetch_metadata(Some(&topic), this.timeout())?;
            let t = md
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .ok_or_else(|| Error::Topic(topic.clone(), "missing".into()))?;
            if let Some(e) = t.error() {
                return Err(Error::Topic(topic.clone(), format!("{e:?}")));
            }
            if let Some(p) = t
                .partitions()
                .iter()
                .find(|p| p.leader() < 0 || p.error().is_some())
            {
                return Err(Error::Topic(
                    topic.clone(),
                    format!("partition {} has no leader yet", p.id()),
                ));
            }
            Ok(t.partitions().len())
        })
        .await?
    }

    pub(super) async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Position>> {
        let mut futures = Vec::with_capacity(records.len());
        for r in &records {
            // `send` waits while librdkafka's queue is full, rather than failing the request.
            futures.push(
                self.inner
                    .producer
                    .send(future_record(topic, r), Duration::from_secs(30)),
            );
        }
        let results = join_all(futures).await;
        results
            .into_iter()
            .map(|r| match r {
                Ok(d) => Ok(Position {
                    partition: d.partition,
                    offset: d.offset,
                }),
                Err((e, _)) => Err(Error::Kafka(e)),
            })
            .collect()
    }

    pub(super) async fn end_offsets(&self, topic: &str) -> Result<Vec<i64>> {
        // Right after a topic is created or a broker restarts, leaders may still be moving.
        let deadline = tokio::time::Instant::now() + self.timeout();
        loop {
            match self.try_end_offsets(topic).await {
                Err(e) if tokio::time::Instant::now() < deadline => {
                    debug!(topic, error = %e, "end offsets not available yet; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                result => return result,
            }
        }
    }

    async fn try_end_offsets(&self, topic: &str) -> Result<Vec<i64>> {
        let n = self.partition_count(topic).await?;
        let this = self.clone();
        let topic = topic.to_owned();
        spawn_blocking(move || {
            (0..n as i32)
                .map(|p| {
                    let (_, high) = this
                        .inner
                        .meta
                        .fetch_watermarks(&topic, p, this.timeout())?;
                    Ok(high)
                })
                .collect()
        })
        .await?
    }

    pub(super) async fn offsets_for_time(
        &self,
        topic: &str,
        timestamp_ms: i64,
    ) -> Result<Vec<i64>> {
        let ends = self.end_offsets(topic).await?;
        let this = self.clone();
        let topic = topic.to_owned();
        spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for p in 0..ends.len() as i32 {
                tpl.add_partition_offset(&topic, p, Offset::Offset(timestamp_ms))?;
            }
            let found = this.inner.meta.offsets_for_times(tpl, this.timeout())?;
            Ok(ends
                .iter()
                .enumerate()
                .map(
                    |(p, end)| match found.find_partition(&topic, p as i32).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => o,
                        _ => *end,
                    },
                )
                .collect())
        })
        .await?
    }

    pub(super) async fn reader(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<KafkaReader> {
        let mut cfg = self.inner.options.client_config();
        cfg.set(
            "group.id",
            format!("thingtotal-reader-{}", uuid::Uuid::now_v7()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest");
        let consumer: StreamConsumer = cfg.create()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
        consumer.assign(&tpl)?;
        Ok(KafkaReader { consumer })
    }

    pub(super) async fn consumer(&self, options: GroupOptions) -> Result<KafkaGroup> {
        let mut cfg = with_defaults(
            self.inner.options.client_config(),
            &[("partition.assignment.strategy", "cooperative-sticky")],
        );
        // Not overridable: the delivery guarantees depend on them.
        cfg.set("group.id", &options.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest");
        let changes = Arc::new(std::sync::Mutex::new(super::Rebalances::default()));
        let consumer: StreamConsumer<GroupContext> = cfg.create_with_context(GroupContext {
            group: options.group.clone(),
            changes: changes.clone(),
        })?;
        let topics: Vec<&str> = options.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        let txn = if options.transactional {
            Some(self.transactional_producer(&options).await?)
        } else {
            None
        };
        Ok(KafkaGroup {
            consumer: Arc::new(consumer),
            changes,
            txn,
            options,
            log: self.clone(),
        })
    }

    async fn transactional_producer(&self, options: &GroupOptions) -> Result<FutureProducer> {
        // A crashed member's open transaction holds back read_committed readers until it
        // times out or a member with the same transactional.id fences it.
        let mut cfg = transactional_producer_config(self.inner.options.client_config());
        cfg.set(
            "transactional.id",
            format!("{}-{}", options.group, options.instance_id),
        );
        let producer: FutureProducer = cfg.create()?;
        let p = producer.clone();
        let timeout = self.timeout() * 3;
        spawn_blocking(move || p.init_transactions(timeout)).await??;
        Ok(producer)
    }
}

/// Producer settings the delivery contract relies on: an entry is acknowledged only once every
/// in-sync replica has it, retries never duplicate it, and a stream's entries share a partition
/// (the embedded log hashes keys the same way). A `--kafka-option` cannot change them.
const PRODUCER_REQUIRED: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("partitioner", "murmur2_random"),
];

/// Producer settings a `--kafka-option` may tune.
const PRODUCER_DEFAULTS: &[(&str, &str)] = &[("linger.ms", "5"), ("compression.type", "lz4")];

/// Sets each default that the user's options did not set.
fn with_defaults(mut c: ClientConfig, defaults: &[(&str, &str)]) -> ClientConfig {
    for (k, v) in defaults {
        if c.get(k).is_none() {
            c.set(*k, *v);
        }
    }
    c
}

/// The configuration of the producer that serves a process's appends: `user` (the connection
/// and the user's options) over the defaults, then the settings the delivery contract relies on
/// over both. The benchmarks' baselines produce with it too, so that they write as the product
/// does.
pub fn producer_config(user: ClientConfig) -> ClientConfig {
    tuned_producer_config(user, &[("message.timeout.ms", "30000")])
}

/// The configuration of a transactional group consumer's producer, as
/// [`producer_config`] but for the transaction timeout, and without its `transactional.id`.
pub fn transactional_producer_config(user: ClientConfig) -> ClientConfig {
    // librdkafka keeps the message timeout within the transaction timeout when none is set.
    tuned_producer_config(user, &[("transaction.timeout.ms", "10000")])
}

/// A producer's configuration: the user's options over the defaults, then the required
/// settings over both, with a warning for each option of the user's that is overridden.
fn tuned_producer_config(user: ClientConfig, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut c = with_defaults(user, &[PRODUCER_DEFAULTS, defaults].concat());
    for (k, v) in PRODUCER_REQUIRED {
        if let Some(set) = c.get(k).filter(|set| set != v) {
            warn!(
                option = k,
                set,
                used = v,
                "ignoring a Kafka option the delivery guarantees depend on"
            );
        }
        c.set(*k, *v);
    }
    c
}

/// The rdkafka record for `r`, borrowing its bytes (librdkafka copies them when it enqueues).
fn future_record<'a>(topic: &'a str, r: &'a Record) -> FutureRecord<'a, [u8], [u8]> {
    let mut fr: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
    if let Some(k) = &r.key {
        fr = fr.key(k.as_ref());
    }
    if let Some(v) = &r.value {
        fr = fr.payload(v.as_ref());
    }
    if let Some(ts) = r.timestamp_ms {
        fr = fr.timestamp(ts);
    }
    if !r.headers.is_empty() {
        fr = fr.headers(owned_headers(&r.headers));
    }
    fr
}

fn owned_headers(headers: &[(String, Bytes)]) -> OwnedHeaders {
    headers.iter().fold(
        OwnedHeaders::new_with_capacity(headers.len()),
        |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v.as_ref()),
            })
        },
    )
}

fn consumed(m: &BorrowedMessage<'_>) -> Consumed {
    Consumed {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp_ms: match m.timestamp() {
            Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => t,
            Timestamp::NotAvailable => 0,
        },
        key: m.key().map(Bytes::copy_from_slice),
        value: m.payload().map(Bytes::copy_from_slice),
        headers: m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            h.value.map(Bytes::copy_from_slice).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Receives up to `max` messages, waiting at most `wait` in all.
async fn receive<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    max: usize,
    wait: Duration,
) -> Result<Vec<Consumed>> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut out = Vec::new();
    while out.len() < max {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Err(_) => break,
            Ok(Ok(m)) => out.push(consumed(&m)),
            Ok(Err(e)) if is_fatal(&e) => return Err(e.into()),
            // Broker disconnects and the like: librdkafka reconnects by itself.
            Ok(Err(e)) => {
                debug!(error = %e, "consumer error");
                if out.is_empty() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    Ok(out)
}

fn is_fatal(e: &KafkaError) -> bool {
    matches!(e.rdkafka_error_code(), Some(RDKafkaErrorCode::Fatal))
}

/// Reads one partition without joining a group.
pub struct KafkaReader {
    consumer: StreamConsumer,
}

impl std::fmt::Debug for KafkaReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaReader").finish_non_exhaustive()
    }
}

impl KafkaReader {
    pub(super) async fn read(&mut self, max: usize, wait: Duration) -> Result<Vec<Consumed>> {
        // Return as soon as anything arrived: the registry wants changes without delay.
        let first = receive(&self.consumer, 1, wait).await?;
        if first.is_empty() {
            return Ok(first);
        }
        let mut rest = receive(&self.consumer, max.saturating_sub(1), Duration::ZERO).await?;
        let mut out = first;
        out.append(&mut rest);
        Ok(out)
    }
}

/// Logs a group member's assignments as they change, and keeps what changed for the member's
/// owner to act on ([`GroupConsumer::take_rebalances`](super::GroupConsumer::take_rebalances)).
struct GroupContext {
    group: String,
    changes: Arc<std::sync::Mutex<super::Rebalances>>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = |tpl: &TopicPartitionList| {
            tpl.elements()
                .iter()
                .map(|e| format!("{}/{}", e.topic(), e.partition()))
                .collect::<Vec<_>>()
                .join(",")
        };
        match rebalance {
            Rebalance::Assign(tpl) => {
                info!(group = %self.group, partitions = %partitions(tpl), "partitions assigned");
                let mut c = self.changes.lock().expect("rebalance lock");
                c.assigned.extend(
                    tpl.elements()
                        .iter()
                        .map(|e| (e.topic().to_owned(), e.partition())),
                );
            }
            Rebalance::Revoke(tpl) => {
                info!(group = %self.group, partitions = %partitions(tpl), "partitions revoked");
                let mut c = self.changes.lock().expect("rebalance lock");
                c.revoked.extend(
                    tpl.elements()
                        .iter()
                        .map(|e| (e.topic().to_owned(), e.partition())),
                );
            }
            Rebalance::Error(e) => warn!(group = %self.group, error = %e, "rebalance failed"),
        }
    }
}

/// A member of a Kafka consumer group.
pub struct KafkaGroup {
    consumer: Arc<StreamConsumer<GroupContext>>,
    changes: Arc<std::sync::Mutex<super::Rebalances>>,
    txn: Option<FutureProducer>,
    options: GroupOptions,
    log: KafkaLog,
}

impl std::fmt::Debug for KafkaGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaGroup")
            .field("group", &self.options.group)
            .field("transactional", &self.txn.is_some())
            .finish()
    }
}

fn tpl_of(offsets: &[TopicPartitionOffset]) -> Result<TopicPartitionList> {
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for o in offsets {
        tpl.add_partition_offset(&o.topic, o.partition, Offset::Offset(o.offset))?;
    }
    Ok(tpl)
}

impl KafkaGroup {
    pub(super) fn take_rebalances(&self) -> super::Rebalances {
        std::mem::take(&mut *self.changes.lock().expect("rebalance lock"))
    }

    pub(super) async fn poll(&mut self, max: usize, linger: Duration) -> Result<Vec<Consumed>> {
        receive(&self.consumer, max, linger).await
    }

    pub(super) async fn commit(&mut self, offsets: &[TopicPartitionOffset]) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let tpl = tpl_of(offsets)?;
        let consumer = self.consumer.clone();
        spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync)).await??;
        Ok(())
    }

    pub(super) async fn produce_and_commit(
        &mut self,
        records: Vec<(String, Record)>,
        offsets: &[TopicPartitionOffset],
    ) -> Result<()> {
        let Some(producer) = self.txn.clone() else {
            return Err(Error::Config(
                "produce_and_commit on a group consumer that is not transactional".into(),
            ));
        };
        let result = self.transaction(&producer, records, offsets).await;
        if let Err(e) = &result {
            warn!(group = %self.options.group, error = %e, "transaction failed; aborting");
            let p = producer.clone();
            let timeout = self.log.timeout();
            let aborted = spawn_blocking(move || p.abort_transaction(timeout)).await?;
            if let Err(abort_error) = aborted {
                // A fenced or fatally failed producer cannot be reused: start a new one.
                warn!(error = %abort_error, "abort failed; recreating the transactional producer");
                self.txn = Some(self.log.transactional_producer(&self.options).await?);
            }
        }
        result
    }

    async fn transaction(
        &self,
        producer: &FutureProducer,
        records: Vec<(String, Record)>,
        offsets: &[TopicPartitionOffset],
    ) -> Result<()> {
        producer.begin_transaction()?;
        let mut futures = Vec::with_capacity(records.len());
        for (topic, r) in &records {
            futures.push(producer.send(future_record(topic, r), Duration::from_secs(30)));
        }
        for r in join_all(futures).await {
            r.map_err(|(e, _)| Error::Kafka(e))?;
        }
        let tpl = tpl_of(offsets)?;
        let metadata = self
            .consumer
            .group_metadata()
            .ok_or_else(|| Error::Config("consumer has no group metadata".into()))?;
        let p = producer.clone();
        let timeout = self.log.timeout();
        spawn_blocking(move || {
            if tpl.count() > 0 {
                p.send_offsets_to_transaction(&tpl, &metadata, timeout)?;
            }
            p.commit_transaction(timeout)
        })
        .await??;
        Ok(())
    }

    pub(super) async fn rewind(&mut self) -> Result<()> {
        let consumer = self.consumer.clone();
        let timeout = self.log.timeout();
        spawn_blocking(move || {
            let assigned = consumer.assignment()?;
            if assigned.count() == 0 {
                return Ok(());
            }
            let committed = consumer.committed_offsets(assigned, timeout)?;
            let mut seek = TopicPartitionList::with_capacity(committed.count());
            for e in committed.elements() {
                e.error()?;
                let to = match e.offset() {
                    Offset::Offset(o) => Offset::Offset(o),
                    // Never committed: where auto.offset.reset=earliest starts.
                    Offset::Invalid => Offset::Beginning,
                    other => {
                        return Err(Error::Topic(
                            e.topic().to_owned(),
                            format!(
                                "partition {}: unexpected committed offset {other:?}",
                                e.partition()
                            ),
                        ))
                    }
                };
                seek.add_partition_offset(e.topic(), e.partition(), to)?;
            }
            // Each partition's seek can fail on its own; every one must have moved.
            for e in consumer.seek_partitions(seek, timeout)?.elements() {
                e.error()?;
            }
            Ok::<_, Error>(())
        })
        .await??;
        Ok(())
    }

    pub(super) async fn committed(&self, topic: &str) -> Result<Vec<Option<i64>>> {
        let n = self.log.partition_count(topic).await?;
        let consumer = self.consumer.clone();
        let timeout = self.log.timeout();
        let topic = topic.to_owned();
        spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for p in 0..n as i32 {
                tpl.add_partition(&topic, p);
            }
            let c = consumer.committed_offsets(tpl, timeout)?;
            let by_partition: HashMap<i32, Option<i64>> = c
                .elements()
                .iter()
                .map(|e| {
                    (
                        e.partition(),
                        match e.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        },
                    )
                })
                .collect();
            Ok((0..n as i32)
                .map(|p| by_partition.get(&p).copied().flatten())
                .collect())
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_tune_the_producer_but_never_its_guarantees() {
        let mut user = ClientConfig::new();
        user.set("acks", "1")
            .set("enable.idempotence", "false")
            .set("linger.ms", "50");
        let c = producer_config(user);
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("partitioner"), Some("murmur2_random"));
        assert_eq!(c.get("linger.ms"), Some("50"));
        assert_eq!(c.get("compression.type"), Some("lz4"));
        assert_eq!(c.get("message.timeout.ms"), Some("30000"));
    }
}
