//! The validator: a consumer group on `entries.raw` that checks each entry against its stream's
//! JSON Schema and writes it to exactly one place, `entries.valid` or `entries.dlq`.
//!
//! Each batch's outputs and its consumed offsets are committed in one Kafka transaction (one
//! storage transaction on the embedded log), so across crashes and rebalances every raw entry
//! lands in exactly one of the two topics, exactly once.

use std::net::SocketAddr;

use clap::Args;
use thingtotal_common::config::LogArgs;
use thingtotal_common::log::Log;
use thingtotal_common::runtime::Runtime;
use thingtotal_common::{http, CancellationToken};
use warp::Filter;

/// The validator's configuration.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Where the topics live.
    #[command(flatten)]
    pub log: LogArgs,
    /// Address of `/health` and `/metrics`.
    #[arg(long, env = "THINGTOTAL_HTTP_ADDR", default_value = "127.0.0.1:8082")]
    pub http_addr: SocketAddr,
    /// Consumer group of the validators.
    #[arg(
        long,
        env = "THINGTOTAL_VALIDATOR_GROUP",
        default_value = "thingtotal-validator"
    )]
    pub group: String,
    /// A name for this instance that stays the same across restarts (Kafka `transactional.id`
    /// suffix), so that a restarted instance fences its predecessor at once.
    #[arg(long, env = "THINGTOTAL_INSTANCE_ID", default_value = "0")]
    pub instance_id: String,
}

/// The validator's errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log or the registry failed.
    #[error(transparent)]
    Common(#[from] thingtotal_common::Error),
}

/// Result with the validator's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs `thingtotal validator` on Kafka until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    let log = config.log.open_kafka("validator")?;
    run_on(config, log, shutdown).await
}

/// Runs the validator on `log`.
pub async fn run_on(config: Config, log: Log, shutdown: CancellationToken) -> Result<()> {
    let rt = Runtime::start(&config.log, log, shutdown.clone()).await?;
    let routes = http::ops_routes("validator", rt.log.clone())
        .recover(http::not_found)
        .unify();
    let (_, server) = http::spawn_server("validator", config.http_addr, routes, shutdown).await?;
    let _ = server.await;
    Ok(())
}
