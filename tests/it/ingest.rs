//! The ingest edge, through `thingtotal ingest` and `thingtotal api` on real Kafka: what lands on
//! `entries.raw`, and every error status.

use std::io::Write;

use bytes::Bytes;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use std::time::Duration;

use thingtotal_common::topics::Topics;
use thingtotal_testkit::{pipeline, start_part, stream, Pipeline};

use crate::harness::{metric, raw_entries, read_topic};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn schema() -> Value {
    json!({"name": "ingest", "schema": {"type": "object", "properties": {"t": {"type": "number"}}}})
}

async fn post(
    p: &Pipeline,
    id: u64,
    key: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
    gz: bool,
) -> reqwest::Response {
    let mut r = Client::new()
        .post(format!("{}/api/streams/{id}/entries", p.ingest.base))
        .header("content-type", content_type);
    if let Some(k) = key {
        r = r.header("x-api-key", k);
    }
    if gz {
        r = r.header("content-encoding", "gzip").body(gzip(&body));
    } else {
        r = r.body(body);
    }
    r.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_entries_are_on_entries_raw_byte_for_byte_in_order() {
    let p = pipeline("raw", &[]).await;
    let (id, key, _) = stream(&p.api, schema()).await;
    let requests: Vec<(&str, &[u8], bool, Vec<&str>)> = vec![
        (
            "application/json",
            b" {\"t\":  1.50}\n",
            false,
            vec!["{\"t\":  1.50}"],
        ),
        (
            "application/json",
            b"[{\"t\":2},{\"t\":3,\"x\":\"\\u00e9\"} , {\"t\" : 4e0}]",
            false,
            vec!["{\"t\":2}", "{\"t\":3,\"x\":\"\\u00e9\"}", "{\"t\" : 4e0}"],
        ),
        (
            "application/x-ndjson",
            b"{\"t\":5}\n\n{\"t\":6}\r\n{\"t\": 7}",
            false,
            vec!["{\"t\":5}", "{\"t\":6}", "{\"t\": 7}"],
        ),
        (
            "application/json",
            b"[{\"t\":8},{\"t\":9}]",
            true,
            vec!["{\"t\":8}", "{\"t\":9}"],
        ),
    ];
    let mut expected: Vec<(String, String, u64)> = Vec::new();
    for (content_type, body, gz, entries) in requests {
        let r = post(&p, id, Some(&key), content_type, body.to_vec(), gz).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let a: Value = r.json().await.unwrap();
        assert_eq!(a["accepted"], entries.len());
        for (i, e) in entries.iter().enumerate() {
            expected.push((
                e.to_string(),
                a["entry_ids"][i].as_str().unwrap().to_owned(),
                a["seq"][i].as_u64().unwrap(),
            ));
        }
    }
    let raw = raw_entries(&p.prefix, expected.len()).await;
    assert_eq!(raw.len(), expected.len());
    assert!(
        raw.iter().all(|c| c.partition == raw[0].partition),
        "one stream, one partition"
    );
    for (c, (bytes, entry_id, seq)) in raw.iter().zip(&expected) {
        assert_eq!(c.key.as_deref(), Some(id.to_string().as_bytes()));
        assert_eq!(
            c.value.as_deref(),
            Some(bytes.as_bytes()),
            "the bytes as sent"
        );
        assert_eq!(c.offset as u64 + 1, *seq, "seq is the offset plus one");
        let names: Vec<&str> = c.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["tt.entry_id", "tt.received_at", "tt.source"]);
        assert_eq!(
            c.header("tt.entry_id"),
            Some(&Bytes::from(entry_id.clone()))
        );
        let id = uuid::Uuid::parse_str(entry_id).unwrap();
        assert_eq!(id.get_version_num(), 7);
        let received = std::str::from_utf8(c.header("tt.received_at").unwrap()).unwrap();
        let t = chrono::DateTime::parse_from_rfc3339(received).unwrap();
        assert!(
            received.ends_with('Z') && received.len() == 27,
            "microseconds, UTC: {received}"
        );
        assert_eq!(
            c.timestamp_ms,
            t.timestamp_millis(),
            "the Kafka timestamp is received_at"
        );
        assert_eq!(c.header("tt.source").map(|b| &b[..]), Some(&b"http"[..]));
    }
    let seqs: Vec<u64> = expected.iter().map(|e| e.2).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert!(seqs[0] >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ingest_error_has_its_status() {
    let p = pipeline(
        "ingest-errors",
        &[
            ("THINGTOTAL_MAX_BODY_BYTES", "65536"),
            ("THINGTOTAL_MAX_ENTRIES", "50"),
        ],
    )
    .await;
    let (id, key, read_key) = stream(&p.api, schema()).await;
    let problem = |r: reqwest::Response, status: StatusCode| async move {
        assert_eq!(r.status(), status);
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        r.json::<Value>().await.unwrap()
    };
    let ok = b"{\"t\":1}".to_vec();
    problem(
        post(&p, id, None, "application/json", ok.clone(), false).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(
        post(
            &p,
            id,
            Some(&read_key),
            "application/json",
            ok.clone(),
            false,
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(
        post(&p, 999, Some(&key), "application/json", ok.clone(), false).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let e = problem(
        post(
            &p,
            id,
            Some(&key),
            "application/json",
            b"[{\"t\":1},\n {\"t\":}]".to_vec(),
            false,
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(
        (e["line"].as_u64(), e["column"].as_u64()),
        (Some(2), Some(7)),
        "{e}"
    );
    let e = problem(
        post(
            &p,
            id,
            Some(&key),
            "application/x-ndjson",
            b"{\"t\":1}\n{\"t\":2}\nnope".to_vec(),
            false,
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(e["line"], 3, "{e}");
    let e = problem(
        post(
            &p,
            id,
            Some(&key),
            "application/json",
            b"[{\"t\":1}, 2]".to_vec(),
            false,
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(e["errors"][0]["pointer"], "/1");
    problem(
        post(
            &p,
            id,
            Some(&key),
            "application/json",
            b"[]".to_vec(),
            false,
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    // Limits: the body, the entry count, and the inflated size (a gzip bomb).
    let big = format!(
        "[{}]",
        vec![format!("{{\"t\":1,\"pad\":\"{}\"}}", "x".repeat(1000)); 70].join(",")
    );
    problem(
        post(
            &p,
            id,
            Some(&key),
            "application/json",
            big.into_bytes(),
            false,
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    let many = format!("[{}]", vec!["{\"t\":1}"; 51].join(","));
    let e = problem(
        post(
            &p,
            id,
            Some(&key),
            "application/json",
            many.into_bytes(),
            false,
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert!(e["detail"].as_str().unwrap().contains("50"));
    let mut bomb = b"{\"t\":1,\"pad\":\"".to_vec();
    bomb.extend(std::iter::repeat_n(b' ', 40 * 1024 * 1024));
    bomb.extend(b"\"}");
    let compressed = gzip(&bomb);
    assert!(
        compressed.len() < 65536,
        "the bomb fits the body limit: {}",
        compressed.len()
    );
    let r = Client::new()
        .post(format!("{}/api/streams/{id}/entries", p.ingest.base))
        .header("x-api-key", &key)
        .header("content-encoding", "gzip")
        .body(compressed)
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::PAYLOAD_TOO_LARGE).await;
    let r = Client::new()
        .post(format!("{}/api/streams/{id}/entries", p.ingest.base))
        .header("x-api-key", &key)
        .header("content-encoding", "gzip")
        .body(b"not gzip at all".to_vec())
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST).await;
    let r = Client::new()
        .post(format!("{}/api/streams/{id}/entries", p.ingest.base))
        .header("x-api-key", &key)
        .header("content-encoding", "br")
        .body(ok.clone())
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    problem(
        post(&p, id, Some(&key), "text/csv", b"t\n1\n".to_vec(), false).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    // None of the refused requests stored anything: the one good request lands at offset 0.
    let r = post(&p, id, Some(&key), "application/json", ok, false).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let a: Value = r.json().await.unwrap();
    assert_eq!(a["seq"], json!([1]));
    // Every answer is counted, those refused before the body was read whole included: the
    // body over the limit, too many entries and the gzip bomb.
    let requests = "thingtotal_ingest_requests_total";
    let entries = "route=\"entries\"";
    assert_eq!(
        metric(&p.ingest.base, requests, &[entries, "status=\"413\""]).await,
        3.0
    );
    assert_eq!(
        metric(&p.ingest.base, requests, &[entries, "status=\"202\""]).await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_larger_than_the_log_takes_gets_413_and_nothing_of_its_request_is_stored() {
    let p = pipeline("entry-size", &[]).await;
    let (id, key, _) = stream(&p.api, schema()).await;
    // The second of three entries is 1,000,001 bytes: within the body limit (1 MiB), over what
    // the log takes.
    let empty = "{\"t\":2,\"pad\":\"\"}";
    let second = format!(
        "{{\"t\":2,\"pad\":\"{}\"}}",
        "x".repeat(1_000_001 - empty.len())
    );
    assert_eq!(second.len(), 1_000_001);
    let body = format!("[{{\"t\":1}},{second},{{\"t\":3}}]");
    let r = post(
        &p,
        id,
        Some(&key),
        "application/json",
        body.into_bytes(),
        false,
    )
    .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["errors"][0]["pointer"], "/1", "{e}");
    assert!(e["detail"].as_str().unwrap().contains("983040"), "{e}");
    // The ThingSpeak routes answer in their own dialect.
    let c = Client::new();
    let r = c
        .post(format!("{}/update", p.ingest.base))
        .form(&[
            ("api_key", key.as_str()),
            ("field1", &"x".repeat(1_000_001)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.text().await.unwrap(), "0");
    let r = c
        .post(format!("{}/channels/{id}/bulk_update.json", p.ingest.base))
        .json(&json!({"write_api_key": key, "updates": [
            {"delta_t": 0, "field1": "1"}, {"delta_t": 1, "field1": "x".repeat(1_000_001)}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["error_code"], "error_request_too_large", "{e}");
    // Nothing of those requests was stored: the next request's entry is the only one.
    let r = post(
        &p,
        id,
        Some(&key),
        "application/json",
        b"{\"t\":4}".to_vec(),
        false,
    )
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let raw = read_topic(&Topics::new(&p.prefix).raw, 1, Duration::from_secs(30)).await;
    assert_eq!(raw[0].value.as_deref(), Some(&b"{\"t\":4}"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thingspeak_writes_become_typed_entries_with_thingspeak_answers() {
    let p = pipeline("thingspeak", &[]).await;
    let (id, key, _) = stream(
        &p.api,
        json!({"name": "weather", "schema": {"type": "object", "properties": {
            "temperature": {"type": "number"}, "humidity": {"type": "integer"},
            "door": {"type": "boolean"}, "note": {"type": "string"},
            "at": {"type": "string", "format": "date-time"},
            "lat": {"type": "number"}, "status": {"type": "string"}}},
          "fields": ["temperature", "humidity", "door", "note"], "timestamp_field": "at"}),
    )
    .await;
    let c = Client::new();
    // GET /update: the entry id as text.
    let r = c
        .get(format!("{}/update?api_key={key}&field1=21.5&field2=40&field3=1&field4=hello&lat=52.25&status=ok", p.ingest.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let first: u64 = r.text().await.unwrap().parse().unwrap();
    assert_eq!(first, 1);
    // POST /update as the Arduino library sends it: a form, the key in X-THINGSPEAKAPIKEY.
    let r = c
        .post(format!("{}/update", p.ingest.base))
        .header("X-THINGSPEAKAPIKEY", &key)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("field1=-3&field2=7.0&field3=false&headers=false")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "2");
    // /update.json: ThingSpeak's entry object, values as strings.
    let r = c
        .post(format!("{}/update.json", p.ingest.base))
        .form(&[
            ("api_key", key.as_str()),
            ("field1", "19"),
            ("created_at", "2026-01-01 10:00:00"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(
        !text.contains(": "),
        "compact JSON, as ThingSpeak clients parse it: {text}"
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v,
        json!({"channel_id": id, "created_at": "2026-01-01T10:00:00Z", "entry_id": 3, "field1": "19",
               "field2": null, "field3": null, "field4": null, "field5": null, "field6": null, "field7": null,
               "field8": null, "latitude": null, "longitude": null, "elevation": null, "status": null})
    );
    // Bulk: 202 {"success":true}, the times from delta_t.
    let r = c
        .post(format!("{}/channels/{id}/bulk_update.json", p.ingest.base))
        .json(&json!({"write_api_key": key, "updates": [
            {"created_at": "2026-01-02T00:00:00Z", "field1": "1"},
            {"delta_t": 5, "field1": 2, "field2": "3"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"success": true}));
    // Failures answer as ThingSpeak does.
    let r = c
        .get(format!("{}/update?api_key=wrong&field1=1", p.ingest.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.text().await.unwrap(), "0");
    let r = c
        .get(format!("{}/update.json?field1=1", p.ingest.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "0");
    let r = c
        .post(format!("{}/channels/{id}/bulk_update.json", p.ingest.base))
        .json(&json!({"write_api_key": "wrong", "updates": [{"delta_t": 0, "field1": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"status": "401", "error": {"error_code": "error_auth_required", "message": "Authorization Required",
               "details": "Please make sure that your API key is correct."}})
    );
    // A body over the limit (1 MiB by default) gets ThingSpeak's answers too.
    let huge = format!("api_key={key}&status={}", "x".repeat(1 << 20));
    let r = c
        .post(format!("{}/update", p.ingest.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.text().await.unwrap(), "0");
    let r = c
        .post(format!("{}/channels/{id}/bulk_update.json", p.ingest.base))
        .json(&json!({"write_api_key": key, "updates": [{"delta_t": 0, "status": "x".repeat(1 << 20)}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["status"], "413");
    assert_eq!(e["error"]["error_code"], "error_request_too_large");
    // A delta_t that no time can be that far from is a 400, not a panic, and stores nothing.
    let r = c
        .post(format!("{}/channels/{id}/bulk_update.json", p.ingest.base))
        .json(&json!({"write_api_key": key, "updates": [{"delta_t": 0, "field1": 1}, {"delta_t": 1e13, "field1": 2}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["error_code"], "error_bad_request");
    assert!(
        e["error"]["details"]
            .as_str()
            .unwrap()
            .contains("update 1: delta_t"),
        "{e}"
    );
    // The entries on entries.raw, typed by the schema.
    let raw = raw_entries(&p.prefix, 5).await;
    assert_eq!(raw.len(), 5, "nothing of a refused request is stored");
    let data: Vec<Value> = raw
        .iter()
        .map(|c| serde_json::from_slice(c.value.as_deref().unwrap()).unwrap())
        .collect();
    assert_eq!(
        data[0],
        json!({"temperature": 21.5, "humidity": 40, "door": true, "note": "hello", "lat": 52.25, "status": "ok"})
    );
    assert_eq!(
        data[1],
        json!({"temperature": -3.0, "humidity": 7, "door": false})
    );
    assert_eq!(
        data[2],
        json!({"temperature": 19.0, "at": "2026-01-01T10:00:00.000000Z"})
    );
    assert_eq!(
        data[3],
        json!({"temperature": 1.0, "at": "2026-01-02T00:00:00.000000Z"})
    );
    assert_eq!(
        data[4],
        json!({"temperature": 2.0, "humidity": 3, "at": "2026-01-02T00:00:05.000000Z"})
    );
    assert!(raw
        .iter()
        .all(|c| c.header("tt.source").map(|b| &b[..]) == Some(&b"thingspeak"[..])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thingspeak_device_times_set_ts_on_a_stream_without_a_timestamp_field() {
    let p = pipeline("thingspeak-times", &[]).await;
    let _validator = start_part("validator", &p.prefix, &[]).await;
    let (id, key, _) = stream(
        &p.api,
        json!({"name": "plain", "schema": {"type": "object", "properties": {
            "temperature": {"type": "number"}}}, "fields": ["temperature"]}),
    )
    .await;
    let c = Client::new();
    let r = c
        .get(format!(
            "{}/update.json?api_key={key}&field1=5&created_at=2025-06-01%2010:00:00",
            p.ingest.base
        ))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["created_at"], "2025-06-01T10:00:00Z");
    let r = c
        .post(format!("{}/channels/{id}/bulk_update.json", p.ingest.base))
        .json(&json!({"write_api_key": key, "updates": [
            {"created_at": "2025-06-02T00:00:00Z", "field1": "1"},
            {"delta_t": 5, "field1": "2"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // No time at all: ts is the receive time.
    let r = c
        .get(format!("{}/update?api_key={key}&field1=7", p.ingest.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "4");
    let raw = raw_entries(&p.prefix, 4).await;
    let header = |i: usize| {
        raw[i]
            .header("tt.created_at")
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
    };
    assert_eq!(header(0).as_deref(), Some("2025-06-01T10:00:00.000000Z"));
    assert_eq!(header(3), None);
    let valid = read_topic(&Topics::new(&p.prefix).valid, 4, Duration::from_secs(60)).await;
    let mut envelopes: Vec<Value> = valid
        .iter()
        .map(|c| serde_json::from_slice(c.value.as_deref().unwrap()).unwrap())
        .collect();
    envelopes.sort_by_key(|e| e["seq"].as_u64());
    let ts: Vec<&str> = envelopes
        .iter()
        .map(|e| e["ts"].as_str().unwrap())
        .collect();
    assert_eq!(
        ts[..3],
        [
            "2025-06-01T10:00:00.000000Z",
            "2025-06-02T00:00:00.000000Z",
            "2025-06-02T00:00:05.000000Z"
        ]
    );
    assert_eq!(ts[3], envelopes[3]["received_at"].as_str().unwrap());
    assert_eq!(envelopes[1]["data"], json!({"temperature": 1.0}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thingspeak_compressed_bodies_are_inflated_only_for_a_key_shown_outside_them() {
    let p = pipeline("ts-gzip", &[("THINGTOTAL_MAX_BODY_BYTES", "65536")]).await;
    let (id, key, _) = stream(
        &p.api,
        json!({"name": "gz", "fields": ["t"],
               "schema": {"type": "object", "properties": {"t": {"type": "number"}}}}),
    )
    .await;
    let c = Client::new();
    // A gzip bomb that fits the body limit, its key inside.
    let mut bomb = format!("{{\"write_api_key\":\"{key}\",\"updates\":[{{\"field1\":1,\"pad\":\"")
        .into_bytes();
    bomb.extend(std::iter::repeat_n(b' ', 40 * 1024 * 1024));
    bomb.extend(b"\"}]}");
    let bomb = gzip(&bomb);
    assert!(bomb.len() < 65536, "{}", bomb.len());
    let bulk = |header_key: Option<&str>, body: Vec<u8>| {
        let mut r = c
            .post(format!("{}/channels/{id}/bulk_update.json", p.ingest.base))
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(body);
        if let Some(k) = header_key {
            r = r.header("THINGSPEAKAPIKEY", k);
        }
        async move {
            let r = r.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    // Without a key outside the body, or with a wrong one, it is refused uninflated: 401.
    for header_key in [None, Some("wrong")] {
        let (status, body) = bulk(header_key, bomb.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{header_key:?}: {body}");
        assert_eq!(body["error"]["error_code"], json!("error_auth_required"));
    }
    // With the channel's key in the header it is inflated, and found too large.
    let (status, body) = bulk(Some(&key), bomb).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let updates = br#"{"updates":[{"delta_t":2,"field1":1.5},{"delta_t":1,"field1":2.5}]}"#;
    let (status, body) = bulk(Some(&key), gzip(updates)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // /update: a compressed form whose key is only inside is refused as ThingSpeak refuses a
    // missing key; with the key in the header it is stored.
    let form = gzip(format!("api_key={key}&field1=3.5").as_bytes());
    let update = |header_key: Option<&str>| {
        let mut r = c
            .post(format!("{}/update", p.ingest.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("content-encoding", "gzip")
            .body(form.clone());
        if let Some(k) = header_key {
            r = r.header("X-THINGSPEAKAPIKEY", k);
        }
        async move {
            let r = r.send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    assert_eq!(update(None).await, (StatusCode::BAD_REQUEST, "0".into()));
    let (status, seq) = update(Some(&key)).await;
    assert_eq!(status, StatusCode::OK, "{seq}");
    assert_eq!(seq, "3", "after the two bulk updates");
    // Exactly the three accepted entries are in the log.
    let raw = raw_entries(&p.prefix, 3).await;
    assert_eq!(raw.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_over_the_in_flight_limit_get_503_with_retry_after_as_they_arrive() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let p = pipeline("in-flight", &[("THINGTOTAL_MAX_REQUESTS_IN_FLIGHT", "1")]).await;
    let (id, key, _) = stream(
        &p.api,
        json!({"name": "busy", "fields": ["t"],
               "schema": {"type": "object", "properties": {"t": {"type": "number"}}}}),
    )
    .await;
    // One write in flight: its body is on its way, slowly.
    let body = br#"{"t": 1.5}"#;
    let mut slow = tokio::net::TcpStream::connect(p.ingest.addr).await.unwrap();
    slow.write_all(
        format!(
            "POST /api/streams/{id}/entries HTTP/1.1\r\nhost: x\r\nx-api-key: {key}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    slow.write_all(&body[..3]).await.unwrap();
    slow.flush().await.unwrap();
    let in_flight = || metric(&p.ingest.base, "thingtotal_http_requests_in_flight", &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while in_flight().await < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow write never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every other write is answered at once: 503, Retry-After, nothing stored.
    let c = Client::new();
    let r = c
        .post(format!("{}/api/streams/{id}/entries", p.ingest.base))
        .header("x-api-key", &key)
        .json(&json!({"t": 2.5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "1");
    let problem: Value = r.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("--max-requests-in-flight"),
        "{problem}"
    );
    let r = c
        .get(format!("{}/update?api_key={key}&field1=3", p.ingest.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.text().await.unwrap(), "0");
    let r = c
        .post(format!("{}/channels/{id}/bulk_update.json", p.ingest.base))
        .json(&json!({"write_api_key": key, "updates": [{"field1": 4}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "1");
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["error_code"], json!("error_service_unavailable"));
    assert_eq!(
        metric(
            &p.ingest.base,
            "thingtotal_http_requests_refused_total",
            &[]
        )
        .await,
        3.0
    );
    // The slow write finishes and is accepted; then there is room again.
    slow.write_all(&body[3..]).await.unwrap();
    let mut answer = vec![0; 1024];
    let n = slow.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let r = c
        .post(format!("{}/api/streams/{id}/entries", p.ingest.base))
        .header("x-api-key", &key)
        .json(&json!({"t": 5.5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let raw = raw_entries(&p.prefix, 2).await;
    let values: Vec<String> = raw
        .iter()
        .map(|c| String::from_utf8_lossy(c.value.as_deref().unwrap()).into_owned())
        .collect();
    assert_eq!(
        values,
        vec![r#"{"t": 1.5}"#.to_owned(), r#"{"t":5.5}"#.to_owned()]
    );
}
