//! Judging one raw entry: where it goes, and why.

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use serde_json::Value;
use thingtotal_common::dead_letter::{summary, Kind, Reason, Stage, Violation};
use thingtotal_common::envelope::{self, format_time};
use thingtotal_common::log::{wire_size, Consumed, Record};
use thingtotal_common::stream::{StreamId, StreamRecord};
use thingtotal_common::time::parse_device_time;

use crate::schemas::Schemas;
use crate::TimeWindow;

/// Where a raw entry goes.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// To `entries.valid`, as this envelope.
    Valid(Bytes),
    /// To `entries.dlq`.
    Dead {
        kind: Kind,
        message: String,
        violations: Vec<Violation>,
        stream_version: Option<u32>,
    },
}

#[derive(Serialize)]
struct Envelope<'a> {
    entry_id: &'a str,
    seq: u64,
    stream_id: StreamId,
    stream_version: u32,
    ts: String,
    received_at: String,
}

/// The envelope's JSON: its fields, then `data` as the entry's own bytes. They were parsed once
/// already, so they are valid JSON and are not checked or re-serialised again.
fn envelope_bytes(envelope: &Envelope<'_>, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(160 + data.len());
    serde_json::to_writer(&mut out, envelope).expect("the envelope serialises");
    out.pop(); // the closing brace
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(data.trim_ascii());
    out.push(b'}');
    Bytes::from(out)
}

fn header_str<'a>(c: &'a Consumed, name: &str) -> Option<&'a str> {
    c.header(name).and_then(|v| std::str::from_utf8(v).ok())
}

/// The stream id in a raw entry's key.
pub(crate) fn stream_id(c: &Consumed) -> Option<StreamId> {
    c.key
        .as_deref()
        .and_then(|k| std::str::from_utf8(k).ok())
        .and_then(|k| k.parse().ok())
}

/// The reading's time from its `timestamp_field`: RFC 3339 (or ThingSpeak's forms), or epoch
/// milliseconds.
fn timestamp(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::String(s) => parse_device_time(s),
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
        _ => None,
    }
}

/// Judges one raw entry against `stream` (None: the stream is unknown).
pub(crate) fn judge(
    c: &Consumed,
    stream: Option<&StreamRecord>,
    schemas: &Schemas,
    window: TimeWindow,
) -> Verdict {
    let dead = |kind, message: String, violations, stream_version| Verdict::Dead {
        kind,
        message,
        violations,
        stream_version,
    };
    let Some(stream) = stream else {
        return dead(
            Kind::UnknownStream,
            "the stream does not exist (never created, or deleted)".into(),
            vec![],
            None,
        );
    };
    let version = Some(stream.version);
    let bytes = c.value.as_deref().unwrap_or_default();
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            return dead(
                Kind::MalformedJson,
                format!("not valid JSON: {e}"),
                vec![],
                version,
            )
        }
    };
    let compiled = schemas.get(stream);
    let validator = match compiled.as_ref() {
        Ok(v) => v,
        Err(e) => {
            return dead(
                Kind::SchemaViolation,
                format!(
                    "the stream's schema (version {}) does not compile: {e}",
                    stream.version
                ),
                vec![],
                version,
            )
        }
    };
    // The fast path asks only whether it is valid; the errors are collected for failures only.
    if !validator.is_valid(&value) {
        let violations: Vec<Violation> = validator
            .iter_errors(&value)
            .map(|e| Violation {
                instance_path: e.instance_path().to_string(),
                schema_path: e.schema_path().to_string(),
                keyword: e.kind().keyword().to_owned(),
                message: e.to_string(),
            })
            .collect();
        return dead(
            Kind::SchemaViolation,
            summary(&violations),
            violations,
            version,
        );
    }
    let received_at = header_str(c, envelope::RECEIVED_AT)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| Utc.timestamp_millis_opt(c.timestamp_ms).single())
        .unwrap_or_else(Utc::now);
    let ts = match &stream.timestamp_field {
        // A device time sent beside the data (ThingSpeak's created_at), else the receive time.
        None => header_str(c, envelope::CREATED_AT)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map_or(received_at, |t| t.with_timezone(&Utc)),
        Some(field) => {
            match value.get(field).and_then(timestamp) {
                Some(t) => t,
                None => {
                    let message = match value.get(field) {
                    None => format!("the timestamp field {field:?} is missing"),
                    Some(v) => format!("the timestamp field {field:?} is not RFC 3339 or epoch milliseconds: {v}"),
                };
                    let violation = Violation {
                        instance_path: format!("/{field}"),
                        schema_path: String::new(),
                        keyword: "timestamp_field".into(),
                        message: message.clone(),
                    };
                    return dead(Kind::BadTimestamp, message, vec![violation], version);
                }
            }
        }
    };
    // A device clock in 1970 or 9999 would open an archive file per day it names, and InfluxDB
    // cannot store most of them: such times are refused with the reason.
    if let Some(message) = window.refuses(ts, Utc::now()) {
        let violation = Violation {
            instance_path: stream
                .timestamp_field
                .as_ref()
                .map(|f| format!("/{f}"))
                .unwrap_or_default(),
            schema_path: String::new(),
            keyword: "time_window".into(),
            message: message.clone(),
        };
        return dead(Kind::BadTimestamp, message, vec![violation], version);
    }
    let envelope = Envelope {
        entry_id: header_str(c, envelope::ENTRY_ID).unwrap_or_default(),
        seq: c.offset as u64 + 1,
        stream_id: stream.id,
        stream_version: stream.version,
        ts: format_time(ts),
        received_at: format_time(received_at),
    };
    Verdict::Valid(envelope_bytes(&envelope, bytes))
}

impl Verdict {
    /// The verdict, unless it is an envelope larger than `max_bytes` as the log counts it: then
    /// the entry is dead-lettered as `too_large`, so that it cannot stop its partition. Only a
    /// raw entry that ingest did not check (another producer's, or one under a larger
    /// `--max-entry-bytes`) can get there. `stream_version` is the version it was checked
    /// against.
    pub(crate) fn within(
        self,
        c: &Consumed,
        stream_version: Option<u32>,
        max_bytes: usize,
    ) -> Verdict {
        let Verdict::Valid(envelope) = &self else {
            return self;
        };
        let size = wire_size(c.key.as_deref(), Some(envelope), &c.headers);
        if size <= max_bytes {
            return self;
        }
        Verdict::Dead {
            kind: Kind::TooLarge,
            message: format!(
                "the entry's envelope is {size} bytes with its headers, more than the log takes \
                 ({max_bytes})"
            ),
            violations: vec![],
            stream_version,
        }
    }
}

/// The record a verdict produces, at most `max_bytes` as the log counts it.
pub(crate) fn output(
    c: Consumed,
    verdict: Verdict,
    valid_topic: &str,
    dlq_topic: &str,
    max_bytes: usize,
) -> (String, Record) {
    match verdict {
        Verdict::Valid(envelope) => (
            valid_topic.to_owned(),
            Record {
                key: c.key,
                value: Some(envelope),
                headers: c.headers,
                timestamp_ms: Some(c.timestamp_ms),
            },
        ),
        Verdict::Dead {
            kind,
            message,
            violations,
            stream_version,
        } => (
            dlq_topic.to_owned(),
            Reason {
                stage: Stage::Validate,
                kind,
                message,
                violations,
                stream_version,
            }
            .dead_letter(c, max_bytes),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Judges with the default time window.
    fn judge(c: &Consumed, stream: Option<&StreamRecord>, schemas: &Schemas) -> Verdict {
        super::judge(c, stream, schemas, TimeWindow::default())
    }

    #[test]
    fn times_outside_the_window_around_now_are_bad_timestamps() {
        let s = Schemas::default();
        let st = stream(Some("at"));
        let now = Utc::now().timestamp_millis();
        let day = 86_400_000;
        for (at, ok) in [
            (now, true),
            (now - 3000 * day, true),
            (now + day / 2, true),
            (0, false),
            (now - 3700 * day, false),
            (now + 2 * day, false),
            (253_402_300_799_000, false),
        ] {
            let verdict = judge(&raw(&format!("{{\"t\":1,\"at\":{at}}}")), Some(&st), &s);
            match verdict {
                Verdict::Valid(_) => assert!(ok, "{at} was accepted"),
                Verdict::Dead {
                    kind, violations, ..
                } => {
                    assert!(!ok, "{at} was refused");
                    assert_eq!(kind, Kind::BadTimestamp);
                    assert_eq!(violations[0].instance_path, "/at");
                    assert!(violations[0].message.contains("outside"), "{violations:?}");
                }
            }
        }
        // A narrower window, as the flags give it.
        let narrow = TimeWindow {
            past: std::time::Duration::from_secs(60),
            future: std::time::Duration::from_secs(60),
        };
        let c = raw(&format!("{{\"t\":1,\"at\":{}}}", now - 3_600_000));
        assert!(matches!(
            super::judge(&c, Some(&st), &s, narrow),
            Verdict::Dead {
                kind: Kind::BadTimestamp,
                ..
            }
        ));
    }

    fn stream(timestamp_field: Option<&str>) -> StreamRecord {
        serde_json::from_value(json!({
            "id": 7, "name": "s", "version": 3,
            "schema": {"type": "object", "properties": {
                "t": {"type": "number", "minimum": -50, "maximum": 60},
                "mode": {"enum": ["on", "off"]},
                "at": {"type": ["string", "integer"]}},
                "required": ["t"], "additionalProperties": false},
            "timestamp_field": timestamp_field,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "write_key_sha256": "", "read_key_sha256": ""
        }))
        .unwrap()
    }

    fn raw(value: &str) -> Consumed {
        Consumed {
            topic: "t.entries.raw".into(),
            partition: 2,
            offset: 41,
            timestamp_ms: 1_767_225_600_000,
            key: Some(Bytes::from_static(b"7")),
            value: Some(Bytes::from(value.to_owned())),
            headers: vec![
                (
                    "tt.entry_id".into(),
                    Bytes::from_static(b"0190c1e0-0000-7000-8000-000000000000"),
                ),
                (
                    "tt.received_at".into(),
                    Bytes::from_static(b"2026-01-01T00:00:00.000000Z"),
                ),
                ("tt.source".into(), Bytes::from_static(b"http")),
            ],
        }
    }

    fn keywords(v: &Verdict) -> Vec<(String, String)> {
        match v {
            Verdict::Dead { violations, .. } => violations
                .iter()
                .map(|v| (v.instance_path.clone(), v.keyword.clone()))
                .collect(),
            Verdict::Valid(_) => vec![],
        }
    }

    #[test]
    fn a_valid_entry_becomes_the_envelope_with_its_bytes() {
        let s = Schemas::default();
        let Verdict::Valid(e) = judge(&raw("{\"t\": 21.50}"), Some(&stream(None)), &s) else {
            panic!("valid")
        };
        let text = std::str::from_utf8(&e).unwrap();
        assert!(text.ends_with("\"data\":{\"t\": 21.50}}"), "{text}");
        let v: Value = serde_json::from_slice(&e).unwrap();
        assert_eq!(v["seq"], 42);
        assert_eq!(v["stream_id"], 7);
        assert_eq!(v["stream_version"], 3);
        assert_eq!(v["ts"], "2026-01-01T00:00:00.000000Z");
        assert_eq!(v["ts"], v["received_at"]);
        assert_eq!(v["entry_id"], "0190c1e0-0000-7000-8000-000000000000");
    }

    #[test]
    fn the_timestamp_field_sets_ts() {
        let s = Schemas::default();
        let st = stream(Some("at"));
        for (at, expected) in [
            (
                "\"2026-03-01T12:00:00.5+01:00\"",
                "2026-03-01T11:00:00.500000Z",
            ),
            ("1767225601234", "2026-01-01T00:00:01.234000Z"),
        ] {
            let Verdict::Valid(e) = judge(&raw(&format!("{{\"t\":1,\"at\":{at}}}")), Some(&st), &s)
            else {
                panic!("valid")
            };
            let v: Value = serde_json::from_slice(&e).unwrap();
            assert_eq!(v["ts"], expected);
        }
        for bad in ["{\"t\":1}", "{\"t\":1,\"at\":\"last tuesday\"}"] {
            let verdict = judge(&raw(bad), Some(&st), &s);
            assert!(
                matches!(
                    verdict,
                    Verdict::Dead {
                        kind: Kind::BadTimestamp,
                        ..
                    }
                ),
                "{bad}"
            );
            assert_eq!(
                keywords(&verdict),
                [("/at".to_owned(), "timestamp_field".to_owned())]
            );
        }
    }

    #[test]
    fn a_device_time_in_the_header_sets_ts_when_there_is_no_timestamp_field() {
        let s = Schemas::default();
        let mut c = raw("{\"t\":1}");
        c.headers.push((
            "tt.created_at".into(),
            Bytes::from_static(b"2025-06-01T10:00:00.000000Z"),
        ));
        let Verdict::Valid(e) = judge(&c, Some(&stream(None)), &s) else {
            panic!("valid")
        };
        let v: Value = serde_json::from_slice(&e).unwrap();
        assert_eq!(v["ts"], "2025-06-01T10:00:00.000000Z");
        assert_eq!(v["received_at"], "2026-01-01T00:00:00.000000Z");
        // The stream's timestamp_field, when it has one, is what counts.
        let Verdict::Valid(e) = judge(
            &{
                let mut c = raw("{\"t\":1,\"at\":1767225601234}");
                c.headers = [
                    c.headers.clone(),
                    vec![(
                        "tt.created_at".into(),
                        Bytes::from_static(b"2025-06-01T10:00:00.000000Z"),
                    )],
                ]
                .concat();
                c
            },
            Some(&stream(Some("at"))),
            &s,
        ) else {
            panic!("valid")
        };
        let v: Value = serde_json::from_slice(&e).unwrap();
        assert_eq!(v["ts"], "2026-01-01T00:00:01.234000Z");
    }

    #[test]
    fn every_violation_is_listed() {
        let s = Schemas::default();
        let v = judge(
            &raw("{\"t\": 99, \"mode\": \"auto\", \"x\": 1}"),
            Some(&stream(None)),
            &s,
        );
        let mut k = keywords(&v);
        k.sort();
        assert_eq!(
            k,
            [
                ("".to_owned(), "additionalProperties".to_owned()),
                ("/mode".to_owned(), "enum".to_owned()),
                ("/t".to_owned(), "maximum".to_owned()),
            ]
        );
        let v = judge(&raw("{\"mode\": \"on\"}"), Some(&stream(None)), &s);
        assert_eq!(keywords(&v), [("".to_owned(), "required".to_owned())]);
        let v = judge(&raw("{\"t\": \"warm\"}"), Some(&stream(None)), &s);
        assert_eq!(keywords(&v), [("/t".to_owned(), "type".to_owned())]);
        assert!(matches!(
            judge(&raw("{\"t\":"), Some(&stream(None)), &s),
            Verdict::Dead {
                kind: Kind::MalformedJson,
                ..
            }
        ));
        assert!(matches!(
            judge(&raw("{}"), None, &s),
            Verdict::Dead {
                kind: Kind::UnknownStream,
                ..
            }
        ));
    }

    #[test]
    fn dead_letters_carry_the_connect_headers() {
        let s = Schemas::default();
        let c = raw("{\"t\": \"warm\"}");
        let verdict = judge(&c, Some(&stream(None)), &s);
        let (topic, r) = output(c.clone(), verdict, "valid", "dlq", 1 << 20);
        assert_eq!(topic, "dlq");
        assert_eq!(r.value, c.value);
        let h = |n: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| String::from_utf8(v.to_vec()).unwrap())
        };
        assert_eq!(
            h("tt.entry_id").as_deref(),
            Some("0190c1e0-0000-7000-8000-000000000000")
        );
        assert_eq!(
            h("__connect.errors.topic").as_deref(),
            Some("t.entries.raw")
        );
        assert_eq!(h("__connect.errors.partition").as_deref(), Some("2"));
        assert_eq!(h("__connect.errors.offset").as_deref(), Some("41"));
        assert_eq!(h("__connect.errors.stage").as_deref(), Some("VALIDATE"));
        assert_eq!(
            h("__connect.errors.exception.class.name").as_deref(),
            Some("schema_violation")
        );
        assert_eq!(h("tt.error.kind").as_deref(), Some("schema_violation"));
        assert_eq!(h("tt.stream_version").as_deref(), Some("3"));
        let details: Value = serde_json::from_str(&h("tt.error.details").unwrap()).unwrap();
        assert_eq!(details[0]["instance_path"], "/t");
        assert_eq!(details[0]["keyword"], "type");
        assert!(details[0]["schema_path"].as_str().unwrap().contains("type"));
        assert!(!details[0]["message"].as_str().unwrap().is_empty());
        let unknown = judge(&c, None, &s);
        let (_, r) = output(c, unknown, "valid", "dlq", 1 << 20);
        assert_eq!(r.key, None, "an unknown stream's dead letter has no key");
    }

    #[test]
    fn an_envelope_larger_than_the_log_takes_is_dead_lettered_as_too_large() {
        let s = Schemas::default();
        let c = raw(&format!("{{\"t\":1,\"pad\":\"{}\"}}", " ".repeat(5000)));
        let mut st = stream(None);
        st.schema = serde_json::json!({"type": "object"});
        let size = |v: &Verdict| match v {
            Verdict::Valid(e) => wire_size(c.key.as_deref(), Some(e), &c.headers),
            Verdict::Dead { .. } => panic!("valid"),
        };
        let fits = size(&judge(&c, Some(&st), &s));
        let verdict = judge(&c, Some(&st), &s).within(&c, Some(3), fits);
        assert!(matches!(verdict, Verdict::Valid(_)));
        let verdict = judge(&c, Some(&st), &s).within(&c, Some(3), fits - 1);
        let (topic, r) = output(c.clone(), verdict, "valid", "dlq", fits - 1);
        assert_eq!(topic, "dlq");
        assert!(r.wire_size() < fits);
        let h = |n: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(h("tt.error.kind").as_deref(), Some(&b"too_large"[..]));
        assert_eq!(h("tt.stream_version").as_deref(), Some(&b"3"[..]));
        // The dead letter's headers outweigh the envelope, so the value is left out.
        assert_eq!(r.value, None);
        let omitted = format!("value:{}", c.value.as_ref().unwrap().len());
        assert_eq!(h("tt.error.omitted").as_deref(), Some(omitted.as_bytes()));
    }

    #[test]
    fn validators_are_compiled_once_per_version() {
        let s = Schemas::default();
        let mut st = stream(None);
        let a = s.get(&st);
        assert!(std::sync::Arc::ptr_eq(&a, &s.get(&st)));
        st.version += 1;
        assert!(!std::sync::Arc::ptr_eq(&a, &s.get(&st)));
        assert_eq!(s.len(), 1, "the old version is dropped");
        s.retain(|_| false);
        assert_eq!(s.len(), 0);
    }
}
