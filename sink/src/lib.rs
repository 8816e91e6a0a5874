//! The sink: independent consumer groups on `entries.valid` (read committed), one writing points
//! to InfluxDB and one archiving Parquet files.
//!
//! Each group keeps its own offsets, so an InfluxDB outage never stalls the archive and the
//! archive never stalls InfluxDB, and each commits only after its output is durable: a 2xx from
//! InfluxDB, or a Parquet file fsynced and put into place. InfluxDB points are idempotent, and
//! archive file names are deterministic and never replaced, so a replay after a crash rewrites
//! a point rather than duplicating it, and skips a file that is already archived.

mod archive;
mod columns;
pub mod compact;
mod durable;
mod influx;
mod line_protocol;
mod telemetry;
#[cfg(test)]
mod testing;

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use thingtotal_common::archive::Archive;
use thingtotal_common::config::{ArchiveArgs, InfluxArgs, LogPortArgs};
use thingtotal_common::consumer::Drain;
use thingtotal_common::log::Log;
use thingtotal_common::part::Part;
use thingtotal_common::topics::Topics;
use thingtotal_common::{http, CancellationToken};
use tokio::task::JoinSet;
use tracing::{info, warn};

pub use archive::Rollover;
pub use influx::{InfluxSettings, InfluxTarget};

/// The sink's configuration.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Where the topics live.
    #[command(flatten)]
    pub log: LogPortArgs,
    /// InfluxDB.
    #[command(flatten)]
    pub influx: InfluxArgs,
    /// The Parquet archive.
    #[command(flatten)]
    pub archive: ArchiveArgs,
    /// How the sink's groups consume.
    #[command(flatten)]
    pub worker: SinkArgs,
    /// Address of `/health` and `/metrics`.
    #[arg(long, env = "THINGTOTAL_HTTP_ADDR", default_value = "127.0.0.1:8083")]
    pub http_addr: SocketAddr,
}

/// How the sink's groups consume.
#[derive(Debug, Clone, Args)]
pub struct SinkArgs {
    /// Write points to InfluxDB (when --influx-url is set).
    #[arg(long, env = "THINGTOTAL_SINK_INFLUX", default_value_t = true, action = clap::ArgAction::Set)]
    pub sink_influx: bool,
    /// Consumer group of the InfluxDB writers [default: <topic-prefix>-sink-influx].
    #[arg(long, env = "THINGTOTAL_SINK_INFLUX_GROUP")]
    pub sink_influx_group: Option<String>,
    /// Most points in one InfluxDB write.
    #[arg(long, env = "THINGTOTAL_INFLUX_BATCH_MAX", default_value_t = 5000)]
    pub influx_batch_max: usize,
    /// Longest wait to fill an InfluxDB batch, in milliseconds.
    #[arg(long, env = "THINGTOTAL_INFLUX_BATCH_LINGER_MS", default_value_t = 500)]
    pub influx_batch_linger_ms: u64,
    /// Archive entries as Parquet files.
    #[arg(long, env = "THINGTOTAL_SINK_ARCHIVE", default_value_t = true, action = clap::ArgAction::Set)]
    pub sink_archive: bool,
    /// Consumer group of the archivers [default: <topic-prefix>-sink-archive].
    #[arg(long, env = "THINGTOTAL_SINK_ARCHIVE_GROUP")]
    pub sink_archive_group: Option<String>,
    /// Rows per archive file.
    #[arg(long, env = "THINGTOTAL_ARCHIVE_MAX_ROWS", default_value_t = 250_000)]
    pub archive_max_rows: usize,
    /// Bytes of entry data per archive file.
    #[arg(long, env = "THINGTOTAL_ARCHIVE_MAX_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub archive_max_bytes: usize,
    /// Seconds before an archive file is written however small (an idle stream is flushed too).
    #[arg(long, env = "THINGTOTAL_ARCHIVE_MAX_AGE_SECS", default_value_t = 60.0)]
    pub archive_max_age_secs: f64,
    /// Seconds between compactions of a local archive by the sink (merging small files up to
    /// --archive-max-rows); off unless set (`up`: every 300 s).
    #[arg(long, env = "THINGTOTAL_ARCHIVE_COMPACT_EVERY_SECS")]
    pub archive_compact_every_secs: Option<f64>,
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

/// The archiver's settings.
#[derive(Debug, Clone)]
pub struct ArchiveSettings {
    /// Where the files go.
    pub archive: Archive,
    /// The consumer group.
    pub group: String,
    /// When files roll over.
    pub rollover: Rollover,
    /// How often the sink compacts a local archive, if at all.
    pub compact_every: Option<Duration>,
}

/// The sink's settings: each group, if it runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The InfluxDB writer.
    pub influx: Option<InfluxSettings>,
    /// The archiver.
    pub archive: Option<ArchiveSettings>,
}

impl Settings {
    /// The settings the flags give, with defaults resolved against `topics` and `data_dir`.
    pub fn new(
        args: &SinkArgs,
        influx: &InfluxArgs,
        archive: &ArchiveArgs,
        data_dir: &std::path::Path,
        topics: &Topics,
    ) -> thingtotal_common::Result<Self> {
        let influx = match (&influx.influx_url, args.sink_influx) {
            (Some(url), true) => Some(InfluxSettings {
                target: InfluxTarget {
                    url: url.clone(),
                    token: influx.influx_token.clone(),
                    org: influx.influx_org.clone(),
                    bucket: influx.influx_bucket.clone(),
                },
                group: args
                    .sink_influx_group
                    .clone()
                    .unwrap_or_else(|| topics.group("sink-influx")),
                batch_max: args.influx_batch_max.max(1),
                linger: Duration::from_millis(args.influx_batch_linger_ms),
            }),
            (None, true) => {
                info!("no --influx-url: the sink does not write to InfluxDB");
                None
            }
            (_, false) => {
                info!("InfluxDB writer switched off");
                None
            }
        };
        let archive = if args.sink_archive {
            Some(ArchiveSettings {
                archive: archive.open(data_dir)?,
                group: args
                    .sink_archive_group
                    .clone()
                    .unwrap_or_else(|| topics.group("sink-archive")),
                rollover: Rollover {
                    rows: args.archive_max_rows.max(1),
                    bytes: args.archive_max_bytes.max(1),
                    age: Duration::from_secs_f64(args.archive_max_age_secs.max(0.1)),
                },
                compact_every: args
                    .archive_compact_every_secs
                    .filter(|secs| *secs > 0.0)
                    .map(|secs| Duration::from_secs_f64(secs.max(1.0))),
            })
        } else {
            info!("archiver switched off");
            None
        };
        Ok(Self { influx, archive })
    }
}

/// Runs `thingtotal sink` on Kafka until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    let log = config.log.open_kafka("sink")?;
    run_on(config, log, shutdown).await
}

/// Runs the sink on `log`: its groups, and `/health` and `/metrics`.
pub async fn run_on(config: Config, log: Log, shutdown: CancellationToken) -> Result<()> {
    let part = Part::start(&config.log, log, shutdown.clone()).await?;
    let settings = Settings::new(
        &config.worker,
        &config.influx,
        &config.archive,
        &config.log.data_dir,
        &part.topics,
    )?;
    let routes = http::part_routes("sink", part.log.clone(), None, http::Methods::default());
    let http_shutdown = CancellationToken::new();
    let (_, server) =
        http::spawn_server("sink", config.http_addr, routes, http_shutdown.clone()).await?;
    let mut workers = spawn(&part, settings, Duration::ZERO, &shutdown);
    let mut result = Ok(());
    while let Some(done) = workers.join_next().await {
        if let Ok(Err(e)) = done {
            result = Err(e.into());
            shutdown.cancel();
        }
    }
    http_shutdown.cancel();
    let _ = server.await;
    result
}

/// Starts the sink's groups on `part`; each ends after `shutdown`, its batch in flight committed,
/// and with a `drain` limit, once it has caught up.
pub fn spawn(
    part: &Part,
    settings: Settings,
    drain: Duration,
    shutdown: &CancellationToken,
) -> JoinSet<thingtotal_common::Result<()>> {
    telemetry::describe();
    let mut set = JoinSet::new();
    if let Some(a) = settings.archive {
        match (a.archive.local(), a.compact_every) {
            (Some(dir), Some(every)) => {
                set.spawn(compact::every(
                    dir.to_owned(),
                    part.topics.valid.clone(),
                    a.rollover.rows as i64,
                    every,
                    shutdown.clone(),
                ));
            }
            (None, Some(_)) => {
                warn!("--archive-compact-every-secs: compaction works on a local archive only")
            }
            _ => {}
        }
        set.spawn(archive::run(
            part.clone(),
            a.archive,
            a.rollover,
            a.group,
            Drain::new(drain),
            shutdown.clone(),
        ));
    }
    if let Some(i) = settings.influx {
        set.spawn(influx::run(
            part.clone(),
            i,
            Drain::new(drain),
            shutdown.clone(),
        ));
    }
    set
}
