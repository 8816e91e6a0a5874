//! InfluxDB line protocol, built straight into a reusable buffer.
//!
//! Escaping follows InfluxDB's parser (1.8 and 2.x), which is stricter than its reference page.
//! In the measurement, commas and spaces get a backslash; in tag keys, tag values and field keys,
//! commas, equals signs and spaces. A backslash before any other character is a backslash to
//! that parser, so names and tag values keep theirs as they are: doubled, they would be stored
//! doubled. String field values escape double quotes and backslashes, and are read back exactly.
//!
//! Two things no escaping can carry in a name or tag value, so they are changed: newlines end a
//! line, so they are written as the two characters `\n` (`\r` as `\r`); and a trailing
//! backslash would escape the delimiter after it, so it is dropped, as InfluxData's Telegraf
//! does (a tag left empty is left out). In a measurement or field key, a backslash right before
//! one of `,`, `=`, `"` or a space is read inconsistently by InfluxDB itself, and a tab that
//! begins a measurement is skipped as white space.

use serde_json::Value;
use thingtotal_common::stream::{stored_name, FieldKeys, LeafType, StreamRecord};

/// A stream's points: which properties are tags, and every field's type by flattened name.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    measurement: String,
    stream_tag: String,
    /// (property, key) of every tag: the key is the property's stored name.
    tags: Vec<(String, String)>,
    /// (key, path, type) of every field: the key is the leaf's stored name.
    fields: Vec<(String, Vec<String>, LeafType)>,
}

impl Layout {
    /// The layout of the points of `stream` (one version of it), with field keys from `keys`
    /// (built from every version, so that a field never changes type).
    pub(crate) fn of(stream: &StreamRecord, keys: &FieldKeys) -> Self {
        let mut fields: Vec<_> = stream
            .leaves()
            .into_iter()
            .map(|l| (keys.key(&l).into_owned(), l.path, l.ty))
            .collect();
        fields.retain(|(_, path, _)| {
            !(path.len() == 1
                && (stream.tags.contains(&path[0])
                    || stream.timestamp_field.as_ref() == Some(&path[0])))
        });
        Self {
            measurement: stream.measurement(),
            stream_tag: stream.id.to_string(),
            tags: stream
                .tags
                .iter()
                .map(|t| (t.clone(), stored_name(t).into_owned()))
                .collect(),
            fields,
        }
    }

    /// Appends one point for an entry's `data`, its `seq` and `entry_id`, at `ts_ns`.
    pub(crate) fn write(
        &self,
        buf: &mut String,
        data: &Value,
        seq: u64,
        entry_id: &str,
        ts_ns: i64,
    ) {
        use std::fmt::Write;
        escape(buf, &self.measurement, &[',', ' ']);
        buf.push_str(",stream_id=");
        escape(buf, &self.stream_tag, KEY);
        let mut tags: Vec<(&str, String)> = self
            .tags
            .iter()
            .filter_map(|(property, key)| {
                let v = match data.get(property)? {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return None,
                };
                Some((key.as_str(), v))
            })
            // InfluxDB refuses an empty tag key or value.
            .filter(|(k, v)| !written(k).is_empty() && !written(v).is_empty())
            .collect();
        // InfluxDB stores tags sorted by key; sending them sorted saves it the work.
        tags.sort();
        for (k, v) in tags {
            buf.push(',');
            escape(buf, k, KEY);
            buf.push('=');
            escape(buf, &v, KEY);
        }
        buf.push(' ');
        let _ = write!(buf, "seq={seq}i,entry_id=\"");
        escape(buf, entry_id, STRING);
        buf.push('"');
        for (name, path, ty) in &self.fields {
            let Some(v) = path.iter().try_fold(data, |v, p| v.get(p)) else {
                continue;
            };
            if v.is_null() {
                continue;
            }
            buf.push(',');
            escape(buf, name, KEY);
            buf.push('=');
            match (ty, v) {
                (LeafType::Integer, Value::Number(n)) => {
                    let i = n
                        .as_i64()
                        .or_else(|| n.as_f64().map(|f| f as i64))
                        .unwrap_or_default();
                    let _ = write!(buf, "{i}i");
                }
                (LeafType::Float, Value::Number(n)) => {
                    let f = n.as_f64().unwrap_or_default();
                    let _ = write!(buf, "{f:?}");
                }
                (LeafType::Boolean, Value::Bool(b)) => {
                    buf.push_str(if *b { "true" } else { "false" })
                }
                (LeafType::String | LeafType::Time, Value::String(s)) => {
                    buf.push('"');
                    escape(buf, s, STRING);
                    buf.push('"');
                }
                (_, other) => {
                    // A JSON field, or a value that does not match its (valid) schema type.
                    buf.push('"');
                    escape(buf, &other.to_string(), STRING);
                    buf.push('"');
                }
            }
        }
        let _ = writeln!(buf, " {ts_ns}");
    }
}

const KEY: &[char] = &[',', '=', ' '];
const STRING: &[char] = &['"'];

/// What of a name or tag value can be written: all but its trailing backslashes.
fn written(s: &str) -> &str {
    s.trim_end_matches('\\')
}

/// Appends `s`, escaping `special` with a backslash. In a string field value backslashes are
/// escaped too; in names and tag values they stay as they are, trailing ones are dropped,
/// newlines become `\n` and carriage returns `\r`.
fn escape(buf: &mut String, s: &str, special: &[char]) {
    let in_name = special != STRING;
    let s = if in_name { written(s) } else { s };
    for c in s.chars() {
        match c {
            '\\' if !in_name => buf.push_str("\\\\"),
            '\n' if in_name => buf.push_str("\\n"),
            '\r' if in_name => buf.push_str("\\r"),
            c if special.contains(&c) => {
                buf.push('\\');
                buf.push(c);
            }
            c => buf.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn esc(s: &str, special: &[char]) -> String {
        let mut b = String::new();
        escape(&mut b, s, special);
        b
    }

    #[test]
    fn measurement_escapes_commas_and_spaces() {
        assert_eq!(esc("my room, north", &[',', ' ']), "my\\ room\\,\\ north");
        assert_eq!(
            esc("a=b", &[',', ' ']),
            "a=b",
            "= needs no escape in a measurement"
        );
        assert_eq!(
            esc("c:\\dir", &[',', ' ']),
            "c:\\dir",
            "InfluxDB keeps the backslash"
        );
        assert_eq!(
            esc("ends\\", &[',', ' ']),
            "ends",
            "it would escape the delimiter"
        );
        assert_eq!(esc("two\nlines", &[',', ' ']), "two\\nlines");
    }

    #[test]
    fn keys_and_tag_values_escape_commas_equals_spaces() {
        assert_eq!(esc("a,b=c d", KEY), "a\\,b\\=c\\ d");
        assert_eq!(
            esc("quote\"s", KEY),
            "quote\"s",
            "quotes are literal in keys"
        );
        assert_eq!(esc("back\\slash", KEY), "back\\slash");
        // The backslash stays; the comma after it is escaped: InfluxDB reads `a\,b`.
        assert_eq!(esc("a\\,b", KEY), "a\\\\,b");
        assert_eq!(esc("C:\\", KEY), "C:");
        assert_eq!(esc("cr\r\nlf", KEY), "cr\\r\\nlf");
        assert_eq!(esc("température µ°C ✓", KEY), "température\\ µ°C\\ ✓");
    }

    #[test]
    fn string_fields_escape_quotes_and_backslashes_only() {
        assert_eq!(esc("say \"hi\", a=b", STRING), "say \\\"hi\\\", a=b");
        assert_eq!(esc("c:\\dir\\", STRING), "c:\\\\dir\\\\");
        assert_eq!(esc("line1\nline2", STRING), "line1\nline2");
        assert_eq!(esc("ünïcödé 🌡", STRING), "ünïcödé 🌡");
    }

    pub(super) fn stream() -> StreamRecord {
        serde_json::from_value(json!({
            "id": 42, "name": "s", "version": 1, "measurement": "green house",
            "schema": {"type": "object", "properties": {
                "site": {"type": "string"}, "floor": {"type": "integer"},
                "t": {"type": "number"}, "n": {"type": "integer"}, "on": {"type": "boolean"},
                "note": {"type": "string"}, "at": {"type": "string"},
                "pos": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": ["number", "null"]}}},
                "raw": {}, "list": {"type": "array"}}},
            "tags": ["site", "floor"], "timestamp_field": "at",
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "write_key_sha256": "", "read_key_sha256": ""
        }))
        .unwrap()
    }

    #[test]
    fn points_follow_the_schema_types() {
        let layout = Layout::of(&stream(), &FieldKeys::default());
        let mut buf = String::new();
        layout.write(
            &mut buf,
            &json!({"site": "north wing", "floor": 2, "t": 21, "n": 7, "on": true, "note": "a \"q\"",
                    "at": "2026-01-01T00:00:00Z", "pos": {"x": 1.5, "y": null}, "raw": {"k": [1]}, "list": [1, 2]}),
            9,
            "e-1",
            1_767_225_600_000_000_000,
        );
        assert_eq!(
            buf,
            "green\\ house,stream_id=42,floor=2,site=north\\ wing seq=9i,entry_id=\"e-1\",t=21.0,n=7i,on=true,\
             note=\"a \\\"q\\\"\",pos.x=1.5,raw=\"{\\\"k\\\":[1]}\",list=\"[1,2]\" 1767225600000000000\n"
        );
        // A missing tag and missing fields are left out; the buffer is reused.
        buf.clear();
        layout.write(&mut buf, &json!({"t": 1.25}), 10, "e-2", 5);
        assert_eq!(
            buf,
            "green\\ house,stream_id=42 seq=10i,entry_id=\"e-2\",t=1.25 5\n"
        );
        // A backslash is written as it is, but not a trailing one, which would escape the
        // space after it; a tag of backslashes alone is left out.
        buf.clear();
        layout.write(
            &mut buf,
            &json!({"site": "C:\\data\\", "floor": 3}),
            11,
            "e-3",
            6,
        );
        assert_eq!(
            buf,
            "green\\ house,stream_id=42,floor=3,site=C:\\data seq=11i,entry_id=\"e-3\" 6\n"
        );
        buf.clear();
        layout.write(&mut buf, &json!({"site": "\\\\"}), 12, "e-4", 7);
        assert_eq!(
            buf,
            "green\\ house,stream_id=42 seq=12i,entry_id=\"e-4\" 7\n"
        );
    }

    #[test]
    fn properties_named_like_the_writers_own_are_stored_as_data_dot_name() {
        let stream: StreamRecord = serde_json::from_value(json!({
            "id": 7, "name": "s", "version": 1,
            "schema": {"type": "object", "properties": {
                "seq": {"type": "integer"}, "entry_id": {"type": "string"}, "time": {"type": "string"},
                "ts": {"type": "number"}, "stream_id": {"type": "string"},
                "inner": {"type": "object", "properties": {"seq": {"type": "integer"}}}}},
            "tags": ["stream_id"],
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "write_key_sha256": "", "read_key_sha256": ""
        }))
        .unwrap();
        let mut buf = String::new();
        Layout::of(&stream, &FieldKeys::default()).write(
            &mut buf,
            &json!({"seq": 5, "entry_id": "mine", "time": "noon", "ts": 1.5, "stream_id": "s-9",
                    "inner": {"seq": 6}}),
            9,
            "e-1",
            5,
        );
        assert_eq!(
            buf,
            "7,stream_id=7,data.stream_id=s-9 seq=9i,entry_id=\"e-1\",data.seq=5i,\
             data.entry_id=\"mine\",data.time=\"noon\",data.ts=1.5,inner.seq=6i 5\n"
        );
    }
}

#[cfg(test)]
mod proptests {
    //! Escaping against a model of InfluxDB's line-protocol parser (its Go `models` package):
    //! an element ends at the first delimiter that does not follow a backslash, and a
    //! backslash is dropped only before the characters that element unescapes.

    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const MEASUREMENT: &[char] = &[',', ' '];
    /// What InfluxDB unescapes in a measurement and in field keys.
    const NAME_CODES: &[char] = &[',', '"', ' ', '='];
    /// What it unescapes in tag keys and values.
    const TAG_CODES: &[char] = &[',', ' ', '='];

    fn escaped(s: &str, special: &[char]) -> String {
        let mut b = String::new();
        escape(&mut b, s, special);
        b
    }

    /// Where an element ends in `line`: at the first of `delimiters` not after a backslash.
    fn scan(line: &str, delimiters: &[u8]) -> usize {
        let b = line.as_bytes();
        (0..b.len())
            .find(|&i| delimiters.contains(&b[i]) && (i == 0 || b[i - 1] != b'\\'))
            .unwrap_or(b.len())
    }

    /// `text` as InfluxDB unescapes it: a backslash before one of `codes` is dropped.
    fn unescape(text: &str, codes: &[char]) -> String {
        let mut out = String::with_capacity(text.len());
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match chars.peek() {
                Some(&next) if c == '\\' && codes.contains(&next) => {
                    out.push(next);
                    chars.next();
                }
                _ => out.push(c),
            }
        }
        out
    }

    /// A quoted string field value at the start of `rest`, as InfluxDB reads it: its length
    /// with the quotes, and its text.
    fn string_field(rest: &str) -> (usize, String) {
        let b = rest.as_bytes();
        let mut i = 1;
        while i < b.len() && b[i] != b'"' {
            i += if b[i] == b'\\' && matches!(b.get(i + 1), Some(b'"' | b'\\')) {
                2
            } else {
                1
            };
        }
        (i + 1, unescape(&rest[1..i.min(b.len())], &['"', '\\']))
    }

    /// A name or tag value as it lands: newlines spelt out, trailing backslashes gone.
    fn as_stored(s: &str) -> String {
        written(s).replace('\n', "\\n").replace('\r', "\\r")
    }

    /// Text rich in what line protocol treats specially, or any text.
    fn tricky() -> impl Strategy<Value = String> {
        prop_oneof!["[ab,= \"\\\\\n\r]{0,12}", any::<String>(),]
    }

    /// A name or tag value with something left to write.
    fn name() -> impl Strategy<Value = String> {
        tricky().prop_filter("nothing to write", |s| !written(s).is_empty())
    }

    proptest! {
        #[test]
        fn tag_keys_and_values_read_back_as_influxdb_reads_them(s in name(), t in name()) {
            let (key, value) = (escaped(&s, KEY), escaped(&t, KEY));
            // `m,key=value,stream_id=1 …`: the key ends at its `=`, the value at the comma.
            let tags = format!("{key}={value},stream_id=1 seq=1i");
            prop_assert_eq!(scan(&tags, b"=,"), key.len(), "{}", tags);
            let after_key = &tags[key.len() + 1..];
            prop_assert_eq!(scan(after_key, b", ="), value.len(), "{}", tags);
            prop_assert_eq!(unescape(&key, TAG_CODES), as_stored(&s));
            prop_assert_eq!(unescape(&value, TAG_CODES), as_stored(&t));
        }

        #[test]
        fn measurements_and_field_keys_end_where_they_should_and_read_back(s in name()) {
            let (measurement, field) = (escaped(&s, MEASUREMENT), escaped(&s, KEY));
            let line = format!("{measurement},stream_id=1 {field}=1i");
            prop_assert_eq!(scan(&line, b", "), measurement.len(), "{}", line);
            let fields = &line[measurement.len() + ",stream_id=1 ".len()..];
            prop_assert_eq!(scan(fields, b"="), field.len(), "{}", line);
            // InfluxDB reads a backslash before a character it unescapes in names
            // inconsistently (its index and its series keys disagree), and skips white space
            // that begins the line or the fields: such names are out.
            let stored = as_stored(&s);
            let ambiguous = stored.starts_with(['\t', '\0'])
                || stored
                    .chars()
                    .zip(stored.chars().skip(1))
                    .any(|(a, b)| a == '\\' && NAME_CODES.contains(&b));
            if !ambiguous {
                prop_assert_eq!(unescape(&measurement, NAME_CODES), stored.clone());
                prop_assert_eq!(unescape(&field, NAME_CODES), stored);
            }
        }

        #[test]
        fn string_field_values_read_back_exactly(s in tricky()) {
            let value = format!("\"{}\"", escaped(&s, STRING));
            let fields = format!("{value},seq=1i");
            let (len, text) = string_field(&fields);
            prop_assert_eq!(len, value.len(), "{}", fields);
            prop_assert_eq!(text, s);
        }

        #[test]
        fn a_point_of_any_tags_and_strings_is_one_line_that_keeps_them(
            site in tricky(),
            note in tricky(),
            entry_id in tricky(),
        ) {
            let layout = Layout::of(&tests::stream(), &FieldKeys::default());
            let mut buf = String::new();
            layout.write(&mut buf, &json!({"site": site, "note": note}), 1, &entry_id, 5);
            // The key (measurement and tags) ends at the first space not after a backslash.
            let key_end = scan(&buf, b" ");
            let site_tag = if written(&site).is_empty() {
                String::new()
            } else {
                format!(",site={}", escaped(&site, KEY))
            };
            prop_assert_eq!(&buf[..key_end], format!("green\\ house,stream_id=42{site_tag}"));
            if !site_tag.is_empty() {
                let tag_value = &buf[key_end - site_tag.len() + ",site=".len()..key_end];
                prop_assert_eq!(unescape(tag_value, TAG_CODES), as_stored(&site));
            }
            let after = &buf[key_end + 1..];
            prop_assert!(after.starts_with("seq=1i,entry_id=\""), "{}", buf);
            let (len, id) = string_field(&after["seq=1i,entry_id=".len()..]);
            prop_assert_eq!(id, entry_id);
            let rest = &after["seq=1i,entry_id=".len() + len..];
            prop_assert!(rest.starts_with(",note=\""), "{}", buf);
            let (len, text) = string_field(&rest[",note=".len()..]);
            prop_assert_eq!(text, note);
            prop_assert_eq!(&rest[",note=".len() + len..], " 5\n");
        }
    }
}
