//! `thingtotal up` with no services: the real binary on its embedded log, the way a newcomer
//! runs it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use thingtotal_testkit::{
    create_stream, free_port, parquet_files, read_entries, thingtotal_bin, walk, Process,
};

/// Starts `thingtotal up` on `data_dir`, with no Kafka and no InfluxDB.
async fn start_up(data_dir: &Path) -> Process {
    start_up_with(data_dir, &[]).await
}

/// Starts `thingtotal up` on `data_dir` with extra arguments.
async fn start_up_with(data_dir: &Path, args: &[&str]) -> Process {
    start_up_env(data_dir, args, &[]).await
}

/// Starts `thingtotal up` on `data_dir` with extra arguments and environment variables.
pub(crate) async fn start_up_env(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Process {
    start_up_logged(data_dir, args, env, None).await
}

/// [`start_up_env`], its standard output and error going to `log` if there is one.
async fn start_up_logged(
    data_dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    log: Option<&Path>,
) -> Process {
    let port = free_port().unwrap();
    let mut cmd = Command::new(thingtotal_bin().unwrap());
    cmd.args(["up", "--data-dir"])
        .arg(data_dir)
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied());
    Process::spawn("up", cmd, port, log)
        .expect("start thingtotal up")
        .healthy()
        .await
        .unwrap_or_else(|e| panic!("thingtotal up did not become healthy: {e:#}"))
}

/// Sends SIGINT and waits for the process to exit by itself.
pub(crate) fn interrupt(up: &mut Process) {
    let status = Command::new("kill")
        .args(["-INT", &up.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = up.child.try_wait().unwrap() {
            assert!(status.success(), "up exited with {status}");
            return;
        }
        assert!(Instant::now() < deadline, "up did not stop after SIGINT");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Rows of the archive, through duckdb with Hive partitioning.
fn archive_rows(dir: &Path, sql: &str) -> Value {
    if parquet_files(dir) == 0 {
        return json!([["0"]]);
    }
    crate::harness::duckdb(dir, sql)
}

async fn create(up: &Process, token: &str) -> (u64, String, String) {
    let definition = json!({"name": "greenhouse", "schema": {"type": "object", "properties": {
        "temperature": {"type": "number"}, "humidity": {"type": "integer"}}, "required": ["temperature"]}});
    let s = create_stream(&up.base, token, &definition).await.unwrap();
    (s.id, s.write_key, s.read_key)
}

pub(crate) async fn post(up: &Process, id: u64, key: &str, body: Value) -> Value {
    let r = Client::new()
        .post(format!("{}/api/streams/{id}/entries", up.base))
        .header("x-api-key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    r.json().await.unwrap()
}

/// Every entry of the stream through the API, page by page.
async fn read_all(up: &Process, id: u64, read_key: &str) -> Vec<Value> {
    read_entries(&up.base, id, "limit=10000", Some(read_key))
        .await
        .unwrap()
}

/// The stream's rejected entries through the API.
async fn rejected(up: &Process, id: u64, read_key: &str) -> Vec<Value> {
    let r = Client::new()
        .get(format!("{}/api/streams/{id}/rejected", up.base))
        .header("x-api-key", read_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page: Value = r.json().await.unwrap();
    page["rejected"].as_array().unwrap().clone()
}

fn token(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("admin-token"))
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_walkthrough_archives_the_valid_entries_and_ctrl_c_drains() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = start_up(dir.path()).await;
    let token = token(dir.path());
    let (id, key, read_key) = create(&up, &token).await;
    post(
        &up,
        id,
        &key,
        json!([{"temperature": 21.5, "humidity": 40}, {"temperature": 22.0}]),
    )
    .await;
    post(&up, id, &key, json!({"temperature": "warm"})).await; // valid JSON, invalid entry
    let r = Client::new()
        .get(format!(
            "{}/update?api_key={key}&field1=23.5&field2=41",
            up.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "4");
    let r = Client::new()
        .get(format!("{}/update?api_key={key}&field2=41", up.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.text().await.unwrap(),
        "5",
        "accepted; the validator rejects it (no temperature)"
    );
    // Within about five seconds the valid entries are in the archive.
    let archive = dir.path().join("archive");
    let deadline = Instant::now() + Duration::from_secs(20);
    while archive_rows(&archive, "select count(*) from archive") != json!([["3"]]) {
        assert!(
            Instant::now() < deadline,
            "the archive did not fill in time"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let rows = archive_rows(
        &archive,
        "select seq, temperature, humidity from archive order by seq",
    );
    assert_eq!(
        rows,
        json!([
            ["1", "21.5", "40"],
            ["2", "22.0", "None"],
            ["4", "23.5", "41"]
        ])
    );
    // Read back through the API (from the archive: no InfluxDB here), natively and as
    // ThingSpeak; the invalid ones are under /rejected with their reasons.
    let entries = read_all(&up, id, &read_key).await;
    let data: Vec<(u64, Value)> = entries
        .iter()
        .map(|e| (e["seq"].as_u64().unwrap(), e["data"].clone()))
        .collect();
    assert_eq!(
        data,
        [
            (1, json!({"temperature": 21.5, "humidity": 40})),
            (2, json!({"temperature": 22.0})),
            (4, json!({"temperature": 23.5, "humidity": 41}))
        ]
    );
    let feeds: Value = Client::new()
        .get(format!(
            "{}/channels/{id}/feeds.json?api_key={read_key}",
            up.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(feeds["feeds"][2]["entry_id"], json!(4));
    assert_eq!(feeds["feeds"][2]["field1"], json!("23.5"));
    assert_eq!(feeds["channel"]["last_entry_id"], json!(4));
    let dead = rejected(&up, id, &read_key).await;
    let reasons: Vec<(&str, &str)> = dead
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["body"].as_str().unwrap()))
        .collect();
    assert_eq!(reasons.len(), 2, "{dead:?}");
    assert_eq!(
        reasons[0],
        ("schema_violation", "{\"temperature\":\"warm\"}")
    );
    assert_eq!(reasons[1].0, "schema_violation");
    assert_eq!(dead[1]["violations"][0]["keyword"], json!("required"));
    // Ctrl-C after a burst: everything acknowledged is archived before the process exits.
    let burst: Vec<Value> = (0..2000).map(|i| json!({"temperature": i})).collect();
    post(&up, id, &key, json!(burst)).await;
    interrupt(&mut up);
    assert_eq!(
        archive_rows(
            &archive,
            "select count(*), count(distinct entry_id) from archive"
        ),
        json!([["2003", "2003"]])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_streams_keys_and_every_entry_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let mut up = start_up(dir.path()).await;
    let token = token(dir.path());
    let (id, key, read_key) = create(&up, &token).await;
    let n = 3000;
    let entries: Vec<Value> = (0..n).map(|i| json!({"temperature": i})).collect();
    post(&up, id, &key, json!(entries)).await;
    interrupt(&mut up);
    assert_eq!(
        archive_rows(&archive, "select count(*) from archive"),
        json!([[n.to_string()]])
    );
    // SIGINT, then up again: the stream and its keys are still there.
    let mut up = start_up(dir.path()).await;
    let r = Client::new()
        .get(format!("{}/api/streams", up.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the admin token is reused");
    let r = Client::new()
        .get(format!("{}/api/streams/{id}", up.base))
        .bearer_auth(&read_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let more: Vec<Value> = (0..n).map(|i| json!({"temperature": i})).collect();
    let accepted = post(&up, id, &key, json!(more)).await;
    assert_eq!(accepted["seq"][0], n + 1, "seq goes on where it stopped");
    // kill -9 straight after the 202.
    let files_before: Vec<(std::path::PathBuf, std::time::SystemTime, u64)> = walk(&archive)
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(&p).unwrap();
            (p, m.modified().unwrap(), m.len())
        })
        .collect();
    up.child.kill().unwrap();
    up.child.wait().unwrap();
    drop(up);
    let _up = start_up(dir.path()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while archive_rows(&archive, "select count(*) from archive") != json!([[(2 * n).to_string()]]) {
        assert!(
            Instant::now() < deadline,
            "{} rows",
            archive_rows(&archive, "select count(*) from archive")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        archive_rows(
            &archive,
            "select count(*), count(distinct entry_id), min(seq), max(seq) from archive"
        ),
        json!([[
            (2 * n).to_string(),
            (2 * n).to_string(),
            "1",
            (2 * n).to_string()
        ]]),
        "every entry exactly once"
    );
    let read = read_all(&_up, id, &read_key).await;
    let mut seqs: Vec<u64> = read.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    seqs.dedup();
    assert_eq!(
        seqs,
        (1..=2 * n).collect::<Vec<u64>>(),
        "all can be read, once each"
    );
    for (path, modified, len) in files_before {
        let m = std::fs::metadata(&path).unwrap();
        assert_eq!(
            (m.modified().unwrap(), m.len()),
            (modified, len),
            "{} was rewritten",
            path.display()
        );
    }
}

/// `up` on the test services' Kafka (a topic prefix of its own) and InfluxDB (a database of its
/// own), archiving to a temporary directory, plus `env`: the process, the prefix, the database
/// and the archive.
async fn start_up_on_the_services(
    test: &str,
    env: &[(&str, &str)],
) -> (Process, String, String, tempfile::TempDir) {
    let prefix = thingtotal_testkit::random_prefix(test);
    let (db, bucket) = thingtotal_testkit::influx_database(test).await;
    let archive = tempfile::tempdir().unwrap();
    let root = archive.path().to_string_lossy().into_owned();
    let url = thingtotal_testkit::services().influx_url.clone();
    let mut all = vec![
        ("THINGTOTAL_INFLUX_URL", url.as_str()),
        ("THINGTOTAL_INFLUX_BUCKET", bucket.as_str()),
        ("THINGTOTAL_ARCHIVE", root.as_str()),
        ("THINGTOTAL_INFLUX_BATCH_LINGER_MS", "200"),
    ];
    all.extend_from_slice(env);
    let up = thingtotal_testkit::start_part("up", &prefix, &all).await;
    (up, prefix, db, archive)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_walkthrough_runs_on_real_kafka_and_influxdb() {
    let (up, prefix, db, archive) = start_up_on_the_services("up", &[]).await;
    let (id, key, read_key) = create(&up, thingtotal_testkit::ADMIN_TOKEN).await;
    post(
        &up,
        id,
        &key,
        json!([{"temperature": 21.5, "humidity": 40}, {"temperature": "warm"}]),
    )
    .await;
    let r = Client::new()
        .get(format!(
            "{}/update?api_key={key}&field1=23.5&field2=41",
            up.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "3");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let points = thingtotal_testkit::count(&db, &id.to_string()).await;
        let rows = archive_rows(archive.path(), "select count(*) from archive");
        if points == 2 && rows == json!([["2"]]) {
            break;
        }
        assert!(Instant::now() < deadline, "{points} points, {rows} rows");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let v = thingtotal_testkit::influxql(
        &db,
        &format!("SELECT temperature, humidity FROM \"{id}\" ORDER BY time"),
    )
    .await;
    assert_eq!(
        v["results"][0]["series"][0]["values"][1][1].as_f64(),
        Some(23.5)
    );
    assert_eq!(v["results"][0]["series"][0]["values"][1][2], json!(41));
    // The invalid entry is on the dead-letter topic.
    let dlq = thingtotal_common::topics::Topics::new(&prefix).dlq;
    let log = thingtotal_testkit::kafka();
    let mut dead = Vec::new();
    for p in 0..log.end_offsets(&dlq).await.unwrap().len() {
        let mut r = log.reader(&dlq, p as i32, 0).await.unwrap();
        dead.extend(r.read(10, Duration::from_millis(300)).await.unwrap());
    }
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].value.as_deref(),
        Some(&b"{\"temperature\":\"warm\"}"[..])
    );
    // Read back through the API, from InfluxDB, and the rejected one with its reason.
    let entries = read_all(&up, id, &read_key).await;
    let temperatures: Vec<Value> = entries
        .iter()
        .map(|e| e["data"]["temperature"].clone())
        .collect();
    assert_eq!(temperatures, [json!(21.5), json!(23.5)]);
    let dead = rejected(&up, id, &read_key).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["kind"], json!("schema_violation"));
    assert_eq!(dead[0]["body"], json!("{\"temperature\":\"warm\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_merges_small_files_and_every_query_answers_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let mut up = start_up_with(dir.path(), &["--archive-max-rows", "100"]).await;
    let token = token(dir.path());
    let (id, key, _) = create(&up, &token).await;
    for chunk in 0..5 {
        let entries: Vec<Value> = (0..300)
            .map(|i| json!({"temperature": chunk * 1000 + i, "humidity": i}))
            .collect();
        post(&up, id, &key, json!(entries)).await;
    }
    interrupt(&mut up);
    let parquet = || parquet_files(&archive);
    let before_files = parquet();
    assert!(before_files >= 15, "{before_files} files");
    let query = "select count(*), count(distinct entry_id), sum(temperature), sum(humidity), min(seq), max(seq), \
                 string_agg(cast(seq as varchar), ',' order by seq) from archive";
    let before = archive_rows(&archive, query);
    let out = Command::new(env!("CARGO_BIN_EXE_thingtotal"))
        .args(["compact", "--data-dir"])
        .arg(dir.path())
        .args(["--target-rows", "1000"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after_files = parquet();
    assert!(
        after_files <= 3,
        "{before_files} files became {after_files}"
    );
    assert_eq!(
        archive_rows(&archive, query),
        before,
        "the same rows before and after"
    );
    // The archiver recovers from the compacted files: a restart archives nothing twice.
    let mut up = start_up_with(dir.path(), &["--archive-max-rows", "100"]).await;
    post(&up, id, &key, json!({"temperature": 1})).await;
    interrupt(&mut up);
    assert_eq!(
        archive_rows(
            &archive,
            "select count(*), count(distinct entry_id) from archive"
        ),
        json!([["1501", "1501"]])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_compacts_the_archive_while_it_runs_and_reads_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let up = start_up_with(
        dir.path(),
        &[
            "--archive-max-age-secs",
            "0.2",
            "--archive-compact-every-secs",
            "2",
        ],
    )
    .await;
    let token = token(dir.path());
    let (id, key, read_key) = create(&up, &token).await;
    let parquet = || parquet_files(&archive);
    // Small requests a little apart: each becomes a file of its own, until compaction merges.
    let mut most = 0;
    for chunk in 0..12 {
        let entries: Vec<Value> = (0..50)
            .map(|i| json!({"temperature": chunk * 100 + i}))
            .collect();
        post(&up, id, &key, json!(entries)).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        most = most.max(parquet());
    }
    assert!(
        most >= 3,
        "small files were written: at most {most} at once"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = archive_rows(
            &archive,
            "select count(*), count(distinct entry_id), min(seq), max(seq) from archive",
        );
        if rows == json!([["600", "600", "1", "600"]]) && parquet() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{rows} in {} files (at most {most} before)",
            parquet()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let read = read_all(&up, id, &read_key).await;
    let seqs: Vec<u64> = read.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=600).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_bounds_dead_letters_and_refuses_entries_the_log_cannot_take() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path()).await;
    let token = token(dir.path());
    let definition = json!({"name": "xs", "schema": {"type": "object", "properties": {
        "t": {"type": "number"}, "xs": {"type": "array", "items": {"type": "string"}}}}});
    let s = create_stream(&up.base, &token, &definition).await.unwrap();
    let (id, key, read_key) = (s.id, s.write_key, s.read_key);
    // An entry with 8,000 violations, then a valid one: readable seconds later.
    let xs: Vec<u64> = (0..8000).map(|i| i % 10).collect();
    post(&up, id, &key, json!({"xs": xs})).await;
    post(&up, id, &key, json!({"t": 1})).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while read_all(&up, id, &read_key).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the valid entry was not readable"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let dead = rejected(&up, id, &read_key).await;
    assert_eq!(dead.len(), 1);
    let listed = dead[0]["violations"].as_array().unwrap().len();
    assert!((1..=100).contains(&listed), "{listed} violations listed");
    let message = dead[0]["message"].as_str().unwrap();
    assert!(message.ends_with(" more"), "{message}");
    // A request whose second entry is 1,000,001 bytes: 413, and nothing of it is stored.
    let empty = "{\"t\":2,\"pad\":\"\"}";
    let second = format!(
        "{{\"t\":2,\"pad\":\"{}\"}}",
        "x".repeat(1_000_001 - empty.len())
    );
    let r = Client::new()
        .post(format!("{}/api/streams/{id}/entries", up.base))
        .header("x-api-key", &key)
        .header("content-type", "application/json")
        .body(format!("[{{\"t\":1}},{second},{{\"t\":3}}]"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["errors"][0]["pointer"], "/1", "{e}");
    let accepted = post(&up, id, &key, json!({"t": 4})).await;
    assert_eq!(
        accepted["seq"],
        json!([3]),
        "nothing of the refused request was stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn properties_named_like_the_stores_own_columns_read_back_under_their_own_names() {
    let (up, _, db, _archive) =
        start_up_on_the_services("names", &[("THINGTOTAL_ARCHIVE_MAX_AGE_SECS", "1")]).await;
    let (id, key, read_key) = thingtotal_testkit::stream(
        &up,
        json!({"name": "names", "measurement": "names", "tags": ["stream_id"],
               "schema": {"type": "object", "properties": {
                   "seq": {"type": "integer"}, "entry_id": {"type": "string"},
                   "time": {"type": "string"}, "ts": {"type": "number"},
                   "received_at": {"type": "string"}, "stream_version": {"type": "integer"},
                   "stream_id": {"type": "string"}, "t": {"type": "number"}}}}),
    )
    .await;
    let sent = json!([
        {"seq": 1000, "entry_id": "mine-1", "time": "noon", "ts": 1.5, "received_at": "here",
         "stream_version": 7, "stream_id": "device-9", "t": 20.5},
        {"seq": 2000, "entry_id": "mine-2", "time": "dusk", "ts": 2.5, "received_at": "there",
         "stream_version": 8, "stream_id": "device-8", "t": 21.5},
    ]);
    let accepted = post(&up, id, &key, sent.clone()).await;
    for source in ["influx", "archive"] {
        let deadline = Instant::now() + Duration::from_secs(60);
        let entries = loop {
            let r = Client::new()
                .get(format!(
                    "{}/api/streams/{id}/entries?source={source}",
                    up.base
                ))
                .header("x-api-key", &read_key)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let page: Value = r.json().await.unwrap();
            let entries = page["entries"].as_array().cloned().unwrap_or_default();
            if status == StatusCode::OK && entries.len() == 2 {
                break entries;
            }
            assert!(Instant::now() < deadline, "{source}: {status} {page}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(e["data"], sent[i], "{source}");
            assert_eq!(
                e["seq"], accepted["seq"][i],
                "{source}: the entry's own seq"
            );
            assert_eq!(e["entry_id"], accepted["entry_ids"][i], "{source}");
        }
    }
    // In InfluxDB the writer's fields and tag keep their names, the properties are data.<name>.
    let v = thingtotal_testkit::influxql(
        &db,
        "SELECT \"seq\", \"data.seq\", \"data.time\", \"stream_id\", \"data.stream_id\" FROM names",
    )
    .await;
    let rows = &v["results"][0]["series"][0]["values"];
    assert_eq!(rows[0][1], accepted["seq"][0], "{v}");
    assert_eq!(rows[0][2], json!(1000), "{v}");
    assert_eq!(rows[0][3], json!("noon"), "{v}");
    assert_eq!(rows[0][4], json!(id.to_string()), "{v}");
    assert_eq!(rows[0][5], json!("device-9"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_answers_entry_times_at_the_edges_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("up.log");
    let up = start_up_logged(&dir.path().join("data"), &[], &[], Some(&log)).await;
    let token = token(&dir.path().join("data"));
    let definition = json!({"name": "times", "fields": ["t"], "timestamp_field": "at",
        "schema": {"type": "object", "properties": {
            "t": {"type": "number"}, "at": {"type": "string", "format": "date-time"}}}});
    let s = create_stream(&up.base, &token, &definition).await.unwrap();
    let (id, key, read_key) = (s.id, s.write_key, s.read_key);
    // delta_t of 1e13 seconds: no time is that far back; 400, and nothing stored.
    let r = Client::new()
        .post(format!("{}/channels/{id}/bulk_update.json", up.base))
        .json(&json!({"write_api_key": key, "updates": [
            {"delta_t": 0, "field1": 1}, {"delta_t": 1e13, "field1": 2}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Times far outside the window around now are dead-lettered as bad_timestamp; year 0 and
    // 9999 open no archive directory. A time of now is stored.
    post(
        &up,
        id,
        &key,
        json!([{"t": 1, "at": "0001-01-01T00:00:00Z"}, {"t": 2, "at": "9999-12-31T23:59:59Z"},
               {"t": 3, "at": chrono::Utc::now().to_rfc3339()}]),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let dead = loop {
        let dead = rejected(&up, id, &read_key).await;
        if dead.len() == 2 && !read_all(&up, id, &read_key).await.is_empty() {
            break dead;
        }
        assert!(Instant::now() < deadline, "{dead:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for d in &dead {
        assert_eq!(d["kind"], json!("bad_timestamp"), "{d}");
    }
    let entries = read_all(&up, id, &read_key).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["data"]["t"], json!(3.0));
    let dates: Vec<String> = walk(&dir.path().join("data"))
        .iter()
        .filter_map(|p| {
            p.to_str()?
                .split('/')
                .find(|c| c.starts_with("date="))
                .map(str::to_owned)
        })
        .collect();
    assert!(
        dates
            .iter()
            .all(|d| !d.starts_with("date=0001") && !d.starts_with("date=9999")),
        "{dates:?}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains("panicked"), "{logged}");
}
