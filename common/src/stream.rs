//! The stream record: what the `streams` topic holds for each stream.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::thingspeak::MAX_FIELDS;

/// A stream's id. Numeric, so that ThingSpeak clients can use it as a channel id.
pub type StreamId = u64;

/// A stream as stored in the `streams` topic, keyed by its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamRecord {
    /// Its id, also the Kafka key of its records and entries.
    pub id: StreamId,
    /// A name, 1 to 100 characters.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// The JSON Schema of one entry's data.
    pub schema: Value,
    /// Property names that ThingSpeak's field1..field8 map onto, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
    /// Properties stored as InfluxDB tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// A property holding the reading's own time (RFC 3339 or epoch milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_field: Option<String>,
    /// The InfluxDB measurement; the stream id if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurement: Option<String>,
    /// Readable without a key.
    #[serde(default)]
    pub public: bool,
    /// Starts at 1, +1 on every change.
    pub version: u32,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// SHA-256 (hex) of the write key.
    pub write_key_sha256: String,
    /// SHA-256 (hex) of the read key.
    pub read_key_sha256: String,
}

impl StreamRecord {
    /// The Kafka key of the stream's records and entries: its id in decimal.
    pub fn key(&self) -> Bytes {
        key_of(self.id)
    }

    /// The names field1..field8 map onto: `fields`, or the schema's properties in order.
    pub fn field_names(&self) -> Vec<String> {
        match &self.fields {
            Some(f) => f.clone(),
            None => self
                .schema
                .get("properties")
                .and_then(Value::as_object)
                .map(|p| p.keys().take(MAX_FIELDS).cloned().collect())
                .unwrap_or_default(),
        }
    }

    /// The InfluxDB measurement.
    pub fn measurement(&self) -> String {
        self.measurement
            .clone()
            .unwrap_or_else(|| self.id.to_string())
    }
}

/// The type of one leaf of a stream's schema, as the stores keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafType {
    /// `integer`: InfluxDB integer fields, Int64 columns.
    Integer,
    /// `number`: always floats.
    Float,
    /// `boolean`.
    Boolean,
    /// `string`.
    String,
    /// `string` with `format: date-time`.
    Time,
    /// Untyped, an array, or an object without `properties`: kept as its JSON text.
    Json,
}

impl LeafType {
    /// The type a schema gives a property: its `type` (the first non-null one of a list), with
    /// `format: date-time` strings as times, and objects, arrays and untyped properties as JSON.
    /// Every store and every conversion asks this function (or [`LeafType::each_of`]).
    pub fn of(property: &Value) -> LeafType {
        schema_type(property).map_or(LeafType::Json, |t| Self::named(t, property))
    }

    /// Every type a schema allows a property, in the order it lists them, `null` left out.
    pub fn each_of(property: &Value) -> Vec<LeafType> {
        match property.get("type") {
            Some(Value::String(t)) => vec![Self::named(t, property)],
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .map(|t| Self::named(t, property))
                .collect(),
            _ => vec![],
        }
    }

    /// Whether a schema allows a property to be `null`.
    pub fn nullable(property: &Value) -> bool {
        match property.get("type") {
            Some(Value::String(t)) => t == "null",
            Some(Value::Array(ts)) => ts.iter().any(|t| t == "null"),
            _ => false,
        }
    }

    fn named(name: &str, property: &Value) -> LeafType {
        match name {
            "integer" => LeafType::Integer,
            "number" => LeafType::Float,
            "boolean" => LeafType::Boolean,
            "string" if property.get("format").and_then(Value::as_str) == Some("date-time") => {
                LeafType::Time
            }
            "string" => LeafType::String,
            _ => LeafType::Json,
        }
    }

    /// A text (a form value, say) read as this type: an integer also from a whole float
    /// (`21.0`), a boolean also from `1` and `0`, a string (or time) as it is. `None` if it does
    /// not read as this type, and always for JSON.
    pub fn from_text(self, text: &str) -> Option<Value> {
        let trimmed = text.trim();
        match self {
            LeafType::Integer => trimmed.parse::<i64>().ok().map(Value::from).or_else(|| {
                let f = trimmed.parse::<f64>().ok()?;
                (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15)
                    .then(|| Value::from(f as i64))
            }),
            LeafType::Float => trimmed
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number),
            LeafType::Boolean => match trimmed.to_ascii_lowercase().as_str() {
                "true" | "1" => Some(Value::Bool(true)),
                "false" | "0" => Some(Value::Bool(false)),
                _ => None,
            },
            LeafType::String | LeafType::Time => Some(Value::String(text.to_owned())),
            LeafType::Json => None,
        }
    }

    /// Integer or float.
    pub fn is_numeric(self) -> bool {
        matches!(self, LeafType::Integer | LeafType::Float)
    }
}

/// One scalar of an entry's data: a property, or a property of a nested object, with its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// Property names from the top of the entry down to the leaf.
    pub path: Vec<String>,
    /// The path joined with `.`: the InfluxDB field (or tag) name.
    pub name: String,
    /// Its type.
    pub ty: LeafType,
}

/// Names the stores give their own columns: the archive's fixed columns (`entry_id`, `seq`,
/// `ts`, `received_at`, `stream_version`) and, in InfluxDB, the point's `time`, the `stream_id`
/// tag and the writer's `seq` and `entry_id` fields. A top-level property of one of these names
/// is stored as `data.<name>` in both stores, and read back under its own name.
pub const RESERVED_NAMES: [&str; 7] = [
    "entry_id",
    "seq",
    "ts",
    "received_at",
    "stream_version",
    "stream_id",
    "time",
];

/// The name both stores keep the top-level property `name` under: `name`, or `data.<name>` if
/// it is one of [`RESERVED_NAMES`].
pub fn stored_name(name: &str) -> std::borrow::Cow<'_, str> {
    if RESERVED_NAMES.contains(&name) {
        format!("data.{name}").into()
    } else {
        name.into()
    }
}

impl Leaf {
    /// The column (archive) or field or tag key (InfluxDB) that holds this leaf: its
    /// [`Leaf::name`], but `data.<name>` for a top-level property named like one of the stores'
    /// own columns ([`stored_name`]).
    pub fn stored_name(&self) -> std::borrow::Cow<'_, str> {
        if self.path.len() == 1 {
            stored_name(&self.name)
        } else {
            self.name.as_str().into()
        }
    }
}

/// The type a schema gives a property: its `type`, or the first non-null one of a list.
pub fn schema_type(property: &Value) -> Option<&str> {
    match property.get("type") {
        Some(Value::String(t)) => Some(t.as_str()),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null"),
        _ => None,
    }
}

fn collect_leaves(
    prefix: &[String],
    properties: &serde_json::Map<String, Value>,
    out: &mut Vec<Leaf>,
) {
    for (name, p) in properties {
        let mut path = prefix.to_vec();
        path.push(name.clone());
        if schema_type(p) == Some("object") {
            if let Some(inner) = p.get("properties").and_then(Value::as_object) {
                collect_leaves(&path, inner, out);
                continue;
            }
        }
        let ty = LeafType::of(p);
        out.push(Leaf {
            name: path.join("."),
            path,
            ty,
        });
    }
}

impl StreamRecord {
    /// Every leaf of the schema in property order, nested objects flattened to `a.b`.
    pub fn leaves(&self) -> Vec<Leaf> {
        let mut out = Vec::new();
        if let Some(p) = self.schema.get("properties").and_then(Value::as_object) {
            collect_leaves(&[], p, &mut out);
        }
        out
    }
}

/// How InfluxDB keeps a field: it fixes a field's type at the first write to a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum InfluxType {
    Integer,
    Float,
    Boolean,
    String,
}

impl From<LeafType> for InfluxType {
    fn from(ty: LeafType) -> Self {
        match ty {
            LeafType::Integer => InfluxType::Integer,
            LeafType::Float => InfluxType::Float,
            LeafType::Boolean => InfluxType::Boolean,
            LeafType::String | LeafType::Time | LeafType::Json => InfluxType::String,
        }
    }
}

/// Where InfluxDB keeps each leaf of a stream, across its versions.
///
/// InfluxDB refuses a point whose field has another type than the one the field already has, so
/// a leaf cannot change type under one name. A leaf is written under its stored name
/// ([`Leaf::stored_name`]) with the type the first version that had it gave it; with any other
/// type it is written under `<stored name>.v<n>`, where `n` is the first version that gave it
/// that type. A name therefore always holds one type, and an entry is written under the same
/// names whichever later versions exist.
#[derive(Debug, Clone, Default)]
pub struct FieldKeys {
    /// Leaf name → the type its first version gave it.
    first_type: std::collections::HashMap<String, InfluxType>,
    /// (leaf name, type) → the first version that gave the leaf that type.
    since: std::collections::HashMap<(String, InfluxType), u32>,
    /// Leaf name → every (key, type) it is kept under, its own name first.
    all: std::collections::HashMap<String, Vec<(String, LeafType)>>,
}

impl FieldKeys {
    /// The keys of every leaf of `versions` (any order).
    pub fn of<'a>(versions: impl IntoIterator<Item = &'a StreamRecord>) -> Self {
        let mut versions: Vec<&StreamRecord> = versions.into_iter().collect();
        versions.sort_by_key(|v| v.version);
        let mut keys = FieldKeys::default();
        for v in versions {
            for leaf in v.leaves() {
                let ty = InfluxType::from(leaf.ty);
                keys.first_type.entry(leaf.name.clone()).or_insert(ty);
                let fresh = !keys.since.contains_key(&(leaf.name.clone(), ty));
                keys.since
                    .entry((leaf.name.clone(), ty))
                    .or_insert(v.version);
                if fresh {
                    let key = keys.key(&leaf).into_owned();
                    keys.all
                        .entry(leaf.name.clone())
                        .or_default()
                        .push((key, leaf.ty));
                }
            }
        }
        keys
    }

    /// The field key of `leaf`, a leaf of one of the versions this was built from.
    pub fn key<'a>(&self, leaf: &'a Leaf) -> std::borrow::Cow<'a, str> {
        let ty = InfluxType::from(leaf.ty);
        match self.first_type.get(&leaf.name) {
            Some(first) if *first != ty => {
                let since = self
                    .since
                    .get(&(leaf.name.clone(), ty))
                    .copied()
                    .unwrap_or(0);
                format!("{}.v{since}", leaf.stored_name()).into()
            }
            _ => leaf.stored_name(),
        }
    }

    /// Every key the leaf named `name` is kept under, with the type of its values there: its
    /// stored name first, then one per later type.
    pub fn all(&self, name: &str) -> &[(String, LeafType)] {
        self.all.get(name).map(Vec::as_slice).unwrap_or_default()
    }
}

/// The Kafka key for a stream id.
pub fn key_of(id: StreamId) -> Bytes {
    Bytes::from(id.to_string())
}

/// The streams topic's key of one version of a stream: `<id>/<version>`.
pub fn version_key(id: StreamId, version: u32) -> Bytes {
    Bytes::from(format!("{id}/{version}"))
}

/// What a key of the streams topic names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKey {
    /// `<id>`: the stream as it is now.
    Stream(StreamId),
    /// `<id>/<version>`: the stream as it was at that version, kept for the entries validated
    /// against it.
    Version(StreamId, u32),
}

impl RecordKey {
    /// The key read from its bytes, if it is one.
    pub fn parse(key: &[u8]) -> Option<Self> {
        let key = std::str::from_utf8(key).ok()?;
        match key.split_once('/') {
            None => key.parse().ok().map(RecordKey::Stream),
            Some((id, v)) => Some(RecordKey::Version(id.parse().ok()?, v.parse().ok()?)),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn sample(id: StreamId) -> StreamRecord {
        StreamRecord {
            id,
            name: "greenhouse".into(),
            description: String::new(),
            schema: json!({"type": "object", "properties": {
                "temperature": {"type": "number"}, "humidity": {"type": "number"},
                "door": {"type": "boolean"}}}),
            fields: None,
            tags: vec![],
            timestamp_field: None,
            measurement: None,
            public: false,
            version: 1,
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
            write_key_sha256: "w".into(),
            read_key_sha256: "r".into(),
        }
    }

    #[test]
    fn a_leaf_that_changes_type_gets_a_key_per_type() {
        let mut v1 = sample(42);
        v1.schema = json!({"type": "object", "properties": {
            "t": {"type": "number"}, "n": {"type": "integer"}, "seq": {"type": "integer"}}});
        let mut v2 = v1.clone();
        v2.version = 2;
        v2.schema = json!({"type": "object", "properties": {
            "t": {"type": "integer"}, "n": {"type": "integer"}, "seq": {"type": "string"}}});
        let mut v3 = v1.clone();
        v3.version = 3;
        v3.schema = json!({"type": "object", "properties": {
            "t": {"type": "number"}, "seq": {"type": "string", "format": "date-time"}}});
        let mut v4 = v1.clone();
        v4.version = 4;
        v4.schema = json!({"type": "object", "properties": {"t": {"type": "integer"}}});
        let keys = FieldKeys::of([&v4, &v2, &v1, &v3]);
        let key_of = |v: &StreamRecord, name: &str| {
            let leaf = v.leaves().into_iter().find(|l| l.name == name).unwrap();
            keys.key(&leaf).into_owned()
        };
        assert_eq!(key_of(&v1, "t"), "t");
        assert_eq!(key_of(&v2, "t"), "t.v2");
        assert_eq!(key_of(&v3, "t"), "t", "back to its first type");
        assert_eq!(key_of(&v4, "t"), "t.v2", "the first version with that type");
        assert_eq!(key_of(&v2, "n"), "n");
        // A reserved name keeps its `data.` prefix; a date-time is a string to InfluxDB.
        assert_eq!(key_of(&v1, "seq"), "data.seq");
        assert_eq!(key_of(&v2, "seq"), "data.seq.v2");
        assert_eq!(key_of(&v3, "seq"), "data.seq.v2");
        assert_eq!(
            keys.all("t"),
            [
                ("t".to_owned(), LeafType::Float),
                ("t.v2".to_owned(), LeafType::Integer)
            ]
        );
        assert_eq!(keys.all("n"), [("n".to_owned(), LeafType::Integer)]);
        assert!(keys.all("nope").is_empty());
    }

    #[test]
    fn keys_name_a_stream_or_one_of_its_versions() {
        assert_eq!(RecordKey::parse(&key_of(42)), Some(RecordKey::Stream(42)));
        assert_eq!(
            RecordKey::parse(&version_key(42, 3)),
            Some(RecordKey::Version(42, 3))
        );
        for bad in [&b"x"[..], b"42/", b"/3", b"42/3/4", b"42/-1", b"\xff"] {
            assert_eq!(RecordKey::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn fields_default_to_the_schema_property_order() {
        let mut s = sample(42);
        assert_eq!(s.field_names(), ["temperature", "humidity", "door"]);
        s.fields = Some(vec!["door".into()]);
        assert_eq!(s.field_names(), ["door"]);
        assert_eq!(s.measurement(), "42");
        assert_eq!(&s.key()[..], b"42");
        let back: StreamRecord = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
