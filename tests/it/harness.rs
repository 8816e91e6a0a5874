//! What only these integration tests need beyond `thingtotal_testkit`: reading topics back
//! whole, Prometheus metrics, and Python with duckdb and pyarrow for the archive.
//!
//! The kit finds the services: their addresses come from the environment (`scripts/services
//! env` prints them), or Kafka and InfluxDB are started once per test process with
//! testcontainers where a Docker engine answers. If neither is possible the test fails and says
//! how to start the services: a test never passes without the services it checks.

use std::time::Duration;

use reqwest::Client;
use serde_json::Value;
use thingtotal_common::log::Consumed;
use thingtotal_common::topics::Topics;
use thingtotal_testkit::kafka;

/// Reads every record of `entries.raw` until `count` arrived, ordered by partition and offset.
pub(crate) async fn raw_entries(prefix: &str, count: usize) -> Vec<Consumed> {
    let log = kafka();
    let topic = Topics::new(prefix).raw;
    let partitions = log.end_offsets(&topic).await.unwrap().len();
    let mut readers = Vec::new();
    for p in 0..partitions {
        readers.push(log.reader(&topic, p as i32, 0).await.unwrap());
    }
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while out.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {count} raw entries",
            out.len()
        );
        for r in &mut readers {
            out.extend(r.read(1000, Duration::from_millis(100)).await.unwrap());
        }
    }
    out.sort_by_key(|c| (c.partition, c.offset));
    out
}

/// Reads a whole topic (read_committed) until `count` records arrived, then checks that no more
/// come.
pub(crate) async fn read_topic(topic: &str, count: usize, within: Duration) -> Vec<Consumed> {
    let log = kafka();
    let partitions = log.end_offsets(topic).await.unwrap().len();
    let mut readers = Vec::new();
    for p in 0..partitions {
        readers.push(log.reader(topic, p as i32, 0).await.unwrap());
    }
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while out.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{topic}: {} of {count} records",
            out.len()
        );
        for r in &mut readers {
            out.extend(r.read(10_000, Duration::from_millis(50)).await.unwrap());
        }
    }
    for r in &mut readers {
        let extra = r.read(100, Duration::from_millis(500)).await.unwrap();
        assert!(extra.is_empty(), "{topic}: more than {count} records");
    }
    out
}

/// The sum of the samples of the Prometheus metric `name` at `{base}/metrics` whose labels
/// contain every one of `labels` (each written as `key="value"`).
pub(crate) async fn metric(base: &str, name: &str, labels: &[&str]) -> f64 {
    let text = Client::new()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Runs `sql` with duckdb over the archive (Hive partitioning) and returns its rows as JSON.
pub(crate) fn duckdb(root: &std::path::Path, sql: &str) -> Value {
    python(&format!(
        "import duckdb, json\n\
         duckdb.sql(\"create view archive as select * from read_parquet('{}/**/*.parquet', hive_partitioning=true)\")\n\
         rel = duckdb.sql({sql:?})\n\
         print(json.dumps([[str(v) for v in row] for row in rel.fetchall()]))",
        root.display()
    ))
}

/// Runs a Python script with pyarrow and duckdb at hand; what it prints is JSON.
pub(crate) fn python(script: &str) -> Value {
    let python = std::env::var("THINGTOTAL_PYTHON").expect(
        "THINGTOTAL_PYTHON names a Python with duckdb and pyarrow: scripts/test sets it up",
    );
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
