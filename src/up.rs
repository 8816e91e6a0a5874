//! `thingtotal up`: every part in one process, on the embedded log unless Kafka is given.

use std::net::SocketAddr;

use clap::Args;
use thingtotal_common::config::{AdminArgs, ArchiveArgs, InfluxArgs, LogArgs};
use thingtotal_common::http;
use thingtotal_common::runtime::Runtime;
use tokio_util::sync::CancellationToken;
use tracing::info;
use warp::Filter;

/// `up`'s configuration: the union of the parts', with one HTTP address.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Where the topics live: Kafka if --kafka-brokers is given, else the embedded log.
    #[command(flatten)]
    pub log: LogArgs,
    /// The admin token.
    #[command(flatten)]
    pub admin: AdminArgs,
    /// InfluxDB, if configured.
    #[command(flatten)]
    pub influx: InfluxArgs,
    /// The Parquet archive.
    #[command(flatten)]
    pub archive: ArchiveArgs,
    /// Address of the one HTTP server (ingest and api routes, `/health`, `/metrics`).
    #[arg(long, env = "THINGTOTAL_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
}

/// Runs `up` until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let log = config.log.open()?;
    match config.log.kafka_brokers.as_deref() {
        Some(brokers) => info!(brokers, "running on Kafka"),
        None => info!(
            dir = %config.log.data_dir.display(),
            "running on the embedded log: one machine, durable on its disk, no replication; \
             add --kafka-brokers to run on Kafka"
        ),
    }
    let rt = Runtime::start(&config.log, log, shutdown.clone()).await?;
    let routes = http::ops_routes("up", rt.log.clone())
        .recover(http::not_found)
        .unify();
    let (_, server) = http::spawn_server("up", config.http_addr, routes, shutdown).await?;
    server.await?;
    Ok(())
}
