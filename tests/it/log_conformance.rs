//! The log port's conformance suite: the same test bodies run against real Kafka and against the
//! embedded adapter.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use thingtotal_common::log::{
    positions_after, Consumed, EmbeddedLog, EmbeddedOptions, GroupOptions, Log, Record, TopicSpec,
};

const WAIT: Duration = Duration::from_secs(60);

fn spec(name: &str, partitions: i32) -> TopicSpec {
    TopicSpec {
        name: name.to_owned(),
        partitions,
        replication: 1,
        compacted: false,
        max_message_bytes: None,
        ..TopicSpec::default()
    }
}

fn group(name: &str, topic: &str, transactional: bool) -> GroupOptions {
    GroupOptions {
        group: name.to_owned(),
        topics: vec![topic.to_owned()],
        transactional,
        instance_id: "0".into(),
    }
}

fn embedded() -> (Log, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(EmbeddedOptions {
        dir: dir.path().to_owned(),
        retention: Duration::from_secs(3600),
    })
    .unwrap();
    (Log::Embedded(log), dir)
}

/// Reads a whole partition from `from` until `count` records arrived.
async fn read_all(
    log: &Log,
    topic: &str,
    partition: i32,
    from: i64,
    count: usize,
) -> Vec<Consumed> {
    let mut reader = log.reader(topic, partition, from).await.unwrap();
    read_n(&mut reader, count).await
}

/// Polls a group until `count` records arrived.
async fn poll_all(
    consumer: &mut thingtotal_common::log::GroupConsumer,
    count: usize,
) -> Vec<Consumed> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while out.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "polled {} of {count}",
            out.len()
        );
        out.extend(
            consumer
                .poll(count - out.len(), Duration::from_millis(200))
                .await
                .unwrap(),
        );
    }
    out
}

async fn append_and_acknowledge(log: Log, prefix: &str) {
    let topic = format!("{prefix}.append");
    log.ensure_topics(&[spec(&topic, 3)]).await.unwrap();
    // Creating again is a no-op.
    log.ensure_topics(&[spec(&topic, 3)]).await.unwrap();
    let records: Vec<Record> = (0..30)
        .map(|i| {
            Record::new(format!("key-{}", i % 5), format!("value-{i}")).header("n", format!("{i}"))
        })
        .collect();
    let positions = log.append(&topic, records.clone()).await.unwrap();
    assert_eq!(positions.len(), 30);
    // Same key, same partition, consecutive offsets in request order.
    let mut by_key: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
    for (i, p) in positions.iter().enumerate() {
        by_key
            .entry(format!("key-{}", i % 5))
            .or_default()
            .push((p.partition, p.offset));
    }
    for (key, ps) in &by_key {
        assert!(
            ps.iter().all(|p| p.0 == ps[0].0),
            "{key} spread over partitions: {ps:?}"
        );
        assert!(
            ps.windows(2).all(|w| w[1].1 > w[0].1),
            "{key} out of order: {ps:?}"
        );
    }
    let ends = log.end_offsets(&topic).await.unwrap();
    assert_eq!(ends.len(), 3);
    assert_eq!(ends.iter().sum::<i64>(), 30);
    for (p, end) in ends.iter().enumerate() {
        let last = positions
            .iter()
            .filter(|x| x.partition == p as i32)
            .map(|x| x.offset)
            .max();
        assert_eq!(last.map_or(0, |o| o + 1), *end);
    }
}

async fn read_from_an_offset(log: Log, prefix: &str) {
    let topic = format!("{prefix}.read");
    log.ensure_topics(&[spec(&topic, 1)]).await.unwrap();
    let mut records: Vec<Record> = (0..10)
        .map(|i| {
            Record::new("k", format!("{{\"i\":{i}}}"))
                .header("tt.entry_id", format!("id-{i}"))
                .header("tt.source", "http")
                .timestamp_ms(1_700_000_000_000 + i)
        })
        .collect();
    records.push(Record {
        key: Some(Bytes::from_static(b"k")),
        value: None,
        headers: vec![],
        timestamp_ms: Some(1_700_000_000_010),
    });
    log.append(&topic, records.clone()).await.unwrap();
    let got = read_all(&log, &topic, 0, 4, 7).await;
    let offsets: Vec<i64> = got.iter().map(|c| c.offset).collect();
    assert_eq!(offsets, (4..11).collect::<Vec<_>>());
    for c in &got {
        let r = &records[c.offset as usize];
        assert_eq!(c.topic, topic);
        assert_eq!(c.key, r.key);
        assert_eq!(c.value, r.value);
        assert_eq!(c.headers, r.headers);
        assert_eq!(Some(c.timestamp_ms), r.timestamp_ms);
    }
    assert_eq!(
        got.last().unwrap().value,
        None,
        "a tombstone reads back as no value"
    );
    // A reader at the end waits, then sees what is appended later.
    let mut reader = log.reader(&topic, 0, 11).await.unwrap();
    assert!(reader
        .read(10, Duration::from_millis(300))
        .await
        .unwrap()
        .is_empty());
    log.append(&topic, vec![Record::new("k", "late")])
        .await
        .unwrap();
    let mut late = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while late.is_empty() && tokio::time::Instant::now() < deadline {
        late = reader.read(10, Duration::from_millis(300)).await.unwrap();
    }
    assert_eq!(late[0].offset, 11);
    assert_eq!(late[0].value.as_deref(), Some(&b"late"[..]));
}

/// Reads from `reader` until `count` records arrived.
async fn read_n(reader: &mut thingtotal_common::log::Reader, count: usize) -> Vec<Consumed> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while out.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "read {} of {count}",
            out.len()
        );
        out.extend(
            reader
                .read(count - out.len(), Duration::from_millis(500))
                .await
                .unwrap(),
        );
    }
    out
}

async fn a_reader_moves_between_partitions(log: Log, prefix: &str) {
    let topic = format!("{prefix}.seek");
    log.ensure_topics(&[spec(&topic, 2)]).await.unwrap();
    // Two keys that land on different partitions, found on a topic of as many partitions.
    let probe = format!("{prefix}.seek-probe");
    log.ensure_topics(&[spec(&probe, 2)]).await.unwrap();
    let keys: Vec<String> = (0..16).map(|k| format!("k{k}")).collect();
    let at = log
        .append(
            &probe,
            keys.iter().map(|k| Record::new(k.clone(), "")).collect(),
        )
        .await
        .unwrap();
    let other = (1..keys.len())
        .find(|&k| at[k].partition != at[0].partition)
        .expect("16 keys on one partition of two");
    let records: Vec<Record> = (0..200)
        .map(|i| {
            Record::new(
                keys[if i % 2 == 0 { 0 } else { other }].clone(),
                format!("{i}"),
            )
        })
        .collect();
    let positions = log.append(&topic, records).await.unwrap();
    let (pa, pb) = (positions[0].partition, positions[1].partition);
    assert_ne!(pa, pb);
    let value = |c: &Consumed| String::from_utf8(c.value.clone().unwrap().to_vec()).unwrap();

    // Read a few of a's partition (the reader may have fetched far more), then move.
    let mut reader = log.reader(&topic, pa, 0).await.unwrap();
    let first = read_n(&mut reader, 5).await;
    assert_eq!(value(&first[0]), "0");
    reader.seek(pb, 90).unwrap();
    let got = read_n(&mut reader, 10).await;
    assert!(
        got.iter().all(|c| c.partition == pb),
        "only b's partition after the move"
    );
    assert_eq!(
        got.iter().map(|c| c.offset).collect::<Vec<_>>(),
        (90..100).collect::<Vec<_>>()
    );
    assert_eq!(value(&got[0]), "181");
    // And back, to an offset before everything read so far: nothing fetched before the move.
    reader.seek(pa, 1).unwrap();
    let got = read_n(&mut reader, 99).await;
    assert_eq!(
        got.iter().map(|c| c.offset).collect::<Vec<_>>(),
        (1..100).collect::<Vec<_>>()
    );
    assert!(got.iter().all(|c| c.partition == pa));
    assert_eq!(value(&got[0]), "2");
}

async fn group_positions(log: Log, prefix: &str) {
    let topic = format!("{prefix}.group");
    log.ensure_topics(&[spec(&topic, 2)]).await.unwrap();
    let records: Vec<Record> = (0..20)
        .map(|i| Record::new(format!("{}", i % 4), format!("{i}")))
        .collect();
    log.append(&topic, records).await.unwrap();
    let g = format!("{prefix}-g");
    {
        let mut c = log.consumer(group(&g, &topic, false)).await.unwrap();
        assert_eq!(c.committed(&topic).await.unwrap(), vec![None, None]);
        let first = poll_all(&mut c, 20).await;
        let values: std::collections::BTreeSet<String> = first
            .iter()
            .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
            .collect();
        assert_eq!(values.len(), 20, "every record exactly once");
        // Commit only what came before the middle of each partition, then rewind: the rest
        // comes again.
        let half: Vec<Consumed> = first
            .iter()
            .filter(|r| {
                let n = first.iter().filter(|x| x.partition == r.partition).count() as i64;
                r.offset < n / 2
            })
            .cloned()
            .collect();
        let positions = positions_after(&half);
        c.commit(&positions).await.unwrap();
        let mut committed = c.committed(&topic).await.unwrap();
        committed.sort();
        let mut expected: Vec<Option<i64>> = positions.iter().map(|p| Some(p.offset)).collect();
        expected.sort();
        assert_eq!(committed, expected);
        c.rewind().await.unwrap();
        let again = poll_all(&mut c, 20 - half.len()).await;
        let mut again_offsets: Vec<(i32, i64)> =
            again.iter().map(|r| (r.partition, r.offset)).collect();
        again_offsets.sort();
        let mut rest: Vec<(i32, i64)> = first
            .iter()
            .filter(|r| !half.contains(r))
            .map(|r| (r.partition, r.offset))
            .collect();
        rest.sort();
        assert_eq!(
            again_offsets, rest,
            "a rewind resumes at the committed positions"
        );
    }
    // A new member of the group starts where the group committed.
    let mut c = log.consumer(group(&g, &topic, false)).await.unwrap();
    let resumed = poll_all(&mut c, 10).await;
    assert_eq!(resumed.len(), 10);
    assert!(c
        .poll(10, Duration::from_millis(500))
        .await
        .unwrap()
        .is_empty());
}

/// The sum of the group's committed positions over `topic`'s partitions.
async fn committed_total(c: &thingtotal_common::log::GroupConsumer, topic: &str) -> i64 {
    c.committed(topic)
        .await
        .unwrap()
        .into_iter()
        .flatten()
        .sum()
}

async fn produce_and_commit_atomically(log: Log, prefix: &str) {
    let input = format!("{prefix}.in");
    let output = format!("{prefix}.out");
    log.ensure_topics(&[spec(&input, 2), spec(&output, 2)])
        .await
        .unwrap();
    log.append(
        &input,
        (0..50)
            .map(|i| Record::new(format!("{}", i % 7), format!("{i}")))
            .collect(),
    )
    .await
    .unwrap();
    let g = format!("{prefix}-copy");
    // A call that fails leaves nothing behind: its output is never visible and no position
    // moves. One of its records goes to a topic that cannot exist.
    {
        let mut c = log.consumer(group(&g, &input, true)).await.unwrap();
        let batch = poll_all(&mut c, 50).await;
        let out = vec![
            (output.clone(), Record::new("0", "orphan")),
            (format!("{prefix}.no such topic!"), Record::new("0", "x")),
        ];
        assert!(c
            .produce_and_commit(out, &positions_after(&batch))
            .await
            .is_err());
        let committed = committed_total(&c, &input).await;
        assert_eq!(committed, 0, "a failed call committed positions");
    }
    {
        let mut c = log.consumer(group(&g, &input, true)).await.unwrap();
        let batch = poll_all(&mut c, 50).await;
        let out: Vec<(String, Record)> = batch
            .iter()
            .map(|r| {
                let v = format!(
                    "copied-{}",
                    String::from_utf8_lossy(r.value.as_deref().unwrap())
                );
                (
                    output.clone(),
                    Record::new(r.key.clone().unwrap(), v).header("from", format!("{}", r.offset)),
                )
            })
            .collect();
        c.produce_and_commit(out, &positions_after(&batch))
            .await
            .unwrap();
        let committed = committed_total(&c, &input).await;
        assert_eq!(
            committed, 50,
            "the consumed positions were committed with the output"
        );
    }
    // A read_committed reader sees every output once.
    let mut readers = Vec::new();
    for p in 0..2 {
        readers.push(log.reader(&output, p, 0).await.unwrap());
    }
    let mut values = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while values.len() < 50 && tokio::time::Instant::now() < deadline {
        for r in &mut readers {
            let batch = r.read(100, Duration::from_millis(200)).await.unwrap();
            values.extend(
                batch
                    .into_iter()
                    .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap()),
            );
        }
    }
    for r in &mut readers {
        assert!(r
            .read(100, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty());
    }
    values.sort();
    // Every copy once, and not the failed call's output.
    let mut expected: Vec<String> = (0..50).map(|i| format!("copied-{i}")).collect();
    expected.sort();
    assert_eq!(values, expected);
    // The group resumes after the committed batch: nothing is consumed twice.
    let mut c = log.consumer(group(&g, &input, true)).await.unwrap();
    assert!(c.poll(10, Duration::from_secs(3)).await.unwrap().is_empty());
}

async fn offsets_for_time(log: Log, prefix: &str) {
    let topic = format!("{prefix}.time");
    log.ensure_topics(&[spec(&topic, 1)]).await.unwrap();
    let base = 1_700_000_000_000;
    log.append(
        &topic,
        (0..5)
            .map(|i| Record::new("k", format!("{i}")).timestamp_ms(base + i * 1000))
            .collect(),
    )
    .await
    .unwrap();
    assert_eq!(
        log.offsets_for_time(&topic, base - 1).await.unwrap(),
        vec![0]
    );
    assert_eq!(log.offsets_for_time(&topic, base).await.unwrap(), vec![0]);
    assert_eq!(
        log.offsets_for_time(&topic, base + 1).await.unwrap(),
        vec![1]
    );
    assert_eq!(
        log.offsets_for_time(&topic, base + 2000).await.unwrap(),
        vec![2]
    );
    assert_eq!(
        log.offsets_for_time(&topic, base + 4500).await.unwrap(),
        vec![5]
    );
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod kafka {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let prefix = thingtotal_testkit::random_prefix(stringify!($name));
                    super::$name(thingtotal_testkit::kafka(), &prefix).await;
                }
            )*
        }
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (log, _dir) = super::embedded();
                    super::$name(log, "t").await;
                }
            )*
        }
    };
}

conformance!(
    append_and_acknowledge,
    read_from_an_offset,
    a_reader_moves_between_partitions,
    group_positions,
    produce_and_commit_atomically,
    offsets_for_time,
);

/// The size limits hold on Kafka: a record as large as the producers' limit (by
/// `Record::wire_size`) is taken by both kinds of producer and by a topic created with the limits,
/// even above the broker's default limit (1,048,588 bytes) and when it does not compress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_takes_records_as_large_as_the_size_limits_allow() {
    use thingtotal_common::limits::SizeLimits;
    use thingtotal_common::log::{KafkaLog, KafkaOptions};
    let limits = SizeLimits::new(2 * 1024 * 1024);
    let log = Log::Kafka(
        KafkaLog::connect(KafkaOptions {
            limits,
            ..KafkaOptions::new(thingtotal_testkit::services().kafka_brokers.clone())
        })
        .unwrap(),
    );
    let topic = format!("{}.t", thingtotal_testkit::random_prefix("sizes"));
    log.ensure_topics(&[TopicSpec {
        max_message_bytes: Some(limits.max_topic_message_bytes()),
        ..spec(&topic, 1)
    }])
    .await
    .unwrap();
    // Bytes that lz4 cannot shrink, so the batch is as large as the record.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u8
    };
    let mut largest = |n: u8| {
        let mut r = Record::new("k", Vec::new()).header("n", vec![n]);
        let value: Vec<u8> = (0..limits.max_record_bytes() - r.wire_size())
            .map(|_| noise())
            .collect();
        r.value = Some(Bytes::from(value));
        assert_eq!(r.wire_size(), limits.max_record_bytes());
        r
    };
    let (first, second) = (largest(0), largest(1));
    log.append(&topic, vec![first]).await.unwrap();
    let mut c = log.consumer(group(&topic, &topic, true)).await.unwrap();
    c.produce_and_commit(vec![(topic.clone(), second)], &[])
        .await
        .unwrap();
    let read = read_all(&log, &topic, 0, 0, 2).await;
    assert_eq!(read[1].header("n").map(|h| h.to_vec()), Some(vec![1]));
}
