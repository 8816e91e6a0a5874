//! The ThingSpeak-compatible write routes.

use bytes::Bytes;
use thingtotal_common::http::BodyTooLarge;
use thingtotal_common::thingspeak::ErrorCode;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::bulk::bulk_update;
use super::update::update;
use super::{text, ts_error};
use crate::Ingest;

/// The ThingSpeak-compatible write routes.
pub(crate) fn routes(
    state: impl Filter<Extract = (Ingest,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    max_body: u64,
) -> warp::filters::BoxedFilter<(Response,)> {
    let query = || warp::query::raw().or(warp::any().map(String::new)).unify();
    let format = warp::path("update")
        .and(warp::path::end())
        .map(|| false)
        .or(warp::path("update.json")
            .and(warp::path::end())
            .map(|| true))
        .unify();
    let update = format
        .and(warp::get().or(warp::post()).unify())
        .and(state.clone())
        .and(warp::header::headers_cloned())
        .and(query())
        .and(thingtotal_common::http::body_or_refusal(max_body))
        .then(
            |json_answer, i, h, q, b: Result<Bytes, warp::Rejection>| async move {
                let answer = match b {
                    Ok(b) => update(i, json_answer, h, q, b).await,
                    // ThingSpeak's answer to any failed write.
                    Err(r) if r.find::<BodyTooLarge>().is_some() => {
                        text(StatusCode::PAYLOAD_TOO_LARGE, "0")
                    }
                    Err(refused) => crate::refusal(refused).await,
                };
                crate::counted("update", answer).await
            },
        );
    let bulk = warp::path!("channels" / u64 / "bulk_update.json")
        .and(warp::post())
        .and(state)
        .and(warp::header::headers_cloned())
        .and(thingtotal_common::http::body_or_refusal(max_body))
        .then(|id, i, h, b: Result<Bytes, warp::Rejection>| async move {
            let answer = match b {
                Ok(b) => bulk_update(i, id, h, b).await,
                Err(r) => match r.find::<BodyTooLarge>() {
                    Some(large) => ts_error(
                        ErrorCode::REQUEST_TOO_LARGE,
                        &format!("the body is larger than {} bytes", large.limit),
                    ),
                    None => crate::refusal(r).await,
                },
            };
            crate::counted("bulk_update", answer).await
        });
    update.or(bulk).unify().boxed()
}
