//! The ingest edge: the HTTP endpoint that devices post entries to.
//!
//! It authenticates each request with the stream's write key, splits the body into entries
//! (slices of the body, never re-serialised), stamps each with an entry id (UUIDv7), a receive
//! time and its source, and appends them to `entries.raw`, keyed by stream id. It answers `202`
//! only once the log has acknowledged every entry of the request (`acks=all` on Kafka, fsync on
//! the embedded log), so an acknowledged entry is never lost. If the log cannot take them within
//! the deadline it answers `503` with `Retry-After`, and reports nothing as accepted. Every
//! entry's size is checked against what the log takes (`--max-entry-bytes`) before any is
//! appended, so a request with an entry too large gets `413` and stores nothing.
//!
//! A retrying client can see duplicates: entries of a request that timed out may still be stored
//! after the `503`, and a retry stores them again, with new entry ids. What it never sees is a
//! `202` for an entry that was not stored.

mod append;
mod native;
pub mod openapi;
mod split;
mod telemetry;
mod thingspeak;

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use thingtotal_common::config::LogPortArgs;
use thingtotal_common::log::Log;
use thingtotal_common::part::Part;
use thingtotal_common::problem::{self, respond};
use thingtotal_common::{http, CancellationToken};
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::Filter;

pub use native::Accepted;

/// The ingest part's configuration.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Where the topics live.
    #[command(flatten)]
    pub log: LogPortArgs,
    /// Request limits and the acknowledgement deadline.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Address of the ingest HTTP server (entries, `/health`, `/metrics`).
    #[arg(long, env = "THINGTOTAL_HTTP_ADDR", default_value = "127.0.0.1:8081")]
    pub http_addr: SocketAddr,
}

/// Request limits and the acknowledgement deadline.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Largest request body accepted, in bytes (as sent, before decompression).
    #[arg(long, env = "THINGTOTAL_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: u64,
    /// Largest request body after gzip decompression, in bytes.
    #[arg(long, env = "THINGTOTAL_MAX_DECOMPRESSED_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_decompressed_bytes: u64,
    /// Most entries in one request.
    #[arg(long, env = "THINGTOTAL_MAX_ENTRIES", default_value_t = 10_000)]
    pub max_entries: usize,
    /// How long a request waits for the log's acknowledgement before it answers 503.
    #[arg(long, env = "THINGTOTAL_ACK_TIMEOUT_MS", default_value_t = 5000)]
    pub ack_timeout_ms: u64,
    /// Most write requests handled at once; others are answered 503 with `Retry-After` as
    /// they arrive, so that a burst beyond what the log takes queues nowhere.
    #[arg(
        long,
        env = "THINGTOTAL_MAX_REQUESTS_IN_FLIGHT",
        default_value_t = 256,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000)
    )]
    pub max_requests_in_flight: u64,
}

/// The limits as the handlers use them.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) max_body_bytes: u64,
    pub(crate) max_decompressed_bytes: u64,
    pub(crate) max_entries: usize,
    pub(crate) ack_timeout: Duration,
    pub(crate) lookup_timeout: Duration,
}

/// The ingest part's errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log or the registry failed.
    #[error(transparent)]
    Common(#[from] thingtotal_common::Error),
}

/// Result with the ingest part's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the handlers share. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Ingest {
    part: Part,
    limits: Limits,
    admission: http::Admission,
}

impl Ingest {
    /// The ingest state on a started runtime.
    pub fn new(part: Part, limits: &LimitArgs) -> Self {
        telemetry::describe();
        Self {
            part,
            limits: Limits {
                max_body_bytes: limits.max_body_bytes,
                max_decompressed_bytes: limits.max_decompressed_bytes,
                max_entries: limits.max_entries,
                ack_timeout: Duration::from_millis(limits.ack_timeout_ms),
                lookup_timeout: Duration::from_secs(2),
            },
            admission: http::Admission::new(
                "ingest",
                usize::try_from(limits.max_requests_in_flight).unwrap_or(usize::MAX),
            ),
        }
    }
}

/// Runs `thingtotal ingest` on Kafka until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    let log = config.log.open_kafka("ingest")?;
    run_on(config, log, shutdown).await
}

/// Runs the ingest part on `log`.
pub async fn run_on(config: Config, log: Log, shutdown: CancellationToken) -> Result<()> {
    let part = Part::start(&config.log, log, shutdown.clone()).await?;
    let document = serde_json::to_value(<openapi::IngestDoc as utoipa::OpenApi>::openapi())
        .expect("the OpenAPI document serialises");
    let routes = http::part_routes(
        "ingest",
        part.log.clone(),
        Some(routes(Ingest::new(part.clone(), &config.limits))),
        http::Methods::of_document(&document),
    );
    let (_, server) = http::spawn_server("ingest", config.http_addr, routes, shutdown).await?;
    let _ = server.await;
    Ok(())
}

/// Counts a response by route and status.
async fn counted(route: &'static str, r: Response) -> Response {
    telemetry::request_answered(route, r.status().as_u16());
    r
}

/// The answer to a body that was refused before it was read whole (too large, unreadable).
async fn refusal(r: warp::Rejection) -> Response {
    match problem::recover(r).await {
        Ok(answer) => answer,
        Err(never) => match never {},
    }
}

/// The ingest routes (without `/health` and `/metrics`, which every part serves).
pub fn routes(ingest: Ingest) -> BoxedFilter<(Response,)> {
    let max_body = ingest.limits.max_body_bytes;
    let admitted = ingest.admission.body(max_body);
    let state = warp::any().map(move || ingest.clone());
    let entries = warp::path!("api" / "streams" / u64 / "entries")
        .and(warp::post())
        .and(state.clone())
        .and(http::credential())
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::header::optional::<String>("content-encoding"))
        .and(admitted.clone())
        .then(|id, i, c, t, e, b| async move {
            let answer = match b {
                Ok((_place, b)) => respond(native::post_entries(i, id, c, t, e, b).await).await,
                Err(refused) => refusal(refused).await,
            };
            counted("entries", answer).await
        });
    entries
        .or(thingspeak::routes(state, admitted))
        .unify()
        .boxed()
}
