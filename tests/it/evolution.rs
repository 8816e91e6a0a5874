//! Schema evolution on Kafka: entries validated against one version of a stream are stored with
//! that version's columns and types, whatever the stream became before the sink got to them.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use thingtotal_common::topics::Topics;
use thingtotal_testkit::{
    count, get_json, influx_database, influxql, kafka, random_prefix, read_entries, services,
    start_part, stream, Process, ADMIN_TOKEN,
};

use crate::harness::{metric, python, read_topic};
use crate::up::{interrupt, start_up_env};

const MEASUREMENT: &str = "evo";

fn definition(properties: Value, fields: &[&str]) -> Value {
    json!({"name": "evolving", "measurement": MEASUREMENT, "fields": fields,
           "schema": {"type": "object", "properties": properties}})
}

async fn put(api: &Process, id: u64, query: &str, body: &Value) -> (StatusCode, Value) {
    let r = Client::new()
        .request(Method::PUT, format!("{}/api/streams/{id}{query}", api.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

async fn post(ingest: &Process, id: u64, key: &str, entries: &[Value]) {
    let r = Client::new()
        .post(format!("{}/api/streams/{id}/entries", ingest.base))
        .header("x-api-key", key)
        .json(entries)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::ACCEPTED,
        "{}",
        r.text().await.unwrap()
    );
}

/// The entries posted under each version, by their `note`.
fn posted() -> BTreeMap<String, Value> {
    let mut all = BTreeMap::new();
    for i in 0..12 {
        let e = json!({"temp": i as f64 + 0.5, "n": i as f64 + 0.25, "note": format!("v1-{i:02}")});
        all.insert(format!("v1-{i:02}"), e);
    }
    for i in 0..4 {
        let e = json!({"temp": i as f64 + 10.5, "n": i as f64 + 0.75, "rh": 40.5,
                       "note": format!("v2-{i:02}")});
        all.insert(format!("v2-{i:02}"), e);
    }
    for i in 0..12 {
        let e = json!({"temperature": i as f64 + 30.5, "n": i, "rh": 50.5,
                       "note": format!("v3-{i:02}")});
        all.insert(format!("v3-{i:02}"), e);
    }
    all
}

fn under(version: &str) -> Vec<Value> {
    posted()
        .into_iter()
        .filter(|(note, _)| note.starts_with(version))
        .map(|(_, e)| e)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaking_change_with_entries_in_flight_loses_no_value_in_either_store() {
    let prefix = random_prefix("evolution");
    let topics = Topics::new(&prefix);
    let (db, bucket) = influx_database("evolution").await;
    let archive_dir = tempfile::tempdir().unwrap();
    let archive = archive_dir.path().to_str().unwrap().to_owned();
    let stores = [
        ("THINGTOTAL_INFLUX_URL", services().influx_url.as_str()),
        ("THINGTOTAL_INFLUX_BUCKET", bucket.as_str()),
        ("THINGTOTAL_ARCHIVE", archive.as_str()),
    ];
    let api = start_part("api", &prefix, &stores).await;
    let ingest = start_part("ingest", &prefix, &[]).await;
    let _validator = start_part("validator", &prefix, &[]).await;
    let (id, read_key, definitions) =
        evolve(&api, &ingest, &Validated::Topic(topics.valid.clone())).await;

    // Only now does the sink start: 16 entries of versions 1 and 2 wait for it.
    let mut sink_env = stores.to_vec();
    sink_env.push(("THINGTOTAL_INFLUX_BATCH_LINGER_MS", "200"));
    sink_env.push(("THINGTOTAL_ARCHIVE_MAX_AGE_SECS", "1"));
    let _sink = start_part("sink", &prefix, &sink_env).await;

    let total = posted().len();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while (count(&db, MEASUREMENT).await as usize) < total || archived_rows(&archive) < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} points and {} archived rows of {total}",
            count(&db, MEASUREMENT).await,
            archived_rows(&archive)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Nothing was dead-lettered, by the sink's InfluxDB writer or anyone.
    let dead: i64 = kafka().end_offsets(&topics.dlq).await.unwrap().iter().sum();
    assert_eq!(dead, 0, "dead letters");

    // InfluxDB: each field keeps one type; n of version 4 lives in n.v4.
    let keys = influxql(&db, &format!("SHOW FIELD KEYS FROM \"{MEASUREMENT}\"")).await;
    let mut types: Vec<(String, String)> = keys["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v[0].as_str().unwrap().into(), v[1].as_str().unwrap().into()))
        .collect();
    types.sort();
    let want: Vec<(String, String)> = [
        ("entry_id", "string"),
        ("n", "float"),
        ("n.v4", "integer"),
        ("note", "string"),
        ("rh", "float"),
        ("seq", "integer"),
        ("temp", "float"),
        ("temperature", "float"),
    ]
    .iter()
    .map(|(k, t)| (k.to_string(), t.to_string()))
    .collect();
    assert_eq!(types, want);
    assert_eq!(count(&db, MEASUREMENT).await as usize, total);

    check_archive(&archive, &definitions);
    check_reads(&api, id, &read_key, &["influx", "archive"]).await;
    check_delete(&api, id).await;
}

/// In `up`, on the embedded log: the archiver holds the rows of versions 1 and 2 in open files
/// while the stream changes, and writes each with its own version's columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_archives_each_version_with_its_own_columns_across_a_breaking_change() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("THINGTOTAL_ADMIN_TOKEN", ADMIN_TOKEN)];
    let mut up = start_up_env(dir.path(), &[], &env).await;
    let (id, read_key, definitions) = evolve(&up, &up, &Validated::Metric(up.base.clone())).await;
    // Ctrl-C drains: every open file is written. Then up again, on the same data.
    interrupt(&mut up);
    let archive = dir.path().join("archive");
    check_archive(archive.to_str().unwrap(), &definitions);
    let up = start_up_env(dir.path(), &[], &env).await;
    check_reads(&up, id, &read_key, &["archive"]).await;
    check_delete(&up, id).await;
}

/// How a test learns that the validator has checked entries.
enum Validated {
    /// Records in this `entries.valid` topic (Kafka).
    Topic(String),
    /// The validator's counter at this base URL (`up`).
    Metric(String),
}

impl Validated {
    /// Waits until `n` entries were validated.
    async fn wait(&self, n: usize) {
        match self {
            Validated::Topic(topic) => {
                read_topic(topic, n, Duration::from_secs(60)).await;
            }
            Validated::Metric(base) => {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                loop {
                    let valid = metric(
                        base,
                        "thingtotal_validator_entries_total",
                        &["outcome=\"valid\""],
                    )
                    .await;
                    if valid as usize >= n {
                        assert_eq!(valid as usize, n, "more entries validated than posted");
                        break;
                    }
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "{valid} of {n} validated"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// The three definitions the stream goes through.
struct Definitions {
    v1: Value,
    v2: Value,
    v3: Value,
}

/// Creates the stream and takes it through a compatible change, a refused breaking one, and the
/// same breaking one forced (version 4), posting each version's entries and waiting until they
/// were validated before the next change. Returns the stream's id, its read key and the
/// definitions.
async fn evolve(
    api: &Process,
    ingest: &Process,
    validated: &Validated,
) -> (u64, String, Definitions) {
    let v1 = definition(
        json!({"temp": {"type": "number"}, "n": {"type": "number"}, "note": {"type": "string"}}),
        &["temp", "n", "note"],
    );
    let (id, write_key, read_key) = stream(api, v1.clone()).await;
    post(ingest, id, &write_key, &under("v1")).await;
    validated.wait(12).await;

    // A compatible change goes through: an optional property.
    let mut v2 = v1.clone();
    v2["schema"]["properties"]["rh"] = json!({"type": "number"});
    v2["fields"] = json!(["temp", "n", "note", "rh"]);
    let (s, body) = put(api, id, "", &v2).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 2);
    post(ingest, id, &write_key, &under("v2")).await;
    validated.wait(16).await;

    // A rename and a type change break the stored entries: refused, each break named.
    let v3 = definition(
        json!({"temperature": {"type": "number"}, "n": {"type": "integer"},
               "note": {"type": "string"}, "rh": {"type": "number"}}),
        &["temperature", "n", "note", "rh"],
    );
    let (s, problem) = put(api, id, "", &v3).await;
    assert_eq!(s, StatusCode::CONFLICT, "{problem}");
    let mut pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    pointers.sort();
    assert_eq!(
        pointers,
        ["/schema/properties/n/type", "/schema/properties/temp"],
        "{problem}"
    );
    let (_, now) = put(api, id, "?force=false", &v2).await;
    assert_eq!(now["version"], 3, "a compatible change again: {now}");
    let (s, body) = put(api, id, "?force=true", &v3).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 4);
    post(ingest, id, &write_key, &under("v3")).await;
    validated.wait(28).await;

    // Every version is kept, and shown.
    let url = format!("{}/api/streams/{id}/versions", api.base);
    let (s, versions) = get_json(&url, Some(&read_key)).await.unwrap();
    assert_eq!(s, StatusCode::OK, "{versions}");
    let numbers: Vec<u64> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    assert_eq!(versions["versions"][0]["schema"], v1["schema"]);
    let (s, last) = get_json(&format!("{url}/4"), Some(&read_key))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK, "{last}");
    assert_eq!(last["schema"], v3["schema"]);
    let (s, none) = get_json(&format!("{url}/5"), Some(&read_key))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::NOT_FOUND, "{none}");

    (id, read_key, Definitions { v1, v2, v3 })
}

/// Every archive file holds one version, its footer names it and holds its schema, and DuckDB
/// reading every file by name sees every value.
fn check_archive(archive: &str, d: &Definitions) {
    let (v1, v2, v3) = (&d.v1, &d.v2, &d.v3);
    let total = posted().len();
    let footers = python(&format!(
        "import pyarrow.parquet as pq, glob, json\n\
         out = []\n\
         for f in sorted(glob.glob('{archive}/**/*.parquet', recursive=True)):\n\
         \x20   md = pq.read_metadata(f).metadata\n\
         \x20   t = pq.read_table(f)\n\
         \x20   out.append([md[b'thingtotal.stream_version'].decode(), json.loads(md[b'thingtotal.schema']),\n\
         \x20               sorted(set(t.column('stream_version').to_pylist())), t.schema.names])\n\
         print(json.dumps(out))"
    ));
    for f in footers.as_array().unwrap() {
        let version: u64 = f[0].as_str().unwrap().parse().unwrap();
        assert_eq!(f[2], json!([version]), "one version per file: {f}");
        let schema = &f[1];
        let expected = match version {
            1 => &v1["schema"],
            2 | 3 => &v2["schema"],
            _ => &v3["schema"],
        };
        assert_eq!(schema, expected, "{f}");
        for property in expected["properties"].as_object().unwrap().keys() {
            assert!(f[3].as_array().unwrap().contains(&json!(property)), "{f}");
        }
    }
    let rows = python(&format!(
        "import duckdb, json\n\
         rel = duckdb.sql(\"select note, stream_version, temp, temperature, n, rh from \
         read_parquet('{archive}/**/*.parquet', union_by_name=true) order by note\")\n\
         print(json.dumps(rel.fetchall()))"
    ));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), total);
    for (row, (note, e)) in rows.iter().zip(posted()) {
        assert_eq!(row[0], json!(note));
        let version = match &note[..2] {
            "v1" => 1,
            "v2" => 2,
            _ => 4,
        };
        assert_eq!(row[1], json!(version), "{row:?}");
        let number = |v: &Value| v.as_f64();
        assert_eq!(
            number(&row[2]),
            e.get("temp").and_then(Value::as_f64),
            "{row:?}"
        );
        assert_eq!(
            number(&row[3]),
            e.get("temperature").and_then(Value::as_f64),
            "{row:?}"
        );
        assert_eq!(number(&row[4]), e["n"].as_f64(), "{row:?}");
        assert_eq!(
            number(&row[5]),
            e.get("rh").and_then(Value::as_f64),
            "{row:?}"
        );
    }
}

/// The native reads from each of `sources` give every entry in the shape it was stored in, and
/// ThingSpeak's feeds follow a renamed field.
async fn check_reads(api: &Process, id: u64, read_key: &str, sources: &[&str]) {
    let total = posted().len();
    // The native reads, from either store: every entry in the shape it was stored in.
    for source in sources {
        let entries = read_entries(
            &api.base,
            id,
            &format!("source={source}&limit=1000"),
            Some(read_key),
        )
        .await
        .unwrap();
        let got: BTreeMap<String, Value> = entries
            .iter()
            .map(|e| {
                (
                    e["data"]["note"].as_str().unwrap().to_owned(),
                    e["data"].clone(),
                )
            })
            .collect();
        assert_eq!(got, posted(), "read from {source}");

        // Windows over n, a float in versions 1 and 2 and an integer in 4 (two InfluxDB keys):
        // the mean covers every value. Count and mean per day, weighted, in case the run
        // crosses midnight.
        let windows = |agg: &str| {
            let url = format!(
                "{}/api/streams/{id}/entries?source={source}&window=1d&agg={agg}&fields=n&limit=2",
                api.base
            );
            async move {
                let (s, body) = get_json(&url, Some(read_key)).await.unwrap();
                assert_eq!(s, StatusCode::OK, "{body}");
                body["windows"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|w| w["data"]["n"].as_f64().unwrap_or(0.0))
                    .collect::<Vec<f64>>()
            }
        };
        let (counts, means) = (windows("count").await, windows("mean").await);
        let n: f64 = counts.iter().sum();
        assert_eq!(n as usize, total, "count from {source}");
        let mean = counts.iter().zip(&means).map(|(c, m)| c * m).sum::<f64>() / n;
        let want = posted()
            .values()
            .map(|e| e["n"].as_f64().unwrap())
            .sum::<f64>()
            / n;
        assert!(
            (mean - want).abs() < 1e-9,
            "mean of n from {source}: {mean}, not {want}"
        );
    }

    // ThingSpeak: field1 is temp for the entries of the versions that mapped it there, and
    // temperature after; n is a number in every feed.
    let url = format!(
        "{}/channels/{id}/feeds.json?api_key={read_key}&results=100",
        api.base
    );
    let (_, feeds) = get_json(&url, None).await.unwrap();
    let feeds = feeds["feeds"].as_array().unwrap();
    assert_eq!(feeds.len(), total);
    let as_number = |v: &Value| v.as_str().and_then(|s| s.parse::<f64>().ok());
    let mut seen = BTreeMap::new();
    for f in feeds {
        let note = f["field3"].as_str().unwrap().to_owned();
        seen.insert(note.clone(), f.clone());
    }
    assert_eq!(seen.len(), total);
    for (note, e) in posted() {
        let f = &seen[&note];
        let field1 = e
            .get("temp")
            .or(e.get("temperature"))
            .and_then(Value::as_f64);
        assert_eq!(as_number(&f["field1"]), field1, "{f}");
        assert_eq!(as_number(&f["field2"]), e["n"].as_f64(), "{f}");
        assert_eq!(
            as_number(&f["field4"]),
            e.get("rh").and_then(Value::as_f64),
            "{f}"
        );
    }
    // Daily sums of field1 count temp for the entries of the versions that mapped it there.
    let url = format!(
        "{}/channels/{id}/fields/1.json?api_key={read_key}&results=8000&sum=daily",
        api.base
    );
    let (_, daily) = get_json(&url, None).await.unwrap();
    let sum: f64 = daily["feeds"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| as_number(&f["field1"]))
        .sum();
    let want: f64 = posted()
        .values()
        .filter_map(|e| {
            e.get("temp")
                .or(e.get("temperature"))
                .and_then(Value::as_f64)
        })
        .sum();
    assert!(
        (sum - want).abs() < 1e-6,
        "daily sums of field1: {sum}, not {want}: {daily}"
    );
}

/// Deletes the stream; its versions go with it.
async fn check_delete(api: &Process, id: u64) {
    let r = Client::new()
        .delete(format!("{}/api/streams/{id}", api.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let url = format!("{}/api/streams/{id}/versions/1", api.base);
    let (s, body) = get_json(&url, Some(ADMIN_TOKEN)).await.unwrap();
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
}

/// How many rows the archive's files hold, by their footers.
fn archived_rows(archive: &str) -> usize {
    let n = python(&format!(
        "import pyarrow.parquet as pq, glob, json\n\
         print(json.dumps(sum(pq.read_metadata(f).num_rows for f in \
         glob.glob('{archive}/**/*.parquet', recursive=True))))"
    ));
    n.as_u64().unwrap() as usize
}
