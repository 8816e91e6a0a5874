//! The topics a part creates on Kafka, and the warnings it gives for existing topics weaker than
//! that.

use std::path::Path;

use thingtotal_common::limits::SizeLimits;
use thingtotal_common::log::{Log, TopicSpec};
use thingtotal_common::topics::Topics;
use thingtotal_testkit::{
    free_port, kafka, part_command, random_prefix, services, thingtotal_bin, Process,
};

/// Starts `thingtotal validator` on `prefix` with its output in `log`.
async fn validator(prefix: &str, log: &Path) -> Process {
    let port = free_port().unwrap();
    let cmd = part_command(
        &thingtotal_bin().unwrap(),
        "validator",
        &services().kafka_brokers,
        prefix,
        port,
    );
    Process::spawn("validator", cmd, port, Some(log))
        .unwrap()
        .healthy()
        .await
        .unwrap()
}

fn kafka_log() -> thingtotal_common::log::KafkaLog {
    match kafka() {
        Log::Kafka(k) => k,
        Log::Embedded(_) => unreachable!("kafka() is Kafka"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_with_the_defaults_and_weaker_ones_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let k = kafka_log();
    let thirty_days = (30 * 24 * 3_600_000i64).to_string();
    let max_bytes = SizeLimits::default().max_topic_message_bytes().to_string();

    // Fresh topics: the entry topics keep 30 days and take the largest record; the streams
    // topic is compacted and kept whole; three replicas with two in sync on a cluster of three
    // (`scripts/services up --brokers 3`), one on a single broker.
    let replicas = kafka().broker_count().await.unwrap().min(3);
    let prefix = random_prefix("topics");
    let log = dir.path().join("fresh.log");
    let part = validator(&prefix, &log).await;
    let t = Topics::new(&prefix);
    for name in [&t.raw, &t.valid, &t.dlq] {
        let s = k.describe_topic(name).await.unwrap();
        assert_eq!(s.configs["retention.ms"], thirty_days, "{name}");
        assert_eq!(s.configs["max.message.bytes"], max_bytes, "{name}");
        assert_eq!(s.replication, replicas, "{name}");
        let in_sync = if replicas == 3 { "2" } else { "1" };
        assert_eq!(s.configs["min.insync.replicas"], in_sync, "{name}");
    }
    let streams = k.describe_topic(&t.streams).await.unwrap();
    assert_eq!(streams.configs["cleanup.policy"], "compact");
    assert_ne!(streams.configs["retention.ms"], thirty_days);
    drop(part);
    let text = std::fs::read_to_string(&log).unwrap();
    let own = [&t.streams, &t.raw, &t.valid, &t.dlq];
    assert!(
        !text
            .lines()
            .any(|l| l.contains("WARN") && own.iter().any(|n| l.contains(n.as_str()))),
        "no warning about its own topics: {text}"
    );

    // Topics made by someone else, weaker: each weakness is named at start-up.
    let prefix = random_prefix("weak-topics");
    let t = Topics::new(&prefix);
    let weak = |name: &str| TopicSpec {
        name: name.to_owned(),
        partitions: 2,
        replication: 1,
        retention_ms: Some(3_600_000),
        max_message_bytes: Some(100_000),
        ..TopicSpec::default()
    };
    kafka()
        .ensure_topics(&[weak(&t.streams), weak(&t.raw), weak(&t.valid), weak(&t.dlq)])
        .await
        .unwrap();
    let log = dir.path().join("weak.log");
    let part = validator(&prefix, &log).await;
    drop(part);
    let text = std::fs::read_to_string(&log).unwrap();
    for name in [&t.raw, &t.valid, &t.dlq] {
        let about = |what: &str| {
            text.lines()
                .any(|l| l.contains("WARN") && l.contains(name.as_str()) && l.contains(what))
        };
        assert!(
            about(&format!("retention.ms=3600000, shorter than {thirty_days}")),
            "{name}: {text}"
        );
        assert!(
            about(&format!("max.message.bytes=100000, less than {max_bytes}")),
            "{name}: {text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.contains(t.streams.as_str()) && l.contains("not compacted")),
        "{text}"
    );
}
