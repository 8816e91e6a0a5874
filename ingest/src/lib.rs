//! The ingest edge: the HTTP endpoint that devices post entries to.
//!
//! It authenticates each request with the stream's write key, splits the body into entries,
//! stamps each with an entry id and a receive time, and appends them to `entries.raw`. It answers
//! `202` only once the log has acknowledged every entry of the request, so an acknowledged entry
//! is never lost; if the log cannot take them in time it answers `503` and the device retries.

use std::net::SocketAddr;

use clap::Args;
use thingtotal_common::config::LogArgs;
use thingtotal_common::log::Log;
use thingtotal_common::runtime::Runtime;
use thingtotal_common::{http, CancellationToken};
use warp::Filter;

/// The ingest part's configuration.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Where the topics live.
    #[command(flatten)]
    pub log: LogArgs,
    /// Address of the ingest HTTP server (entries, `/health`, `/metrics`).
    #[arg(long, env = "THINGTOTAL_HTTP_ADDR", default_value = "127.0.0.1:8081")]
    pub http_addr: SocketAddr,
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

/// Runs `thingtotal ingest` on Kafka until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    let log = config.log.open_kafka("ingest")?;
    run_on(config, log, shutdown).await
}

/// Runs the ingest part on `log`.
pub async fn run_on(config: Config, log: Log, shutdown: CancellationToken) -> Result<()> {
    let rt = Runtime::start(&config.log, log, shutdown.clone()).await?;
    let routes = http::ops_routes("ingest", rt.log.clone())
        .recover(http::not_found)
        .unify();
    let (_, server) = http::spawn_server("ingest", config.http_addr, routes, shutdown).await?;
    let _ = server.await;
    Ok(())
}
