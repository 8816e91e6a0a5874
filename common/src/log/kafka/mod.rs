//! The Kafka adapter of the log port, on rdkafka.
//!
//! One idempotent producer (`acks=all`) per process serves every append. Group consumers commit
//! explicitly and read with `isolation.level=read_committed`. A transactional group consumer owns
//! its own transactional producer, and sends the consumer's group metadata with the offsets, so a
//! member that lost its partitions in a rebalance is fenced rather than committing twice.

mod config;
mod group;
mod message;

use config::with_defaults;
pub use config::{producer_config, transactional_producer_config};
use group::GroupContext;
pub use group::KafkaGroup;
use message::{future_record, receive};

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::spawn_blocking;
use tracing::{debug, info, warn};

use super::{Consumed, GroupOptions, Position, Record, TopicSpec};
use crate::limits::SizeLimits;
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
    /// The size limits the producers' `message.max.bytes` follows.
    pub limits: SizeLimits,
}

impl KafkaOptions {
    /// Options for `brokers` with nothing passed through and the default size limits.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            options: Vec::new(),
            request_timeout: Duration::from_secs(10),
            limits: SizeLimits::default(),
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
        let producer: FutureProducer =
            producer_config(options.client_config(), options.limits).create()?;
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
        let configs: Vec<Vec<(&str, String)>> = specs
            .iter()
            .map(|s| {
                let mut c = Vec::new();
                if s.compacted {
                    c.push(("cleanup.policy", "compact".to_owned()));
                }
                if let Some(max) = s.max_message_bytes {
                    c.push(("max.message.bytes", max.to_string()));
                }
                if let Some(ms) = s.retention_ms {
                    c.push(("retention.ms", ms.to_string()));
                }
                if let Some(n) = s.min_insync_replicas {
                    c.push(("min.insync.replicas", n.to_string()));
                }
                c
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
                    t = t.set(k, v.as_str());
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
        for s in specs {
            for weakness in self.weaknesses(s).await? {
                warn!(topic = %s.name, "{weakness}");
            }
        }
        Ok(())
    }

    /// How many brokers the cluster has.
    pub(super) async fn broker_count(&self) -> Result<usize> {
        let this = self.clone();
        spawn_blocking(move || {
            let md = this.inner.meta.fetch_metadata(None, this.timeout())?;
            Ok(md.brokers().len())
        })
        .await?
    }

    /// The replication factor and the settings of an existing topic, as the brokers report them.
    pub async fn describe_topic(&self, topic: &str) -> Result<TopicSettings> {
        let this = self.clone();
        let name = topic.to_owned();
        let replication = spawn_blocking(move || -> Result<usize> {
            let md = this
                .inner
                .meta
                .fetch_metadata(Some(&name), this.timeout())?;
            Ok(md
                .topics()
                .iter()
                .find(|t| t.name() == name)
                .map(|t| {
                    t.partitions()
                        .iter()
                        .map(|p| p.replicas().len())
                        .min()
                        .unwrap_or(0)
                })
                .unwrap_or(0))
        })
        .await??;
        let opts = AdminOptions::new().request_timeout(Some(self.timeout()));
        let results = self
            .inner
            .admin
            .describe_configs([&ResourceSpecifier::Topic(topic)], &opts)
            .await?;
        let mut configs = std::collections::HashMap::new();
        for r in results {
            let resource = r.map_err(|code| {
                Error::Topic(topic.to_owned(), format!("settings not readable: {code}"))
            })?;
            for e in resource.entries {
                if let Some(v) = e.value {
                    configs.insert(e.name, v);
                }
            }
        }
        Ok(TopicSettings {
            replication,
            configs,
        })
    }

    /// What of `spec` the existing topic falls short of, in words fit for a warning.
    async fn weaknesses(&self, spec: &TopicSpec) -> Result<Vec<String>> {
        let t = self.describe_topic(&spec.name).await?;
        let number = |name: &str| t.configs.get(name).and_then(|v| v.parse::<i64>().ok());
        let mut out = Vec::new();
        if (t.replication as i32) < spec.replication {
            out.push(format!(
                "replication factor {}, fewer than the {} this part asks for: losing a broker can \
                 lose acknowledged entries",
                t.replication, spec.replication
            ));
        }
        if let (Some(want), Some(have)) = (spec.min_insync_replicas, number("min.insync.replicas"))
        {
            if have < i64::from(want) {
                out.push(format!(
                    "min.insync.replicas={have}, less than {want}: an entry is acknowledged \
                     before a second replica holds it"
                ));
            }
        }
        if let (Some(want), Some(have)) = (spec.retention_ms, number("retention.ms")) {
            if have >= 0 && have < want {
                out.push(format!(
                    "retention.ms={have}, shorter than {want}: records a part has not consumed \
                     after that long are deleted (see --kafka-retention-hours)"
                ));
            }
        }
        if let (Some(want), Some(have)) = (spec.max_message_bytes, number("max.message.bytes")) {
            if have < want as i64 {
                out.push(format!(
                    "max.message.bytes={have}, less than {want}: the largest entries \
                     --max-entry-bytes allows would be refused by the broker"
                ));
            }
        }
        if spec.compacted
            && !t
                .configs
                .get("cleanup.policy")
                .is_some_and(|p| p.contains("compact"))
        {
            out.push(
                "not compacted (cleanup.policy): stream records older than the retention \
                 would be deleted, and the streams with them"
                    .to_owned(),
            );
        }
        Ok(out)
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
        let mut reader = KafkaReader {
            consumer: cfg.create()?,
            topic: topic.to_owned(),
            partition,
        };
        reader.seek(partition, offset)?;
        Ok(reader)
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
        let mut cfg = transactional_producer_config(
            self.inner.options.client_config(),
            self.inner.options.limits,
        );
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

/// An existing topic's replication factor and settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSettings {
    /// The fewest replicas any of its partitions has.
    pub replication: usize,
    /// Every setting the brokers report, by name (`retention.ms`, `min.insync.replicas`, …).
    pub configs: std::collections::HashMap<String, String>,
}

/// Reads one partition without joining a group.
pub struct KafkaReader {
    consumer: StreamConsumer,
    topic: String,
    /// The partition assigned; records of any other (fetched before a move) are dropped.
    partition: i32,
}

impl std::fmt::Debug for KafkaReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaReader").finish_non_exhaustive()
    }
}

impl KafkaReader {
    /// A new assignment replaces the old one; librdkafka drops what it had fetched for the old
    /// one (its fetch queues are versioned), and `read` drops any record of another partition.
    pub(super) fn seek(&mut self, partition: i32, offset: i64) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition, Offset::Offset(offset))?;
        self.consumer.assign(&tpl)?;
        self.partition = partition;
        Ok(())
    }

    pub(super) async fn read(&mut self, max: usize, wait: Duration) -> Result<Vec<Consumed>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Return as soon as anything arrived: the registry wants changes without delay.
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let mut out = receive(&self.consumer, 1, left).await?;
            if out.is_empty() {
                return Ok(out);
            }
            out.append(&mut receive(&self.consumer, max.saturating_sub(1), Duration::ZERO).await?);
            out.retain(|c| c.partition == self.partition);
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }
}
