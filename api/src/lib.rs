//! The REST API: define, change and secure streams, with an OpenAPI 3.1 document.
//!
//! Streams live in the compacted `streams` topic, the one source of truth. A change is answered
//! only once the log has acknowledged it and this instance's registry shows it, so a client
//! reads its own writes; other instances see it as soon as their registries apply it.

mod auth;
mod compat;
pub mod entries;
pub mod openapi;
mod read;
pub mod streams;
mod telemetry;
mod thingspeak;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use thingtotal_common::config::{AdminArgs, ArchiveArgs, InfluxArgs, LogPortArgs};
use thingtotal_common::log::Log;
use thingtotal_common::part::Part;
use thingtotal_common::{http, CancellationToken};
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Reply};

use thingtotal_common::problem::respond;

/// The largest stream definition accepted.
const MAX_DEFINITION_BYTES: u64 = 256 * 1024;

/// The api part's configuration.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Where the topics live.
    #[command(flatten)]
    pub log: LogPortArgs,
    /// The admin token.
    #[command(flatten)]
    pub admin: AdminArgs,
    /// InfluxDB, read when configured.
    #[command(flatten)]
    pub influx: InfluxArgs,
    /// The Parquet archive, read when InfluxDB is not configured.
    #[command(flatten)]
    pub archive: ArchiveArgs,
    /// What one read may cost.
    #[command(flatten)]
    pub reads: ReadArgs,
    /// Address of the API server.
    #[arg(long, env = "THINGTOTAL_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
}

/// What one read of entries may cost.
#[derive(Debug, Clone, Args)]
pub struct ReadArgs {
    /// The most rows of the Parquet archive one read scans (and the most values a median holds
    /// at once); a read that needs more is answered 400, naming this limit.
    #[arg(
        long,
        env = "THINGTOTAL_ARCHIVE_READ_MAX_ROWS",
        default_value_t = 2_000_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub archive_read_max_rows: u64,
    /// The most searches of rejected entries (`/rejected`) that run at once, each on a reader
    /// of the dead-letter topic; others wait up to 5 s for a turn, then get 503.
    #[arg(
        long,
        env = "THINGTOTAL_DEAD_LETTER_SEARCHES",
        default_value_t = DEFAULT_DEAD_LETTER_SEARCHES,
        value_parser = clap::value_parser!(u64).range(1..=64)
    )]
    pub dead_letter_searches: u64,
}

const DEFAULT_DEAD_LETTER_SEARCHES: u64 = 2;

/// The api part's errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log or the registry failed.
    #[error(transparent)]
    Common(#[from] thingtotal_common::Error),
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
}

/// Result with the api part's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the handlers share. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Api {
    part: Part,
    admin_token: Option<Arc<str>>,
    reads: read::Backends,
    dead_letters: read::rejected::DeadLetters,
    /// Held across each change's read, write and wait for the registry, so that two changes
    /// to a stream through this instance never start from the same version.
    changes: Arc<tokio::sync::Mutex<()>>,
    /// The OpenAPI document served at `/api/openapi.json`: the api's own ([`openapi::ApiDoc`]),
    /// or the whole product's where the routes of several parts are served together.
    document: Arc<serde_json::Value>,
}

impl Api {
    /// The api's state on a started runtime, with nothing to read entries from yet.
    pub fn new(part: Part, admin_token: Option<String>) -> Self {
        telemetry::describe();
        let dead_letters = read::rejected::DeadLetters::new(
            part.log.clone(),
            &part.topics.dlq,
            DEFAULT_DEAD_LETTER_SEARCHES as usize,
        );
        Self {
            part,
            admin_token: admin_token.map(Into::into),
            reads: read::Backends::default(),
            dead_letters,
            changes: Arc::default(),
            document: Arc::new(own_document()),
        }
    }

    /// Serves `document` as the OpenAPI document.
    pub fn documented(mut self, document: serde_json::Value) -> Self {
        self.document = Arc::new(document);
        self
    }

    /// Reads entries from InfluxDB when `influx` names one, and from the archive at `archive`,
    /// within the bounds of `limits`.
    pub fn reading(
        mut self,
        influx: &InfluxArgs,
        archive: Option<thingtotal_common::archive::Archive>,
        limits: &ReadArgs,
    ) -> Self {
        self.reads.influx = influx.influx_url.as_deref().map(|url| {
            read::influx::InfluxReader::new(url, &influx.influx_token, &influx.influx_bucket)
        });
        let max_rows = usize::try_from(limits.archive_read_max_rows).unwrap_or(usize::MAX);
        self.reads.archive = archive
            .map(|a| read::archive::ArchiveReader::new(a, &self.part.topics.valid, max_rows));
        self.dead_letters = read::rejected::DeadLetters::new(
            self.part.log.clone(),
            &self.part.topics.dlq,
            limits.dead_letter_searches as usize,
        );
        self
    }

    /// What the stores hold of `stream`: its current version and every earlier one kept.
    pub(crate) fn shape(
        &self,
        stream: &thingtotal_common::stream::StreamRecord,
    ) -> read::shape::Shape {
        read::shape::Shape::across(stream, &self.part.registry.versions(stream.id))
    }

    pub(crate) fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    /// One change to the streams at a time (see [`Api::changes`]).
    pub(crate) async fn changing(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.changes.lock().await
    }
}

/// The api's own OpenAPI document ([`openapi::ApiDoc`]), as JSON.
fn own_document() -> serde_json::Value {
    serde_json::to_value(<openapi::ApiDoc as utoipa::OpenApi>::openapi())
        .expect("the OpenAPI document serialises")
}

/// Runs `thingtotal api` on Kafka until `shutdown` is cancelled, serving `document` as the
/// OpenAPI document.
pub async fn run(
    config: Config,
    document: serde_json::Value,
    shutdown: CancellationToken,
) -> Result<()> {
    if config
        .admin
        .admin_token
        .as_deref()
        .is_none_or(str::is_empty)
    {
        return Err(Error::Config(
            "set --admin-token (THINGTOTAL_ADMIN_TOKEN): it is what creates and changes streams"
                .into(),
        ));
    }
    let log = config.log.open_kafka("api")?;
    run_on(config, log, document, shutdown).await
}

/// Runs the api part on `log`.
pub async fn run_on(
    config: Config,
    log: Log,
    document: serde_json::Value,
    shutdown: CancellationToken,
) -> Result<()> {
    let archive = config.archive.open(&config.log.data_dir)?;
    let part = Part::start(&config.log, log, shutdown.clone()).await?;
    let api = Api::new(part.clone(), config.admin.admin_token.clone())
        .reading(&config.influx, Some(archive), &config.reads)
        .documented(document);
    // The methods of the api's own routes: `document` may describe others' too.
    let methods = http::Methods::of_document(&own_document());
    let routes = http::part_routes("api", part.log.clone(), Some(routes(api)), methods);
    let (_, server) = http::spawn_server("api", config.http_addr, routes, shutdown).await?;
    let _ = server.await;
    Ok(())
}

/// Answers with `answer`, counting it and timing it under `route`.
pub(crate) async fn measured(
    route: &'static str,
    answer: impl Future<Output = Response>,
) -> Response {
    let started = Instant::now();
    let r = answer.await;
    telemetry::request_answered(route, r.status().as_u16(), started.elapsed());
    r
}

/// The query string, or an empty one; parsed by the handler so that a bad parameter is a 400
/// that names it.
fn raw_query() -> impl Filter<Extract = (String,), Error = std::convert::Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

/// The api's routes (without `/health` and `/metrics`, which every part serves).
pub fn routes(api: Api) -> BoxedFilter<(Response,)> {
    use streams::{create, delete, get, list, rotate, update, version, versions};
    // The document says which sources this server reads from.
    let document = Arc::new(api.reads.narrow((*api.document).clone()));
    let state = warp::any().map(move || api.clone());
    let body = || http::body_up_to(MAX_DEFINITION_BYTES);
    let streams = || warp::path("api").and(warp::path("streams"));
    let one = || streams().and(warp::path::param::<u64>());

    let create = streams()
        .and(warp::path::end())
        .and(warp::post())
        .and(state.clone())
        .and(http::credential())
        .and(body())
        .then(|a, c, b| {
            measured("create_stream", async move {
                respond(create(a, c, b).await).await
            })
        });
    let list = streams()
        .and(warp::path::end())
        .and(warp::get())
        .and(state.clone())
        .and(http::credential())
        .and(raw_query())
        .then(|a, c, q: String| {
            measured("list_streams", async move {
                respond(list(a, c, &q).await).await
            })
        });
    let get = one()
        .and(warp::path::end())
        .and(warp::get())
        .and(state.clone())
        .and(http::credential())
        .then(|id, a, c| {
            measured(
                "get_stream",
                async move { respond(get(a, id, c).await).await },
            )
        });
    let update = one()
        .and(warp::path::end())
        .and(warp::put())
        .and(state.clone())
        .and(http::credential())
        .and(raw_query())
        .and(body())
        .then(|id, a, c, q: String, b| {
            measured("update_stream", async move {
                respond(update(a, id, c, &q, b).await).await
            })
        });
    let versions = one()
        .and(warp::path("versions"))
        .and(warp::path::end())
        .and(warp::get())
        .and(state.clone())
        .and(http::credential())
        .then(|id, a, c| {
            measured("stream_versions", async move {
                respond(versions(a, id, c).await).await
            })
        });
    let version = one()
        .and(warp::path("versions"))
        .and(warp::path::param::<u32>())
        .and(warp::path::end())
        .and(warp::get())
        .and(state.clone())
        .and(http::credential())
        .then(|id, n, a, c| {
            measured("stream_version", async move {
                respond(version(a, id, n, c).await).await
            })
        });
    let delete = one()
        .and(warp::path::end())
        .and(warp::delete())
        .and(state.clone())
        .and(http::credential())
        .then(|id, a, c| {
            measured("delete_stream", async move {
                respond(delete(a, id, c).await).await
            })
        });
    let rotate = one()
        .and(warp::path("keys"))
        .and(warp::path::end())
        .and(warp::post())
        .and(state.clone())
        .and(http::credential())
        .and(body())
        .then(|id, a, c, b| {
            measured("rotate_keys", async move {
                respond(rotate(a, id, c, b).await).await
            })
        });
    let entries = one()
        .and(warp::path("entries"))
        .and(warp::path::end())
        .and(warp::get())
        .and(state.clone())
        .and(http::credential())
        .and(warp::header::optional::<String>("accept"))
        .and(raw_query())
        .then(|id, a, c, accept, q: String| {
            measured("read_entries", async move {
                respond(entries::list(a, id, c, accept, &q).await).await
            })
        });
    let latest = one()
        .and(warp::path!("entries" / "latest"))
        .and(warp::get())
        .and(state.clone())
        .and(http::credential())
        .and(raw_query())
        .then(|id, a, c, q: String| {
            measured("latest_entry", async move {
                respond(entries::latest(a, id, c, &q).await).await
            })
        });
    let rejected = one()
        .and(warp::path("rejected"))
        .and(warp::path::end())
        .and(warp::get())
        .and(state.clone())
        .and(http::credential())
        .and(raw_query())
        .then(|id, a, c, q: String| {
            measured("rejected_entries", async move {
                respond(entries::rejected(a, id, c, &q).await).await
            })
        });
    let openapi = warp::path!("api" / "openapi.json")
        .and(warp::get())
        .map(move || warp::reply::json(&*document).into_response());

    create
        .or(list)
        .unify()
        .or(get)
        .unify()
        .or(update)
        .unify()
        .or(delete)
        .unify()
        .or(rotate)
        .unify()
        .or(versions)
        .unify()
        .or(version)
        .unify()
        .or(entries)
        .unify()
        .or(latest)
        .unify()
        .or(rejected)
        .unify()
        .or(openapi)
        .unify()
        .or(thingspeak::routes(state))
        .unify()
        .boxed()
}
