//! The ThingSpeak-compatible write routes.

use bytes::Bytes;
use thingtotal_common::http::{Admitted, BodyTooLarge, Overloaded};
use thingtotal_common::problem;
use thingtotal_common::thingspeak::ErrorCode;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::bulk::bulk_update;
use super::update::busy_zero;
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
    admitted: impl Filter<Extract = (Result<(Admitted, Bytes), warp::Rejection>,), Error = warp::Rejection>
        + Clone
        + Send
        + Sync
        + 'static,
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
        .and(admitted.clone())
        .then(
            |json_answer, i, h, q, b: Result<(Admitted, Bytes), warp::Rejection>| async move {
                let answer = match b {
                    Ok((_place, b)) => update(i, json_answer, h, q, b).await,
                    // ThingSpeak's answer to any failed write.
                    Err(r) if r.find::<BodyTooLarge>().is_some() => {
                        text(StatusCode::PAYLOAD_TOO_LARGE, "0")
                    }
                    Err(r) if r.find::<Overloaded>().is_some() => busy_zero(),
                    Err(refused) => crate::refusal(refused).await,
                };
                crate::counted("update", answer).await
            },
        );
    let bulk = warp::path!("channels" / u64 / "bulk_update.json")
        .and(warp::post())
        .and(state)
        .and(warp::header::headers_cloned())
        .and(admitted)
        .then(
            |id, i, h, b: Result<(Admitted, Bytes), warp::Rejection>| async move {
                let answer = match b {
                    Ok((_place, b)) => bulk_update(i, id, h, b).await,
                    Err(r) => {
                        if let Some(large) = r.find::<BodyTooLarge>() {
                            ts_error(
                                ErrorCode::REQUEST_TOO_LARGE,
                                &format!("the body is larger than {} bytes", large.limit),
                            )
                        } else if let Some(o) = r.find::<Overloaded>() {
                            let mut answer = ts_error(
                                ErrorCode::SERVICE_UNAVAILABLE,
                                &format!("{} writes are in flight, the limit; retry", o.limit),
                            );
                            problem::mark_unavailable(&mut answer, None);
                            answer
                        } else {
                            crate::refusal(r).await
                        }
                    }
                };
                crate::counted("bulk_update", answer).await
            },
        );
    update.or(bulk).unify().boxed()
}
