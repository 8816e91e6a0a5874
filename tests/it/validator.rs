//! The validator, through `thingtotal validator` on real Kafka: exact counts on `entries.valid`
//! and `entries.dlq`, the dead letters' headers, exactly once across `kill -9`, two instances in
//! one group, and schema changes.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use reqwest::Client;
use serde_json::{json, Value};
use thingtotal_common::log::{Consumed, Record};
use thingtotal_common::topics::Topics;
use thingtotal_testkit::{kafka, random_prefix, start_api, start_part, stream, ADMIN_TOKEN};

use crate::harness::{metric, read_topic};

/// A raw entry as ingest would publish it.
fn raw(stream: u64, value: &str, n: usize) -> Record {
    Record::new(stream.to_string(), value.to_owned())
        .header("tt.entry_id", uuid::Uuid::now_v7().to_string())
        .header("tt.received_at", "2026-01-01T00:00:00.000000Z")
        .header("tt.source", format!("test-{n}"))
}

fn header(c: &Consumed, name: &str) -> String {
    String::from_utf8(
        c.header(name)
            .unwrap_or_else(|| panic!("header {name}"))
            .to_vec(),
    )
    .unwrap()
}

fn schema() -> Value {
    json!({"name": "v", "schema": {"type": "object", "properties": {
        "t": {"type": "number", "minimum": -40, "maximum": 85},
        "mode": {"enum": ["auto", "manual"]},
        "at": {"type": "string"}},
        "required": ["t"], "additionalProperties": false},
        "timestamp_field": "at"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_input_lands_in_exactly_one_place_with_reasons() {
    let prefix = random_prefix("validate");
    let api = start_api(&prefix).await;
    let _validator = start_part("validator", &prefix, &[]).await;
    let (id, _, _) = stream(&api, schema()).await;
    // A stream that existed and was deleted: its entries are unknown from then on.
    let (gone, _, _) = stream(&api, schema()).await;
    let r = Client::new()
        .delete(format!("{}/api/streams/{gone}", api.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NO_CONTENT);
    let topics = Topics::new(&prefix);
    let at = "\"at\":\"2026-02-03T04:05:06Z\"";
    // (value, expected kind or None for valid, expected instance path, expected keyword)
    let cases: Vec<(u64, String, Option<&str>, &str, &str)> = vec![
        (id, format!("{{\"t\":21.5,{at}}}"), None, "", ""),
        (
            id,
            format!("{{\"t\":-3,\"mode\":\"auto\",{at}}}"),
            None,
            "",
            "",
        ),
        (
            id,
            format!("{{\"t\":\"warm\",{at}}}"),
            Some("schema_violation"),
            "/t",
            "type",
        ),
        (
            id,
            format!("{{\"mode\":\"auto\",{at}}}"),
            Some("schema_violation"),
            "",
            "required",
        ),
        (
            id,
            format!("{{\"t\":1,\"mode\":\"eco\",{at}}}"),
            Some("schema_violation"),
            "/mode",
            "enum",
        ),
        (
            id,
            format!("{{\"t\":120,{at}}}"),
            Some("schema_violation"),
            "/t",
            "maximum",
        ),
        (
            id,
            format!("{{\"t\":1,\"x\":2,{at}}}"),
            Some("schema_violation"),
            "",
            "additionalProperties",
        ),
        (id, "{\"t\":1,".to_owned(), Some("malformed_json"), "", ""),
        (
            id,
            "{\"t\":1,\"at\":\"someday\"}".to_owned(),
            Some("bad_timestamp"),
            "/at",
            "timestamp_field",
        ),
        (
            id,
            "{\"t\":1}".to_owned(),
            Some("bad_timestamp"),
            "/at",
            "timestamp_field",
        ),
        (
            987_654,
            format!("{{\"t\":1,{at}}}"),
            Some("unknown_stream"),
            "",
            "",
        ),
        (
            gone,
            format!("{{\"t\":1,{at}}}"),
            Some("unknown_stream"),
            "",
            "",
        ),
    ];
    let log = kafka();
    let mut positions = HashMap::new();
    for (n, (stream_id, value, ..)) in cases.iter().enumerate() {
        let p = log
            .append(&topics.raw, vec![raw(*stream_id, value, n)])
            .await
            .unwrap();
        positions.insert(n, p[0]);
    }
    let valid = read_topic(&topics.valid, 2, Duration::from_secs(60)).await;
    let dead = read_topic(&topics.dlq, 10, Duration::from_secs(60)).await;
    // Each case landed once, in one place.
    let mut landed: Vec<usize> = valid
        .iter()
        .chain(&dead)
        .map(|c| header(c, "tt.source")[5..].parse().unwrap())
        .collect();
    landed.sort();
    assert_eq!(landed, (0..cases.len()).collect::<Vec<_>>());
    for v in &valid {
        let e: Value = serde_json::from_slice(v.value.as_deref().unwrap()).unwrap();
        let n: usize = header(v, "tt.source")[5..].parse().unwrap();
        assert!(cases[n].2.is_none(), "case {n} should not be valid");
        assert_eq!(e["stream_id"], id);
        assert_eq!(e["stream_version"], 1);
        assert_eq!(e["seq"], positions[&n].offset + 1);
        assert_eq!(e["ts"], "2026-02-03T04:05:06.000000Z");
        assert_eq!(e["received_at"], "2026-01-01T00:00:00.000000Z");
        assert_eq!(e["entry_id"], header(v, "tt.entry_id"));
        assert_eq!(
            e["data"],
            serde_json::from_str::<Value>(&cases[n].1).unwrap()
        );
    }
    for d in &dead {
        let n: usize = header(d, "tt.source")[5..].parse().unwrap();
        let (stream_id, value, kind, path, keyword) = &cases[n];
        let kind = kind.unwrap_or_else(|| panic!("case {n} should be valid"));
        assert_eq!(
            d.value.as_deref(),
            Some(value.as_bytes()),
            "the original bytes"
        );
        assert_eq!(header(d, "tt.error.kind"), kind);
        assert_eq!(header(d, "__connect.errors.exception.class.name"), kind);
        assert_eq!(header(d, "__connect.errors.stage"), "VALIDATE");
        assert_eq!(header(d, "__connect.errors.topic"), topics.raw);
        assert_eq!(
            header(d, "__connect.errors.partition"),
            positions[&n].partition.to_string()
        );
        assert_eq!(
            header(d, "__connect.errors.offset"),
            positions[&n].offset.to_string()
        );
        assert!(!header(d, "__connect.errors.exception.message").is_empty());
        let details: Value = serde_json::from_str(&header(d, "tt.error.details")).unwrap();
        if kind == "unknown_stream" {
            assert_eq!(d.key, None);
            assert!(d.header("tt.stream_version").is_none());
        } else {
            assert_eq!(d.key.as_deref(), Some(stream_id.to_string().as_bytes()));
            assert_eq!(header(d, "tt.stream_version"), "1");
        }
        if !keyword.is_empty() {
            let found = details
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["instance_path"] == *path && v["keyword"] == *keyword);
            assert!(found, "case {n}: {details}");
        }
    }
}

/// Appends `per_stream` entries to each stream, a tenth of them invalid, in batches.
async fn feed(prefix: &str, streams: &[u64], per_stream: usize) -> HashMap<String, (u64, usize)> {
    feed_range(prefix, streams, 0, per_stream).await
}

/// Appends entries `from..to` of each stream, a tenth of them invalid, in batches.
async fn feed_range(
    prefix: &str,
    streams: &[u64],
    from: usize,
    to: usize,
) -> HashMap<String, (u64, usize)> {
    let log = kafka();
    let topic = Topics::new(prefix).raw;
    let mut sent = HashMap::new();
    for chunk in from / 1000..to.div_ceil(1000) {
        let mut records = Vec::new();
        for s in streams {
            for i in (chunk * 1000).max(from)..((chunk + 1) * 1000).min(to) {
                let value = if i % 10 == 9 {
                    format!("{{\"t\":\"bad {i}\"}}")
                } else {
                    format!("{{\"t\":{i}}}")
                };
                let r = raw(*s, &value, i);
                let entry_id = String::from_utf8(r.headers[0].1.to_vec()).unwrap();
                sent.insert(entry_id, (*s, i));
                records.push(r);
            }
        }
        log.append(&topic, records).await.unwrap();
    }
    sent
}

/// Checks that every sent entry is on valid or dlq exactly once, and that each stream's valid
/// entries keep their order.
async fn exactly_once(prefix: &str, sent: &HashMap<String, (u64, usize)>) {
    let topics = Topics::new(prefix);
    let invalid = sent.values().filter(|(_, i)| i % 10 == 9).count();
    let valid = read_topic(
        &topics.valid,
        sent.len() - invalid,
        Duration::from_secs(300),
    )
    .await;
    let dead = read_topic(&topics.dlq, invalid, Duration::from_secs(120)).await;
    let mut seen = HashSet::new();
    let mut last: HashMap<u64, (i64, usize)> = HashMap::new();
    let mut valid_sorted = valid.clone();
    valid_sorted.sort_by_key(|c| (c.partition, c.offset));
    for c in &valid_sorted {
        let id = header(c, "tt.entry_id");
        assert!(seen.insert(id.clone()), "{id} twice");
        let (stream, i) = sent[&id];
        assert!(i % 10 != 9, "an invalid entry on valid");
        let e: Value = serde_json::from_slice(c.value.as_deref().unwrap()).unwrap();
        let seq = e["seq"].as_i64().unwrap();
        if let Some((prev_seq, prev_i)) = last.insert(stream, (seq, i)) {
            assert!(seq > prev_seq && i > prev_i, "stream {stream} out of order");
        }
    }
    for c in &dead {
        let id = header(c, "tt.entry_id");
        assert!(seen.insert(id.clone()), "{id} twice");
        assert_eq!(
            sent[&id].1 % 10,
            9,
            "a valid entry on the dead-letter topic"
        );
    }
    assert_eq!(seen.len(), sent.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_then_restart_is_exactly_once() {
    let prefix = random_prefix("validator-kill");
    let api = start_api(&prefix).await;
    let mut streams = Vec::new();
    for _ in 0..4 {
        streams.push(stream(&api, json!({"name": "k", "schema": {"type": "object", "properties": {"t": {"type": "number"}}}})).await.0);
    }
    let env = [("THINGTOTAL_INSTANCE_ID", "kill-test")];
    let mut validator = start_part("validator", &prefix, &env).await;
    let sent = feed(&prefix, &streams, 25_000).await;
    // Kill it with SIGKILL once it is part-way through.
    let valid_topic = Topics::new(&prefix).valid;
    let log = kafka();
    wait_for_output(&prefix, 10_000).await;
    validator.child.kill().unwrap();
    validator.child.wait().unwrap();
    let done: i64 = log.end_offsets(&valid_topic).await.unwrap().iter().sum();
    assert!(done < 90_000, "killed too late to prove anything: {done}");
    drop(validator);
    let _restarted = start_part("validator", &prefix, &env).await;
    exactly_once(&prefix, &sent).await;
}

async fn processed_by(base: &str) -> f64 {
    metric(base, "thingtotal_validator_entries_total", &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_partitions_exactly_once() {
    let prefix = random_prefix("validator-pair");
    let api = start_api(&prefix).await;
    let mut streams = Vec::new();
    for _ in 0..12 {
        streams.push(stream(&api, json!({"name": "p", "schema": {"type": "object", "properties": {"t": {"type": "number"}}}})).await.0);
    }
    let a = start_part("validator", &prefix, &[("THINGTOTAL_INSTANCE_ID", "a")]).await;
    let b = start_part("validator", &prefix, &[("THINGTOTAL_INSTANCE_ID", "b")]).await;
    // Let both join before the data arrives, so that the work is shared.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let sent = feed(&prefix, &streams, 2_000).await;
    exactly_once(&prefix, &sent).await;
    let (on_a, on_b) = (processed_by(&a.base).await, processed_by(&b.base).await);
    assert_eq!(on_a + on_b, sent.len() as f64);
    assert!(
        on_a > 0.0 && on_b > 0.0,
        "both instances worked: {on_a} and {on_b}"
    );
}

/// Waits until `entries.valid` and `entries.dlq` hold more than `n` entries together.
async fn wait_for_output(prefix: &str, n: i64) {
    let topics = Topics::new(prefix);
    let log = kafka();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let mut done = 0;
        for t in [&topics.valid, &topics.dlq] {
            done += log.end_offsets(t).await.unwrap().iter().sum::<i64>();
        }
        if done > n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the validators made no progress past {done}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_joining_and_leaving_mid_run_stay_exactly_once() {
    let prefix = random_prefix("validator-rebalance");
    let api = start_api(&prefix).await;
    let mut streams = Vec::new();
    for _ in 0..8 {
        streams.push(stream(&api, json!({"name": "r", "schema": {"type": "object", "properties": {"t": {"type": "number"}}}})).await.0);
    }
    // Long polls over a trickle of entries: a membership change almost always lands while a
    // member is filling a batch, with records of the partitions it is about to lose in it.
    let env = |id| {
        [
            ("THINGTOTAL_INSTANCE_ID", id),
            ("THINGTOTAL_VALIDATOR_BATCH_LINGER_MS", "1500"),
            ("THINGTOTAL_VALIDATOR_BATCH_MAX", "1000000"),
        ]
    };
    let mut a = start_part("validator", &prefix, &env("a")).await;
    let feeder = {
        let (prefix, streams) = (prefix.clone(), streams.clone());
        tokio::spawn(async move {
            let mut sent = HashMap::new();
            for round in 0..40 {
                sent.extend(feed_range(&prefix, &streams, round * 250, (round + 1) * 250).await);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            sent
        })
    };
    // A second member joins while the first is part-way through.
    wait_for_output(&prefix, 5_000).await;
    let b = start_part("validator", &prefix, &env("b")).await;
    // Then the first leaves cleanly, and its partitions move to the second.
    wait_for_output(&prefix, 40_000).await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &a.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    a.child.wait().unwrap();
    let sent = feeder.await.unwrap();
    assert_eq!(sent.len(), 80_000);
    exactly_once(&prefix, &sent).await;
    assert!(
        processed_by(&b.base).await > 0.0,
        "the member that joined mid-run did some of the work"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_change_takes_effect_and_the_version_is_recorded() {
    let prefix = random_prefix("validator-schema");
    let api = start_api(&prefix).await;
    let _validator = start_part("validator", &prefix, &[]).await;
    let (id, _, _) = stream(
        &api,
        json!({"name": "s", "schema": {"type": "object", "properties": {"t": {"type": "number"}}}}),
    )
    .await;
    let topics = Topics::new(&prefix);
    let log = kafka();
    log.append(&topics.raw, vec![raw(id, "{\"t\":100}", 0)])
        .await
        .unwrap();
    read_topic(&topics.valid, 1, Duration::from_secs(60)).await;
    // Version 2 caps t at 50.
    let r = Client::new()
        .put(format!("{}/api/streams/{id}?force=true", api.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "s", "schema": {"type": "object", "properties": {"t": {"type": "number", "maximum": 50}}}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    // The validator's registry follows the streams topic within milliseconds; the wait keeps the
    // test independent of that.
    tokio::time::sleep(Duration::from_secs(2)).await;
    log.append(
        &topics.raw,
        vec![raw(id, "{\"t\":100}", 1), raw(id, "{\"t\":10}", 2)],
    )
    .await
    .unwrap();
    let valid = read_topic(&topics.valid, 2, Duration::from_secs(60)).await;
    let dead = read_topic(&topics.dlq, 1, Duration::from_secs(60)).await;
    let versions: Vec<(String, u64)> = valid
        .iter()
        .map(|c| {
            let e: Value = serde_json::from_slice(c.value.as_deref().unwrap()).unwrap();
            (
                header(c, "tt.source"),
                e["stream_version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(versions.contains(&("test-0".into(), 1)), "{versions:?}");
    assert!(versions.contains(&("test-2".into(), 2)), "{versions:?}");
    assert_eq!(header(&dead[0], "tt.source"), "test-1");
    assert_eq!(header(&dead[0], "tt.stream_version"), "2");
    assert_eq!(header(&dead[0], "tt.error.kind"), "schema_violation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_with_thousands_of_violations_is_dead_lettered_and_its_partition_moves_on() {
    let prefix = random_prefix("validator-violations");
    let api = start_api(&prefix).await;
    let _validator = start_part("validator", &prefix, &[]).await;
    let (id, _, _) = stream(
        &api,
        json!({"name": "xs", "schema": {"type": "object", "properties": {
            "xs": {"type": "array", "items": {"type": "string"}}}}}),
    )
    .await;
    let topics = Topics::new(&prefix);
    // 8,000 integers where strings belong: 8,000 violations from a 16 KB entry, whose full list
    // would make megabytes of headers.
    let xs: Vec<String> = (0..8000).map(|i| (i % 10).to_string()).collect();
    let big = format!("{{\"xs\":[{}]}}", xs.join(","));
    // The stream's next entry shares the partition: it passes only if the first one is done.
    kafka()
        .append(
            &topics.raw,
            vec![raw(id, &big, 0), raw(id, "{\"xs\":[\"ok\"]}", 1)],
        )
        .await
        .unwrap();
    let valid = read_topic(&topics.valid, 1, Duration::from_secs(60)).await;
    assert_eq!(header(&valid[0], "tt.source"), "test-1");
    let dead = read_topic(&topics.dlq, 1, Duration::from_secs(10)).await;
    let d = &dead[0];
    assert_eq!(header(d, "tt.source"), "test-0");
    assert_eq!(
        d.value.as_deref(),
        Some(big.as_bytes()),
        "the original bytes"
    );
    assert_eq!(header(d, "tt.error.kind"), "schema_violation");
    assert_eq!(header(d, "tt.error.violations_total"), "8000");
    let details: Vec<Value> = serde_json::from_str(&header(d, "tt.error.details")).unwrap();
    assert!(
        !details.is_empty() && details.len() <= 100,
        "{} violations listed",
        details.len()
    );
    assert_eq!(details[0]["instance_path"], "/xs/0");
    assert_eq!(details[0]["keyword"], "type");
    let message = header(d, "__connect.errors.exception.message");
    assert!(message.starts_with("/xs/0: "), "{message}");
    assert!(message.ends_with(" more"), "{message}");
    let headers: usize = d.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert!(headers < 32 * 1024, "{headers} bytes of headers");
}
