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
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;
use warp::Reply;

use crate::append::Refused;
use crate::native::decode;
use crate::Ingest;

pub(crate) use routes::routes;

/// A plain-text answer, such as ThingSpeak's `0` for a failed write.
fn text(status: StatusCode, body: &'static str) -> Response {
    warp::reply::with_status(body, status).into_response()
}

/// ThingSpeak's error object.
fn ts_error(code: ErrorCode, details: &str) -> Response {
    code.reply(details)
}

/// ThingSpeak's error object for a refused write; a write that may be retried carries
/// `Retry-After` and the request id its cause was logged under.
fn ts_refused(refused: Refused) -> Response {
    match refused {
        Refused::UnknownStream => ts_error(ErrorCode::RESOURCE_NOT_FOUND, "no such channel"),
        Refused::NoKey | Refused::WrongKey => ts_error(
            ErrorCode::AUTH_REQUIRED,
            "Please make sure that your API key is correct.",
        ),
        Refused::TooLarge { index, size, limit } => ts_error(
            ErrorCode::REQUEST_TOO_LARGE,
            &format!("update {index} is {size} bytes as an entry; at most {limit} bytes"),
        ),
        Refused::Unavailable(incident) => {
            let mut r = ts_error(ErrorCode::SERVICE_UNAVAILABLE, &incident.detail());
            incident.mark(&mut r);
            r
        }
    }
}

/// Whether the body comes with a `Content-Encoding` to undo.
fn is_compressed(headers: &HeaderMap) -> bool {
    headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|e| {
            let e = e.trim();
            !e.is_empty() && !e.eq_ignore_ascii_case("identity")
        })
}

/// The body with its `Content-Encoding` undone.
async fn decoded(ingest: &Ingest, headers: &HeaderMap, body: Bytes) -> Result<Bytes, Problem> {
    let encoding = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok());
    decode(encoding, body, ingest.limits.max_decompressed_bytes).await
}
