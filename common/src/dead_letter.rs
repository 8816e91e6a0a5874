//! The one way a record becomes a dead letter on `entries.dlq`, whichever stage refused it.
//!
//! A dead letter is the refused record unchanged (key, value, headers, timestamp) plus headers that
//! say where it came from and why, following Kafka Connect's conventions
//! ([`crate::envelope::dlq`]): its topic, partition and offset, the stage, the kind (as the
//! exception class and as `tt.error.kind`), a message, the stream version it was checked
//! against, the first violations as a JSON array in `tt.error.details` and their total count.
//!
//! Whatever the record, its dead letter is one the log takes: the message and the details are
//! bounded ([`MAX_MESSAGE_BYTES`], [`MAX_LISTED`], [`MAX_DETAILS_BYTES`]), and if the letter is
//! still larger than the log's limit, the original value, then the original headers, then the
//! key are left out, and `tt.error.omitted` says which and how large they were. One entry can
//! therefore never stop its partition.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Serialize;

use crate::envelope::dlq;
use crate::log::{Consumed, Record};

/// Why a record was dead-lettered: a closed set that readers filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The entry is not JSON.
    MalformedJson,
    /// Its stream does not exist (or was deleted).
    UnknownStream,
    /// It breaks its stream's schema.
    SchemaViolation,
    /// Its time is missing, unreadable or out of range.
    BadTimestamp,
    /// A sink's store refused it (InfluxDB rejected the point).
    SinkRejected,
    /// What the stage would write for it is larger than the log takes.
    TooLarge,
}

impl Kind {
    /// The kind as the headers and the API name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::MalformedJson => "malformed_json",
            Kind::UnknownStream => "unknown_stream",
            Kind::SchemaViolation => "schema_violation",
            Kind::BadTimestamp => "bad_timestamp",
            Kind::SinkRejected => "sink_rejected",
            Kind::TooLarge => "too_large",
        }
    }
}

/// The stage that refused a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The validator.
    Validate,
    /// The InfluxDB writer.
    SinkInflux,
}

impl Stage {
    /// The stage as `__connect.errors.stage` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Validate => "VALIDATE",
            Stage::SinkInflux => "SINK_INFLUX",
        }
    }
}

/// One violation, as `tt.error.details` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// JSON Pointer to the offending value in the entry.
    pub instance_path: String,
    /// JSON Pointer to the schema keyword that failed.
    pub schema_path: String,
    /// The keyword (`type`, `required`, …), or the store for a sink's refusal.
    pub keyword: String,
    /// What is wrong.
    pub message: String,
}

/// Why a record is refused, and by whom.
#[derive(Debug, Clone)]
pub struct Reason {
    /// The stage that refused it.
    pub stage: Stage,
    /// The kind of refusal.
    pub kind: Kind,
    /// A human-readable message.
    pub message: String,
    /// Every violation.
    pub violations: Vec<Violation>,
    /// The stream version the record was checked against, if it got that far.
    pub stream_version: Option<u32>,
}

/// At most this many violations are listed in `tt.error.details`.
pub const MAX_LISTED: usize = 100;
/// `tt.error.details` holds at most this many bytes.
pub const MAX_DETAILS_BYTES: usize = 16 * 1024;
/// `__connect.errors.exception.message` holds at most this many bytes.
pub const MAX_MESSAGE_BYTES: usize = 2 * 1024;
/// Each string of a listed violation holds at most this many bytes.
pub const MAX_FIELD_BYTES: usize = 512;
/// Room kept for `tt.error.omitted` itself when parts of a record are left out.
const OMITTED_ROOM: usize = 128;

impl Reason {
    /// The dead letter of the consumed record `c`, at most `max_bytes` as the log counts it
    /// ([`Record::wire_size`]). A record of an unknown stream loses its key, so that such
    /// letters do not pile up on one partition under a key nobody owns.
    pub fn dead_letter(self, c: Consumed, max_bytes: usize) -> Record {
        let original_headers = c.headers.len();
        let mut headers = c.headers;
        let mut add = |k: &str, v: String| headers.push((k.to_owned(), Bytes::from(v)));
        add(dlq::TOPIC, c.topic);
        add(dlq::PARTITION, c.partition.to_string());
        add(dlq::OFFSET, c.offset.to_string());
        add(dlq::STAGE, self.stage.as_str().into());
        add(dlq::CLASS, self.kind.as_str().into());
        add(
            dlq::MESSAGE,
            clip(&self.message, MAX_MESSAGE_BYTES).into_owned(),
        );
        add(dlq::KIND, self.kind.as_str().into());
        if let Some(v) = self.stream_version {
            add(dlq::STREAM_VERSION, v.to_string());
        }
        add(dlq::DETAILS, details(&self.violations));
        add(dlq::VIOLATIONS_TOTAL, self.violations.len().to_string());
        let mut letter = Record {
            key: if self.kind == Kind::UnknownStream {
                None
            } else {
                c.key
            },
            value: c.value,
            headers,
            timestamp_ms: Some(c.timestamp_ms),
        };
        fit(&mut letter, original_headers, max_bytes);
        letter
    }
}

/// Leaves out the value, then the first `original_headers` headers, then the key, until
/// `letter` is at most `max_bytes`, and says what went in `tt.error.omitted`.
fn fit(letter: &mut Record, original_headers: usize, max_bytes: usize) {
    if letter.wire_size() <= max_bytes {
        return;
    }
    let fits = |r: &Record| r.wire_size() + OMITTED_ROOM <= max_bytes;
    let mut omitted = Vec::new();
    if let Some(v) = letter.value.take() {
        omitted.push(format!("value:{}", v.len()));
    }
    if !fits(letter) && original_headers > 0 {
        let bytes: usize = letter
            .headers
            .drain(..original_headers)
            .map(|(k, v)| k.len() + v.len())
            .sum();
        omitted.push(format!("headers:{bytes}"));
    }
    if !fits(letter) {
        if let Some(k) = letter.key.take() {
            omitted.push(format!("key:{}", k.len()));
        }
    }
    letter
        .headers
        .push((dlq::OMITTED.to_owned(), Bytes::from(omitted.join(","))));
}

/// `s` cut to at most `max` bytes on a character boundary, ending in `…` if it was cut.
fn clip(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &s[..end]))
}

/// `tt.error.details`: the first violations, each string clipped, as many as fit in
/// [`MAX_DETAILS_BYTES`] up to [`MAX_LISTED`].
fn details(violations: &[Violation]) -> String {
    let mut out = String::from("[");
    for v in violations.iter().take(MAX_LISTED) {
        let clipped = Violation {
            instance_path: clip(&v.instance_path, MAX_FIELD_BYTES).into_owned(),
            schema_path: clip(&v.schema_path, MAX_FIELD_BYTES).into_owned(),
            keyword: clip(&v.keyword, MAX_FIELD_BYTES).into_owned(),
            message: clip(&v.message, MAX_FIELD_BYTES).into_owned(),
        };
        let item = serde_json::to_string(&clipped).expect("violations serialise");
        if out.len() + 1 + item.len() + 1 > MAX_DETAILS_BYTES {
            break;
        }
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&item);
    }
    out.push(']');
    out
}

/// A one-line message for `violations`: `<instance path>: <message>` for as many as fit in
/// [`MAX_MESSAGE_BYTES`], separated by `; `, then `… and N more` for those left out.
pub fn summary(violations: &[Violation]) -> String {
    // Room for "; … and 18446744073709551615 more".
    const TAIL: usize = 40;
    let mut out = String::new();
    let mut listed = 0;
    for v in violations {
        let path = if v.instance_path.is_empty() {
            "/"
        } else {
            &v.instance_path
        };
        let item = format!(
            "{}: {}",
            clip(path, MAX_FIELD_BYTES),
            clip(&v.message, MAX_FIELD_BYTES)
        );
        let separator = if listed == 0 { 0 } else { 2 };
        if out.len() + separator + item.len() > MAX_MESSAGE_BYTES - TAIL {
            break;
        }
        if listed > 0 {
            out.push_str("; ");
        }
        out.push_str(&item);
        listed += 1;
    }
    if listed < violations.len() {
        out.push_str(&format!("; … and {} more", violations.len() - listed));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::SizeLimits;

    fn consumed(value: Vec<u8>) -> Consumed {
        Consumed {
            topic: "t.entries.raw".into(),
            partition: 1,
            offset: 7,
            timestamp_ms: 1_767_225_600_000,
            key: Some(Bytes::from_static(b"1234567")),
            value: Some(Bytes::from(value)),
            headers: vec![("tt.entry_id".into(), Bytes::from_static(b"e1"))],
        }
    }

    fn violations(n: usize, message: &str) -> Vec<Violation> {
        (0..n)
            .map(|i| Violation {
                instance_path: format!("/xs/{i}"),
                schema_path: "/properties/xs/items/type".into(),
                keyword: "type".into(),
                message: message.into(),
            })
            .collect()
    }

    fn reason(violations: Vec<Violation>) -> Reason {
        Reason {
            stage: Stage::Validate,
            kind: Kind::SchemaViolation,
            message: summary(&violations),
            violations,
            stream_version: Some(3),
        }
    }

    fn header<'a>(r: &'a Record, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| std::str::from_utf8(v).unwrap())
    }

    /// The bytes the dead letter added to the record's own header.
    fn added(r: &Record) -> usize {
        r.headers[1..].iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    #[test]
    fn thousands_of_violations_give_bounded_headers_and_their_count() {
        let limits = SizeLimits::default();
        // An entry as large as ingest takes, with 8,000 violations.
        let mut value = b"{\"xs\":[".to_vec();
        value.resize(limits.max_entry_bytes - 300, b' ');
        value.extend(b"]}");
        let entry = consumed(value.clone());
        let letter = reason(violations(8000, "0 is not of type \"string\""))
            .dead_letter(entry, limits.max_record_bytes());
        assert_eq!(
            letter.value.as_deref(),
            Some(&value[..]),
            "the value is kept"
        );
        assert_eq!(header(&letter, dlq::OMITTED), None);
        assert!(letter.wire_size() <= limits.max_record_bytes());
        assert_eq!(header(&letter, dlq::VIOLATIONS_TOTAL), Some("8000"));
        let details: Vec<serde_json::Value> =
            serde_json::from_str(header(&letter, dlq::DETAILS).unwrap()).unwrap();
        assert_eq!(details.len(), MAX_LISTED);
        assert_eq!(details[0]["instance_path"], "/xs/0");
        assert_eq!(details[99]["instance_path"], "/xs/99");
        let message = header(&letter, dlq::MESSAGE).unwrap();
        assert!(message.len() <= MAX_MESSAGE_BYTES);
        assert!(message.starts_with("/xs/0: 0 is not of type \"string\"; /xs/1: "));
        let listed = message.matches("is not of type").count();
        assert!(
            message.ends_with(&format!("; … and {} more", 8000 - listed)),
            "{message}"
        );
        assert!(added(&letter) < crate::limits::HEADROOM / 2);
        // Long messages are clipped, and fewer fit in the details' byte bound.
        let long = "é".repeat(10_000);
        let letter = reason(violations(500, &long)).dead_letter(consumed(b"{}".to_vec()), 1 << 20);
        let details: Vec<serde_json::Value> =
            serde_json::from_str(header(&letter, dlq::DETAILS).unwrap()).unwrap();
        assert!(!details.is_empty() && details.len() < MAX_LISTED);
        assert!(details.iter().all(|v| {
            let m = v["message"].as_str().unwrap();
            m.len() <= MAX_FIELD_BYTES && m.ends_with('…')
        }));
        assert!(header(&letter, dlq::DETAILS).unwrap().len() <= MAX_DETAILS_BYTES);
        assert!(header(&letter, dlq::MESSAGE).unwrap().len() <= MAX_MESSAGE_BYTES);
        assert_eq!(header(&letter, dlq::VIOLATIONS_TOTAL), Some("500"));
    }

    #[test]
    fn a_record_too_large_for_the_log_loses_its_value_then_headers_then_key() {
        let limits = SizeLimits::default();
        let max = limits.max_record_bytes();
        // A value the log cannot take with the dead letter's headers.
        let entry = consumed(vec![b' '; max]);
        let letter = reason(violations(1, "bad")).dead_letter(entry.clone(), max);
        assert!(letter.wire_size() <= max);
        assert_eq!(letter.value, None);
        assert_eq!(
            header(&letter, dlq::OMITTED),
            Some(&*format!("value:{max}"))
        );
        assert_eq!(header(&letter, "tt.entry_id"), Some("e1"));
        assert_eq!(letter.key, entry.key);
        // Headers and a key of another producer's that are too large go too.
        let mut odd = entry;
        odd.headers.push(("x".into(), Bytes::from(vec![b'h'; max])));
        odd.key = Some(Bytes::from(vec![b'0'; max]));
        let letter = reason(vec![]).dead_letter(odd, max);
        assert!(letter.wire_size() <= max);
        assert_eq!(letter.key, None);
        assert_eq!(header(&letter, "tt.entry_id"), None);
        assert_eq!(header(&letter, dlq::VIOLATIONS_TOTAL), Some("0"));
        let omitted = header(&letter, dlq::OMITTED).unwrap();
        assert!(
            omitted.starts_with(&format!("value:{max},headers:")),
            "{omitted}"
        );
        assert!(omitted.ends_with(&format!(",key:{max}")), "{omitted}");
    }

    #[test]
    fn clipping_keeps_characters_whole() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcdef", 5), "ab…");
        assert_eq!(clip("éééé", 6), "é…");
        assert_eq!(summary(&[]), "");
        assert_eq!(summary(&violations(1, "m")[..]), "/xs/0: m");
    }
}
