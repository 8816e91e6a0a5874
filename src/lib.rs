//! The `thingtotal` binary's wiring: the command line, and `up`, which runs every part in one
//! process. `main.rs` only parses, installs signal handlers and calls [`run`].

pub mod cli;
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
        Command::Api(c) => thingtotal_api::run(c, shutdown).await?,
    }
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
