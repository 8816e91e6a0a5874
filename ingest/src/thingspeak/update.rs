//! `GET|POST /update` and `/update.json`: one entry, answered as ThingSpeak does.

use bytes::Bytes;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;
use warp::Reply;

use super::entry::Update;
use super::params::{params, write_key};
use super::{decoded, text};
use crate::append::Refused;
use crate::Ingest;
use thingtotal_common::problem::Incident;

/// `GET|POST /update` and `/update.json`.
pub(super) async fn update(
    ingest: Ingest,
    json_answer: bool,
    headers: HeaderMap,
    query: String,
    body: Bytes,
) -> Response {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    let Ok(body) = decoded(&ingest, &headers, body).await else {
        return text(StatusCode::BAD_REQUEST, "0");
    };
    let Ok(p) = params(&query, content_type, &body) else {
        return text(StatusCode::BAD_REQUEST, "0");
    };
    // As ThingSpeak: a missing or unknown key is a 400 with the body 0.
    let Some(key) = write_key(&headers, &p) else {
        return text(StatusCode::BAD_REQUEST, "0");
    };
    let stream = match ingest.stream_for_key(&key).await {
        Ok(s) => s,
        Err(Refused::Unavailable(incident)) => return unavailable_zero(&incident),
        Err(_) => return text(StatusCode::BAD_REQUEST, "0"),
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

/// ThingSpeak's `0` for a write that may be retried, with `Retry-After` and the request id.
fn unavailable_zero(incident: &Incident) -> Response {
    let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "0");
    incident.mark(&mut r);
    r
}
