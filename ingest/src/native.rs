//! `POST /api/streams/{id}/entries`: one JSON object, a JSON array of objects, or NDJSON,
//! optionally gzipped.

use std::io::Read;

use bytes::Bytes;
use serde::Serialize;
use thingtotal_common::http::Credential;
use thingtotal_common::problem::{Problem, Violation};
use thingtotal_common::stream::StreamId;
use utoipa::ToSchema;
use uuid::Uuid;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

use crate::append::Refused;
use crate::split::{self, SplitError};
use crate::Ingest;

/// The answer to an accepted write.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Accepted {
    /// How many entries were accepted: all of the request's.
    pub accepted: usize,
    /// Each entry's id, in request order.
    pub entry_ids: Vec<Uuid>,
    /// Each entry's sequence number (its offset in `entries.raw` plus one), in request order;
    /// unique and growing within a stream, never 0. ThingSpeak clients see it as `entry_id`.
    pub seq: Vec<u64>,
}

impl From<Refused> for Problem {
    fn from(r: Refused) -> Self {
        match r {
            Refused::NoKey => Problem::unauthorized(
                "send the stream's write key (Authorization: Bearer, X-Api-Key, THINGSPEAKAPIKEY or api_key)",
            ),
            Refused::WrongKey => Problem::forbidden("the key is not this stream's write key"),
            Refused::UnknownStream => Problem::not_found("no such stream"),
            Refused::TooLarge { index, size, limit } => Problem {
                errors: vec![Violation {
                    pointer: format!("/{index}"),
                    detail: format!("{size} bytes with its headers"),
                }],
                ..Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "entry-too-large",
                    format!(
                        "entry {index} is {size} bytes with its headers; an entry may be at most \
                         {limit} bytes; nothing of the request was stored"
                    ),
                )
            },
            Refused::Unavailable(incident) => incident.into(),
        }
    }
}

fn split_problem(e: SplitError) -> Problem {
    match e {
        SplitError::Malformed {
            line,
            column,
            message,
        } => Problem {
            line: u32::try_from(line).ok(),
            column: u32::try_from(column).ok(),
            ..Problem::bad_request(format!(
                "invalid JSON at line {line}, column {column}: {message}"
            ))
        },
        SplitError::NotAnObject { index } => Problem {
            errors: vec![Violation {
                pointer: format!("/{index}"),
                detail: "an entry must be a JSON object".into(),
            }],
            ..Problem::bad_request(format!("entry {index} is not a JSON object"))
        },
        SplitError::Empty => Problem::bad_request("the body holds no entries"),
        SplitError::TooMany { limit } => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-many-entries",
            format!("a request may hold at most {limit} entries"),
        ),
    }
}

/// Decompresses a gzip body, refusing to inflate past `limit` bytes (a gzip bomb gets 413).
pub(crate) async fn gunzip(body: Bytes, limit: u64) -> Result<Bytes, Problem> {
    // Err(None): past the limit; Err(Some(reason)): not gzip.
    let inflated = tokio::task::spawn_blocking(move || {
        let mut out = Vec::with_capacity(body.len() * 4);
        flate2::read::MultiGzDecoder::new(&body[..])
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|e| Some(e.to_string()))?;
        if out.len() as u64 > limit {
            return Err(None::<String>);
        }
        Ok(Bytes::from(out))
    })
    .await
    .map_err(|e| Problem::unavailable("decompression was interrupted", &e))?;
    inflated.map_err(|e| match e {
        Some(reason) => Problem::bad_request(format!("the body is not valid gzip: {reason}")),
        None => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            format!("the body inflates past this endpoint's limit of {limit} bytes"),
        ),
    })
}

/// Undoes `Content-Encoding`: identity or gzip; anything else is 415.
pub(crate) async fn decode(
    encoding: Option<&str>,
    body: Bytes,
    limit: u64,
) -> Result<Bytes, Problem> {
    match encoding.map(|e| e.trim().to_ascii_lowercase()) {
        None => Ok(body),
        Some(e) if e.is_empty() || e == "identity" => Ok(body),
        Some(e) if e == "gzip" || e == "x-gzip" => gunzip(body, limit).await,
        Some(e) => Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-encoding",
            format!("Content-Encoding {e:?} is not supported; send identity or gzip"),
        )),
    }
}

/// One entry, or an array of entries. Each entry is an object whose members the stream's own
/// JSON Schema defines (the validator checks them).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(crate) enum EntriesBody {
    /// One entry.
    #[schema(value_type = Object)]
    One(serde_json::Map<String, serde_json::Value>),
    /// Several entries, in order.
    #[schema(value_type = Vec<Object>)]
    Many(Vec<serde_json::Map<String, serde_json::Value>>),
}

/// Post entries to a stream. Answers `202` only once the log acknowledged every entry.
#[utoipa::path(post, path = "/api/streams/{id}/entries", tag = "entries",
    params(("id" = u64, Path, description = "Stream id")),
    request_body(
        description = "One JSON object, a JSON array of objects, or NDJSON (one object per line). \
                       Content-Encoding: gzip is accepted.",
        content(
            (EntriesBody = "application/json"),
            (String = "application/x-ndjson"),
        )
    ),
    responses(
        (status = 202, description = "Every entry is stored in the log", body = Accepted),
        (status = 400, description = "Malformed JSON (with line and column), or an entry that is not an object", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No write key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the stream's write key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such stream", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body, inflated body, entry count or an entry (`errors` points at it) over the limit; nothing was stored", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Unsupported content type or encoding", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log did not acknowledge in time; nothing was accepted; retry after Retry-After", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = [])))]
pub(crate) async fn post_entries(
    ingest: Ingest,
    id: StreamId,
    credential: Credential,
    content_type: Option<String>,
    encoding: Option<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    if let Some(conflict) = credential.conflict() {
        return Err(Problem::forbidden(conflict));
    }
    let stream = ingest.writable(id, credential.key()).await?;
    let body = decode(
        encoding.as_deref(),
        body,
        ingest.limits.max_decompressed_bytes,
    )
    .await?;
    let media = content_type.as_deref().map(|c| {
        c.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    let max = ingest.limits.max_entries;
    let entries = match media.as_deref() {
        // curl -d sends JSON as a form unless told otherwise; a form is not JSON, so split::json
        // answers 400 for a real one.
        None
        | Some("" | "application/json" | "text/json" | "application/x-www-form-urlencoded") => {
            split::json(&body, max)
        }
        Some(
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/jsonlines",
        ) => split::ndjson(&body, max),
        Some(m) if m.ends_with("+json") => split::json(&body, max),
        Some(m) => {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                format!(
                "Content-Type {m:?} is not accepted; send application/json or application/x-ndjson"
            ),
            ))
        }
    }
    .map_err(split_problem)?;
    let accepted = ingest.append(&stream, entries, &[], "http").await?;
    Ok(warp::reply::with_status(
        warp::reply::json(&Accepted {
            accepted: accepted.seq.len(),
            entry_ids: accepted.entry_ids,
            seq: accepted.seq,
        }),
        StatusCode::ACCEPTED,
    )
    .into_response())
}
