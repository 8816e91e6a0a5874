//! Reading entries back through the api: ranges, pagination, CSV, aggregations, the rejected
//! entries and ThingSpeak's read API, from InfluxDB and from the archive, over the real
//! pipeline (ingest → Kafka → validator → sink → InfluxDB and Parquet).
//!
//! Every expected answer is computed here from the entries the test posted.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Client, StatusCode};
use serde_json::{json, Map, Value};
use thingtotal_testkit::{
    influx_database, influxql, random_prefix, services, start_part, stream, Process, ADMIN_TOKEN,
};

/// 2026-01-05T00:00:00Z in milliseconds.
const BASE_MS: i64 = 1_767_571_200_000;
const MEASUREMENT: &str = "reads \"lab\", 1";

/// The entries posted: i in 0..240 but 100..140 (a gap of empty windows), 37 s apart plus a few
/// milliseconds, so that entries fall on and next to window edges.
fn posted() -> Vec<(i64, Value)> {
    (0..240i64)
        .filter(|i| !(100..140).contains(i))
        .map(|i| {
            let at = BASE_MS + i * 37_000 + i % 7;
            let site = ["north", "south"][(i % 2) as usize];
            let mut e = json!({"site": site,
                               "t": i as f64 * 0.25 - 10.0, "n": i * 7 % 23, "at": at});
            if i % 2 == 0 {
                e["gps"] = json!({"lat": i as f64 * 0.5});
            }
            if i % 10 == 0 {
                e["note"] = json!(format!("say \"{i}\", ok\nbye"));
            }
            (at, e)
        })
        .collect()
}

/// What a read gives back for a posted entry: its data without the timestamp field.
fn expected_data(e: &Value) -> Value {
    let mut d = e.clone();
    d.as_object_mut().unwrap().remove("at");
    d
}

fn iso_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

struct Setup {
    api: Process,
    _parts: Vec<Process>,
    ingest: Process,
    id: u64,
    write_key: String,
    read_key: String,
    db: String,
    /// Removed when the test ends; the processes above are dropped (killed) before it.
    _archive: tempfile::TempDir,
}

async fn setup() -> Setup {
    let prefix = random_prefix("reads");
    let (db, bucket) = influx_database("reads").await;
    let archive_dir = tempfile::tempdir().unwrap();
    let archive = archive_dir.path().to_str().unwrap().to_owned();
    let influx = [
        ("THINGTOTAL_INFLUX_URL", services().influx_url.as_str()),
        ("THINGTOTAL_INFLUX_BUCKET", bucket.as_str()),
        ("THINGTOTAL_ARCHIVE", archive.as_str()),
    ];
    let api = start_part("api", &prefix, &influx).await;
    let ingest = start_part("ingest", &prefix, &[]).await;
    let validator = start_part("validator", &prefix, &[]).await;
    let mut sink_env = influx.to_vec();
    sink_env.push(("THINGTOTAL_INFLUX_BATCH_LINGER_MS", "200"));
    sink_env.push(("THINGTOTAL_ARCHIVE_MAX_AGE_SECS", "1"));
    let sink = start_part("sink", &prefix, &sink_env).await;
    let (id, write_key, read_key) = stream(
        &api,
        json!({"name": "lab", "description": "readings of the lab", "measurement": MEASUREMENT,
               "tags": ["site"], "timestamp_field": "at", "fields": ["t", "n", "site", "note"],
               "schema": {"type": "object", "required": ["t"], "properties": {
                   "site": {"type": "string"}, "t": {"type": "number"}, "n": {"type": "integer"},
                   "gps": {"type": "object", "properties": {"lat": {"type": "number"}}},
                   "note": {"type": "string"}, "at": {"type": "integer"}}}}),
    )
    .await;
    let c = Client::new();
    let entries: Vec<Value> = posted().into_iter().map(|(_, e)| e).collect();
    let r = c
        .post(format!("{}/api/streams/{id}/entries", ingest.base))
        .header("x-api-key", &write_key)
        .json(&entries)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let setup = Setup {
        _archive: archive_dir,
        api,
        _parts: vec![validator, sink],
        ingest,
        id,
        write_key,
        read_key,
        db,
    };
    // Wait until both backends hold every entry.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    for source in ["influx", "archive"] {
        loop {
            let (status, body) = setup
                .get(&format!(
                    "/api/streams/{id}/entries?source={source}&limit=10000&start=2026-01-05"
                ))
                .await;
            let n = body["entries"].as_array().map_or(0, Vec::len);
            if status == StatusCode::OK && n == entries.len() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{source} holds {n} of {} entries ({status}: {body})",
                entries.len()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    setup
}

impl Setup {
    /// The points in the stream's measurement, whose name needs InfluxQL's escaping.
    async fn points(&self) -> i64 {
        let name = MEASUREMENT.replace('\\', "\\\\").replace('"', "\\\"");
        let v = influxql(&self.db, &format!("SELECT count(seq) FROM \"{name}\"")).await;
        v["results"][0]["series"][0]["values"][0][1]
            .as_i64()
            .unwrap_or(0)
    }

    /// GETs `path` on the api with the read key; the status and the body as JSON (or a string).
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = Client::new()
            .get(format!("{}{path}", self.api.base))
            .header("x-api-key", &self.read_key)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get_text(&self, path: &str, key: Option<&str>) -> (StatusCode, String, String) {
        let mut req = Client::new().get(format!("{}{path}", self.api.base));
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, ct, r.text().await.unwrap())
    }

    /// Every entry of a query, following `next_cursor` page by page.
    async fn all_pages(&self, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/streams/{}/entries?{query}", self.id);
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (status, body) = self.get(&path).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
            out.extend(body["entries"].as_array().unwrap().iter().cloned());
            match body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_read_back_the_same_from_influxdb_and_the_archive() {
    let s = setup().await;
    let posted = posted();
    let id = s.id;
    for source in ["influx", "archive"] {
        // Every entry, ascending, 37 per page.
        let asc = s.all_pages(&format!("source={source}&limit=37")).await;
        assert_eq!(asc.len(), posted.len(), "{source}");
        for (got, (at, e)) in asc.iter().zip(&posted) {
            assert_eq!(got["ts"], json!(iso_ms(*at)), "{source}");
            assert_eq!(got["data"], expected_data(e), "{source}");
            assert!(got["entry_id"].as_str().unwrap().len() == 36);
        }
        let seqs: Vec<u64> = asc.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{source}: seq grows");
        // Descending, 50 per page: the same entries backwards.
        let desc = s
            .all_pages(&format!("source={source}&limit=50&order=desc"))
            .await;
        let mut reversed = asc.clone();
        reversed.reverse();
        assert_eq!(desc, reversed, "{source}");
        // A range: start inclusive, end exclusive, exactly on two entries' times.
        let (start, end) = (posted[50].0, posted[110].0);
        let range = s
            .all_pages(&format!(
                "source={source}&limit=10000&start={}&end={}",
                iso_ms(start),
                iso_ms(end)
            ))
            .await;
        let expected: Vec<&Value> = posted
            .iter()
            .filter(|(at, _)| (start..end).contains(at))
            .map(|(_, e)| e)
            .collect();
        assert_eq!(range.len(), expected.len(), "{source}");
        assert_eq!(range[0]["data"], expected_data(expected[0]));
        // A limit without a cursor is the first page.
        let (_, first) = s
            .get(&format!(
                "/api/streams/{id}/entries?source={source}&limit=5"
            ))
            .await;
        assert_eq!(first["entries"].as_array().unwrap()[..], asc[..5]);
        // The latest entry.
        let (status, latest) = s
            .get(&format!("/api/streams/{id}/entries/latest?source={source}"))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&latest, asc.last().unwrap());
        // CSV parses back to the same values; Accept chooses it as format= does.
        let (status, ct, csv_text) = s
            .get_text(
                &format!("/api/streams/{id}/entries?source={source}&limit=10000&format=csv"),
                Some(&s.read_key),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(ct.starts_with("text/csv"), "{ct}");
        let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(
            header,
            ["entry_id", "seq", "ts", "site", "t", "n", "gps.lat", "note"]
        );
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(records.len(), posted.len());
        for (r, (got, (_, e))) in records.iter().zip(asc.iter().zip(&posted)) {
            assert_eq!(&r[0], got["entry_id"].as_str().unwrap());
            assert_eq!(r[1].parse::<u64>().unwrap(), got["seq"].as_u64().unwrap());
            assert_eq!(&r[2], got["ts"].as_str().unwrap());
            assert_eq!(&r[3], e["site"].as_str().unwrap());
            assert_eq!(r[4].parse::<f64>().unwrap(), e["t"].as_f64().unwrap());
            assert_eq!(r[5].parse::<i64>().unwrap(), e["n"].as_i64().unwrap());
            match e["gps"]["lat"].as_f64() {
                Some(lat) => assert_eq!(r[6].parse::<f64>().unwrap(), lat),
                None => assert_eq!(&r[6], ""),
            }
            assert_eq!(&r[7], e["note"].as_str().unwrap_or(""));
        }
        let accepted = Client::new()
            .get(format!(
                "{}/api/streams/{id}/entries?source={source}&limit=10000",
                s.api.base
            ))
            .header("x-api-key", &s.read_key)
            .header("accept", "text/csv")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(accepted, csv_text);
    }
}

/// The value of one aggregation over `values` (in time order), computed the plain way.
fn expected_agg(agg: &str, values: &[f64], integer: bool) -> Value {
    if agg == "count" {
        return json!(values.len());
    }
    if values.is_empty() {
        return Value::Null;
    }
    let num = |f: f64| if integer { json!(f as i64) } else { json!(f) };
    match agg {
        "sum" => num(values.iter().sum()),
        "mean" => json!(values.iter().sum::<f64>() / values.len() as f64),
        "min" => num(values.iter().copied().fold(f64::INFINITY, f64::min)),
        "max" => num(values.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
        "first" => num(values[0]),
        "last" => num(values[values.len() - 1]),
        "median" => {
            let mut v = values.to_vec();
            v.sort_by(f64::total_cmp);
            let n = v.len();
            json!(if n % 2 == 1 {
                v[n / 2]
            } else {
                (v[n / 2 - 1] + v[n / 2]) / 2.0
            })
        }
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregations_match_an_independent_computation_on_both_backends() {
    let s = setup().await;
    let posted = posted();
    let id = s.id;
    // 15-minute windows from 00:07 (cutting the first window) to 02:31 (cutting the last), and
    // one-minute windows across the gap, which has empty ones.
    for (window_ms, start_ms, end_ms) in [
        (900_000i64, BASE_MS + 7 * 60_000, BASE_MS + 151 * 60_000),
        (60_000, BASE_MS + 55 * 60_000, BASE_MS + 95 * 60_000),
    ] {
        let window = format!("{}m", window_ms / 60_000);
        for agg in [
            "mean", "median", "sum", "min", "max", "count", "first", "last",
        ] {
            let query = format!(
                "window={window}&agg={agg}&start={}&end={}",
                iso_ms(start_ms),
                iso_ms(end_ms)
            );
            let mut answers = Vec::new();
            for source in ["influx", "archive"] {
                let (status, body) = s
                    .get(&format!(
                        "/api/streams/{id}/entries?source={source}&{query}"
                    ))
                    .await;
                assert_eq!(status, StatusCode::OK, "{source} {query}: {body}");
                answers.push(body);
            }
            assert_eq!(
                answers[0], answers[1],
                "influx and archive differ on {query}"
            );
            let body = &answers[0];
            assert_eq!(body["fields"], json!(["t", "n", "gps.lat"]));
            let windows = body["windows"].as_array().unwrap();
            let first = start_ms.div_euclid(window_ms) * window_ms;
            let last = (end_ms - 1).div_euclid(window_ms) * window_ms;
            assert_eq!(
                windows.len() as i64,
                (last - first) / window_ms + 1,
                "{query}"
            );
            let mut empty_windows = 0;
            for (k, w) in windows.iter().enumerate() {
                let w_start = first + k as i64 * window_ms;
                assert_eq!(w["start"], json!(iso_ms(w_start)));
                assert_eq!(w["end"], json!(iso_ms(w_start + window_ms)));
                let inside: Vec<&Value> = posted
                    .iter()
                    .filter(|(at, _)| {
                        (start_ms..end_ms).contains(at)
                            && (w_start..w_start + window_ms).contains(at)
                    })
                    .map(|(_, e)| e)
                    .collect();
                if inside.is_empty() {
                    empty_windows += 1;
                }
                let values = |get: &dyn Fn(&Value) -> Option<f64>| -> Vec<f64> {
                    inside.iter().filter_map(|e| get(e)).collect()
                };
                let mut expected = Map::new();
                let mut gps = Map::new();
                for (name, v, integer) in [
                    ("t", values(&|e| e["t"].as_f64()), false),
                    ("n", values(&|e| e["n"].as_f64()), true),
                    ("gps.lat", values(&|e| e["gps"]["lat"].as_f64()), false),
                ] {
                    let value = expected_agg(agg, &v, integer);
                    if value.is_null() {
                        continue;
                    }
                    match name {
                        "gps.lat" => {
                            gps.insert("lat".into(), value);
                        }
                        _ => {
                            expected.insert(name.into(), value);
                        }
                    }
                }
                if !gps.is_empty() {
                    expected.insert("gps".into(), Value::Object(gps));
                }
                assert_eq!(
                    w["data"],
                    Value::Object(expected),
                    "{query}, window {}",
                    w["start"]
                );
            }
            if window_ms == 60_000 {
                assert!(empty_windows > 10, "the gap shows as empty windows");
            }
        }
    }
    // fields= chooses, and count and last take strings and tags too.
    let (status, body) = s
        .get(&format!(
            "/api/streams/{id}/entries?window=1h&agg=last&fields=note,site&start=2026-01-05&end=2026-01-05T03:00:00Z"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["fields"], json!(["note", "site"]));
    assert_eq!(
        body["windows"][0]["data"]["note"],
        json!("say \"90\", ok\nbye")
    );
    // CSV windows parse back to the JSON values.
    let (_, _, csv_text) = s
        .get_text(
            &format!("/api/streams/{id}/entries?window=15m&agg=sum&start=2026-01-05&end=2026-01-05T03:00:00Z&format=csv"),
            Some(&s.read_key),
        )
        .await;
    let (_, json_body) = s
        .get(&format!(
            "/api/streams/{id}/entries?window=15m&agg=sum&start=2026-01-05&end=2026-01-05T03:00:00Z"
        ))
        .await;
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    assert_eq!(
        reader.headers().unwrap(),
        vec!["start", "end", "t", "n", "gps.lat"]
    );
    for (r, w) in reader
        .records()
        .map(Result::unwrap)
        .zip(json_body["windows"].as_array().unwrap())
    {
        assert_eq!(&r[0], w["start"].as_str().unwrap());
        match w["data"]["t"].as_f64() {
            Some(t) => assert_eq!(r[2].parse::<f64>().unwrap(), t),
            None => assert_eq!(&r[2], ""),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thingspeak_reads_and_rejected_entries_and_hostile_parameters() {
    let s = setup().await;
    let posted = posted();
    let id = s.id;
    let (_, native) = s
        .get(&format!("/api/streams/{id}/entries?limit=10000"))
        .await;
    let native = native["entries"].as_array().unwrap().clone();
    let seq_of = |k: usize| native[k]["seq"].as_u64().unwrap();
    let ts_str = |v: &Value| -> Value {
        match v {
            Value::Null => Value::Null,
            Value::String(s) => json!(s),
            other => json!(other.to_string()),
        }
    };
    let created = |at: i64| {
        DateTime::<Utc>::from_timestamp_millis(at)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let n = posted.len();

    // feeds.json: the channel object and the newest entries, oldest first, values as strings.
    let (status, ct, body) = s
        .get_text(
            &format!("/channels/{id}/feeds.json?api_key={}&results=3", s.read_key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(ct.starts_with("application/json"));
    let v: Value = serde_json::from_str(&body).unwrap();
    let channel = v["channel"].as_object().unwrap();
    let keys: Vec<&str> = channel.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "id",
            "name",
            "description",
            "field1",
            "field2",
            "field3",
            "field4",
            "created_at",
            "updated_at",
            "last_entry_id"
        ]
    );
    assert_eq!(channel["id"], json!(id));
    assert_eq!(channel["field1"], json!("t"));
    assert_eq!(channel["last_entry_id"], json!(seq_of(n - 1)));
    let feeds = v["feeds"].as_array().unwrap();
    assert_eq!(feeds.len(), 3);
    for (k, f) in feeds.iter().enumerate() {
        let (at, e) = &posted[n - 3 + k];
        let keys: Vec<&str> = f.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "created_at",
                "entry_id",
                "field1",
                "field2",
                "field3",
                "field4"
            ]
        );
        assert_eq!(f["created_at"], json!(created(*at)));
        assert_eq!(f["entry_id"], json!(seq_of(n - 3 + k)));
        assert_eq!(f["field1"], ts_str(&e["t"]));
        assert_eq!(f["field2"], ts_str(&e["n"]));
        assert_eq!(f["field3"], ts_str(&e["site"]));
        assert_eq!(f["field4"], ts_str(&e["note"]));
    }

    // feeds.csv: ThingSpeak's header and dates.
    let (status, ct, body) = s
        .get_text(
            &format!("/channels/{id}/feeds.csv?results=2"),
            Some(&s.read_key),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(ct.starts_with("text/csv"));
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[0], "created_at,entry_id,field1,field2,field3,field4");
    let (at, e) = &posted[n - 1];
    let date = DateTime::<Utc>::from_timestamp_millis(*at)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S UTC");
    assert_eq!(
        lines[2],
        format!(
            "{date},{},{},{},{},",
            seq_of(n - 1),
            e["t"],
            e["n"],
            e["site"].as_str().unwrap()
        )
    );

    // One field; the last entry; the last value of a field; its age.
    let (_, field) = s
        .get(&format!("/channels/{id}/fields/2.json?results=2"))
        .await;
    let f = &field["feeds"][1];
    assert_eq!(
        f.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["created_at", "entry_id", "field2"]
    );
    assert_eq!(f["field2"], ts_str(&posted[n - 1].1["n"]));
    let (_, last) = s.get(&format!("/channels/{id}/feeds/last.json")).await;
    assert_eq!(last["entry_id"], json!(seq_of(n - 1)));
    assert!(last.get("channel").is_none());
    let with_note = posted
        .iter()
        .rposition(|(_, e)| e.get("note").is_some())
        .unwrap();
    let (_, last_note) = s.get(&format!("/channels/{id}/fields/4/last.json")).await;
    assert_eq!(last_note["entry_id"], json!(seq_of(with_note)));
    assert_eq!(last_note["field4"], posted[with_note].1["note"]);
    let (_, _, txt) = s
        .get_text(
            &format!("/channels/{id}/fields/1/last.txt"),
            Some(&s.read_key),
        )
        .await;
    assert_eq!(txt, posted[n - 1].1["t"].to_string());
    let (_, age) = s
        .get(&format!("/channels/{id}/fields/1/last_data_age.json"))
        .await;
    let seconds: i64 = age["last_data_age"].as_str().unwrap().parse().unwrap();
    let expected_age = (Utc::now().timestamp_millis() - posted[n - 1].0) / 1000;
    assert!(
        (expected_age - 5..=expected_age + 1).contains(&seconds),
        "{age}"
    );
    assert_eq!(age["last_data_age_units"], json!("s"));

    // A time zone shows in created_at; start and end are read in it, end inclusive.
    let (_, tz) = s
        .get(&format!(
            "/channels/{id}/feeds.json?timezone=America%2FNew_York&start=2026-01-04%2019:00:00&end=2026-01-04%2019:01:14"
        ))
        .await;
    let feeds = tz["feeds"].as_array().unwrap();
    assert_eq!(feeds.len(), 3, "00:00:00, 00:00:37 and 00:01:14 UTC: {tz}");
    assert_eq!(feeds[0]["created_at"], json!("2026-01-04T19:00:00-05:00"));

    // Averages over 15 minutes: windows without entry_id, the sum over the entries in each.
    let (_, avg) = s
        .get(&format!("/channels/{id}/feeds.json?average=15&start=2026-01-05%2000:00:00&end=2026-01-05%2000:29:59"))
        .await;
    let feeds = avg["feeds"].as_array().unwrap();
    assert_eq!(feeds.len(), 2, "{avg}");
    assert!(feeds[0].get("entry_id").is_none());
    assert_eq!(feeds[1]["created_at"], json!("2026-01-05T00:15:00Z"));
    let inside: Vec<f64> = posted
        .iter()
        .filter(|(at, _)| (BASE_MS..BASE_MS + 900_000).contains(at))
        .map(|(_, e)| e["t"].as_f64().unwrap())
        .collect();
    let mean = inside.iter().sum::<f64>() / inside.len() as f64;
    assert_eq!(
        feeds[0]["field1"].as_str().unwrap().parse::<f64>().unwrap(),
        mean
    );

    // The channel's description: public fields for the admin; a private one needs it.
    let (status, _, body) = s
        .get_text(&format!("/channels/{id}.json?api_key={ADMIN_TOKEN}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let d: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (d["id"].clone(), d["name"].clone()),
        (json!(id), json!("lab"))
    );

    // A private channel without its key, or with a wrong one: ThingSpeak's 400 and -1.
    for key in [None, Some("wrong-key")] {
        for path in [
            format!("/channels/{id}/feeds.json"),
            format!("/channels/{id}/fields/1.csv"),
            format!("/channels/{id}.json"),
        ] {
            let (status, _, body) = s.get_text(&path, key).await;
            assert_eq!(
                (status, body.as_str()),
                (StatusCode::BAD_REQUEST, "-1"),
                "{path} {key:?}"
            );
        }
    }
    // The write key reads too, as on ThingSpeak.
    let (status, _, _) = s
        .get_text(&format!("/channels/{id}/feeds.json"), Some(&s.write_key))
        .await;
    assert_eq!(status, StatusCode::OK);

    // A rejected entry shows up with its reason and its body.
    let bad = r#"{"t": "hot", "at": 1767571200000}"#;
    let r = Client::new()
        .post(format!("{}/api/streams/{id}/entries", s.ingest.base))
        .header("x-api-key", &s.write_key)
        .header("content-type", "application/json")
        .body(bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let rejected = loop {
        let (status, body) = s
            .get(&format!("/api/streams/{id}/rejected?start=-1h"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if let Some(r) = body["rejected"].as_array().and_then(|r| r.first()) {
            break r.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rejected entry: {body}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(rejected["kind"], json!("schema_violation"));
    assert_eq!(rejected["stage"], json!("VALIDATE"));
    assert_eq!(rejected["body"], json!(bad));
    assert_eq!(rejected["violations"][0]["instance_path"], json!("/t"));
    let (status, _) = s.get(&format!("/api/streams/{id}/rejected")).await;
    assert_eq!(status, StatusCode::OK);
    // Twenty searches at once all find it, on the api's few readers of the dead-letter topic
    // (two by default), not a Kafka consumer per partition per request.
    let mut searches = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let url = format!("{}/api/streams/{id}/rejected?start=-1h", s.api.base);
        let key = s.read_key.clone();
        searches.spawn(async move {
            let r = Client::new()
                .get(url)
                .header("x-api-key", key)
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        });
    }
    while let Some(answer) = searches.join_next().await {
        let (status, body) = answer.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["rejected"][0]["body"], json!(bad), "{body}");
    }
    let opened = crate::harness::metric(
        &s.api.base,
        "thingtotal_api_dead_letter_readers_opened_total",
        &[],
    )
    .await;
    assert!(
        (1.0..=2.0).contains(&opened),
        "{opened} dead-letter readers opened"
    );
    let (status, _, _) = s
        .get_text(&format!("/api/streams/{id}/rejected"), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Hostile and broken parameters: a 400 that names the problem, never a 5xx.
    let points = s.points().await;
    let native_bad = [
        "limit=0",
        "limit=-1",
        "limit=10001",
        "limit=ten",
        "start=yesterday",
        "start=2026-13-01",
        "start=1'%20OR%20'1'='1",
        "end=2026-01-01&start=2026-01-02",
        "start=-99999999999d",
        "start=9999-01-01T00:00:00Z",
        "order=sideways",
        "cursor=abc",
        "cursor=1;DROP%20MEASUREMENT%20x",
        "source=postgres",
        "format=xml",
        "window=0m&agg=mean",
        "window=15m",
        "agg=mean",
        "window=1s&agg=mean&start=2000-01-01",
        "window=15m&agg=avg",
        "window=15m&agg=mean&fields=t%22)%20FROM%20x;%20DROP%20DATABASE%20thingtotal",
        "window=15m&agg=mean&fields=site",
        "fields=t",
        "unknown=1",
    ];
    for q in native_bad {
        let (status, body) = s.get(&format!("/api/streams/{id}/entries?{q}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {body}");
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{q}: {body}"
        );
    }
    for path in [
        format!("/api/streams/{id}%20OR%201=1/entries"),
        "/api/streams/999999999999/entries".to_owned(),
    ] {
        let (status, _) = s.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let thingspeak_bad = [
        "timezone=UTC'%20OR%201=1",
        "timezone=Mars%2FOlympus",
        "start=last%20tuesday",
        "end=2026-02-30%2000:00:00",
        "results=-1",
        "average=7",
        "round=x",
        "offset=99",
    ];
    for q in thingspeak_bad {
        let (status, body) = s.get(&format!("/channels/{id}/feeds.json?{q}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {body}");
        assert_eq!(
            body["error"]["error_code"],
            json!("error_bad_request"),
            "{q}"
        );
    }
    let (status, _) = s.get("/channels/999999999999/feeds.json").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(s.points().await, points, "InfluxDB is unharmed");
    assert_eq!(points, n as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_fails_behind_the_api_answers_a_request_id_not_its_cause() {
    // InfluxDB "runs" on a port that nothing listens on.
    let dead_port = thingtotal_testkit::free_port().unwrap().to_string();
    let dead = format!("http://127.0.0.1:{dead_port}");
    let prefix = random_prefix("incident");
    let port = thingtotal_testkit::free_port().unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let bin = thingtotal_testkit::thingtotal_bin().unwrap();
    let mut cmd =
        thingtotal_testkit::part_command(&bin, "api", &services().kafka_brokers, &prefix, port);
    cmd.env("THINGTOTAL_INFLUX_URL", &dead);
    let api = Process::spawn("api", cmd, port, Some(log.path()))
        .unwrap()
        .healthy()
        .await
        .unwrap();
    let (id, _, read_key) = stream(
        &api,
        json!({"name": "incident", "fields": ["t"],
               "schema": {"type": "object", "properties": {"t": {"type": "number"}}}}),
    )
    .await;
    for path in [
        format!("/api/streams/{id}/entries?source=influx"),
        format!("/channels/{id}/feeds.json"),
    ] {
        let r = Client::new()
            .get(format!("{}{path}", api.base))
            .header("x-api-key", &read_key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(r.headers()["retry-after"], "1", "{path}");
        let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body = r.text().await.unwrap();
        assert!(body.contains(&request_id), "{path}: {body}");
        for leak in [
            dead_port.as_str(),
            "127.0.0.1",
            "error sending request",
            "onnect",
        ] {
            assert!(!body.contains(leak), "{path} tells {leak:?}: {body}");
        }
        // The cause is in the api's log, under the request id.
        let logged = std::fs::read_to_string(log.path()).unwrap();
        let line = logged
            .lines()
            .find(|l| l.contains(&request_id))
            .unwrap_or_else(|| panic!("{request_id} is not in the log:\n{logged}"));
        assert!(line.contains(&dead_port), "{line}");
    }
}
