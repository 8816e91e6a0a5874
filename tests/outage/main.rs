//! Tests that need the machine to themselves: they stop and restart the real services, or
//! overload a part. They run in a test binary of their own, after the others, and one at a
//! time, so that no other test sees the outage or competes with the load.

mod overload;

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::json;
use thingtotal_testkit as kit;

/// Runs `scripts/services <verb>`; outages need the services that script started.
fn services(verb: &str) {
    let script = std::env::var("THINGTOTAL_SERVICES_SCRIPT").expect(
        "outage tests stop and start the broker with scripts/services: run them through scripts/test, \
         or export the variables of `scripts/services env`",
    );
    let status = Command::new(script)
        .arg(verb)
        .status()
        .expect("run scripts/services");
    assert!(status.success(), "scripts/services {verb} failed");
}

/// Serialises the tests within this binary.
pub(crate) static OUTAGE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_while_kafka_is_down_gets_503_and_is_accepted_once_it_is_back() {
    let _one_at_a_time = OUTAGE.lock().await;
    let p = kit::pipeline("outage", &[("THINGTOTAL_ACK_TIMEOUT_MS", "3000")]).await;
    let (id, key, _) = kit::stream(
        &p.api,
        json!({"name": "o", "schema": {"type": "object", "properties": {"t": {"type": "number"}}}}),
    )
    .await;
    let send = || {
        Client::new()
            .post(format!("{}/api/streams/{id}/entries", p.ingest.base))
            .header("x-api-key", &key)
            .json(&json!({"t": 1}))
            .timeout(Duration::from_secs(30))
            .send()
    };
    assert_eq!(send().await.unwrap().status(), StatusCode::ACCEPTED);

    services("stop-kafka");
    let started = Instant::now();
    let r = send().await.unwrap();
    let took = started.elapsed();
    let status = r.status();
    let retry_after = r.headers().get("retry-after").cloned();
    let body: serde_json::Value = r.json().await.unwrap();
    services("start-kafka");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(retry_after.is_some(), "503 carries Retry-After");
    assert!(body.get("seq").is_none() && body.get("entry_ids").is_none());
    // A 503 is what the deadline answers (the client would have given up at 30 s with no
    // answer at all); how long it took on this machine is shown, not asserted.
    println!("a write with Kafka down was answered 503 after {took:?} (deadline 3 s)");

    // Once the broker is back, the same request is accepted.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let r = send().await.unwrap();
        if r.status() == StatusCode::ACCEPTED {
            break;
        }
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            Instant::now() < deadline,
            "not accepted after the broker came back"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_down_for_20_s_loses_nothing_and_the_archive_keeps_growing() {
    let _one_at_a_time = OUTAGE.lock().await;
    let prefix = kit::random_prefix("influx-outage");
    let (db, bucket) = kit::influx_database("outage").await;
    let archive = tempfile::tempdir().unwrap();
    let api = kit::start_api(&prefix).await;
    let (id, _, _) = kit::stream(
        &api,
        json!({"name": "o", "schema": {"type": "object", "properties": {
            "t": {"type": "number"}, "n": {"type": "integer"}, "label": {"type": "string"}}}}),
    )
    .await;
    let root = archive.path().to_string_lossy().into_owned();
    let url = kit::services().influx_url.clone();
    let env = [
        ("THINGTOTAL_INFLUX_URL", url.as_str()),
        ("THINGTOTAL_INFLUX_BUCKET", bucket.as_str()),
        ("THINGTOTAL_ARCHIVE", root.as_str()),
        ("THINGTOTAL_ARCHIVE_MAX_AGE_SECS", "1"),
        ("THINGTOTAL_INFLUX_BATCH_LINGER_MS", "200"),
    ];
    let _sink = kit::start_part("sink", &prefix, &env).await;
    let parquet_files = || kit::parquet_files(archive.path());
    // Entries keep arriving before, during and after the outage.
    kit::feed_valid(&prefix, &[id], 0, 2_000).await;
    services("stop-influx");
    let files_at_stop = parquet_files();
    let outage = Instant::now();
    let mut files_during = files_at_stop;
    let mut n = 0;
    while outage.elapsed() < Duration::from_secs(20) {
        kit::feed_valid(&prefix, &[id], 2_000 + 500 * n, 500).await;
        n += 1;
        tokio::time::sleep(Duration::from_secs(2)).await;
        files_during = parquet_files();
    }
    services("start-influx");
    assert!(n >= 5);
    assert!(
        files_during > files_at_stop,
        "the archive kept growing while InfluxDB was down: {files_at_stop} -> {files_during} files"
    );
    let total = 2_000 + 500 * n;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let points = kit::count(&db, &id.to_string()).await;
        if points as usize == total {
            break;
        }
        assert!(
            points as usize <= total,
            "{points} points for {total} entries"
        );
        assert!(
            Instant::now() < deadline,
            "InfluxDB did not catch up: {points} of {total}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
