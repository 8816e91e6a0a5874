//! The sink, through `thingtotal sink` with the other parts on real Kafka and InfluxDB.

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use thingtotal_common::topics::Topics;
use thingtotal_testkit::{
    count, feed_valid, influx_database, influxql, kafka, parquet_files, random_prefix, services,
    start_api, start_part, stream,
};

use crate::harness::duckdb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_become_exactly_one_typed_point_each() {
    let prefix = random_prefix("sink-influx");
    let (db, bucket) = influx_database("sink").await;
    let api = start_api(&prefix).await;
    let ingest = start_part("ingest", &prefix, &[]).await;
    let _validator = start_part("validator", &prefix, &[]).await;
    let env = [
        ("THINGTOTAL_INFLUX_URL", services().influx_url.as_str()),
        ("THINGTOTAL_INFLUX_BUCKET", bucket.as_str()),
        ("THINGTOTAL_INFLUX_BATCH_LINGER_MS", "200"),
    ];
    let _sink = start_part("sink", &prefix, &env).await;
    let definition = |m: &str| {
        json!({"name": m, "measurement": m, "tags": ["site"], "timestamp_field": "at",
               "schema": {"type": "object", "properties": {
                   "site": {"type": "string"}, "t": {"type": "number"}, "n": {"type": "integer"},
                   "on": {"type": "boolean"}, "note": {"type": "string"}, "at": {"type": "integer"},
                   "pos": {"type": "object", "properties": {"x": {"type": "number"}}}}}})
    };
    let (a, key_a, _) = stream(&api, definition("room a")).await;
    let (b, key_b, _) = stream(&api, definition("room,b")).await;
    let c = Client::new();
    let base = 1_767_225_600_000i64;
    for (id, key, n) in [(a, &key_a, 300), (b, &key_b, 200)] {
        let entries: Vec<Value> = (0..n)
            .map(|i| {
                json!({"site": "north wing, C:\\data\\", "t": i, "n": i * 2, "on": i % 2 == 0,
                            "note": format!("say \"{i}\"\nok"), "at": base + i, "pos": {"x": 0.5}})
            })
            .collect();
        let r = c
            .post(format!("{}/api/streams/{id}/entries", ingest.base))
            .header("x-api-key", key)
            .json(&entries)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while count(&db, "room a").await < 300 || count(&db, "room,b").await < 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "points did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count(&db, "room a").await, 300);
    assert_eq!(count(&db, "room,b").await, 200);
    let v = influxql(&db, "SELECT * FROM \"room a\" WHERE seq = 8").await;
    let series = &v["results"][0]["series"][0];
    let columns: Vec<&str> = series["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let row = &series["values"][0];
    let col = |name: &str| {
        &row[columns
            .iter()
            .position(|c| *c == name)
            .unwrap_or_else(|| panic!("{name} in {columns:?}"))]
    };
    let seq = col("seq").as_i64().unwrap();
    assert_eq!(
        col("time").as_i64(),
        Some((base + 7) * 1_000_000 + seq % 1000),
        "the point time is the timestamp_field, plus seq mod 1000 ns"
    );
    // InfluxQL's JSON writes the float 7.0 as 7; SHOW FIELD KEYS below checks the types.
    assert_eq!(col("t").as_f64(), Some(7.0));
    assert_eq!(*col("n"), json!(14));
    assert_eq!(*col("on"), json!(false));
    assert_eq!(*col("note"), json!("say \"7\"\nok"));
    assert_eq!(*col("pos.x"), json!(0.5));
    // Backslashes land as sent, but for the trailing one, which line protocol cannot carry.
    assert_eq!(*col("site"), json!("north wing, C:\\data"));
    assert_eq!(*col("stream_id"), json!(a.to_string()));
    assert!(col("entry_id").as_str().unwrap().len() == 36);
    // Field types, as InfluxDB recorded them.
    let keys = influxql(&db, "SHOW FIELD KEYS FROM \"room a\"").await;
    let types: Vec<(String, String)> = keys["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v[0].as_str().unwrap().to_owned(),
                v[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("t", "float"),
        ("n", "integer"),
        ("on", "boolean"),
        ("note", "string"),
        ("seq", "integer"),
        ("pos.x", "float"),
    ] {
        assert!(
            types.contains(&(expected.0.into(), expected.1.into())),
            "{expected:?} in {types:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_point_influxdb_rejects_goes_to_the_dead_letter_topic_and_the_rest_is_written() {
    let prefix = random_prefix("sink-reject");
    let (db, bucket) = influx_database("reject").await;
    // InfluxDB already holds "t" as a string in this measurement (field types are per shard, so
    // the point is written now, in the shard the entries will go to).
    let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let resp = Client::new()
        .post(format!("{}/api/v2/write", services().influx_url))
        .query(&[("bucket", bucket.as_str()), ("org", "x")])
        .body(format!("conflict t=\"text\" {now_ns}"))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let api = start_api(&prefix).await;
    let ingest = start_part("ingest", &prefix, &[]).await;
    let _validator = start_part("validator", &prefix, &[]).await;
    let env = [
        ("THINGTOTAL_INFLUX_URL", services().influx_url.as_str()),
        ("THINGTOTAL_INFLUX_BUCKET", bucket.as_str()),
        ("THINGTOTAL_INFLUX_BATCH_LINGER_MS", "500"),
    ];
    let _sink = start_part("sink", &prefix, &env).await;
    let (id, key, _) = stream(
        &api,
        json!({"name": "c", "measurement": "conflict",
               "schema": {"type": "object", "properties": {"t": {"type": "number"}, "u": {"type": "number"}}}}),
    )
    .await;
    // Ten entries in one request, so in one batch: one has the conflicting field.
    let entries: Vec<Value> = (0..10)
        .map(|i| {
            if i == 4 {
                json!({"t": 1.5})
            } else {
                json!({"u": i})
            }
        })
        .collect();
    let r = Client::new()
        .post(format!("{}/api/streams/{id}/entries", ingest.base))
        .header("x-api-key", &key)
        .json(&entries)
        .send()
        .await
        .unwrap();
    let accepted: Value = r.json().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let dlq = Topics::new(&prefix).dlq;
    let log = kafka();
    let dead = loop {
        let mut found = Vec::new();
        for p in 0..log.end_offsets(&dlq).await.unwrap().len() {
            let mut r = log.reader(&dlq, p as i32, 0).await.unwrap();
            found.extend(r.read(100, Duration::from_millis(200)).await.unwrap());
        }
        if !found.is_empty() {
            break found;
        }
        assert!(tokio::time::Instant::now() < deadline, "no dead letter");
    };
    assert_eq!(dead.len(), 1);
    let h = |n: &str| String::from_utf8(dead[0].header(n).unwrap().to_vec()).unwrap();
    assert_eq!(h("tt.error.kind"), "sink_rejected");
    assert_eq!(h("__connect.errors.stage"), "SINK_INFLUX");
    assert!(
        h("__connect.errors.exception.message").contains("field type conflict"),
        "{}",
        h("__connect.errors.exception.message")
    );
    assert_eq!(h("tt.entry_id"), accepted["entry_ids"][4].as_str().unwrap());
    let envelope: Value = serde_json::from_slice(dead[0].value.as_deref().unwrap()).unwrap();
    assert_eq!(
        envelope["data"],
        json!({"t": 1.5}),
        "the valid envelope, unchanged"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let v = influxql(&db, "SELECT count(u) FROM conflict").await;
        if v["results"][0]["series"][0]["values"][0][1].as_i64() == Some(9) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the other nine points: {v}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_sink_mid_run_leaves_exactly_n_points_and_n_rows() {
    let prefix = random_prefix("sink-kill");
    let (db, bucket) = influx_database("kill").await;
    let archive = tempfile::tempdir().unwrap();
    let api = start_api(&prefix).await;
    let definition = json!({"name": "k", "schema": {"type": "object", "properties": {
        "t": {"type": "number"}, "n": {"type": "integer"}, "label": {"type": "string"}}}});
    let mut streams = Vec::new();
    for _ in 0..4 {
        streams.push(stream(&api, definition.clone()).await.0);
    }
    let root = archive.path().to_string_lossy().into_owned();
    let env = [
        ("THINGTOTAL_INFLUX_URL", services().influx_url.as_str()),
        ("THINGTOTAL_INFLUX_BUCKET", bucket.as_str()),
        ("THINGTOTAL_ARCHIVE", root.as_str()),
        ("THINGTOTAL_ARCHIVE_MAX_ROWS", "5000"),
        ("THINGTOTAL_ARCHIVE_MAX_AGE_SECS", "2"),
        ("THINGTOTAL_INFLUX_BATCH_LINGER_MS", "200"),
    ];
    let mut sink = start_part("sink", &prefix, &env).await;
    let per_stream = 25_000;
    let total = (per_stream * streams.len()) as i64;
    feed_valid(&prefix, &streams, 0, per_stream).await;
    let files = || parquet_files(archive.path());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while files() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "no archive files");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sink.child.kill().unwrap();
    sink.child.wait().unwrap();
    let before = files();
    drop(sink);
    let _sink = start_part("sink", &prefix, &env).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let points: i64 = {
            let mut sum = 0;
            for s in &streams {
                sum += count(&db, &s.to_string()).await;
            }
            sum
        };
        let rows = duckdb(archive.path(), "select count(*) from archive");
        if points == total && rows[0][0].as_str() == Some(total.to_string().as_str()) {
            break;
        }
        assert!(points <= total, "more points than entries: {points}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "{points} points and {rows} rows of {total}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rows = duckdb(
        archive.path(),
        "select count(*), count(distinct entry_id), count(distinct stream), min(seq), max(seq) from archive",
    );
    assert_eq!(
        rows[0],
        json!([
            total.to_string(),
            total.to_string(),
            "4",
            "1",
            per_stream.to_string()
        ]),
        "no duplicates"
    );
    assert!(before >= 3);
    // Column types and values, as a data engineer reads them.
    let types = duckdb(
        archive.path(),
        "select column_name, column_type from (describe archive)",
    );
    for expected in [
        json!(["entry_id", "VARCHAR"]),
        json!(["seq", "BIGINT"]),
        json!(["ts", "TIMESTAMP WITH TIME ZONE"]),
        json!(["received_at", "TIMESTAMP WITH TIME ZONE"]),
        json!(["stream_version", "INTEGER"]),
        json!(["t", "DOUBLE"]),
        json!(["n", "BIGINT"]),
        json!(["label", "VARCHAR"]),
        json!(["date", "DATE"]),
        json!(["stream", "BIGINT"]),
    ] {
        assert!(
            types.as_array().unwrap().contains(&expected),
            "{expected} in {types}"
        );
    }
    let one = duckdb(
        archive.path(),
        &format!(
            "select t, n, label, date, epoch_us(ts) from archive where stream = {} and seq = 8",
            streams[0]
        ),
    );
    assert_eq!(
        one,
        json!([["3.5", "7", "e7", "2026-01-02", "1767312007000007"]])
    );
    for s in &streams {
        assert_eq!(count(&db, &s.to_string()).await, per_stream as i64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_archivers_share_the_partitions_and_one_dying_loses_and_duplicates_nothing() {
    let prefix = random_prefix("sink-pair");
    let archive = tempfile::tempdir().unwrap();
    let api = start_api(&prefix).await;
    let definition = json!({"name": "p", "schema": {"type": "object", "properties": {
        "t": {"type": "number"}, "n": {"type": "integer"}, "label": {"type": "string"}}}});
    let mut streams = Vec::new();
    for _ in 0..6 {
        streams.push(stream(&api, definition.clone()).await.0);
    }
    let root = archive.path().to_string_lossy().into_owned();
    let env = [
        ("THINGTOTAL_ARCHIVE", root.as_str()),
        ("THINGTOTAL_ARCHIVE_MAX_ROWS", "2000"),
        ("THINGTOTAL_ARCHIVE_MAX_AGE_SECS", "1"),
    ];
    let mut first = start_part("sink", &prefix, &env).await;
    let _second = start_part("sink", &prefix, &env).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let per_stream = 5_000;
    feed_valid(&prefix, &streams, 0, per_stream).await;
    let files = || parquet_files(archive.path());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while files() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no archive files");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One member dies; the other takes over its partitions after the rebalance.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    drop(first);
    feed_valid(&prefix, &streams, per_stream, per_stream).await;
    let total = (2 * per_stream * streams.len()).to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let rows = duckdb(archive.path(), "select count(*) from archive");
        if rows[0][0].as_str() == Some(total.as_str()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{rows} rows of {total}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rows = duckdb(
        archive.path(),
        "select count(*), count(distinct entry_id) from archive",
    );
    assert_eq!(rows[0], json!([total, total]), "no row twice");
}
