//! `GET|POST /update` and `/update.json`: one entry, answered as ThingSpeak does.

use std::sync::Arc;

use bytes::Bytes;
use thingtotal_common::problem::{self, Incident};
use thingtotal_common::stream::StreamRecord;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;
use warp::Reply;

use super::entry::Update;
use super::params::{params, write_key};
use super::{decoded, is_compressed, text};
use crate::append::Refused;
use crate::Ingest;

/// `GET|POST /update` and `/update.json`.
pub(super) async fn update(
    ingest: Ingest,
    json_answer: bool,
    headers: HeaderMap,
    query: String,
    body: Bytes,
) -> Response {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    // A compressed body is inflated only for a caller whose key, in a header or the query,
    // names a stream: a key inside it would cost the inflating to find.
    let outer = if is_compressed(&headers) {
        let Ok(outer) = params(&query, None, b"") else {
            return text(StatusCode::BAD_REQUEST, "0");
        };
        match stream_of(&ingest, write_key(&headers, &outer)).await {
            Ok(s) => Some(s),
            Err(answer) => return answer,
        }
    } else {
        None
    };
    let Ok(body) = decoded(&ingest, &headers, body).await else {
        return text(StatusCode::BAD_REQUEST, "0");
    };
    let Ok(p) = params(&query, content_type, &body) else {
        return text(StatusCode::BAD_REQUEST, "0");
    };
    let stream = match outer {
        Some(s) => s,
        None => match stream_of(&ingest, write_key(&headers, &p)).await {
            Ok(s) => s,
            Err(answer) => return answer,
        },
    };
    let u = Update::from_params(&p);
    match ingest
        .append(
            &stream,
            vec![u.entry(&stream)],
            &[u.header_time(&stream)],
            "thingspeak",
        )
        .await
    {
        Ok(a) if json_answer => {
            let created = u.created_at.unwrap_or(a.received_at);
            warp::reply::json(&u.answer(&stream, a.seq[0], created)).into_response()
        }
        Ok(a) => warp::reply::with_header(
            a.seq[0].to_string(),
            "content-type",
            "text/plain; charset=utf-8",
        )
        .into_response(),
        Err(Refused::TooLarge { .. }) => text(StatusCode::PAYLOAD_TOO_LARGE, "0"),
        Err(Refused::Unavailable(incident)) => unavailable_zero(&incident),
        Err(_) => text(StatusCode::BAD_REQUEST, "0"),
    }
}

/// The stream whose write key is `key`, or ThingSpeak's answer: as ThingSpeak, a missing or
/// unknown key is a 400 with the body `0`.
async fn stream_of(ingest: &Ingest, key: Option<String>) -> Result<Arc<StreamRecord>, Response> {
    let Some(key) = key else {
        return Err(text(StatusCode::BAD_REQUEST, "0"));
    };
    match ingest.stream_for_key(&key).await {
        Ok(s) => Ok(s),
        Err(Refused::Unavailable(incident)) => Err(unavailable_zero(&incident)),
        Err(_) => Err(text(StatusCode::BAD_REQUEST, "0")),
    }
}

/// ThingSpeak's `0` for a write that may be retried, with `Retry-After` and the request id.
fn unavailable_zero(incident: &Incident) -> Response {
    let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "0");
    incident.mark(&mut r);
    r
}

/// ThingSpeak's `0` for a write over the in-flight limit, with `Retry-After`.
pub(super) fn busy_zero() -> Response {
    let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "0");
    problem::mark_unavailable(&mut r, None);
    r
}
