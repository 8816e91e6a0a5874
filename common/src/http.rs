//! HTTP plumbing every part shares: `/health`, `/metrics`, and serving with graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::log::Log;
use crate::Result;
use crate::{problem, telemetry};

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

/// What a part's server answers: `routes` (a part that serves nothing else passes none),
/// `/health` and `/metrics`. A method that a path of `methods` does not take is answered 405 with
/// `Allow`, and every other refusal becomes a problem (RFC 9457).
pub fn part_routes(
    part: &'static str,
    log: Log,
    routes: Option<BoxedFilter<(Response,)>>,
    methods: Methods,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    let ops = ops_routes(part, log);
    let served = match routes {
        Some(routes) => routes.or(ops).unify().boxed(),
        None => ops,
    };
    served
        .or(wrong_method(methods.with_ops()))
        .unify()
        .recover(problem::recover)
        .unify()
}

/// A request whose path does not take its method: answered 405 with `Allow`.
#[derive(Debug)]
pub struct WrongMethod {
    /// The methods the path takes, as `Allow` lists them: `GET, POST`.
    pub allow: String,
}

impl warp::reject::Reject for WrongMethod {}

impl WrongMethod {
    /// The rejection of a path that takes only `allow`.
    pub fn only(allow: &str) -> warp::Rejection {
        warp::reject::custom(WrongMethod {
            allow: allow.to_owned(),
        })
    }
}

/// The methods each path takes, as an OpenAPI document's `paths` list them, for the `Allow`
/// header of a 405. A `{name}` in a path stands for any text within one segment.
#[derive(Debug, Clone, Default)]
pub struct Methods(Arc<Vec<(Vec<String>, Vec<String>)>>);

impl Methods {
    /// The paths and methods of the OpenAPI document `doc`.
    pub fn of_document(doc: &serde_json::Value) -> Self {
        let paths = doc["paths"].as_object().into_iter().flatten();
        Self(Arc::new(
            paths
                .map(|(path, item)| {
                    let methods = item.as_object().into_iter().flatten().map(|(m, _)| m);
                    (
                        path.split('/').map(str::to_owned).collect(),
                        methods
                            .filter(|m| HTTP_METHODS.contains(&m.as_str()))
                            .map(|m| m.to_uppercase())
                            .collect(),
                    )
                })
                .collect(),
        ))
    }

    /// These paths and methods, and `GET /health` and `GET /metrics`, which every part serves.
    fn with_ops(&self) -> Self {
        let mut all = (*self.0).clone();
        for ops in ["/health", "/metrics"] {
            if !all.iter().any(|(p, _)| p.join("/") == ops) {
                all.push((
                    ops.split('/').map(str::to_owned).collect(),
                    vec!["GET".into()],
                ));
            }
        }
        Self(Arc::new(all))
    }

    /// The methods `path` takes, as `Allow` lists them; `None` for a path none matches.
    pub fn allow(&self, path: &str) -> Option<String> {
        let segments: Vec<&str> = path.split('/').collect();
        let mut allow: Vec<&str> = Vec::new();
        for (template, methods) in self.0.iter() {
            let matches = template.len() == segments.len()
                && template
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| segment_matches(t, s));
            if matches {
                for m in methods {
                    if !allow.contains(&m.as_str()) {
                        allow.push(m);
                    }
                }
            }
        }
        (!allow.is_empty()).then(|| allow.join(", "))
    }
}

/// The methods of an OpenAPI path item.
const HTTP_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Whether the path segment `s` matches the template's `t`, in which `{name}` stands for any
/// text that is not empty.
fn segment_matches(t: &str, s: &str) -> bool {
    match (t.find('{'), t.rfind('}')) {
        (Some(open), Some(close)) if open < close => {
            let (prefix, suffix) = (&t[..open], &t[close + 1..]);
            s.len() > prefix.len() + suffix.len() && s.starts_with(prefix) && s.ends_with(suffix)
        }
        _ => t == s,
    }
}

/// Rejects a request whose path `methods` knows but whose method that path does not take with
/// [`WrongMethod`], and any other as not found, so that the other routes' refusals stand.
fn wrong_method(
    methods: Methods,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::method().and(warp::path::full()).and_then(
        move |method: warp::http::Method, path: warp::path::FullPath| {
            let allow = methods.allow(path.as_str());
            async move {
                match allow {
                    Some(allow) if !allow.split(", ").any(|m| m == method.as_str()) => {
                        Err(warp::reject::custom(WrongMethod { allow }))
                    }
                    _ => Err(warp::reject::not_found()),
                }
            }
        },
    )
}

/// Binds `addr` (port 0 picks a free port) and returns the bound address.
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves `routes` on `listener` until `shutdown` is cancelled, then stops accepting and lets
/// requests in flight finish.
///
/// HTTP/1.1 answers carry their header names in title case (`Content-Length`, `Content-Type`,
/// `Date`), as HTTP/1.0-era servers and ThingSpeak itself write them. Header names are
/// case-insensitive (RFC 9110, section 5.1), but the Arduino ThingSpeak library, which most
/// ThingSpeak devices run, finds the body by searching the answer's bytes for
/// `Content-Length:` with a case-sensitive `Stream::find` (`ThingSpeakClass::getHTTPResponse`
/// in mathworks/thingspeak-arduino): with hyper's lower-case names every write it makes is
/// stored and then reported to the device as failed (-303), and a device that retries stores
/// it again. HTTP/2 names stay lower case, as that protocol requires.
///
/// A connection that fails (a client that sends garbage, or goes away mid-request) is the
/// client's business: it is logged at debug level, not as the server's error.
pub async fn serve<F>(listener: TcpListener, routes: F, shutdown: CancellationToken)
where
    F: Filter<Extract = (warp::reply::Response,), Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
{
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(warp::service(routes.clone()));
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http1().title_case_headers(true);
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(error = %e, "an HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// What a failed `accept` costs: nothing if the connection went away before it was accepted;
/// otherwise (out of file descriptors, most likely) a warning and a second's pause, so that
/// the loop does not spin while connections in flight close.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(error = %e, "accepting a connection failed; pausing for a second");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
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

/// A bound on the requests a part handles at once, so that a burst beyond what the log takes
/// queues nowhere: a request over it is answered 503 with `Retry-After` as soon as it arrives,
/// before its body is kept (the body is read and thrown away, as a refused body is, so that the
/// client sees the answer).
#[derive(Debug, Clone)]
pub struct Admission {
    part: &'static str,
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    limit: usize,
}

/// A request's place among those in flight, given back when dropped.
#[derive(Debug)]
pub struct Admitted {
    part: &'static str,
    _place: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        telemetry::request_left(self.part);
    }
}

/// The rejection of a request over the in-flight limit.
#[derive(Debug)]
pub struct Overloaded {
    /// The limit.
    pub limit: usize,
}

impl warp::reject::Reject for Overloaded {}

impl Admission {
    /// At most `limit` requests at once to `part`.
    pub fn new(part: &'static str, limit: usize) -> Self {
        Self {
            part,
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(limit)),
            limit,
        }
    }

    /// [`body_or_refusal`] for an admitted request, with its place; [`Overloaded`] for one over
    /// the limit.
    pub fn body(
        &self,
        limit: u64,
    ) -> impl Filter<Extract = (Result<(Admitted, Bytes), warp::Rejection>,), Error = warp::Rejection>
           + Clone {
        let admission = self.clone();
        warp::header::optional::<u64>("content-length")
            .and(warp::body::stream())
            .then(move |length: Option<u64>, stream| admission.clone().admit(length, stream, limit))
    }

    async fn admit<S, B>(
        self,
        length: Option<u64>,
        stream: S,
        limit: u64,
    ) -> Result<(Admitted, Bytes), warp::Rejection>
    where
        S: futures::Stream<Item = Result<B, warp::Error>>,
        B: Buf,
    {
        match self.permits.try_acquire_owned() {
            Ok(place) => {
                telemetry::request_admitted(self.part);
                let admitted = Admitted {
                    part: self.part,
                    _place: place,
                };
                Ok((admitted, collect(length, stream, limit).await?))
            }
            Err(_) => {
                telemetry::request_refused(self.part);
                let mut stream = std::pin::pin!(stream);
                if length.is_none_or(|l| l <= DISCARD_BYTES) {
                    discard(stream.as_mut(), 0).await;
                }
                Err(warp::reject::custom(Overloaded { limit: self.limit }))
            }
        }
    }
}

/// The most of a refused body that is read and thrown away before the 413 is sent, and the
/// longest that takes. A client still writing its body when the server answers and closes gets
/// a broken pipe, not the answer, which is what clients that write first and read second (most
/// of them) see; reading the rest first lets them read the 413. A larger body, or a slower one,
/// gets the connection closed instead.
const DISCARD_BYTES: u64 = 64 * 1024 * 1024;
const DISCARD_TIME: std::time::Duration = std::time::Duration::from_secs(5);

async fn collect<S, B>(length: Option<u64>, stream: S, limit: u64) -> Result<Bytes, warp::Rejection>
where
    S: futures::Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut stream = std::pin::pin!(stream);
    if length.is_some_and(|l| l > limit) {
        if length.is_some_and(|l| l <= DISCARD_BYTES) {
            discard(stream.as_mut(), 0).await;
        }
        return Err(warp::reject::custom(BodyTooLarge { limit }));
    }
    let mut body = BytesMut::with_capacity(length.unwrap_or(0) as usize);
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(|e| warp::reject::custom(BodyUnreadable(e.to_string())))?;
        if (body.len() + chunk.remaining()) as u64 > limit {
            discard(stream.as_mut(), body.len() as u64).await;
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

/// Reads the rest of a refused body without keeping it, within [`DISCARD_BYTES`] (counting the
/// `read` bytes already taken) and [`DISCARD_TIME`].
async fn discard<S, B>(mut stream: std::pin::Pin<&mut S>, mut read: u64)
where
    S: futures::Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let _ = tokio::time::timeout(DISCARD_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.remaining() as u64;
            if read > DISCARD_BYTES {
                return;
            }
        }
    })
    .await;
}

/// The credential a request carried: from `Authorization: Bearer`, `X-Api-Key`, ThingSpeak's
/// `THINGSPEAKAPIKEY` header (or `X-THINGSPEAKAPIKEY`, as the Arduino ThingSpeak library sends
/// it), or `api_key` in the query string. A request may carry it in
/// several of these places, but only as one value: RFC 6750 (section 2) forbids more than one
/// way of sending a token, and a server that let one valid credential win over a wrong one
/// would accept a request that also carries a wrong credential. Such a request is
/// [`Credential::Conflicting`], which every check refuses with 403.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// No credential in any place.
    Absent,
    /// One credential, in one or more places.
    Key(String),
    /// Different values in different places: the places, for the error message.
    Conflicting(String),
}

impl Credential {
    /// The credential, if the request carried exactly one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Credential::Key(k) => Some(k),
            Credential::Absent | Credential::Conflicting(_) => None,
        }
    }

    /// Whether the request carried any credential, conflicting ones included.
    pub fn is_present(&self) -> bool {
        !matches!(self, Credential::Absent)
    }

    /// The message for a request whose credentials disagree, if they do.
    pub fn conflict(&self) -> Option<String> {
        match self {
            Credential::Conflicting(places) => Some(format!(
                "the request carries different credentials in {places}: send one credential"
            )),
            _ => None,
        }
    }

    /// The credential found in `places` (name, value), in the order above. Empty values count
    /// as none when no place has another, and as a different value when one does.
    fn from_places(places: &[(&str, Option<String>)]) -> Credential {
        let present: Vec<(&str, &str)> = places
            .iter()
            .filter_map(|(name, v)| v.as_deref().map(|v| (*name, v)))
            .collect();
        match present.iter().find(|(_, v)| !v.is_empty()) {
            None => Credential::Absent,
            Some((_, first)) if present.iter().all(|(_, v)| v == first) => {
                Credential::Key((*first).to_owned())
            }
            Some(_) => Credential::Conflicting(
                present
                    .iter()
                    .map(|(name, _)| *name)
                    .collect::<Vec<_>>()
                    .join(" and "),
            ),
        }
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Absent => f.write_str("Credential(none)"),
            Credential::Key(_) => f.write_str("Credential(***)"),
            Credential::Conflicting(places) => write!(f, "Credential(conflicting: {places})"),
        }
    }
}

/// Extracts the request's credential.
pub fn credential() -> impl Filter<Extract = (Credential,), Error = std::convert::Infallible> + Clone
{
    warp::header::optional::<String>("authorization")
        .and(warp::header::optional::<String>("x-api-key"))
        .and(warp::header::optional::<String>("thingspeakapikey"))
        .and(warp::header::optional::<String>("x-thingspeakapikey"))
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .map(
            |auth: Option<String>,
             x: Option<String>,
             ts: Option<String>,
             xts: Option<String>,
             query: String| {
                let bearer = auth.and_then(|a| {
                    a.strip_prefix("Bearer ")
                        .or_else(|| a.strip_prefix("bearer "))
                        .map(|t| t.trim().to_owned())
                });
                let from_query = query
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .find(|(k, _)| *k == "api_key")
                    .map(|(_, v)| percent_decode(v));
                Credential::from_places(&[
                    ("Authorization", bearer),
                    ("X-Api-Key", x),
                    ("THINGSPEAKAPIKEY", ts),
                    ("X-THINGSPEAKAPIKEY", xts),
                    ("the api_key parameter", from_query),
                ])
            },
        )
        .or_else(|_| async { Ok::<_, std::convert::Infallible>((Credential::Absent,)) })
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
    fn a_credential_in_several_places_must_be_one_value() {
        let some = |v: &str| Some(v.to_owned());
        assert_eq!(
            Credential::from_places(&[("A", None), ("B", some(""))]),
            Credential::Absent
        );
        assert_eq!(
            Credential::from_places(&[("A", some("k")), ("B", None), ("C", some("k"))]),
            Credential::Key("k".into())
        );
        let c = Credential::from_places(&[("A", some("k")), ("B", None), ("C", some("j"))]);
        assert_eq!(c, Credential::Conflicting("A and C".into()));
        assert_eq!(c.key(), None);
        assert!(c.is_present());
        assert!(c
            .conflict()
            .unwrap()
            .contains("different credentials in A and C"));
    }

    #[test]
    fn query_keys_are_percent_decoded() {
        assert_eq!(percent_decode("a%2Bb+c"), "a+b c");
        assert_eq!(percent_decode("abc"), "abc");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
        assert_eq!(percent_decode("end%4"), "end%4");
    }

    /// A client writing a body over the limit reads the 413, rather than a broken pipe or a
    /// reset connection, whether the limit is seen from the `Content-Length` or while reading.
    #[tokio::test]
    async fn a_client_still_writing_an_oversized_body_reads_the_413() {
        let routes = warp::post()
            .and(body_or_refusal(1024 * 1024))
            .map(|b: Result<Bytes, warp::Rejection>| {
                let status = match b {
                    Ok(_) => StatusCode::OK,
                    Err(r) if r.find::<BodyTooLarge>().is_some() => StatusCode::PAYLOAD_TOO_LARGE,
                    Err(_) => StatusCode::BAD_REQUEST,
                };
                warp::reply::with_status("", status).into_response()
            })
            .recover(not_found)
            .unify();
        let stop = CancellationToken::new();
        let (addr, server) =
            spawn_server("test", "127.0.0.1:0".parse().unwrap(), routes, stop.clone())
                .await
                .unwrap();
        // A client that writes its whole request before it reads, as most device libraries do;
        // 8 MiB is far more than the socket buffers take, so it is still writing when the
        // server has decided.
        for chunked in [false, true] {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
            let body = vec![b'x'; 8 * 1024 * 1024];
            let head = if chunked {
                "POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_owned()
            } else {
                format!(
                    "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                )
            };
            conn.write_all(head.as_bytes()).await.unwrap();
            if chunked {
                for part in body.chunks(64 * 1024) {
                    let size = format!("{:x}\r\n", part.len());
                    conn.write_all(size.as_bytes())
                        .await
                        .expect("writes the body");
                    conn.write_all(part).await.expect("writes the body");
                    conn.write_all(b"\r\n").await.expect("writes the body");
                }
                conn.write_all(b"0\r\n\r\n").await.expect("writes the body");
            } else {
                conn.write_all(&body)
                    .await
                    .expect("the server reads the body it refuses");
            }
            let mut answer = vec![0; 64];
            let n = conn.read(&mut answer).await.unwrap();
            let answer = String::from_utf8_lossy(&answer[..n]);
            assert!(
                answer.starts_with("HTTP/1.1 413"),
                "chunked {chunked}: {answer}"
            );
        }
        let client = reqwest::Client::new();
        let ok = client
            .post(format!("http://{addr}/"))
            .body(vec![b'x'; 1024])
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        stop.cancel();
        server.await.unwrap();
    }
}
