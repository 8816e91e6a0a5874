//! A stream's shape as the stores keep it, and entries rebuilt in the schema's shape: values of
//! the schema's types, and flattened `a.b` names nested again.

use serde_json::{Map, Value};
use thingtotal_common::envelope::format_time;
use thingtotal_common::stream::{FieldKeys, Leaf, LeafType, StreamRecord};
use thingtotal_common::time::parse_device_time;

/// What the backends read of one stream.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub(crate) stream_id: u64,
    pub(crate) measurement: String,
    /// Every leaf of the schema but the `timestamp_field`, which is the entry's `ts`: the
    /// current version's leaves in its order, then those only earlier versions had, newest first.
    /// Each has the type of the newest version that has it.
    pub(crate) leaves: Vec<Leaf>,
    /// For each leaf, every InfluxDB field key it is kept under with the type of its values there
    /// ([`FieldKeys`]): one, unless a version changed its type.
    pub(crate) keys: Vec<Vec<(String, LeafType)>>,
    /// For each ThingSpeak field (field1 first), the other properties earlier versions mapped
    /// it onto, newest first: a channel's field keeps its values when its property is renamed.
    pub(crate) earlier_fields: Vec<Vec<String>>,
}

impl Shape {
    /// The shape of a stream with only its current version.
    #[cfg(test)]
    pub(crate) fn of(stream: &StreamRecord) -> Self {
        Self::across(stream, &[])
    }

    /// The shape of `current` and every earlier version kept of it (`versions`, any order; the
    /// current one may be among them): a read over a range that spans versions finds every
    /// value each version stored.
    pub(crate) fn across(
        current: &StreamRecord,
        versions: &[std::sync::Arc<StreamRecord>],
    ) -> Self {
        let mut newest_first: Vec<&StreamRecord> = versions
            .iter()
            .map(|v| &**v)
            .filter(|v| v.version < current.version)
            .collect();
        newest_first.sort_by_key(|v| std::cmp::Reverse(v.version));
        let mut leaves: Vec<Leaf> = Vec::new();
        for v in std::iter::once(current).chain(newest_first.iter().copied()) {
            for l in v.leaves() {
                let is_ts = l.path.len() == 1 && v.timestamp_field.as_ref() == Some(&l.name);
                if !is_ts && !leaves.iter().any(|known| known.name == l.name) {
                    leaves.push(l);
                }
            }
        }
        let field_keys =
            FieldKeys::of(std::iter::once(current).chain(newest_first.iter().copied()));
        let keys = leaves
            .iter()
            .map(|l| match field_keys.all(&l.name) {
                [] => vec![(l.stored_name().into_owned(), l.ty)],
                all => all.to_vec(),
            })
            .collect();
        let current_fields = current.field_names();
        let mut earlier_fields: Vec<Vec<String>> = vec![Vec::new(); current_fields.len()];
        for v in &newest_first {
            for (i, name) in v.field_names().into_iter().enumerate() {
                if let Some(earlier) = earlier_fields.get_mut(i) {
                    if current_fields[i] != name && !earlier.contains(&name) {
                        earlier.push(name);
                    }
                }
            }
        }
        Self {
            stream_id: current.id,
            measurement: current.measurement(),
            leaves,
            keys,
            earlier_fields,
        }
    }

    /// The index of the leaf named `name` (`a.b` for a nested one).
    pub(crate) fn index(&self, name: &str) -> Option<usize> {
        self.leaves.iter().position(|l| l.name == name)
    }

    /// The entry's data in the schema's shape, from a value per leaf (of `leaves`).
    pub(crate) fn data(&self, leaves: &[usize], values: &[Option<Value>]) -> Value {
        let mut data = Map::new();
        for (&leaf, v) in leaves.iter().zip(values) {
            let Some(v) = v else { continue };
            let path = &self.leaves[leaf].path;
            let mut at = &mut data;
            for p in &path[..path.len() - 1] {
                let next = at
                    .entry(p.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !next.is_object() {
                    *next = Value::Object(Map::new());
                }
                at = next.as_object_mut().expect("made an object above");
            }
            at.insert(path[path.len() - 1].clone(), v.clone());
        }
        Value::Object(data)
    }

    /// Indexes of every leaf.
    pub(crate) fn all(&self) -> Vec<usize> {
        (0..self.leaves.len()).collect()
    }
}

/// A float as JSON; not-a-number and infinities, which JSON cannot hold, become null.
pub(crate) fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// A stored value as the schema types it. InfluxDB hands back tags as strings, JSON leaves as
/// their text and date-times as they were sent; the archive hands back timestamps. Both end up
/// the same: integers, floats, booleans, strings, RFC 3339 times with microseconds, JSON values.
pub(crate) fn coerce(ty: LeafType, v: Value) -> Option<Value> {
    let out = match (ty, v) {
        (_, Value::Null) => return None,
        (LeafType::Integer, Value::Number(n)) => match n.as_i64() {
            Some(i) => Value::from(i),
            None => Value::from(n.as_f64()? as i64),
        },
        (LeafType::Integer, Value::String(s)) => Value::from(s.parse::<i64>().ok()?),
        (LeafType::Float, Value::Number(n)) => float(n.as_f64()?),
        (LeafType::Float, Value::String(s)) => float(s.parse::<f64>().ok()?),
        (LeafType::Boolean, Value::String(s)) => Value::Bool(s.parse::<bool>().ok()?),
        (LeafType::Time, Value::String(s)) => match parse_device_time(&s) {
            Some(t) => Value::String(format_time(t)),
            None => Value::String(s),
        },
        (LeafType::Json, Value::String(s)) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
        (_, v) => v,
    };
    Some(out)
}

/// A value as one CSV cell, for every CSV this API writes: numbers, booleans and JSON values as
/// their text, null as nothing, and strings as they are unless a spreadsheet would take them
/// for a formula (see [`csv_text`]).
pub(crate) fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => csv_text(s).into_owned(),
        Some(other) => other.to_string(),
    }
}

/// Text for a CSV cell, safe to open in a spreadsheet: text that starts with `=`, `+`, `-`, `@`,
/// a tab or a carriage return gets a leading `'`, as OWASP advises against CSV injection, so
/// that a spreadsheet shows it instead of running it. A number written as text (`-3.5`) is
/// left as it is: a spreadsheet reads it as the number it is.
pub(crate) fn csv_text(s: &str) -> std::borrow::Cow<'_, str> {
    let risky = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && !s.parse::<f64>().is_ok_and(f64::is_finite) {
        format!("'{s}").into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn data_is_nested_again_and_the_timestamp_field_is_ts() {
        let s: StreamRecord = serde_json::from_value(json!({
            "id": 1, "name": "n", "timestamp_field": "at",
            "schema": {"type": "object", "properties": {
                "at": {"type": "string"},
                "t": {"type": "number"},
                "gps": {"type": "object", "properties": {"lat": {"type": "number"}, "fix": {"type": "boolean"}}},
                "raw": {}}},
            "version": 1, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "write_key_sha256": "", "read_key_sha256": ""}))
        .unwrap();
        let shape = Shape::of(&s);
        let names: Vec<_> = shape.leaves.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["t", "gps.lat", "gps.fix", "raw"]);
        let data = shape.data(
            &shape.all(),
            &[
                Some(json!(1.5)),
                Some(json!(2.0)),
                None,
                Some(json!([1, "x"])),
            ],
        );
        assert_eq!(
            data,
            json!({"t": 1.5, "gps": {"lat": 2.0}, "raw": [1, "x"]})
        );
    }

    #[test]
    fn a_shape_across_versions_keeps_every_leaf_and_every_key() {
        let v = |version: u32, properties: Value| -> std::sync::Arc<StreamRecord> {
            std::sync::Arc::new(
                serde_json::from_value(json!({
                    "id": 1, "name": "n", "schema": {"type": "object", "properties": properties},
                    "version": version, "created_at": "2026-01-01T00:00:00Z",
                    "updated_at": "2026-01-01T00:00:00Z",
                    "write_key_sha256": "", "read_key_sha256": ""}))
                .unwrap(),
            )
        };
        let v1 = v(
            1,
            json!({"temp": {"type": "number"}, "n": {"type": "number"}}),
        );
        let v2 = v(
            2,
            json!({"temperature": {"type": "number"}, "n": {"type": "integer"}}),
        );
        let shape = Shape::across(&v2, &[v1, v2.clone()]);
        let names: Vec<_> = shape.leaves.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["temperature", "n", "temp"]);
        assert_eq!(shape.leaves[1].ty, LeafType::Integer, "the newest type");
        assert_eq!(
            shape.keys[1],
            [
                ("n".to_owned(), LeafType::Float),
                ("n.v2".to_owned(), LeafType::Integer)
            ]
        );
        assert_eq!(shape.keys[2], [("temp".to_owned(), LeafType::Float)]);
        assert_eq!(shape.earlier_fields, [vec!["temp".to_owned()], vec![]]);
    }

    #[test]
    fn values_take_the_schema_type() {
        assert_eq!(coerce(LeafType::Integer, json!("42")), Some(json!(42)));
        assert_eq!(coerce(LeafType::Float, json!(21)), Some(json!(21.0)));
        assert_eq!(coerce(LeafType::Boolean, json!("true")), Some(json!(true)));
        assert_eq!(
            coerce(LeafType::Json, json!("{\"a\":1}")),
            Some(json!({"a": 1}))
        );
        assert_eq!(
            coerce(LeafType::Json, json!("not json")),
            Some(json!("not json"))
        );
        assert_eq!(
            coerce(LeafType::Time, json!("2026-01-02 03:04:05")),
            Some(json!("2026-01-02T03:04:05.000000Z"))
        );
        assert_eq!(coerce(LeafType::Float, Value::Null), None);
        assert_eq!(cell(Some(&json!("a,b"))), "a,b");
        assert_eq!(cell(Some(&json!(1.5))), "1.5");
        assert_eq!(cell(None), "");
    }

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_are_neutralised_and_numbers_are_not() {
        for (v, want) in [
            (json!("=1+2"), "'=1+2"),
            (json!("+A1"), "'+A1"),
            (json!("-2+3"), "'-2+3"),
            (json!("@SUM(A1:A9)"), "'@SUM(A1:A9)"),
            (json!("\tx"), "'\tx"),
            (json!("\rx"), "'\rx"),
            (json!("a=b"), "a=b"),
            (json!(""), ""),
            (json!("-3.5"), "-3.5"),
            (json!("+1e3"), "+1e3"),
            (json!("-inf"), "'-inf"),
            (json!(-3.5), "-3.5"),
            (json!(-7), "-7"),
            (json!(["=x"]), "[\"=x\"]"),
        ] {
            assert_eq!(cell(Some(&v)), want, "{v}");
        }
    }
}
