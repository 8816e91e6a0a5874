//! HTTP plumbing every part shares: `/health`, `/metrics`, and serving with graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::{Filter, Reply};

use crate::log::Log;
use crate::telemetry;
use crate::Result;

/// `GET /health` (a metadata round-trip to the log) and `GET /metrics` (Prometheus text).
pub fn ops_routes(part: &'static str, log: Log) -> BoxedFilter<(warp::reply::Response,)> {
    let health = warp::path("health")
        .and(warp::path::end())
        .and(warp::get())
        .and_then(move || {
            let log = log.clone();
            async move {
                let body = |status: &str, detail: Option<String>| {
                    serde_json::json!({"status": status, "part": part, "log": log.kind(), "detail": detail})
                };
                let reply = match log.check().await {
                    Ok(()) => warp::reply::with_status(
                        warp::reply::json(&body("ok", None)),
                        StatusCode::OK,
                    ),
                    Err(e) => warp::reply::with_status(
                        warp::reply::json(&body("unavailable", Some(e.to_string()))),
                        StatusCode::SERVICE_UNAVAILABLE,
                    ),
                };
                Ok::<_, Infallible>(reply.into_response())
            }
        });
    let metrics = warp::path("metrics")
        .and(warp::path::end())
        .and(warp::get())
        .map(|| {
            warp::reply::with_header(
                telemetry::prometheus().render(),
                "content-type",
                "text/plain; version=0.0.4",
            )
            .into_response()
        });
    health.or(metrics).unify().boxed()
}

/// Binds `addr` (port 0 picks a free port) and returns the bound address.
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves `routes` on `listener` until `shutdown` is cancelled, then stops accepting and lets
/// requests in flight finish.
pub async fn serve<F>(listener: TcpListener, routes: F, shutdown: CancellationToken)
where
    F: Filter<Extract = (warp::reply::Response,), Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
{
    warp::serve(routes)
        .incoming(listener)
        .graceful(async move { shutdown.cancelled().await })
        .run()
        .await;
}

/// Binds `addr`, logs the address, and serves `routes` in a task until `shutdown`.
pub async fn spawn_server<F>(
    part: &'static str,
    addr: SocketAddr,
    routes: F,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)>
where
    F: Filter<Extract = (warp::reply::Response,), Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let (listener, local) = bind(addr).await?;
    tracing::info!(part, addr = %local, "listening");
    Ok((local, tokio::spawn(serve(listener, routes, shutdown))))
}

/// Turns warp's rejections into plain JSON errors for routes that have no handler of their own.
pub async fn not_found(r: warp::Rejection) -> Result<warp::reply::Response, Infallible> {
    let status = if r.is_not_found() {
        StatusCode::NOT_FOUND
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        StatusCode::METHOD_NOT_ALLOWED
    } else {
        StatusCode::BAD_REQUEST
    };
    let body = serde_json::json!({"title": status.canonical_reason(), "status": status.as_u16()});
    Ok(warp::reply::with_status(warp::reply::json(&body), status).into_response())
}

/// A request body larger than the endpoint accepts.
#[derive(Debug)]
pub struct BodyTooLarge {
    /// The endpoint's limit, in bytes.
    pub limit: u64,
}

impl warp::reject::Reject for BodyTooLarge {}

/// A request body that could not be read (the client went away mid-body).
#[derive(Debug)]
pub struct BodyUnreadable(pub String);

impl warp::reject::Reject for BodyUnreadable {}

/// The whole request body, up to `limit` bytes; larger bodies are rejected with [`BodyTooLarge`]
/// as soon as they pass the limit (or at once, from their `Content-Length`). Unlike warp's
/// `content_length_limit`, it accepts chunked bodies and requests without a body.
pub fn body_up_to(limit: u64) -> impl Filter<Extract = (Bytes,), Error = warp::Rejection> + Clone {
    body_or_refusal(limit).and_then(|body: Result<Bytes, warp::Rejection>| async move { body })
}

/// [`body_up_to`] for routes that answer a body it refuses themselves (to count the answer,
/// say): the body, or the rejection [`body_up_to`] would have given.
pub fn body_or_refusal(
    limit: u64,
) -> impl Filter<Extract = (Result<Bytes, warp::Rejection>,), Error = warp::Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .then(move |length: Option<u64>, stream| collect(length, stream, limit))
}

async fn collect<S, B>(length: Option<u64>, stream: S, limit: u64) -> Result<Bytes, warp::Rejection>
where
    S: futures::Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    if length.is_some_and(|l| l > limit) {
        return Err(warp::reject::custom(BodyTooLarge { limit }));
    }
    let mut stream = std::pin::pin!(stream);
    let mut body = BytesMut::with_capacity(length.unwrap_or(0) as usize);
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(|e| warp::reject::custom(BodyUnreadable(e.to_string())))?;
        if (body.len() + chunk.remaining()) as u64 > limit {
            return Err(warp::reject::custom(BodyTooLarge { limit }));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            body.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(body.freeze())
}

/// The credential a request carried, if any: from `Authorization: Bearer`, `X-Api-Key`,
/// ThingSpeak's `THINGSPEAKAPIKEY` header, or `api_key` in the query string, in that order.
#[derive(Clone)]
pub struct Credential(pub Option<String>);

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Credential(***)"
        } else {
            "Credential(none)"
        })
    }
}

/// Extracts the request's credential.
pub fn credential() -> impl Filter<Extract = (Credential,), Error = std::convert::Infallible> + Clone
{
    warp::header::optional::<String>("authorization")
        .and(warp::header::optional::<String>("x-api-key"))
        .and(warp::header::optional::<String>("thingspeakapikey"))
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .map(
            |auth: Option<String>, x: Option<String>, ts: Option<String>, query: String| {
                let bearer = auth.and_then(|a| {
                    a.strip_prefix("Bearer ")
                        .or_else(|| a.strip_prefix("bearer "))
                        .map(|t| t.trim().to_owned())
                });
                let from_query = || {
                    query
                        .split('&')
                        .filter_map(|kv| kv.split_once('='))
                        .find(|(k, _)| *k == "api_key")
                        .map(|(_, v)| percent_decode(v))
                };
                Credential(
                    bearer
                        .or(x)
                        .or(ts)
                        .or_else(from_query)
                        .filter(|k| !k.is_empty()),
                )
            },
        )
        .or_else(|_| async { Ok::<_, std::convert::Infallible>((Credential(None),)) })
}

/// Decodes `%XX` escapes and `+` (form encoding).
pub fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keys_are_percent_decoded() {
        assert_eq!(percent_decode("a%2Bb+c"), "a+b c");
        assert_eq!(percent_decode("abc"), "abc");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
        assert_eq!(percent_decode("end%4"), "end%4");
    }
}
