//! One update as sent, and the stream entry it becomes: each field's value converted to the
//! type the schema gives its property.

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use thingtotal_common::stream::{LeafType, StreamRecord};
use thingtotal_common::thingspeak::{channel_fields, field_key, MAX_FIELDS};
use thingtotal_common::time::parse_device_time;

use super::params::WriteParams;

/// Converts a form value to the JSON type the schema gives the property (the first of its
/// types the value reads as); a value that reads as none stays a string, so that the validator
/// rejects it with the reason.
pub(super) fn typed(value: &str, property: Option<&Value>) -> Value {
    let value = value.trim_end_matches(['\r', '\n']);
    let Some(property) = property else {
        return Value::String(value.to_owned());
    };
    if value.is_empty() && LeafType::nullable(property) {
        return Value::Null;
    }
    LeafType::each_of(property)
        .into_iter()
        .find_map(|t| t.from_text(value))
        .unwrap_or_else(|| Value::String(value.to_owned()))
}

/// One ThingSpeak update, as sent.
#[derive(Debug, Default)]
pub(super) struct Update {
    fields: [Option<String>; MAX_FIELDS],
    latitude: Option<String>,
    longitude: Option<String>,
    elevation: Option<String>,
    status: Option<String>,
    /// The reading's time, when the update gave one.
    pub(super) created_at: Option<DateTime<Utc>>,
}

impl Update {
    /// The update that `p` sends.
    pub(super) fn from_params(p: &WriteParams) -> Self {
        let get = |names: &[&str]| names.iter().find_map(|n| p.get(*n).cloned());
        let mut u = Update {
            latitude: get(&["lat", "latitude"]),
            longitude: get(&["long", "longitude"]),
            elevation: get(&["elevation"]),
            status: get(&["status"]),
            // ThingSpeak ignores a created_at it cannot parse and uses the server time.
            created_at: get(&["created_at"]).and_then(|s| parse_device_time(&s)),
            ..Update::default()
        };
        for (i, f) in u.fields.iter_mut().enumerate() {
            *f = get(&[&field_key(i), &format!("{}", i + 1)]);
        }
        u
    }

    /// The entry's data in the stream's shape.
    pub(super) fn entry(&self, stream: &StreamRecord) -> Bytes {
        let properties = stream.schema.get("properties").and_then(Value::as_object);
        let property = |name: &str| properties.and_then(|p| p.get(name));
        let mut data = Map::new();
        for ((_, name), value) in channel_fields(stream).iter().zip(&self.fields) {
            if let Some(v) = value {
                data.insert(name.clone(), typed(v, property(name)));
            }
        }
        for (names, value) in [
            (&["lat", "latitude"][..], &self.latitude),
            (&["long", "longitude"][..], &self.longitude),
            (&["elevation"][..], &self.elevation),
            (&["status"][..], &self.status),
        ] {
            if let (Some(v), Some(name)) = (value, names.iter().find(|n| property(n).is_some())) {
                data.insert((*name).to_owned(), typed(v, property(name)));
            }
        }
        if let (Some(t), Some(field)) = (self.created_at, &stream.timestamp_field) {
            data.insert(
                field.clone(),
                json!(t.to_rfc3339_opts(SecondsFormat::Micros, true)),
            );
        }
        Bytes::from(serde_json::to_vec(&Value::Object(data)).expect("a JSON object serialises"))
    }

    /// The time that travels in the `tt.created_at` header: `created_at`, when the stream has
    /// no `timestamp_field` to hold it in the entry's data.
    pub(super) fn header_time(&self, stream: &StreamRecord) -> Option<DateTime<Utc>> {
        self.created_at.filter(|_| stream.timestamp_field.is_none())
    }

    /// ThingSpeak's entry object: values as strings, compact.
    pub(super) fn answer(
        &self,
        stream: &StreamRecord,
        seq: u64,
        created_at: DateTime<Utc>,
    ) -> Value {
        let mut o = Map::new();
        o.insert("channel_id".into(), json!(stream.id));
        o.insert(
            "created_at".into(),
            json!(created_at.to_rfc3339_opts(SecondsFormat::Secs, true)),
        );
        o.insert("entry_id".into(), json!(seq));
        for (i, v) in self.fields.iter().enumerate() {
            o.insert(field_key(i), json!(v));
        }
        o.insert("latitude".into(), json!(self.latitude));
        o.insert("longitude".into(), json!(self.longitude));
        o.insert("elevation".into(), json!(self.elevation));
        o.insert("status".into(), json!(self.status));
        Value::Object(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_take_the_schema_type() {
        let p = |t: &str| json!({"type": t});
        assert_eq!(typed("21.5", Some(&p("number"))), json!(21.5));
        assert_eq!(typed("21", Some(&p("number"))), json!(21.0));
        assert_eq!(typed("7", Some(&p("integer"))), json!(7));
        assert_eq!(typed("7.0", Some(&p("integer"))), json!(7));
        assert_eq!(
            typed("7.5", Some(&p("integer"))),
            json!("7.5"),
            "left for the validator to reject"
        );
        assert_eq!(typed("1", Some(&p("boolean"))), json!(true));
        assert_eq!(typed("FALSE", Some(&p("boolean"))), json!(false));
        assert_eq!(typed("0042", Some(&p("string"))), json!("0042"));
        assert_eq!(typed("abc", Some(&p("number"))), json!("abc"));
        assert_eq!(typed("NaN", Some(&p("number"))), json!("NaN"));
        assert_eq!(
            typed("", Some(&json!({"type": ["number", "null"]}))),
            Value::Null
        );
        assert_eq!(typed("3\r\n", Some(&p("integer"))), json!(3));
        assert_eq!(typed("x", None), json!("x"));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;
    use thingtotal_common::stream::StreamRecord;

    /// A channel whose eight fields have every type a form value can be converted to.
    fn stream() -> StreamRecord {
        serde_json::from_value(json!({
            "id": 7, "name": "s", "version": 1,
            "schema": {"type": "object", "properties": {
                "i": {"type": "integer"}, "f": {"type": "number"}, "b": {"type": "boolean"},
                "s": {"type": "string"}, "n": {"type": ["number", "null"]},
                "ib": {"type": ["integer", "boolean"]},
                "t": {"type": "string", "format": "date-time"}, "j": {},
                "lat": {"type": "number"}, "status": {"type": "string"}, "at": {"type": "string"}}},
            "fields": ["i", "f", "b", "s", "n", "ib", "t", "j"], "tags": [],
            "timestamp_field": "at",
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "write_key_sha256": "", "read_key_sha256": ""
        }))
        .unwrap()
    }

    /// A form value: a number, a boolean, a time, any text, perhaps with the line end a
    /// form keeps.
    fn form_value() -> impl Strategy<Value = String> {
        let text = prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| f.to_string()),
            "-?[0-9]{0,17}(\\.[0-9]{0,3})?(e-?[0-9]{1,3})?",
            "(true|false|TRUE|1|0|yes|NaN|inf|-inf| 7 )",
            "[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}",
            any::<String>(),
        ];
        (text, prop::sample::select(vec!["", "\r\n", "\n"])).prop_map(|(t, end)| t + end)
    }

    /// The JSON type of `v`, as a schema names it.
    fn json_type(v: &Value) -> &'static str {
        match v {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    proptest! {
        #[test]
        fn a_value_printed_in_its_type_reads_back_as_itself(
            n in any::<i64>(),
            f in any::<f64>().prop_filter("finite", |f| f.is_finite()),
            b in any::<bool>(),
            s in any::<String>().prop_filter("no line end", |s| !s.ends_with(['\r', '\n'])),
            end in prop::sample::select(vec!["", "\r\n", "\n"]),
        ) {
            let p = |t: &str| json!({"type": t});
            prop_assert_eq!(typed(&format!("{n}{end}"), Some(&p("integer"))), json!(n));
            prop_assert_eq!(typed(&format!("{f}{end}"), Some(&p("number"))), json!(f));
            prop_assert_eq!(typed(&format!("{b}{end}"), Some(&p("boolean"))), json!(b));
            prop_assert_eq!(typed(&format!("{s}{end}"), Some(&p("string"))), json!(s));
        }

        #[test]
        fn any_text_becomes_a_type_the_schema_allows_or_stays_the_text(
            text in form_value(),
            types in prop::sample::subsequence(vec!["integer", "number", "boolean", "null"], 0..4)
                .prop_shuffle(),
        ) {
            let property = json!({"type": types});
            let got = typed(&text, Some(&property));
            let sent = text.trim_end_matches(['\r', '\n']);
            let allowed = |t: &str| types.contains(&t) || (t == "integer" && types.contains(&"number"));
            prop_assert!(
                got == json!(sent) || allowed(json_type(&got)),
                "{:?} as {:?} gave {}", text, types, got
            );
            if got.is_null() {
                prop_assert!(sent.is_empty());
            }
        }

        #[test]
        fn an_update_becomes_an_entry_with_each_value_under_its_property(
            fields in prop::collection::vec(
                prop::option::of((form_value(), any::<bool>())), 8..=8
            ),
            lat in prop::option::of(form_value()),
            created_at in prop::option::of(prop_oneof![
                (-30_000_000_000i64..30_000_000_000)
                    .prop_map(|s| DateTime::from_timestamp(s, 0).unwrap().to_rfc3339()),
                any::<String>(),
            ]),
        ) {
            let stream = stream();
            let mut p = WriteParams::new();
            for (i, f) in fields.iter().enumerate() {
                if let Some((v, short)) = f {
                    let key = if *short { (i + 1).to_string() } else { field_key(i) };
                    p.insert(key, v.clone());
                }
            }
            if let Some(v) = &lat {
                p.insert("latitude".into(), v.clone());
            }
            if let Some(v) = &created_at {
                p.insert("created_at".into(), v.clone());
            }
            let entry: Value = serde_json::from_slice(&Update::from_params(&p).entry(&stream))
                .expect("an entry is JSON");
            let data = entry.as_object().expect("an entry is an object");
            let properties = &stream.schema["properties"];
            for (i, name) in stream.field_names().iter().enumerate() {
                let expected = fields[i].as_ref().map(|(v, _)| typed(v, properties.get(name)));
                prop_assert_eq!(data.get(name), expected.as_ref(), "{}", name);
            }
            let expected = lat.as_deref().map(|v| typed(v, properties.get("lat")));
            prop_assert_eq!(data.get("lat"), expected.as_ref());
            let at = created_at
                .as_deref()
                .and_then(parse_device_time)
                .map(|t| json!(t.to_rfc3339_opts(SecondsFormat::Micros, true)));
            prop_assert_eq!(data.get("at"), at.as_ref());
            prop_assert_eq!(data.len(), fields.iter().flatten().count()
                + usize::from(lat.is_some()) + usize::from(at.is_some()));
        }
    }
}
