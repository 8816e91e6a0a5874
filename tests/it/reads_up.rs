//! Reading entries back from `thingtotal up` (the archive, no InfluxDB): what a careless or
//! hostile read meets. Aggregations stay bounded, the default range of windows always answers,
//! the archive is scanned up to its limit, and CSV cells are safe to open in a spreadsheet.

use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::up::{post, start_up_env};
use thingtotal_testkit::{stream, Process as ApiProcess, ADMIN_TOKEN as ADMIN};

/// `up` on a directory of its own, with a public stream that has a number `t`, a string
/// `note`, an integer `@sum` and its time in `at` (epoch ms).
struct Reads {
    up: ApiProcess,
    id: u64,
    key: String,
    read_key: String,
    /// When the stream was made, in epoch ms.
    now: i64,
    _dir: tempfile::TempDir,
}

/// [`Reads`] on `up` started with `env`.
async fn reads(env: &[(&str, &str)]) -> Reads {
    let dir = tempfile::tempdir().unwrap();
    let up = start_up_env(dir.path(), &["--admin-token", ADMIN], env).await;
    let (id, key, read_key) = stream(
        &up,
        json!({"name": "reads", "public": true, "timestamp_field": "at", "fields": ["t", "note"],
               "schema": {"type": "object", "properties": {
                   "t": {"type": "number"}, "note": {"type": "string"},
                   "@sum": {"type": "integer"}, "at": {"type": "integer"}}}}),
    )
    .await;
    Reads {
        up,
        id,
        key,
        read_key,
        now: Utc::now().timestamp_millis(),
        _dir: dir,
    }
}

impl Reads {
    async fn post(&self, entries: Value) {
        post(&self.up, self.id, &self.key, entries).await;
    }
}

/// GET `path` without a key: the status and the body as text.
async fn get(up: &ApiProcess, path: &str) -> (StatusCode, String) {
    let r = Client::new()
        .get(format!("{}{path}", up.base))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

/// Waits until the entries read with `query` number `n`.
async fn wait_for(up: &ApiProcess, id: u64, query: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(up, &format!("/api/streams/{id}/entries?{query}")).await;
        let got = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["entries"].as_array().map(Vec::len));
        if status == StatusCode::OK && got == Some(n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{query}: {n} entries expected, {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The process's peak resident memory, in MiB.
fn peak_rss_mib(up: &ApiProcess) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", up.child.id())).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_a_thingspeak_aggregate_over_decades_is_bounded_and_quick() {
    let r = reads(&[]).await;
    let (up, id, now) = (&r.up, r.id, r.now);
    let year_ago = now - 365 * 86_400_000;
    r.post(json!([{"t": 1.0, "at": 0}, {"t": 2.0, "at": year_ago}, {"t": 3.0, "at": now}]))
        .await;
    // The last year alone spans 52,560 ten-minute windows.
    wait_for(up, id, "start=-400d", 2).await;
    let (status, body) = get(
        up,
        &format!("/channels/{id}/feeds.json?timescale=10&start=1970-01-01"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", &body[..body.len().min(500)]);
    let v: Value = serde_json::from_str(&body).unwrap();
    let feeds = v["feeds"].as_array().unwrap();
    assert_eq!(feeds.len(), 8000, "the newest 8000 windows");
    let last = &feeds[feeds.len() - 1];
    assert_eq!(last["field1"], json!("3.0"), "{last}");
    assert!(last.get("entry_id").is_none());
    let rss = peak_rss_mib(up);
    assert!(rss < 300, "up's peak RSS is {rss} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_windows_without_a_range_use_a_default_that_answers() {
    let r = reads(&[]).await;
    let (up, id, now) = (&r.up, r.id, r.now);
    r.post(json!([{"t": 1.0, "at": now - 1000}, {"t": 2.0, "at": now}]))
        .await;
    wait_for(up, id, "", 2).await;
    for (query, windows) in [
        ("window=1d&agg=count", 100),
        ("window=1h&agg=count&limit=7", 7),
        ("window=1w&agg=count&limit=10000", 10_000),
        ("window=1m&agg=count&limit=1", 1),
        ("window=1d&agg=mean", 100),
    ] {
        let asked = Utc::now();
        let (status, body) = get(up, &format!("/api/streams/{id}/entries?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let w = v["windows"].as_array().unwrap();
        assert_eq!(w.len(), windows, "{query}");
        let end = w[w.len() - 1]["end"].as_str().unwrap();
        let end = chrono::DateTime::parse_from_rfc3339(end).unwrap();
        assert!(end > asked, "{query}: the newest window holds now: {body}");
        if query.contains("count") && windows > 1 {
            let counted: i64 = w.iter().map(|w| w["data"]["t"].as_i64().unwrap()).sum();
            assert_eq!(counted, 2, "{query}: {body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_csv_cells_are_safe_in_a_spreadsheet_and_numbers_stay_numbers() {
    let r = reads(&[]).await;
    let (up, id, now) = (&r.up, r.id, r.now);
    r.post(
        json!([{"t": -3.5, "note": "=1+2", "@sum": -7, "at": now - 1},
                  {"t": 2.0, "note": "-3.5", "at": now}]),
    )
    .await;
    wait_for(up, id, "", 2).await;
    let (status, csv) = get(up, &format!("/api/streams/{id}/entries?format=csv")).await;
    assert_eq!(status, StatusCode::OK, "{csv}");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    assert_eq!(
        reader.headers().unwrap(),
        vec!["entry_id", "seq", "ts", "t", "note", "'@sum"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(
        (&rows[0][3], &rows[0][4], &rows[0][5]),
        ("-3.5", "'=1+2", "-7")
    );
    assert_eq!(
        (&rows[1][3], &rows[1][4]),
        ("2.0", "-3.5"),
        "a number as text stays"
    );
    let (status, csv) = get(up, &format!("/channels/{id}/feeds.csv")).await;
    assert_eq!(status, StatusCode::OK, "{csv}");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    assert_eq!(
        reader.headers().unwrap(),
        vec!["created_at", "entry_id", "field1", "field2"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!((&rows[0][2], &rows[0][3]), ("-3.5", "'=1+2"));
    assert_eq!((&rows[1][2], &rows[1][3]), ("2.0", "-3.5"));
    // JSON answers are data, not spreadsheets: the text comes back as it was sent.
    let (_, body) = get(up, &format!("/api/streams/{id}/entries")).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["entries"][0]["data"]["note"], json!("=1+2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_scan_at_most_the_archive_rows_the_flag_allows() {
    let r = reads(&[("THINGTOTAL_ARCHIVE_READ_MAX_ROWS", "10")]).await;
    let (up, id, now) = (&r.up, r.id, r.now);
    // Two files of 8 rows, two days apart: each can be read alone, not both.
    let batch = |at: i64| -> Value {
        (0..8)
            .map(|i| json!({"t": f64::from(i), "at": at + i64::from(i)}))
            .collect()
    };
    r.post(batch(now - 2 * 86_400_000)).await;
    wait_for(up, id, "start=-3d&end=-1d", 8).await;
    r.post(batch(now - 1000)).await;
    wait_for(up, id, "start=-1d", 8).await;
    let (status, body) = get(
        up,
        &format!("/api/streams/{id}/entries?window=1h&agg=median&start=-1d"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for query in [
        "window=1w&agg=mean&limit=10000",
        "window=1d&agg=median&start=-3d",
        "limit=100",
    ] {
        let (status, body) = get(up, &format!("/api/streams/{id}/entries?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        let detail = serde_json::from_str::<Value>(&body).unwrap()["detail"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            detail.contains("--archive-read-max-rows") && detail.contains("10"),
            "{query}: {detail}"
        );
    }
    // ThingSpeak clients get the same limit in their dialect.
    let (status, body) = get(up, &format!("/channels/{id}/feeds.json?results=100")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["error"]["error_code"],
        json!("error_bad_request"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_rejected_entries_of_a_public_stream_need_its_read_key() {
    let r = reads(&[]).await;
    let (up, id) = (&r.up, r.id);
    r.post(json!({"t": "hot"})).await;
    let rejected = |key: Option<&str>| {
        let mut req = Client::new().get(format!("{}/api/streams/{id}/rejected", up.base));
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        async move {
            let r = req.send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = rejected(Some(&r.read_key)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body.contains("hot") {
            break;
        }
        assert!(Instant::now() < deadline, "not rejected yet: {body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (status, body) = rejected(Some(ADMIN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("hot"), "{body}");
    // The stream is public, its entries are not its dead letters.
    let (status, body) = get(up, &format!("/api/streams/{id}/entries")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = rejected(None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(!body.contains("hot"), "{body}");
    let (status, body) = rejected(Some(&r.key)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the write key: {body}");
    // A wrong credential is refused even next to a right one; the same one twice is one.
    let both = |bearer: &str, key: &str| {
        Client::new()
            .get(format!(
                "{}/api/streams/{id}/rejected?api_key={key}",
                up.base
            ))
            .bearer_auth(bearer)
            .send()
    };
    let r2 = both(ADMIN, "not-a-key").await.unwrap();
    assert_eq!(r2.status(), StatusCode::FORBIDDEN);
    let body = r2.text().await.unwrap();
    assert!(
        body.contains("different credentials in Authorization and the api_key parameter"),
        "{body}"
    );
    assert!(!body.contains("hot"), "{body}");
    let r2 = both(&r.read_key, &r.read_key).await.unwrap();
    assert_eq!(r2.status(), StatusCode::OK);
    assert!(r2.text().await.unwrap().contains("hot"));
}
