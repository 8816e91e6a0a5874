//! Append throughput of the embedded log: 200-byte records, acknowledged only once fsynced.
//!
//! Each scenario runs `concurrency` tasks, each appending `batch` records per call and waiting
//! for the acknowledgement before the next call, for a fixed time. Group commit lets concurrent
//! appends share one fsync, so throughput should grow with concurrency. Run with
//! `cargo bench --bench embedded_log` (set `BENCH_SECONDS` to change the duration).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thingtotal_common::log::{EmbeddedLog, EmbeddedOptions, Log, Record, TopicSpec};

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!("embedded log append, 200-byte records, {seconds} s per scenario");
    println!(
        "{:>11} {:>6} {:>14} {:>12}",
        "concurrency", "batch", "entries/s", "appends/s"
    );
    for (concurrency, batch) in [(1, 1), (16, 1), (64, 1), (256, 1), (4, 100), (4, 1000)] {
        let (entries, appends) = rt.block_on(run(concurrency, batch, Duration::from_secs(seconds)));
        println!(
            "{concurrency:>11} {batch:>6} {:>14.0} {:>12.0}",
            entries / seconds as f64,
            appends / seconds as f64
        );
    }
}

async fn run(concurrency: usize, batch: usize, duration: Duration) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::Embedded(
        EmbeddedLog::open(EmbeddedOptions {
            dir: dir.path().to_owned(),
            retention: Duration::from_secs(3600),
        })
        .unwrap(),
    );
    let topic = "bench.raw";
    log.ensure_topics(&[TopicSpec {
        name: topic.into(),
        partitions: 6,
        replication: 1,
        compacted: false,
        max_message_bytes: None,
        ..TopicSpec::default()
    }])
    .await
    .unwrap();
    let value = bytes::Bytes::from(vec![b'x'; 200]);
    let entries = Arc::new(AtomicU64::new(0));
    let appends = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let log = log.clone();
            let value = value.clone();
            let (entries, appends) = (entries.clone(), appends.clone());
            tokio::spawn(async move {
                let key = bytes::Bytes::from(format!("stream-{t}"));
                while Instant::now() < end {
                    let records = (0..batch)
                        .map(|_| Record::new(key.clone(), value.clone()))
                        .collect();
                    log.append(topic, records).await.unwrap();
                    entries.fetch_add(batch as u64, Ordering::Relaxed);
                    appends.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (
        entries.load(Ordering::Relaxed) as f64,
        appends.load(Ordering::Relaxed) as f64,
    )
}
