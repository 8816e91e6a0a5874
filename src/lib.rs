//! The `thingtotal` binary's wiring: the command line, and `up`, which runs every part in one
//! process. `main.rs` only parses, installs signal handlers and calls [`run`].

pub mod cli;
pub mod openapi;
pub mod up;

use tokio_util::sync::CancellationToken;

pub use cli::{Cli, Command};

/// Runs one subcommand until it ends or `shutdown` is cancelled.
pub async fn run(command: Command, shutdown: CancellationToken) -> anyhow::Result<()> {
    match command {
        Command::Up(c) => up::run(c, shutdown).await?,
        Command::Ingest(c) => thingtotal_ingest::run(c, shutdown).await?,
        Command::Validator(c) => thingtotal_validator::run(c, shutdown).await?,
        Command::Sink(c) => thingtotal_sink::run(c, shutdown).await?,
        Command::Api(c) => thingtotal_api::run(c, openapi::document(), shutdown).await?,
        Command::Compact(c) => compact(c).await?,
    }
    Ok(())
}

/// `thingtotal compact`'s configuration.
#[derive(Debug, Clone, clap::Args)]
pub struct CompactConfig {
    /// Topic prefix and data directory.
    #[command(flatten)]
    pub log: thingtotal_common::config::LogPortArgs,
    /// The archive.
    #[command(flatten)]
    pub archive: thingtotal_common::config::ArchiveArgs,
    /// Rows per compacted file.
    #[arg(
        long,
        env = "THINGTOTAL_COMPACT_TARGET_ROWS",
        default_value_t = 1_000_000
    )]
    pub target_rows: i64,
}

async fn compact(c: CompactConfig) -> anyhow::Result<()> {
    let archive = c.archive.open(&c.log.data_dir)?;
    let root = archive
        .local()
        .ok_or_else(|| {
            anyhow::anyhow!(
                "compaction works on a local archive; {} is an object store",
                archive.describe()
            )
        })?
        .to_owned();
    anyhow::ensure!(root.is_dir(), "no archive at {}", root.display());
    let topic = c.log.topics().valid;
    let target = c.target_rows.max(1);
    let shown = root.display().to_string();
    let (before, after) = tokio::task::spawn_blocking(move || {
        thingtotal_sink::compact::compact_locked(&root, &topic, target)
    })
    .await??
    .ok_or_else(|| anyhow::anyhow!("another compaction is running on {shown}; try again later"))?;
    println!("compacted {before} files into {after}");
    Ok(())
}

/// Cancels `shutdown` on the first SIGINT or SIGTERM.
pub async fn cancel_on_signals(shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "shutting down");
    shutdown.cancel();
    Ok(())
}
