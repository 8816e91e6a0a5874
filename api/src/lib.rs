//! The REST API: streams (create, change, secure) and reading entries, with an OpenAPI document.
//!
//! Streams live in the compacted `streams` topic. A change is answered only once the log has
//! acknowledged it and this instance's registry shows it, so a client reads its own writes.

use std::net::SocketAddr;

use clap::Args;
use thingtotal_common::config::{AdminArgs, ArchiveArgs, InfluxArgs, LogArgs};
use thingtotal_common::log::Log;
use thingtotal_common::runtime::Runtime;
use thingtotal_common::{http, CancellationToken};
use warp::Filter;

/// The api part's configuration.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Where the topics live.
    #[command(flatten)]
    pub log: LogArgs,
    /// The admin token.
    #[command(flatten)]
    pub admin: AdminArgs,
    /// InfluxDB, read when configured.
    #[command(flatten)]
    pub influx: InfluxArgs,
    /// The Parquet archive, read when InfluxDB is not configured.
    #[command(flatten)]
    pub archive: ArchiveArgs,
    /// Address of the API server.
    #[arg(long, env = "THINGTOTAL_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
}

/// The api part's errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log or the registry failed.
    #[error(transparent)]
    Common(#[from] thingtotal_common::Error),
}

/// Result with the api part's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs `thingtotal api` on Kafka until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    let log = config.log.open_kafka("api")?;
    run_on(config, log, shutdown).await
}

/// Runs the api part on `log`.
pub async fn run_on(config: Config, log: Log, shutdown: CancellationToken) -> Result<()> {
    let rt = Runtime::start(&config.log, log, shutdown.clone()).await?;
    let routes = http::ops_routes("api", rt.log.clone())
        .recover(http::not_found)
        .unify();
    let (_, server) = http::spawn_server("api", config.http_addr, routes, shutdown).await?;
    let _ = server.await;
    Ok(())
}
