//! Which changes of a stream's definition break its entries, checked before a change is written.
//!
//! The rule is close to Schema Registry's `BACKWARD` mode: every entry that was valid under the
//! old schema must be valid under the new one, and stored the same way. Adding an optional
//! property, dropping a requirement, widening a type to a list that holds the old one, or
//! loosening a bound is compatible. These break:
//!
//! - a property removed (a rename is a removal and an addition);
//! - a property whose stored type changes (`integer` → `number` included: InfluxDB keeps a
//!   field's first type), or whose allowed types narrow;
//! - a property made required;
//! - a constraint tightened: a larger lower bound, a smaller upper bound, a new or changed
//!   `pattern`, `format`, `const` or `multipleOf`, an `enum` that drops a value, extra
//!   properties refused;
//! - any other keyword changed: it is not classified, so it is taken as breaking;
//! - the InfluxDB measurement or the set of tags changed.
//!
//! Annotations (`title`, `description`, `examples`, `default`, …) never break.

use serde_json::{Map, Value};
use thingtotal_common::problem::Violation;
use thingtotal_common::stream::{LeafType, StreamRecord};

use crate::streams::StreamDefinition;

/// Keywords that only annotate a schema.
const ANNOTATIONS: [&str; 9] = [
    "title",
    "description",
    "examples",
    "default",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$id",
];

/// Bounds that may only go down.
const LOWER: [&str; 6] = [
    "minimum",
    "exclusiveMinimum",
    "minLength",
    "minItems",
    "minProperties",
    "minContains",
];

/// Bounds that may only go up.
const UPPER: [&str; 6] = [
    "maximum",
    "exclusiveMaximum",
    "maxLength",
    "maxItems",
    "maxProperties",
    "maxContains",
];

/// Keywords that may only be removed, never added or changed.
const EXACT: [&str; 5] = ["pattern", "format", "const", "multipleOf", "uniqueItems"];

/// What breaks if `old` becomes `new`, each with a pointer into the request body. Empty if the
/// change is compatible.
pub(crate) fn breaks(old: &StreamRecord, new: &StreamDefinition) -> Vec<Violation> {
    let mut out = Vec::new();
    node(&old.schema, &new.schema, "/schema".into(), false, &mut out);
    let measurement = new
        .measurement
        .clone()
        .unwrap_or_else(|| old.id.to_string());
    if measurement != old.measurement() {
        out.push(Violation {
            pointer: "/measurement".into(),
            detail: format!(
                "the InfluxDB measurement changes from {:?}: earlier entries would stay under the old one",
                old.measurement()
            ),
        });
    }
    let (mut before, mut after) = (old.tags.clone(), new.tags.clone());
    before.sort();
    after.sort();
    if before != after {
        out.push(Violation {
            pointer: "/tags".into(),
            detail: format!(
                "the tags change from {:?}: InfluxDB would keep a property as a field in earlier points and as a tag in later ones",
                old.tags
            ),
        });
    }
    out
}

fn push(out: &mut Vec<Violation>, pointer: String, detail: impl Into<String>) {
    out.push(Violation {
        pointer,
        detail: detail.into(),
    });
}

/// A JSON Pointer token.
fn token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// The types a schema allows, or `None` if any.
fn types(s: &Value) -> Option<Vec<&str>> {
    match s.get("type")? {
        Value::String(t) => Some(vec![t.as_str()]),
        Value::Array(ts) => Some(ts.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

/// Whether every value of type `t` is of one of `allowed`.
fn covered(t: &str, allowed: &[&str]) -> bool {
    allowed.contains(&t) || (t == "integer" && allowed.contains(&"number"))
}

/// Compares one schema node. `property` is true for a property's schema, whose stored type
/// must stay the same.
fn node(old: &Value, new: &Value, at: String, property: bool, out: &mut Vec<Violation>) {
    if old == new {
        return;
    }
    let (Some(o), Some(n)) = (old.as_object(), new.as_object()) else {
        if new != &Value::Bool(true) {
            push(out, at, "the schema changed from or to a boolean schema");
        }
        return;
    };
    let nested = |s: &Map<String, Value>| {
        s.get("properties").is_some_and(Value::is_object)
            && types(&Value::Object(s.clone())).is_some_and(|t| t.contains(&"object"))
    };
    if property {
        let (ot, nt) = (LeafType::of(old), LeafType::of(new));
        let (on, nn) = (nested(o), nested(n));
        if on != nn || (!on && ot != nt) {
            // Whatever else changed with it, the property is stored as something else now.
            push(
                out,
                format!("{at}/type"),
                format!(
                    "the stored type changes from {} to {}",
                    describe(old, on),
                    describe(new, nn)
                ),
            );
            return;
        }
    }
    let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let (ov, nv) = (o.get(key), n.get(key));
        if ov == nv || ANNOTATIONS.contains(&key.as_str()) {
            continue;
        }
        let here = format!("{at}/{}", token(key));
        match key.as_str() {
            "properties" => properties(ov, nv, &here, out),
            "required" => {
                let before: Vec<&Value> =
                    ov.and_then(Value::as_array).into_iter().flatten().collect();
                for r in nv.and_then(Value::as_array).into_iter().flatten() {
                    if !before.contains(&r) {
                        push(
                            out,
                            here.clone(),
                            format!("{r} becomes required: earlier entries may not carry it"),
                        );
                    }
                }
            }
            "type" => match (types(old), types(new)) {
                (_, None) => {}
                (None, Some(_)) => push(out, here, "a type is set where any was allowed"),
                (Some(before), Some(after)) => {
                    let lost: Vec<&str> =
                        before.into_iter().filter(|t| !covered(t, &after)).collect();
                    if !lost.is_empty() {
                        push(out, here, format!("no longer allows {}", lost.join(", ")));
                    }
                }
            },
            "enum" => {
                let after = nv.and_then(Value::as_array);
                let dropped = match (ov.and_then(Value::as_array), after) {
                    (_, None) => false,
                    (None, Some(_)) => true,
                    (Some(before), Some(after)) => before.iter().any(|v| !after.contains(v)),
                };
                if dropped {
                    push(out, here, "the enum no longer holds every value it allowed");
                }
            }
            k if LOWER.contains(&k) || UPPER.contains(&k) => {
                let lower = LOWER.contains(&k);
                let (before, after) = (ov.and_then(Value::as_f64), nv.and_then(Value::as_f64));
                let tighter = match (before, after) {
                    (_, None) => false,
                    (None, Some(_)) => true,
                    (Some(b), Some(a)) => (lower && a > b) || (!lower && a < b),
                };
                if tighter {
                    push(out, here, format!("{k} is tightened"));
                }
            }
            k if EXACT.contains(&k) => {
                if nv.is_some() && nv != Some(&Value::Bool(false)) {
                    push(out, here, format!("{k} is added or changed"));
                }
            }
            "additionalProperties" | "items" | "contains" | "propertyNames"
                if ov.is_some_and(Value::is_object) && nv.is_some_and(Value::is_object) =>
            {
                node(
                    ov.unwrap_or(&Value::Null),
                    nv.unwrap_or(&Value::Null),
                    here,
                    false,
                    out,
                );
            }
            "additionalProperties" if nv == Some(&Value::Bool(true)) => {}
            _ => push(
                out,
                here,
                "changed in a way that is not classified, so it is taken as breaking",
            ),
        }
    }
}

fn properties(old: Option<&Value>, new: Option<&Value>, at: &str, out: &mut Vec<Violation>) {
    let empty = Map::new();
    let before = old.and_then(Value::as_object).unwrap_or(&empty);
    let after = new.and_then(Value::as_object).unwrap_or(&empty);
    for (name, o) in before {
        let here = format!("{at}/{}", token(name));
        match after.get(name) {
            None => push(
                out,
                here,
                format!("{name:?} is removed (a rename is a removal and an addition)"),
            ),
            Some(n) => node(o, n, here, true, out),
        }
    }
}

fn describe(s: &Value, nested: bool) -> String {
    if nested {
        return "an object of properties".into();
    }
    match LeafType::of(s) {
        LeafType::Integer => "integer",
        LeafType::Float => "number",
        LeafType::Boolean => "boolean",
        LeafType::String => "string",
        LeafType::Time => "date-time string",
        LeafType::Json => "JSON text",
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn old(schema: Value) -> StreamRecord {
        serde_json::from_value(json!({
            "id": 1000000, "name": "s", "version": 1, "schema": schema, "tags": ["site"],
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "write_key_sha256": "", "read_key_sha256": ""}))
        .unwrap()
    }

    fn new(schema: Value) -> StreamDefinition {
        serde_json::from_value(json!({"name": "s", "schema": schema, "tags": ["site"]})).unwrap()
    }

    fn pointers(before: Value, after: Value) -> Vec<String> {
        breaks(&old(before), &new(after))
            .into_iter()
            .map(|v| v.pointer)
            .collect()
    }

    fn base() -> Value {
        json!({"type": "object", "required": ["t"], "properties": {
            "t": {"type": "number", "minimum": -40, "maximum": 85},
            "n": {"type": "integer"},
            "site": {"type": "string", "enum": ["a", "b"]},
            "loc": {"type": "object", "properties": {"lat": {"type": "number"}}}}})
    }

    fn with(f: impl FnOnce(&mut Value)) -> Value {
        let mut s = base();
        f(&mut s);
        s
    }

    #[test]
    fn compatible_changes_pass() {
        for after in [
            base(),
            with(|s| s["properties"]["rh"] = json!({"type": "number"})),
            with(|s| s["required"] = json!([])),
            with(|s| s["properties"]["t"]["maximum"] = json!(100)),
            with(|s| {
                s["properties"]["t"]
                    .as_object_mut()
                    .unwrap()
                    .remove("minimum");
            }),
            with(|s| s["properties"]["t"]["type"] = json!(["number", "null"])),
            with(|s| s["properties"]["site"]["enum"] = json!(["a", "b", "c"])),
            with(|s| s["properties"]["t"]["description"] = json!("degrees")),
            with(|s| s["properties"]["loc"]["properties"]["lon"] = json!({"type": "number"})),
        ] {
            assert_eq!(
                pointers(base(), after.clone()),
                Vec::<String>::new(),
                "{after}"
            );
        }
    }

    #[test]
    fn each_break_is_named_with_a_pointer() {
        let cases = [
            (
                with(|s| {
                    let p = s["properties"].as_object_mut().unwrap();
                    let t = p.remove("t").unwrap();
                    p.insert("temperature".into(), t);
                }),
                vec!["/schema/properties/t"],
            ),
            (
                with(|s| s["properties"]["n"]["type"] = json!("number")),
                vec!["/schema/properties/n/type"],
            ),
            (
                with(|s| s["properties"]["t"]["type"] = json!("string")),
                vec!["/schema/properties/t/type"],
            ),
            (
                with(|s| s["required"] = json!(["t", "n"])),
                vec!["/schema/required"],
            ),
            (
                with(|s| s["properties"]["t"]["maximum"] = json!(50)),
                vec!["/schema/properties/t/maximum"],
            ),
            (
                with(|s| s["properties"]["site"]["pattern"] = json!("^a")),
                vec!["/schema/properties/site/pattern"],
            ),
            (
                with(|s| s["properties"]["site"]["enum"] = json!(["a"])),
                vec!["/schema/properties/site/enum"],
            ),
            (
                with(|s| s["additionalProperties"] = json!(false)),
                vec!["/schema/additionalProperties"],
            ),
            (
                with(|s| s["properties"]["loc"]["properties"]["lat"]["type"] = json!("integer")),
                vec!["/schema/properties/loc/properties/lat/type"],
            ),
            (
                with(|s| s["properties"]["loc"] = json!({"type": "string"})),
                vec!["/schema/properties/loc/type"],
            ),
            (
                with(|s| s["properties"]["t"]["allOf"] = json!([{"type": "number"}])),
                vec!["/schema/properties/t/allOf"],
            ),
        ];
        for (after, want) in cases {
            assert_eq!(pointers(base(), after.clone()), want, "{after}");
        }
    }

    #[test]
    fn measurement_and_tags_are_part_of_the_contract() {
        let o = old(base());
        let mut d = new(base());
        d.measurement = Some("greenhouse".into());
        d.tags = vec![];
        let p: Vec<String> = breaks(&o, &d).into_iter().map(|v| v.pointer).collect();
        assert_eq!(p, ["/measurement", "/tags"]);
        d.measurement = Some("1000000".into());
        d.tags = vec!["site".into()];
        assert!(
            breaks(&o, &d).is_empty(),
            "the default measurement spelled out"
        );
    }
}
