//! What the benchmarks send: schemas, entries, raw records and valid envelopes, made
//! deterministically from an index so that a part and its baseline see the same data.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use thingtotal_common::envelope::{self, format_time};

/// A well-mixed 64-bit value for `i` (splitmix64), so that readings vary without a RNG.
pub(crate) fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn unit(i: u64, salt: u64) -> f64 {
    (mix(i ^ salt.rotate_left(17)) >> 11) as f64 / (1u64 << 53) as f64
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

fn status(i: u64) -> &'static str {
    ["ok", "ok", "ok", "degraded", "maintenance"][(mix(i) % 5) as usize]
}

/// A weather station's schema, as a fleet operator would write it: bounds, an enum, a pattern, a
/// nested object, required members and no extra members.
pub(crate) fn station_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "device_id": {"type": "string", "pattern": "^[a-z]{2}-[0-9]{4}$"},
            "temperature": {"type": "number", "minimum": -50, "maximum": 70},
            "humidity": {"type": "integer", "minimum": 0, "maximum": 100},
            "pressure": {"type": "number", "minimum": 800, "maximum": 1100},
            "battery": {"type": "number", "minimum": 0, "maximum": 5},
            "status": {"enum": ["ok", "degraded", "maintenance"]},
            "location": {
                "type": "object",
                "properties": {
                    "lat": {"type": "number", "minimum": -90, "maximum": 90},
                    "lon": {"type": "number", "minimum": -180, "maximum": 180}
                },
                "required": ["lat", "lon"],
                "additionalProperties": false
            }
        },
        "required": ["device_id", "temperature", "humidity", "status"],
        "additionalProperties": false
    })
}

/// Entry `i` for [`station_schema`]: every tenth one breaks the schema, in one of five ways.
pub(crate) fn station_entry(i: u64) -> Bytes {
    let mut v = json!({
        "device_id": format!("gh-{:04}", mix(i) % 10_000),
        "temperature": round(-10.0 + 45.0 * unit(i, 1), 2),
        "humidity": (unit(i, 2) * 100.0) as i64,
        "pressure": round(950.0 + 100.0 * unit(i, 3), 1),
        "battery": round(3.0 + 1.2 * unit(i, 4), 3),
        "status": status(i),
        "location": {"lat": round(52.0 + unit(i, 5), 5), "lon": round(4.0 + unit(i, 6), 5)}
    });
    if is_invalid(i) {
        match (i / 10) % 5 {
            0 => v["humidity"] = json!(140),
            1 => drop(v.as_object_mut().map(|o| o.remove("temperature"))),
            2 => v["status"] = json!("on fire"),
            3 => v["firmware"] = json!("1.2.3"),
            _ => v["location"] = json!({"lat": 95.0, "lon": "east"}),
        }
    }
    Bytes::from(serde_json::to_vec(&v).expect("entries serialise"))
}

/// Whether [`station_entry`] `i` breaks the schema: exactly one in ten.
pub(crate) fn is_invalid(i: u64) -> bool {
    i % 10 == 9
}

/// The five-field stream of the sink scenarios (and, with `at` and `n`, of the end-to-end one).
pub(crate) fn five_field_schema(timestamped: bool) -> Value {
    let mut schema = json!({
        "type": "object",
        "properties": {
            "temperature": {"type": "number"},
            "humidity": {"type": "integer"},
            "pressure": {"type": "number"},
            "battery": {"type": "number"},
            "status": {"type": "string"}
        },
        "required": ["temperature"]
    });
    if timestamped {
        let p = schema["properties"].as_object_mut().expect("an object");
        p.insert("n".into(), json!({"type": "integer"}));
        p.insert(
            "at".into(),
            json!({"type": "string", "format": "date-time"}),
        );
    }
    schema
}

/// Entry `i` of the five-field stream.
pub(crate) fn five_field_data(i: u64) -> Value {
    json!({
        "temperature": round(-10.0 + 45.0 * unit(i, 1), 2),
        "humidity": (unit(i, 2) * 100.0) as i64,
        "pressure": round(950.0 + 100.0 * unit(i, 3), 1),
        "battery": round(3.0 + 1.2 * unit(i, 4), 3),
        "status": status(i)
    })
}

/// Entry `i` as devices post it in the ingest scenarios: the five fields and its index.
pub(crate) fn ingest_entry(i: u64) -> Bytes {
    let mut e = five_field_data(i);
    e["n"] = json!(i);
    Bytes::from(serde_json::to_vec(&e).expect("entries serialise"))
}

/// The headers ingest puts on a raw entry (and the validator copies onto the valid one).
pub(crate) fn raw_headers(
    entry_id: &str,
    received_at: DateTime<Utc>,
) -> [(&'static str, String); 3] {
    [
        (envelope::ENTRY_ID, entry_id.to_owned()),
        (envelope::RECEIVED_AT, format_time(received_at)),
        (envelope::SOURCE, "http".to_owned()),
    ]
}

/// A valid envelope for entry `seq - 1` of `stream`, as the validator writes it.
pub(crate) fn envelope(stream: u64, seq: u64, entry_id: &str, ts: DateTime<Utc>) -> Bytes {
    let v = json!({
        "entry_id": entry_id,
        "seq": seq,
        "stream_id": stream,
        "stream_version": 1,
        "ts": format_time(ts),
        "received_at": format_time(ts),
        "data": five_field_data(seq - 1),
    });
    Bytes::from(serde_json::to_vec(&v).expect("envelopes serialise"))
}

/// The point the sink writes for that envelope, in line protocol (the stream has no tags, so the
/// measurement is its id): what the InfluxDB baseline sends.
pub(crate) fn line(buf: &mut String, stream: u64, seq: u64, entry_id: &str, ts: DateTime<Utc>) {
    use std::fmt::Write;
    let d = five_field_data(seq - 1);
    let ts_ns = ts.timestamp_micros() * 1000 + (seq % 1000) as i64;
    let _ = writeln!(
        buf,
        "{stream},stream_id={stream} seq={seq}i,entry_id=\"{entry_id}\",temperature={:?},humidity={}i,pressure={:?},battery={:?},status=\"{}\" {ts_ns}",
        d["temperature"].as_f64().unwrap_or_default(),
        d["humidity"].as_i64().unwrap_or_default(),
        d["pressure"].as_f64().unwrap_or_default(),
        d["battery"].as_f64().unwrap_or_default(),
        d["status"].as_str().unwrap_or_default(),
    );
}

/// The entry time of prefilled record `seq` (1-based): one microsecond apart from `base`.
pub(crate) fn entry_time(base: DateTime<Utc>, seq: u64) -> DateTime<Utc> {
    base + chrono::Duration::microseconds(seq as i64)
}

/// A deterministic UUID-shaped entry id for record `seq`.
pub(crate) fn entry_id(run: u64, seq: u64) -> String {
    uuid::Uuid::from_u64_pair(
        0x0190_0000_0000_7000 | (run & 0xfff),
        0x8000_0000_0000_0000 | seq,
    )
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_station_entry_in_ten_is_invalid_and_all_are_json() {
        let invalid = (0..1000).filter(|i| is_invalid(*i)).count();
        assert_eq!(invalid, 100);
        for i in 0..100 {
            let v: Value = serde_json::from_slice(&station_entry(i)).unwrap();
            assert!(v.is_object());
        }
        let valid: Value = serde_json::from_slice(&station_entry(0)).unwrap();
        assert!(valid["humidity"].as_i64().unwrap() <= 100);
        let broken: Value = serde_json::from_slice(&station_entry(9)).unwrap();
        assert_eq!(broken["humidity"], 140);
    }

    #[test]
    fn the_baseline_line_matches_the_envelope() {
        let ts = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let id = entry_id(1, 1001);
        let env: Value = serde_json::from_slice(&envelope(7, 1001, &id, ts)).unwrap();
        let mut l = String::new();
        line(&mut l, 7, 1001, &id, ts);
        assert!(l.starts_with("7,stream_id=7 seq=1001i,entry_id=\""), "{l}");
        assert!(l.ends_with(" 1767225600000000001\n"), "{l}");
        let status = env["data"]["status"].as_str().unwrap();
        assert!(l.contains(&format!("status=\"{status}\"")), "{l}");
    }
}
