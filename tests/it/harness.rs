//! Finds the real services the tests run against, and gives each test its own topics and
//! database.
//!
//! The addresses come from the environment (`scripts/services env` prints them). If they are not
//! set and a Docker engine answers, Kafka and InfluxDB are started once per test process with
//! testcontainers. If neither is possible the test fails and says how to start the services: a
//! test never passes without the services it checks.

use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use thingtotal_common::log::{Consumed, KafkaLog, KafkaOptions, Log};
use thingtotal_common::topics::Topics;

/// How the tests reach Kafka and InfluxDB.
#[derive(Debug, Clone)]
pub(crate) struct Services {
    pub(crate) kafka_brokers: String,
    pub(crate) influx_url: String,
    pub(crate) influx_org: String,
    pub(crate) influx_token: String,
    /// An S3-compatible store's endpoint and bucket, for the archive's object-store tests.
    pub(crate) s3: Option<(String, String)>,
}

const HOW_TO_START: &str = "the integration tests need a real Kafka and InfluxDB. Start them with \
     `scripts/services up && eval \"$(scripts/services env)\"`, or run everything with \
     `scripts/test`. (With a Docker engine and no THINGTOTAL_KAFKA_BROKERS set, the tests start \
     them with testcontainers instead.)";

/// The services, found once per test process.
pub(crate) fn services() -> &'static Services {
    static SERVICES: OnceLock<Services> = OnceLock::new();
    SERVICES.get_or_init(|| {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        match (
            env("THINGTOTAL_KAFKA_BROKERS"),
            env("THINGTOTAL_INFLUX_URL"),
        ) {
            (Some(kafka_brokers), Some(influx_url)) => Services {
                kafka_brokers,
                influx_url,
                influx_org: env("THINGTOTAL_INFLUX_ORG").unwrap_or_else(|| "thingtotal".into()),
                influx_token: env("THINGTOTAL_INFLUX_TOKEN").unwrap_or_default(),
                s3: env("THINGTOTAL_S3_ENDPOINT").map(|e| {
                    (
                        e,
                        env("THINGTOTAL_S3_BUCKET").unwrap_or_else(|| "thingtotal".into()),
                    )
                }),
            },
            // testcontainers' blocking runner makes its own runtime, so not on a test's runtime.
            _ if containers::docker_available() => std::thread::spawn(containers::start)
                .join()
                .expect("start the service containers"),
            _ => panic!("{HOW_TO_START}"),
        }
    })
}

/// A topic prefix of its own for one test, so that tests can run in parallel.
pub(crate) fn random_prefix(test: &str) -> String {
    format!(
        "it-{test}-{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    )
}

/// A Kafka log handle on the test services.
pub(crate) fn kafka() -> Log {
    Log::Kafka(
        KafkaLog::connect(KafkaOptions::new(services().kafka_brokers.clone()))
            .expect("create Kafka clients"),
    )
}

/// Creates an InfluxDB database of its own for one test and returns its v2 bucket name
/// (`database/retention-policy`, as InfluxDB 1.8 expects).
pub(crate) async fn influx_database(test: &str) -> (String, String) {
    let db = format!(
        "it_{test}_{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );
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

/// The admin token the test processes run with.
pub(crate) const ADMIN: &str = "admin-secret-for-tests";

/// A running `thingtotal` process with an HTTP port; killed when dropped.
pub(crate) struct ApiProcess {
    pub(crate) child: Child,
    pub(crate) base: String,
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port on loopback.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `thingtotal <part>` on Kafka with the test topic `prefix`, plus `env`, and waits until
/// its `/health` answers 200.
pub(crate) async fn start_part(part: &str, prefix: &str, env: &[(&str, &str)]) -> ApiProcess {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_thingtotal"));
    cmd.arg(part)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("THINGTOTAL_KAFKA_BROKERS", &services().kafka_brokers)
        .env("THINGTOTAL_TOPIC_PREFIX", prefix)
        .env("THINGTOTAL_ADMIN_TOKEN", ADMIN)
        .env("THINGTOTAL_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("start thingtotal");
    let process = ApiProcess {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = Client::new()
            .get(format!("{}/health", process.base))
            .send()
            .await
        {
            if r.status() == StatusCode::OK {
                return process;
            }
        }
        assert!(
            Instant::now() < deadline,
            "thingtotal {part} did not become healthy"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts `thingtotal api`.
pub(crate) async fn start_api(prefix: &str) -> ApiProcess {
    start_part("api", prefix, &[]).await
}

/// An api and an ingest process on one topic prefix.
pub(crate) struct Pipeline {
    pub(crate) prefix: String,
    pub(crate) api: ApiProcess,
    pub(crate) ingest: ApiProcess,
}

pub(crate) async fn pipeline(name: &str, env: &[(&str, &str)]) -> Pipeline {
    let prefix = random_prefix(name);
    let api = start_api(&prefix).await;
    let ingest = start_part("ingest", &prefix, env).await;
    Pipeline {
        prefix,
        api,
        ingest,
    }
}

/// Creates a stream and returns (id, write key, read key).
pub(crate) async fn stream(api: &ApiProcess, definition: Value) -> (u64, String, String) {
    stream_as(api, ADMIN, definition).await
}

/// Creates a stream with the admin token `token` and returns (id, write key, read key).
pub(crate) async fn stream_as(
    api: &ApiProcess,
    token: &str,
    definition: Value,
) -> (u64, String, String) {
    let r = Client::new()
        .post(format!("{}/api/streams", api.base))
        .bearer_auth(token)
        .json(&definition)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    (
        v["id"].as_u64().unwrap(),
        v["write_key"].as_str().unwrap().to_owned(),
        v["read_key"].as_str().unwrap().to_owned(),
    )
}

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

/// Runs an InfluxQL query against `db`.
pub(crate) async fn influxql(db: &str, q: &str) -> Value {
    Client::new()
        .get(format!("{}/query", services().influx_url))
        .query(&[("db", db), ("q", q), ("epoch", "ns")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub(crate) async fn count(db: &str, measurement: &str) -> i64 {
    let v = influxql(db, &format!("SELECT count(seq) FROM \"{measurement}\"")).await;
    v["results"][0]["series"][0]["values"][0][1]
        .as_i64()
        .unwrap_or(0)
}

/// Appends `n` envelopes per stream to entries.valid, as the validator would.
pub(crate) async fn feed_valid(prefix: &str, streams: &[u64], from: usize, n: usize) {
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
                    thingtotal_common::log::Record::new(
                        s.to_string(),
                        serde_json::to_vec(&value).unwrap(),
                    )
                    .header("tt.entry_id", entry_id.to_string()),
                );
            }
        }
        log.append(&topic, records).await.unwrap();
    }
}

/// Every file below `dir`.
pub(crate) fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
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
pub(crate) fn parquet_files(dir: &std::path::Path) -> usize {
    walk(dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .count()
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

mod containers {
    //! Kafka and InfluxDB in containers, for machines with Docker and no services of their own.

    use super::{free_port, Services};
    use testcontainers::core::{IntoContainerPort, WaitFor};
    use testcontainers::runners::SyncRunner;
    use testcontainers::{Container, GenericImage, ImageExt};

    pub(super) fn docker_available() -> bool {
        std::path::Path::new("/var/run/docker.sock").exists()
            && std::process::Command::new("docker")
                .arg("info")
                .output()
                .is_ok_and(|o| o.status.success())
    }

    pub(super) fn start() -> Services {
        // Kafka advertises the address clients must use, so its host port is chosen up front.
        let kafka_port = free_port();
        let kafka = GenericImage::new("apache/kafka", "4.1.2")
            .with_wait_for(WaitFor::message_on_stdout("Kafka Server started"))
            .with_mapped_port(kafka_port, 9092.tcp())
            .with_env_var("KAFKA_NODE_ID", "1")
            .with_env_var("KAFKA_PROCESS_ROLES", "broker,controller")
            .with_env_var("KAFKA_LISTENERS", "PLAINTEXT://:9092,CONTROLLER://:9093")
            .with_env_var(
                "KAFKA_ADVERTISED_LISTENERS",
                format!("PLAINTEXT://127.0.0.1:{kafka_port}"),
            )
            .with_env_var("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
            .with_env_var(
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            )
            .with_env_var("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
            .with_env_var("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
            .with_env_var("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
            .with_env_var("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
            .with_env_var("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
            .with_env_var("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
            .start()
            .expect("start the apache/kafka container");
        let influx = GenericImage::new("influxdb", "1.8")
            .with_exposed_port(8086.tcp())
            .with_wait_for(WaitFor::message_on_stderr("Listening on HTTP"))
            .start()
            .expect("start the influxdb container");
        let influx_port = influx
            .get_host_port_ipv4(8086.tcp())
            .expect("InfluxDB's mapped port");
        // The containers live as long as the test process.
        let keep: &'static mut Vec<Container<GenericImage>> =
            Box::leak(Box::new(vec![kafka, influx]));
        let _ = keep;
        Services {
            kafka_brokers: format!("127.0.0.1:{kafka_port}"),
            influx_url: format!("http://127.0.0.1:{influx_port}"),
            influx_org: "thingtotal".into(),
            influx_token: String::new(),
            s3: None,
        }
    }
}
