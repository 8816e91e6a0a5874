//! `/api/streams`: define, change, delete and secure streams.
//!
//! Every change is a record on the compacted `streams` topic. A handler answers only once the
//! log acknowledged the record and this instance's registry applied it (read-your-writes).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thingtotal_common::keys;
use thingtotal_common::log::Record;
use thingtotal_common::stream::{StreamId, StreamRecord};
use thingtotal_common::thingspeak::MAX_FIELDS;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

use thingtotal_common::http::Credential;
use thingtotal_common::problem::{Problem, Violation};

use crate::auth;
use crate::Api;

/// How long a handler waits for its registry to apply its own write.
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// What a client sends to create or replace a stream.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamDefinition {
    /// 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// JSON Schema (draft 2020-12 unless `$schema` says otherwise) of one entry; must describe an
    /// object.
    #[schema(value_type = EntrySchema, inline)]
    pub schema: Value,
    /// Up to 8 property names that ThingSpeak's field1..field8 map onto; default: the schema's
    /// properties in order.
    #[serde(default)]
    #[schema(max_items = 8)]
    pub fields: Option<Vec<String>>,
    /// String, integer or boolean properties stored as InfluxDB tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// A property holding the reading's own time (RFC 3339 or epoch milliseconds).
    #[serde(default)]
    pub timestamp_field: Option<String>,
    /// InfluxDB measurement, 1 to 200 bytes; default: the stream id.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub measurement: Option<String>,
    /// Readable without a key.
    #[serde(default)]
    pub public: bool,
}

thingtotal_common::schema_type!(
    /// A JSON Schema that describes an object.
    EntrySchema = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("type", thingtotal_common::openapi::one_of(["object"]))
        .required("type")
);

/// A stream as the API shows it. Keys are never shown here.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Stream {
    /// The stream id; also its ThingSpeak channel id.
    pub id: StreamId,
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// The JSON Schema of one entry.
    #[schema(value_type = Object)]
    pub schema: Value,
    /// The properties field1..field8 map onto.
    pub fields: Vec<String>,
    /// Properties stored as InfluxDB tags.
    pub tags: Vec<String>,
    /// The property holding the reading's time, if any.
    pub timestamp_field: Option<String>,
    /// The InfluxDB measurement.
    pub measurement: String,
    /// Readable without a key.
    pub public: bool,
    /// 1 at creation, +1 on every change.
    pub version: u32,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<&StreamRecord> for Stream {
    fn from(s: &StreamRecord) -> Self {
        Self {
            id: s.id,
            name: s.name.clone(),
            description: s.description.clone(),
            schema: s.schema.clone(),
            fields: s.field_names(),
            tags: s.tags.clone(),
            timestamp_field: s.timestamp_field.clone(),
            measurement: s.measurement(),
            public: s.public,
            version: s.version,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// A stream with its keys in clear: only in the answer that created or rotated them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StreamWithKeys {
    /// The stream.
    #[serde(flatten)]
    pub stream: Stream,
    /// The write key, shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_key: Option<String>,
    /// The read key, shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_key: Option<String>,
}

/// One version of a stream: what its entries validated against it were checked and stored with.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StreamVersion {
    /// The version, from 1.
    pub version: u32,
    /// The JSON Schema of one entry at this version.
    #[schema(value_type = Object)]
    pub schema: Value,
    /// The properties field1..field8 mapped onto.
    pub fields: Vec<String>,
    /// Properties stored as InfluxDB tags.
    pub tags: Vec<String>,
    /// The property holding the reading's time, if any.
    pub timestamp_field: Option<String>,
    /// The InfluxDB measurement.
    pub measurement: String,
    /// When this version was written.
    pub since: DateTime<Utc>,
}

impl From<&StreamRecord> for StreamVersion {
    fn from(s: &StreamRecord) -> Self {
        Self {
            version: s.version,
            schema: s.schema.clone(),
            fields: s.field_names(),
            tags: s.tags.clone(),
            timestamp_field: s.timestamp_field.clone(),
            measurement: s.measurement(),
            since: s.updated_at,
        }
    }
}

/// Every version kept of a stream.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StreamVersions {
    /// Oldest first. Streams created before versions were kept start at the version current
    /// then.
    pub versions: Vec<StreamVersion>,
}

/// Whether a change may break the stream's entries.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UpdateParams {
    /// Accept a breaking change (see the 409 answer for what breaks).
    #[serde(default)]
    pub force: bool,
}

/// A page of streams.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StreamPage {
    /// The streams, by id.
    pub streams: Vec<Stream>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<StreamId>,
}

/// Paging through streams.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// At most this many (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Only streams with a larger id (the previous page's `next_after`).
    #[param(value_type = Option<u64>, maximum = 18446744073709551615u64)]
    pub after: Option<StreamId>,
}

/// Which keys to rotate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Rotate {
    /// The write key only.
    Write,
    /// The read key only.
    Read,
    /// Both keys.
    #[default]
    Both,
}

/// The body of a key rotation; none (or `null`) means both.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// `write`, `read` or `both` (default).
    #[serde(default)]
    pub rotate: Rotate,
}

/// Parses a JSON body: 400 if it is not JSON, 422 (with a pointer) if it is the wrong shape.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Problem::bad_request(format!("the body is not valid JSON: {e}")))?;
    // serde takes a struct from an array of its members in order too; the API takes objects.
    if !value.is_object() {
        return Err(Problem::invalid(vec![Violation {
            pointer: String::new(),
            detail: "the body must be a JSON object".into(),
        }]));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let mut pointer = if path == "." {
            String::new()
        } else {
            format!("/{}", path.replace(['.', '['], "/").replace(']', ""))
        };
        let message = e.into_inner().to_string();
        // serde names a missing member in its message, not in the path.
        if let Some(name) = message.split('`').nth(1) {
            if message.starts_with("missing field") {
                pointer = format!("{pointer}/{name}");
            }
        }
        Problem::invalid(vec![Violation {
            pointer,
            detail: message,
        }])
    })
}

/// Checks a definition before anything is written; every violation is reported at once.
pub(crate) fn check(d: &StreamDefinition) -> Result<(), Problem> {
    let mut errors = Vec::new();
    let mut err = |pointer: String, detail: String| errors.push(Violation { pointer, detail });
    let name_len = d.name.chars().count();
    if !(1..=100).contains(&name_len) {
        err(
            "/name".into(),
            format!("must be 1 to 100 characters, not {name_len}"),
        );
    }
    if let Err(e) = jsonschema::meta::validate(&d.schema) {
        err(
            format!("/schema{}", e.instance_path()),
            format!("not a valid JSON Schema: {e}"),
        );
    } else if let Err(e) = jsonschema::validator_for(&d.schema) {
        err("/schema".into(), format!("cannot be compiled: {e}"));
    }
    let describes_object = match d.schema.get("type") {
        Some(Value::String(t)) => t == "object",
        _ => false,
    };
    if !describes_object {
        err(
            "/schema/type".into(),
            "the schema must describe an object (\"type\": \"object\")".into(),
        );
    }
    let properties = d.schema.get("properties").and_then(Value::as_object);
    let property = |name: &str| properties.and_then(|p| p.get(name));
    if let Some(fields) = &d.fields {
        if fields.len() > MAX_FIELDS {
            err(
                "/fields".into(),
                format!("at most {MAX_FIELDS} fields, not {}", fields.len()),
            );
        }
        for (i, f) in fields.iter().enumerate() {
            if property(f).is_none() {
                err(
                    format!("/fields/{i}"),
                    format!("{f:?} is not a property of the schema"),
                );
            } else if fields[..i].contains(f) {
                err(format!("/fields/{i}"), format!("{f:?} is listed twice"));
            }
        }
    }
    for (i, t) in d.tags.iter().enumerate() {
        match property(t)
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str)
        {
            Some("string" | "integer" | "boolean") => {}
            Some(other) => err(
                format!("/tags/{i}"),
                format!("{t:?} is of type {other}; tags must be string, integer or boolean"),
            ),
            None if property(t).is_none() => err(
                format!("/tags/{i}"),
                format!("{t:?} is not a property of the schema"),
            ),
            None => err(
                format!("/tags/{i}"),
                format!("{t:?} has no single type; tags must be string, integer or boolean"),
            ),
        }
    }
    if let Some(ts) = &d.timestamp_field {
        if property(ts).is_none() {
            err(
                "/timestamp_field".into(),
                format!("{ts:?} is not a property of the schema"),
            );
        }
    }
    if let Some(m) = &d.measurement {
        if m.is_empty() || m.len() > 200 {
            err("/measurement".into(), "must be 1 to 200 bytes".into());
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Problem::invalid(errors))
    }
}

fn json(status: StatusCode, body: &impl Serialize) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

/// Appends a stream record (or a tombstone) and waits until this registry applied it.
/// Writes a stream's record, or its tombstone, and waits until this api's registry applied it.
/// A record goes with a copy under its version's key, written first; a tombstone goes after
/// one for each version kept, so that compaction drops them all.
async fn write(api: &Api, id: StreamId, record: Option<&StreamRecord>) -> Result<(), Problem> {
    use thingtotal_common::stream::{key_of, version_key};
    let records = match record {
        Some(s) => {
            let value = bytes::Bytes::from(
                serde_json::to_vec(s).map_err(|e| Problem::bad_request(e.to_string()))?,
            );
            vec![
                Record::new(version_key(id, s.version), value.clone()),
                Record::new(key_of(id), value),
            ]
        }
        None => {
            let tombstone = |key| Record {
                key: Some(key),
                ..Record::default()
            };
            let mut records: Vec<Record> = api
                .part
                .registry
                .versions(id)
                .iter()
                .map(|v| tombstone(version_key(id, v.version)))
                .collect();
            records.push(tombstone(key_of(id)));
            records
        }
    };
    let pos = api
        .part
        .log
        .append(&api.part.topics.streams, records)
        .await?;
    if let Some(last) = pos.iter().map(|p| p.offset).max() {
        api.part
            .registry
            .applied_through(last, APPLY_TIMEOUT)
            .await?;
    }
    Ok(())
}

pub(crate) async fn existing(api: &Api, id: StreamId) -> Result<Arc<StreamRecord>, Problem> {
    api.part
        .registry
        .lookup(id, APPLY_TIMEOUT)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no stream with id {id}")))
}

/// Create a stream. Its keys are in the answer, and shown only this once.
#[utoipa::path(post, path = "/api/streams", tag = "streams",
    request_body = StreamDefinition,
    responses(
        (status = 201, description = "Created", body = StreamWithKeys),
        (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No credentials", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the admin token", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid definition", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log did not answer; retry after Retry-After", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin" = [])))]
pub(crate) async fn create(
    api: Api,
    c: Credential,
    body: bytes::Bytes,
) -> Result<Response, Problem> {
    auth::require_admin(api.admin_token(), &c)?;
    let d: StreamDefinition = parse_body(&body)?;
    check(&d)?;
    let _one_change = api.changing().await;
    let id = loop {
        let id = rand::random_range(1_000_000..=2_147_483_647u64);
        if api.part.registry.get(id).is_none() {
            break id;
        }
    };
    let (write_key, read_key) = (keys::generate(), keys::generate());
    let now = Utc::now();
    let record = StreamRecord {
        id,
        name: d.name,
        description: d.description,
        schema: d.schema,
        fields: d.fields,
        tags: d.tags,
        timestamp_field: d.timestamp_field,
        measurement: d.measurement,
        public: d.public,
        version: 1,
        created_at: now,
        updated_at: now,
        write_key_sha256: keys::hash(&write_key),
        read_key_sha256: keys::hash(&read_key),
    };
    write(&api, id, Some(&record)).await?;
    tracing::info!(stream = id, "stream created");
    let mut r = json(
        StatusCode::CREATED,
        &StreamWithKeys {
            stream: Stream::from(&record),
            write_key: Some(write_key),
            read_key: Some(read_key),
        },
    );
    if let Ok(v) = format!("/api/streams/{id}").parse() {
        r.headers_mut().insert("location", v);
    }
    Ok(r)
}

/// List streams: all of them with the admin token, the public ones without.
#[utoipa::path(get, path = "/api/streams", tag = "streams", operation_id = "list_streams", params(ListParams),
    responses(
        (status = 200, description = "A page of streams", body = StreamPage),
        (status = 400, description = "Bad parameters", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Credentials that are not the admin token", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list(api: Api, c: Credential, query: &str) -> Result<Response, Problem> {
    let p: ListParams = serde_urlencoded::from_str(query)
        .map_err(|e| Problem::bad_request(format!("bad query parameter: {e}")))?;
    let admin = c.is_present();
    if admin {
        auth::require_admin(api.admin_token(), &c)?;
    }
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::bad_request("limit must be 1 to 1000"));
    }
    let after = p.after.unwrap_or(0);
    let mut visible = api
        .part
        .registry
        .list()
        .into_iter()
        .filter(|s| s.id > after && (admin || s.public));
    let streams: Vec<Stream> = visible
        .by_ref()
        .take(limit)
        .map(|s| Stream::from(&*s))
        .collect();
    let next_after = match visible.next() {
        Some(_) => streams.last().map(|s| s.id),
        None => None,
    };
    Ok(json(
        StatusCode::OK,
        &StreamPage {
            streams,
            next_after,
        },
    ))
}

/// Get a stream: public streams need no key; private ones the read key or the admin token.
#[utoipa::path(get, path = "/api/streams/{id}", tag = "streams",
    params(("id" = u64, Path, description = "Stream id")),
    responses(
        (status = 200, description = "The stream", body = Stream),
        (status = 401, description = "Private stream, no credentials", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Wrong credentials", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such stream", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log did not answer; retry after Retry-After", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn get(api: Api, id: StreamId, c: Credential) -> Result<Response, Problem> {
    let s = existing(&api, id).await?;
    auth::require_read(api.admin_token(), &c, &s)?;
    Ok(json(StatusCode::OK, &Stream::from(&*s)))
}

/// Every version kept of a stream: public streams need no key; private ones the read key or the
/// admin token.
#[utoipa::path(get, path = "/api/streams/{id}/versions", tag = "streams",
    params(("id" = u64, Path, description = "Stream id")),
    responses(
        (status = 200, description = "The versions, oldest first", body = StreamVersions),
        (status = 401, description = "Private stream, no credentials", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Wrong credentials", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such stream", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log did not answer; retry after Retry-After", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn versions(api: Api, id: StreamId, c: Credential) -> Result<Response, Problem> {
    let s = existing(&api, id).await?;
    auth::require_read(api.admin_token(), &c, &s)?;
    let versions = api
        .part
        .registry
        .versions(id)
        .iter()
        .map(|v| StreamVersion::from(&**v))
        .collect();
    Ok(json(StatusCode::OK, &StreamVersions { versions }))
}

/// One version of a stream, with the same access as the stream.
#[utoipa::path(get, path = "/api/streams/{id}/versions/{version}", tag = "streams",
    params(("id" = u64, Path, description = "Stream id"),
           ("version" = u32, Path, description = "Version, from 1", minimum = 1)),
    responses(
        (status = 200, description = "The version", body = StreamVersion),
        (status = 401, description = "Private stream, no credentials", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Wrong credentials", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such stream, or no such version kept", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log did not answer; retry after Retry-After", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn version(
    api: Api,
    id: StreamId,
    version: u32,
    c: Credential,
) -> Result<Response, Problem> {
    let s = existing(&api, id).await?;
    auth::require_read(api.admin_token(), &c, &s)?;
    let v = api.part.registry.version(id, version).ok_or_else(|| {
        Problem::not_found(format!(
            "stream {id} has no version {version} (its versions are listed at /api/streams/{id}/versions)"
        ))
    })?;
    Ok(json(StatusCode::OK, &StreamVersion::from(&*v)))
}

/// Replace a stream's definition. The version goes up by one; the id and keys stay. A change
/// that breaks the entries stored so far is refused with 409 naming each break, unless `force`
/// is set; earlier entries keep the version they were stored with either way.
#[utoipa::path(put, path = "/api/streams/{id}", tag = "streams",
    params(("id" = u64, Path, description = "Stream id"), UpdateParams),
    request_body = StreamDefinition,
    responses(
        (status = 200, description = "The changed stream", body = Stream),
        (status = 400, description = "Not JSON, or a bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No credentials", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such stream", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A breaking change without force=true; `errors` names each break", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid definition", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log did not answer; retry after Retry-After", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin" = [])))]
pub(crate) async fn update(
    api: Api,
    id: StreamId,
    c: Credential,
    query: &str,
    body: bytes::Bytes,
) -> Result<Response, Problem> {
    auth::require_admin(api.admin_token(), &c)?;
    let p: UpdateParams = serde_urlencoded::from_str(query)
        .map_err(|e| Problem::bad_request(format!("bad query parameter: {e}")))?;
    let _one_change = api.changing().await;
    let old = existing(&api, id).await?;
    let d: StreamDefinition = parse_body(&body)?;
    check(&d)?;
    let breaks = crate::compat::breaks(&old, &d);
    if !breaks.is_empty() {
        if !p.force {
            crate::telemetry::breaking_change_refused();
            tracing::info!(
                stream = id,
                breaks = breaks.len(),
                "breaking change refused"
            );
            let detail = format!(
                "this change breaks the stream's entries in {} way(s); send it again with \
                 ?force=true to accept that (entries stored so far keep version {})",
                breaks.len(),
                old.version
            );
            return Err(Problem::conflict(detail, breaks));
        }
        tracing::warn!(
            stream = id,
            version = old.version + 1,
            breaks = ?breaks.iter().map(|b| &b.pointer).collect::<Vec<_>>(),
            "breaking change accepted with force=true"
        );
    }
    crate::telemetry::schema_changed(!breaks.is_empty());
    let record = StreamRecord {
        name: d.name,
        description: d.description,
        schema: d.schema,
        fields: d.fields,
        tags: d.tags,
        timestamp_field: d.timestamp_field,
        measurement: d.measurement,
        public: d.public,
        version: old.version + 1,
        // Never earlier than the last change, even if this clock is behind another instance's.
        updated_at: Utc::now().max(old.updated_at + chrono::Duration::microseconds(1)),
        ..(*old).clone()
    };
    write(&api, id, Some(&record)).await?;
    tracing::info!(stream = id, version = record.version, "stream changed");
    Ok(json(StatusCode::OK, &Stream::from(&record)))
}

/// Delete a stream. Its entries are refused from then on.
#[utoipa::path(delete, path = "/api/streams/{id}", tag = "streams",
    params(("id" = u64, Path, description = "Stream id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No credentials", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such stream", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log did not answer; retry after Retry-After", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin" = [])))]
pub(crate) async fn delete(api: Api, id: StreamId, c: Credential) -> Result<Response, Problem> {
    auth::require_admin(api.admin_token(), &c)?;
    let _one_change = api.changing().await;
    existing(&api, id).await?;
    write(&api, id, None).await?;
    tracing::info!(stream = id, "stream deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Rotate a stream's write key, read key or both. The new keys are shown this once, and the
/// old ones stop working. The version goes up by one.
#[utoipa::path(post, path = "/api/streams/{id}/keys", tag = "streams",
    params(("id" = u64, Path, description = "Stream id")),
    request_body(content = Option<RotateRequest>, description = "None, or `null`, means both"),
    responses(
        (status = 200, description = "The stream and its new keys", body = StreamWithKeys),
        (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No credentials", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such stream", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log did not answer; retry after Retry-After", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin" = [])))]
pub(crate) async fn rotate(
    api: Api,
    id: StreamId,
    c: Credential,
    body: bytes::Bytes,
) -> Result<Response, Problem> {
    auth::require_admin(api.admin_token(), &c)?;
    let _one_change = api.changing().await;
    let old = existing(&api, id).await?;
    let empty = body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null";
    let req: RotateRequest = if empty {
        RotateRequest::default()
    } else {
        parse_body(&body)?
    };
    let mut record = (*old).clone();
    // A rotation is a change of the record like any other: its version goes up.
    record.version += 1;
    let mut shown = (None, None);
    if matches!(req.rotate, Rotate::Write | Rotate::Both) {
        let k = keys::generate();
        record.write_key_sha256 = keys::hash(&k);
        shown.0 = Some(k);
    }
    if matches!(req.rotate, Rotate::Read | Rotate::Both) {
        let k = keys::generate();
        record.read_key_sha256 = keys::hash(&k);
        shown.1 = Some(k);
    }
    record.updated_at = Utc::now().max(old.updated_at + chrono::Duration::microseconds(1));
    write(&api, id, Some(&record)).await?;
    tracing::info!(stream = id, rotated = ?req.rotate, "stream keys rotated");
    Ok(json(
        StatusCode::OK,
        &StreamWithKeys {
            stream: Stream::from(&record),
            write_key: shown.0,
            read_key: shown.1,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn definition(v: Value) -> Result<StreamDefinition, Problem> {
        parse_body(&serde_json::to_vec(&v).unwrap())
    }

    fn pointers(p: Problem) -> Vec<String> {
        p.errors.into_iter().map(|v| v.pointer).collect()
    }

    fn good() -> Value {
        json!({"name": "greenhouse", "schema": {"type": "object", "properties": {
            "t": {"type": "number"}, "site": {"type": "string"}, "at": {"type": "string"}}}})
    }

    #[test]
    fn a_valid_definition_passes() {
        let mut v = good();
        v["fields"] = json!(["t"]);
        v["tags"] = json!(["site"]);
        v["timestamp_field"] = json!("at");
        check(&definition(v).unwrap()).unwrap();
    }

    #[test]
    fn unknown_and_missing_members_are_named() {
        let mut v = good();
        v["colour"] = json!("red");
        let p = definition(v).unwrap_err();
        assert_eq!(p.status, 422);
        assert_eq!(pointers(p), ["/colour"]);
        let p = definition(json!({"schema": {"type": "object"}})).unwrap_err();
        assert_eq!(pointers(p), ["/name"]);
        let p = definition(json!({"name": "x", "schema": {}, "tags": ["a", 3]})).unwrap_err();
        assert_eq!(pointers(p), ["/tags/1"]);
        assert_eq!(
            parse_body::<StreamDefinition>(b"{nope").unwrap_err().status,
            400
        );
    }

    #[test]
    fn every_rule_is_checked_with_a_pointer() {
        let d = definition(json!({
            "name": "",
            "schema": {"type": "object", "properties": {
                "t": {"type": "number"}, "o": {"type": "object"}, "s": {"type": "string"}}},
            "fields": ["t", "missing", "t"],
            "tags": ["t", "o", "nope"],
            "timestamp_field": "when",
        }))
        .unwrap();
        assert_eq!(
            pointers(check(&d).unwrap_err()),
            [
                "/name",
                "/fields/1",
                "/fields/2",
                "/tags/0",
                "/tags/1",
                "/tags/2",
                "/timestamp_field"
            ]
        );
        let mut v = good();
        v["fields"] = json!(["t", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9"]);
        assert!(
            pointers(check(&definition(v).unwrap()).unwrap_err()).contains(&"/fields".to_owned())
        );
    }

    #[test]
    fn the_schema_must_be_a_valid_schema_of_an_object() {
        let mut v = good();
        v["schema"] = json!({"type": "array"});
        assert_eq!(
            pointers(check(&definition(v).unwrap()).unwrap_err()),
            ["/schema/type"]
        );
        let mut v = good();
        v["schema"] = json!({"type": "object", "properties": {"t": {"type": "nonsense"}}});
        let p = pointers(check(&definition(v).unwrap()).unwrap_err());
        assert!(p[0].starts_with("/schema/properties/t"), "{p:?}");
        let mut v = good();
        v["schema"] = json!({"type": "object", "minProperties": -1});
        assert!(pointers(check(&definition(v).unwrap()).unwrap_err())[0].starts_with("/schema"));
    }
}
