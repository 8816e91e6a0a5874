//! Kafka for the benchmarks: client settings, prefilling a topic, deleting a run's topics, and
//! watching a consumer group work through a topic. Producers take the product's settings from
//! `thingtotal_common::log::producer_config`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use thingtotal_common::limits::SizeLimits;
use thingtotal_common::log::producer_config;

/// A client configuration for `brokers`.
pub(crate) fn config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("client.id", "thingtotal-bench");
    c
}

/// A record to prefill.
#[derive(Debug, Clone)]
pub(crate) struct Fill {
    pub(crate) key: Bytes,
    pub(crate) value: Bytes,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) timestamp_ms: i64,
}

struct Count {
    failed: Arc<AtomicU64>,
}

impl ClientContext for Count {}

impl ProducerContext for Count {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Writes `n` records made by `make(i)` to `topic` as fast as Kafka takes them, acknowledged
/// (`acks=all`), and returns how long it took. It is set-up, not a measurement.
pub(crate) fn prefill(
    brokers: &str,
    topic: &str,
    n: u64,
    make: impl Fn(u64) -> Fill,
) -> anyhow::Result<Duration> {
    let failed = Arc::new(AtomicU64::new(0));
    let mut c = producer_config(config(brokers), SizeLimits::default());
    c.set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000");
    let producer: ThreadedProducer<Count> = c.create_with_context(Count {
        failed: failed.clone(),
    })?;
    let started = Instant::now();
    for i in 0..n {
        let f = make(i);
        let headers = f.headers.iter().fold(
            OwnedHeaders::new_with_capacity(f.headers.len()),
            |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                })
            },
        );
        let mut record = BaseRecord::to(topic)
            .key(f.key.as_ref())
            .payload(f.value.as_ref())
            .headers(headers)
            .timestamp(f.timestamp_ms);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => bail!("prefilling {topic}: {e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!("prefilling {topic}: {failed} of {n} records were not acknowledged");
    }
    Ok(started.elapsed())
}

/// Deletes `topics` (the end of a run: the disk is shared).
pub(crate) async fn delete_topics(brokers: &str, topics: &[String]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = config(brokers).create()?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin.delete_topics(&names, &opts).await? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((name, code)) => bail!("deleting topic {name}: {code}"),
        }
    }
    Ok(())
}

/// Creates `topic` with `partitions` (for a baseline's output).
pub(crate) async fn create_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<()> {
    use rdkafka::admin::{NewTopic, TopicReplication};
    let admin: AdminClient<DefaultClientContext> = config(brokers).create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let t = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for r in admin.create_topics([&t], &opts).await? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("creating topic {name}: {code}"),
        }
    }
    Ok(())
}

/// Reads a group's committed offsets and a topic's end offsets, without joining the group.
pub(crate) struct GroupWatch {
    consumer: BaseConsumer,
    topic: String,
    partitions: i32,
}

impl std::fmt::Debug for GroupWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupWatch")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl GroupWatch {
    pub(crate) fn new(brokers: &str, group: &str, topic: &str) -> anyhow::Result<Self> {
        // read_uncommitted: with librdkafka's default (read_committed) the offset fetch asks for
        // stable offsets only, and a validator that always has a transaction open never has any.
        let consumer: BaseConsumer = config(brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_uncommitted")
            .create()?;
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let partitions = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map(|t| t.partitions().len() as i32)
            .filter(|n| *n > 0)
            .with_context(|| format!("topic {topic} has no partitions"))?;
        Ok(Self {
            consumer,
            topic: topic.to_owned(),
            partitions,
        })
    }

    /// The sum of the topic's end offsets.
    pub(crate) fn end(&self) -> anyhow::Result<i64> {
        let mut sum = 0;
        for p in 0..self.partitions {
            let (_, high) =
                self.consumer
                    .fetch_watermarks(&self.topic, p, Duration::from_secs(10))?;
            sum += high;
        }
        Ok(sum)
    }

    /// The sum of the group's committed offsets (0 where it has committed nothing), or `None`
    /// if the broker could not say for some partition this time.
    pub(crate) fn committed(&self) -> anyhow::Result<Option<i64>> {
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions {
            tpl.add_partition(&self.topic, p);
        }
        let c = self
            .consumer
            .committed_offsets(tpl, Duration::from_secs(10))?;
        let mut sum = 0;
        for e in c.elements() {
            if e.error().is_err() {
                return Ok(None);
            }
            if let Offset::Offset(o) = e.offset() {
                sum += o;
            }
        }
        Ok(Some(sum))
    }
}

/// How fast a group worked through a prefilled topic.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Drained {
    /// Records consumed between the group's first commit and its last.
    pub(crate) records: i64,
    pub(crate) seconds: f64,
    /// CPU seconds the consuming process used over the same span, if it is known.
    pub(crate) cpu_seconds: Option<f64>,
}

impl Drained {
    pub(crate) fn rate(&self) -> f64 {
        self.records as f64 / self.seconds
    }
}

/// Watches `group` consume `topic` until its committed offsets reach the end, and measures the
/// rate from its first commit to its last, so that start-up and joining the group do not count.
/// `pid` names the consuming process, for its CPU time. Gives up after `stall` without progress.
pub(crate) fn watch_drain(
    watch: &GroupWatch,
    pid: Option<&str>,
    stall: Duration,
) -> anyhow::Result<Drained> {
    let end = watch.end()?;
    let cpu = || pid.and_then(crate::env::cpu_seconds);
    let mut first: Option<(Instant, i64, Option<f64>)> = None;
    let mut last_progress = (Instant::now(), -1);
    loop {
        if let Some(pid) = pid {
            if !crate::env::alive(pid) {
                bail!("the consuming process {pid} exited (see its log)");
            }
        }
        let Some(committed) = watch.committed()? else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let now = Instant::now();
        if committed > 0 && first.is_none() {
            first = Some((now, committed, cpu()));
        }
        if committed >= end {
            let (t0, c0, cpu0) = first.expect("set above");
            if committed == c0 {
                bail!(
                    "the group consumed all {end} records in its first commit: prefill more \
                     to measure a rate"
                );
            }
            return Ok(Drained {
                records: committed - c0,
                seconds: (now - t0).as_secs_f64(),
                cpu_seconds: cpu().zip(cpu0).map(|(a, b)| a - b),
            });
        }
        if committed != last_progress.1 {
            last_progress = (now, committed);
        } else if now - last_progress.0 > stall {
            bail!(
                "the group made no progress for {stall:?}: {committed} of {end} records committed"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
