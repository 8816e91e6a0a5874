//! ThingSpeak's write API, so that existing devices and client libraries work by changing the
//! host: `GET|POST /update[.json]` and `POST /channels/{id}/bulk_update.json`.
//!
//! Field values arrive as strings (`field1=21.5`); each is converted here to the type the
//! stream's schema gives its property (`field1..field8` map onto the stream's `fields`), and the
//! validator judges the result like any other entry. A value that does not convert stays a
//! string, so the validator rejects it with the reason. `created_at` goes into the stream's
//! `timestamp_field`, or, on a stream without one, into the `tt.created_at` header, from which
//! the validator takes the entry's `ts`; `lat`, `long`, `elevation` and `status` are kept if the schema has
//! properties of those names (`latitude`/`longitude` are accepted too).
//!
//! Answers follow ThingSpeak: `/update` returns the new entry's id (its `seq`) as text, or `0`
//! on failure; `/update.json` returns the entry object with values as strings; a bulk update
//! answers `202 {"success":true}`, and its errors use ThingSpeak's error object.

mod bulk;
mod entry;
mod params;
mod routes;
mod update;

use bytes::Bytes;
use thingtotal_common::problem::Problem;
use thingtotal_common::thingspeak::ErrorCode;
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Reply;

use crate::native::decode;
use crate::Ingest;

pub(crate) use routes::routes;

/// A plain-text answer, such as ThingSpeak's `0` for a failed write.
fn text(status: StatusCode, body: &'static str) -> Response {
    warp::reply::with_status(body, status).into_response()
}

/// Asks the client to retry in a second.
fn retry_after(r: &mut Response) {
    r.headers_mut()
        .insert("retry-after", HeaderValue::from_static("1"));
}

/// ThingSpeak's error object, with `Retry-After` when the write may be retried.
fn ts_error(code: ErrorCode, details: &str) -> Response {
    let mut r = code.reply(details);
    if code.status == StatusCode::SERVICE_UNAVAILABLE {
        retry_after(&mut r);
    }
    r
}

/// The body with its `Content-Encoding` undone.
async fn decoded(ingest: &Ingest, headers: &HeaderMap, body: Bytes) -> Result<Bytes, Problem> {
    let encoding = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok());
    decode(encoding, body, ingest.limits.max_decompressed_bytes).await
}
