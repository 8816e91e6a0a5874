//! Splits a request body into entries without re-serialising them: each entry is a slice of the
//! body, byte for byte as the device sent it. A body is accepted only if every entry reads as a
//! JSON value, as the validator will read it.

use std::fmt;

use bytes::Bytes;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Why a body could not be split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SplitError {
    /// Not valid JSON; line and column are 1-based, within the body.
    Malformed {
        /// The line of the error.
        line: usize,
        /// The column of the error.
        column: usize,
        /// serde_json's message.
        message: String,
    },
    /// An entry that is valid JSON but not an object; `index` is its position among the entries.
    NotAnObject {
        /// Its position (0-based).
        index: usize,
    },
    /// The body holds no entries.
    Empty,
    /// More entries than allowed.
    TooMany {
        /// The limit.
        limit: usize,
    },
}

fn malformed(e: serde_json::Error, line_offset: usize) -> SplitError {
    SplitError::Malformed {
        line: e.line() + line_offset,
        column: e.column(),
        message: e.to_string(),
    }
}

fn is_object(raw: &RawValue) -> bool {
    raw.get().starts_with('{')
}

/// JSON read the way `serde_json::Value` reads it, without building it. A `RawValue` only skips
/// over a value, so on its own it lets through numbers beyond an f64 (`1e400`), escapes of
/// lone surrogates (`"\ud800"`) and nesting deeper than serde_json's limit of 128: bodies
/// the ingest would accept and the validator then dead-letter as malformed.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Checked)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Checked, A::Error> {
        while items.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<Checked, A::Error> {
        while members.next_entry::<Checked, Checked>()?.is_some() {}
        Ok(Checked)
    }
}

/// Checks that `text` reads as a JSON value, as the validator will read each entry.
fn check(text: &[u8], line_offset: usize) -> Result<(), SplitError> {
    serde_json::from_slice::<Checked>(text)
        .map(|_| ())
        .map_err(|e| malformed(e, line_offset))
}

/// Splits a JSON body: one object, or an array of objects.
pub(crate) fn json(body: &Bytes, limit: usize) -> Result<Vec<Bytes>, SplitError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some() {
        check(body, 0)?;
    }
    match first {
        None => Err(SplitError::Empty),
        Some(b'[') => {
            let items: Vec<&RawValue> =
                serde_json::from_slice(body).map_err(|e| malformed(e, 0))?;
            if items.is_empty() {
                return Err(SplitError::Empty);
            }
            if items.len() > limit {
                return Err(SplitError::TooMany { limit });
            }
            items
                .iter()
                .enumerate()
                .map(|(index, raw)| {
                    if is_object(raw) {
                        Ok(body.slice_ref(raw.get().as_bytes()))
                    } else {
                        Err(SplitError::NotAnObject { index })
                    }
                })
                .collect()
        }
        Some(_) => {
            let raw: &RawValue = serde_json::from_slice(body).map_err(|e| malformed(e, 0))?;
            if !is_object(raw) {
                return Err(SplitError::NotAnObject { index: 0 });
            }
            Ok(vec![body.slice_ref(raw.get().as_bytes())])
        }
    }
}

/// Splits an NDJSON body: one object per line; blank lines are skipped.
pub(crate) fn ndjson(body: &Bytes, limit: usize) -> Result<Vec<Bytes>, SplitError> {
    let mut out = Vec::new();
    for (n, line) in body.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if out.len() == limit {
            return Err(SplitError::TooMany { limit });
        }
        check(line, n)?;
        let raw: &RawValue = serde_json::from_slice(line).map_err(|e| malformed(e, n))?;
        if !is_object(raw) {
            return Err(SplitError::NotAnObject { index: out.len() });
        }
        out.push(body.slice_ref(raw.get().as_bytes()));
    }
    if out.is_empty() {
        return Err(SplitError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(v: Vec<Bytes>) -> Vec<String> {
        v.into_iter()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn entries_are_the_bytes_as_sent() {
        let body =
            Bytes::from_static(b" [ {\"t\": 1.50, \"s\":\"\\u00e9\"} ,{\"a\" :{\"b\":[1, 2]}}\n] ");
        assert_eq!(
            texts(json(&body, 10).unwrap()),
            [
                "{\"t\": 1.50, \"s\":\"\\u00e9\"}",
                "{\"a\" :{\"b\":[1, 2]}}"
            ]
        );
        let one = Bytes::from_static(b"\n{\"t\":  1e3}\n");
        assert_eq!(texts(json(&one, 10).unwrap()), ["{\"t\":  1e3}"]);
        let nd = Bytes::from_static(b"{\"a\":1}\r\n\n  {\"a\": 2}\n");
        assert_eq!(texts(ndjson(&nd, 10).unwrap()), ["{\"a\":1}", "{\"a\": 2}"]);
    }

    #[test]
    fn errors_say_where() {
        let e = json(&Bytes::from_static(b"[{\"a\":1},\n{\"a\":}]"), 10).unwrap_err();
        assert!(
            matches!(
                e,
                SplitError::Malformed {
                    line: 2,
                    column: 6,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = ndjson(&Bytes::from_static(b"{\"a\":1}\n{\"a\":1}\n{oops}\n"), 10).unwrap_err();
        assert!(
            matches!(
                e,
                SplitError::Malformed {
                    line: 3,
                    column: 2,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            json(&Bytes::from_static(b"[{}, 3, {}]"), 10).unwrap_err(),
            SplitError::NotAnObject { index: 1 }
        );
        assert_eq!(
            json(&Bytes::from_static(b"\"x\""), 10).unwrap_err(),
            SplitError::NotAnObject { index: 0 }
        );
        assert_eq!(
            ndjson(&Bytes::from_static(b"{}\n[1]"), 10).unwrap_err(),
            SplitError::NotAnObject { index: 1 }
        );
        assert_eq!(
            json(&Bytes::from_static(b"[]"), 10).unwrap_err(),
            SplitError::Empty
        );
        assert_eq!(
            json(&Bytes::from_static(b"  "), 10).unwrap_err(),
            SplitError::Empty
        );
        assert_eq!(
            ndjson(&Bytes::from_static(b"\n\n"), 10).unwrap_err(),
            SplitError::Empty
        );
        assert_eq!(
            json(&Bytes::from_static(b"[{},{},{}]"), 2).unwrap_err(),
            SplitError::TooMany { limit: 2 }
        );
        assert_eq!(
            ndjson(&Bytes::from_static(b"{}\n{}\n{}"), 2).unwrap_err(),
            SplitError::TooMany { limit: 2 }
        );
        assert!(matches!(
            json(&Bytes::from_static(b"{} {}"), 2).unwrap_err(),
            SplitError::Malformed { .. }
        ));
    }

    #[test]
    fn entries_the_validator_could_not_read_are_refused_with_where() {
        let at = |e: SplitError| match e {
            SplitError::Malformed {
                line,
                column,
                message,
            } => (line, column, message),
            other => panic!("{other:?}"),
        };
        let (line, column, message) =
            at(json(&Bytes::from_static(br#"{"":"\uDA00"}"#), 1).unwrap_err());
        // A lone surrogate: serde_json looks for the low half after it.
        assert_eq!((line, column), (1, 12), "{message}");
        assert!(message.contains("hex escape"), "{message}");
        let (line, column, message) =
            at(json(&Bytes::from_static(b"[{\"a\":1},\n {\"a\":1e400}]"), 10).unwrap_err());
        assert_eq!((line, column), (2, 11), "{message}");
        assert!(message.contains("out of range"), "{message}");
        let (line, _, message) =
            at(ndjson(&Bytes::from_static(b"{}\n{\"t\":-1e309}\n"), 10).unwrap_err());
        assert_eq!(line, 2, "{message}");
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        let (_, _, message) = at(json(&Bytes::from(deep), 10).unwrap_err());
        assert!(message.contains("recursion limit"), "{message}");
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// JSON text from its grammar, not from a `Value`: numbers beyond an f64, every escape
    /// (lone surrogates too), and whitespace where the grammar allows it.
    fn json_text() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("false".to_owned()),
            "-?(0|[1-9][0-9]{0,3})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,4})?",
            "\"([a-zé🌡 ]|\\\\[\"\\\\/bfnrt]|\\\\u[0-9a-fA-F]{4})*\"",
        ];
        let sep = || prop::sample::select(vec![",", " , ", ",\t", "\r,  "]);
        leaf.prop_recursive(3, 24, 4, move |inner| {
            prop_oneof![
                (prop::collection::vec(inner.clone(), 0..4), sep())
                    .prop_map(|(items, sep)| format!("[{}]", items.join(sep))),
                (
                    prop::collection::vec(("\"[a-z]{0,3}\"", " ?: ?", inner), 0..4),
                    sep()
                )
                    .prop_map(|(members, sep)| {
                        let members: Vec<String> = members
                            .iter()
                            .map(|(k, c, v)| format!("{k}{c}{v}"))
                            .collect();
                        format!("{{{}}}", members.join(sep))
                    }),
            ]
        })
    }

    /// Mostly objects, as bodies carry them, with other values mixed in.
    fn entry_text() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => json_text().prop_map(|v| if v.starts_with('{') { v } else { format!("{{\"v\":{v}}}") }),
            1 => json_text(),
        ]
    }

    /// `body` with a few bytes replaced, inserted or removed, so that it is often malformed
    /// in one place.
    fn damaged(body: String, edits: Vec<(usize, u8, u8)>) -> Vec<u8> {
        let mut b = body.into_bytes();
        for (at, kind, byte) in edits {
            let at = at % (b.len() + 1);
            match kind % 3 {
                0 if at < b.len() => b[at] = byte,
                1 => b.insert(at, byte),
                _ if at < b.len() => {
                    b.remove(at);
                }
                _ => {}
            }
        }
        b
    }

    fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
        let byte = prop_oneof![
            prop::sample::select(b"{}[]\",:\\ \n\r0e-".to_vec()),
            any::<u8>()
        ];
        prop::collection::vec((any::<usize>(), any::<u8>(), byte), 0..3)
    }

    /// A JSON body: one entry or an array of them, perhaps damaged; or any bytes.
    fn json_body() -> impl Strategy<Value = Vec<u8>> {
        let text = prop_oneof![
            entry_text(),
            (prop::collection::vec(entry_text(), 0..6), "[ \n]{0,2}")
                .prop_map(|(items, ws)| format!("{ws}[{ws}{}{ws}]{ws}", items.join(","))),
        ];
        prop_oneof![
            8 => (text, edits()).prop_map(|(t, e)| damaged(t, e)),
            1 => any::<Vec<u8>>(),
        ]
    }

    /// An NDJSON body: entries one per line, blank lines between, perhaps damaged; or any bytes.
    fn ndjson_body() -> impl Strategy<Value = Vec<u8>> {
        let line = prop_oneof![
            4 => entry_text().prop_map(|t| t.replace(['\n', '\r'], " ")),
            1 => Just(String::new()),
            1 => Just(" \t\r".to_owned()),
        ];
        let text = (prop::collection::vec(line, 0..6), prop::bool::ANY)
            .prop_map(|(lines, crlf)| lines.join(if crlf { "\r\n" } else { "\n" }));
        prop_oneof![
            8 => (text, edits()).prop_map(|(t, e)| damaged(t, e)),
            1 => any::<Vec<u8>>(),
        ]
    }

    fn values(entries: &[Bytes]) -> Vec<Value> {
        entries
            .iter()
            .map(|e| serde_json::from_slice(e).expect("an entry is JSON"))
            .collect()
    }

    fn is_blank(b: &[u8]) -> bool {
        b.iter().all(u8::is_ascii_whitespace)
    }

    /// What splitting `body` as JSON must give, from serde_json's reading of the whole body.
    fn json_reference(body: &[u8], limit: usize) -> Result<Vec<Value>, SplitError> {
        if is_blank(body) {
            return Err(SplitError::Empty);
        }
        let whole: Value = serde_json::from_slice(body).map_err(|e| malformed(e, 0))?;
        let items = match whole {
            Value::Array(items) => items,
            Value::Object(_) => return Ok(vec![whole]),
            _ => return Err(SplitError::NotAnObject { index: 0 }),
        };
        if items.is_empty() {
            return Err(SplitError::Empty);
        }
        if items.len() > limit {
            return Err(SplitError::TooMany { limit });
        }
        match items.iter().position(|v| !v.is_object()) {
            Some(index) => Err(SplitError::NotAnObject { index }),
            None => Ok(items),
        }
    }

    /// What splitting `body` as NDJSON must give, from serde_json's reading of each line.
    fn ndjson_reference(body: &[u8], limit: usize) -> Result<Vec<Value>, SplitError> {
        let mut out = Vec::new();
        for (n, line) in body.split(|b| *b == b'\n').enumerate() {
            if is_blank(line) {
                continue;
            }
            if out.len() == limit {
                return Err(SplitError::TooMany { limit });
            }
            let v: Value = serde_json::from_slice(line).map_err(|e| malformed(e, n))?;
            if !v.is_object() {
                return Err(SplitError::NotAnObject { index: out.len() });
            }
            out.push(v);
        }
        if out.is_empty() {
            return Err(SplitError::Empty);
        }
        Ok(out)
    }

    /// Each entry is a slice of the body itself, in order: nothing was re-serialised.
    fn are_slices_of(entries: &[Bytes], body: &Bytes) -> bool {
        let range = body.as_ptr() as usize..=body.as_ptr() as usize + body.len();
        let mut after = *range.start();
        entries.iter().all(|e| {
            let start = e.as_ptr() as usize;
            let inside = start >= after && range.contains(&(start + e.len()));
            after = start + e.len();
            inside
        })
    }

    /// The split `got` of `body` holds slices of it with the values of `reference`, or fails
    /// as the reference does.
    fn agrees(
        body: &Bytes,
        got: Result<Vec<Bytes>, SplitError>,
        reference: Result<Vec<Value>, SplitError>,
    ) -> Result<(), TestCaseError> {
        if let Ok(entries) = &got {
            prop_assert!(are_slices_of(entries, body));
        }
        let body = String::from_utf8_lossy(body);
        prop_assert_eq!(got.map(|e| values(&e)), reference, "{}", body);
        Ok(())
    }

    proptest! {
        #[test]
        fn json_entries_are_the_values_serde_json_reads_in_the_whole_body(
            body in json_body(),
            limit in 1..8usize,
        ) {
            let body = Bytes::from(body);
            agrees(&body, json(&body, limit), json_reference(&body, limit))?;
        }

        #[test]
        fn ndjson_entries_are_the_values_serde_json_reads_line_by_line(
            body in ndjson_body(),
            limit in 1..8usize,
        ) {
            let body = Bytes::from(body);
            agrees(&body, ndjson(&body, limit), ndjson_reference(&body, limit))?;
        }
    }
}
