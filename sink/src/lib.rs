//! The sink: two independent consumer groups on `entries.valid` (read committed), one writing
//! points to InfluxDB and one archiving Parquet files.
//!
//! Each group commits its offsets only after its output is durable: a 2xx from InfluxDB, or a
//! Parquet file fsynced and renamed into place. InfluxDB points are idempotent and archive file
//! names are deterministic, so a replay after a crash rewrites rather than duplicates.

use std::net::SocketAddr;

use clap::Args;
use thingtotal_common::config::{ArchiveArgs, InfluxArgs, LogArgs};
use thingtotal_common::log::Log;
use thingtotal_common::runtime::Runtime;
use thingtotal_common::{http, CancellationToken};
use warp::Filter;

/// The sink's configuration.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Where the topics live.
    #[command(flatten)]
    pub log: LogArgs,
    /// InfluxDB.
    #[command(flatten)]
    pub influx: InfluxArgs,
    /// The Parquet archive.
    #[command(flatten)]
    pub archive: ArchiveArgs,
    /// Address of `/health` and `/metrics`.
    #[arg(long, env = "THINGTOTAL_HTTP_ADDR", default_value = "127.0.0.1:8083")]
    pub http_addr: SocketAddr,
}

/// The sink's errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log or the registry failed.
    #[error(transparent)]
    Common(#[from] thingtotal_common::Error),
}

/// Result with the sink's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs `thingtotal sink` on Kafka until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    let log = config.log.open_kafka("sink")?;
    run_on(config, log, shutdown).await
}

/// Runs the sink on `log`.
pub async fn run_on(config: Config, log: Log, shutdown: CancellationToken) -> Result<()> {
    let rt = Runtime::start(&config.log, log, shutdown.clone()).await?;
    let routes = http::ops_routes("sink", rt.log.clone())
        .recover(http::not_found)
        .unify();
    let (_, server) = http::spawn_server("sink", config.http_addr, routes, shutdown).await?;
    let _ = server.await;
    Ok(())
}
