//! The integration tests' fixtures, shared by their test binaries: topic prefixes and
//! databases of a test's own, parts on the test services, streams, and records fed to or
//! counted in Kafka and InfluxDB. They panic on failure, as a test's set-up should.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use thingtotal_common::log::{KafkaLog, KafkaOptions, Log, Record};
use thingtotal_common::topics::Topics;

use crate::{
    create_stream, free_port, part_command, services, thingtotal_bin, Process, ADMIN_TOKEN,
};

/// A short random suffix, so that tests running in parallel never share a name.
fn suffix() -> String {
    uuid::Uuid::now_v7().simple().to_string()[20..].to_owned()
}

/// A topic prefix of its own for one test, so that tests can run in parallel.
pub fn random_prefix(test: &str) -> String {
    format!("it-{test}-{}", suffix())
}

/// A Kafka log handle on the test services.
pub fn kafka() -> Log {
    Log::Kafka(
        KafkaLog::connect(KafkaOptions::new(services().kafka_brokers.clone()))
            .expect("create Kafka clients"),
    )
}

/// Creates an InfluxDB database of its own for one test and returns it and its v2 bucket name
/// (`database/retention-policy`, as InfluxDB 1.8 expects).
pub async fn influx_database(test: &str) -> (String, String) {
    let db = format!("it_{test}_{}", suffix());
    let resp = reqwest::Client::new()
        .post(format!("{}/query", services().influx_url))
        .form(&[("q", format!("CREATE DATABASE \"{db}\""))])
        .send()
        .await
        .expect("InfluxDB answers /query");
    assert!(
        resp.status().is_success(),
        "CREATE DATABASE: {}",
        resp.status()
    );
    let bucket = format!("{db}/autogen");
    (db, bucket)
}

/// Starts `thingtotal <part>` on the test services' Kafka with topic prefix `prefix`, plus
/// `env`, and waits until it is healthy.
pub async fn start_part(part: &str, prefix: &str, env: &[(&str, &str)]) -> Process {
    let port = free_port().expect("a free port");
    let bin = thingtotal_bin().expect("the thingtotal binary's path");
    let mut cmd = part_command(&bin, part, &services().kafka_brokers, prefix, port);
    cmd.envs(env.iter().copied());
    Process::spawn(part, cmd, port, None)
        .expect("start thingtotal")
        .healthy()
        .await
        .unwrap_or_else(|e| panic!("thingtotal {part} did not become healthy: {e:#}"))
}

/// Starts `thingtotal api`.
pub async fn start_api(prefix: &str) -> Process {
    start_part("api", prefix, &[]).await
}

/// An api and an ingest process on one topic prefix.
#[derive(Debug)]
pub struct Pipeline {
    /// The topic prefix.
    pub prefix: String,
    /// `thingtotal api`.
    pub api: Process,
    /// `thingtotal ingest`, with the `env` that [`pipeline`] was given.
    pub ingest: Process,
}

/// Starts an api and an ingest process (with `env`) on a new topic prefix for test `name`.
pub async fn pipeline(name: &str, env: &[(&str, &str)]) -> Pipeline {
    let prefix = random_prefix(name);
    let api = start_api(&prefix).await;
    let ingest = start_part("ingest", &prefix, env).await;
    Pipeline {
        prefix,
        api,
        ingest,
    }
}

/// Creates a stream through `api` with the admin token and returns (id, write key, read key).
pub async fn stream(api: &Process, definition: Value) -> (u64, String, String) {
    let s = create_stream(&api.base, ADMIN_TOKEN, &definition)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    (s.id, s.write_key, s.read_key)
}

/// Runs an InfluxQL query against `db`.
pub async fn influxql(db: &str, q: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}/query", services().influx_url))
        .query(&[("db", db), ("q", q), ("epoch", "ns")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// How many points `measurement` of `db` holds (0 if none).
pub async fn count(db: &str, measurement: &str) -> i64 {
    let v = influxql(db, &format!("SELECT count(seq) FROM \"{measurement}\"")).await;
    v["results"][0]["series"][0]["values"][0][1]
        .as_i64()
        .unwrap_or(0)
}

/// Appends `n` envelopes per stream to entries.valid, as the validator would.
pub async fn feed_valid(prefix: &str, streams: &[u64], from: usize, n: usize) {
    let log = kafka();
    let topic = Topics::new(prefix).valid;
    for chunk in (from..from + n).step_by(5000) {
        let mut records = Vec::new();
        for s in streams {
            for i in chunk..(chunk + 5000).min(from + n) {
                let entry_id = uuid::Uuid::now_v7();
                let value = json!({"entry_id": entry_id, "seq": i + 1, "stream_id": s, "stream_version": 1,
                                   "ts": format!("2026-01-0{}T00:00:{:02}.{:06}Z", 1 + i % 2, i % 60, i),
                                   "received_at": "2026-01-01T00:00:00.000000Z",
                                   "data": {"t": i as f64 / 2.0, "n": i, "label": format!("e{i}")}});
                records.push(
                    Record::new(s.to_string(), serde_json::to_vec(&value).unwrap())
                        .header("tt.entry_id", entry_id.to_string()),
                );
            }
        }
        log.append(&topic, records).await.unwrap();
    }
}

/// Every file below `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// How many Parquet files are below `dir`.
pub fn parquet_files(dir: &Path) -> usize {
    walk(dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .count()
}
