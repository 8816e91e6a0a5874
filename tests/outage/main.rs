//! Tests that stop and restart the real services. They run in a test binary of their own, and
//! one at a time, so that no other test sees the outage.

#[allow(dead_code)]
#[path = "../it/harness.rs"]
mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::json;

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

/// Serialises the outage tests within this binary.
static OUTAGE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_while_kafka_is_down_gets_503_and_is_accepted_once_it_is_back() {
    let _one_at_a_time = OUTAGE.lock().await;
    let p = harness::pipeline("outage", &[("THINGTOTAL_ACK_TIMEOUT_MS", "3000")]).await;
    let (id, key, _) = harness::stream(
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
    assert!(
        took < Duration::from_secs(10),
        "answered within the deadline, took {took:?}"
    );

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
