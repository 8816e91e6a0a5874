use std::process::ExitCode;

use clap::Parser;
use thingtotal::Cli;
use thingtotal_common::telemetry;
use tokio_util::sync::CancellationToken;

// The consumers allocate per message (records, JSON values); mimalloc's small-object path is
// measurably cheaper than glibc's there (bench/README.md, scenarios 3 and 5).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_tracing(cli.log_format);
    let shutdown = CancellationToken::new();
    tokio::spawn(thingtotal::cancel_on_signals(shutdown.clone()));
    match thingtotal::run(cli.command, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
