//! `thingtotal-bench`: ThingTotal's benchmark suite.
//!
//! It drives the real pipeline, each part as its own `thingtotal` process, against real Kafka and
//! InfluxDB, and measures every stage next to a baseline that does the same job without
//! ThingTotal, on the same machine and in the same run: a bare warp server, a raw rdkafka
//! producer, a pass-through transactional copy, direct InfluxDB writes and arrow-rs's
//! `ArrowWriter`. The machines it runs on are shared and noisy, so the figure that counts is the
//! ratio of the two, taken repeat by repeat. `scripts/bench` starts the services and runs
//! `thingtotal-bench run`; the baselines run as child processes of this binary (the hidden
//! subcommands), so that each has its own CPU and memory accounting just like the parts.

mod baseline;
mod env;
mod kafka;
mod loadgen;
mod parts;
mod report;
mod scenarios;
mod stats;
mod workload;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

// The same allocator as `thingtotal`, so that the baselines this process runs (the warp server,
// the raw producer, the pass-through copy, the direct writers) are not handicapped by glibc's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// ThingTotal's benchmarks: each stage against a baseline measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "thingtotal-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the scenarios and write bench/results/<date>.md and .json.
    Run(RunArgs),
    /// Baseline 1: a bare warp server that answers 202 to every entry post.
    #[command(hide = true)]
    BareServer(baseline::BareServerArgs),
    /// Baseline 2: a raw rdkafka producer writing what ingest writes.
    #[command(hide = true)]
    RawProducer(baseline::RawProducerArgs),
    /// Baseline 3: a pass-through transactional copy from raw to another topic.
    #[command(hide = true)]
    Copy(baseline::CopyArgs),
    /// Baseline 4: gzipped 5,000-line batches straight to InfluxDB.
    #[command(hide = true)]
    InfluxDirect(baseline::InfluxDirectArgs),
    /// Baseline 5: arrow-rs's ArrowWriter alone on the archive's rows.
    #[command(hide = true)]
    ArrowWriter(baseline::ArrowWriterArgs),
}

/// The scenarios, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum Scenario {
    /// 1. Ingest, one entry per request, against a bare warp server.
    IngestSingle,
    /// 2. Ingest, arrays of 1,000 entries, against a raw rdkafka producer.
    IngestBulk,
    /// 3. Validator, against a pass-through transactional copy.
    Validator,
    /// 4. Sink to InfluxDB, against direct gzipped writes.
    SinkInflux,
    /// 5. Sink to Parquet, against ArrowWriter alone.
    SinkParquet,
    /// 6. End-to-end latency at half the maximum ingest rate.
    EndToEnd,
}

/// `thingtotal-bench run`.
#[derive(Debug, Clone, clap::Args)]
struct RunArgs {
    /// Seconds each measurement runs (recorded results use at least 20).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Repeats of each measurement; the spread across them is reported.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Run only these scenarios (comma-separated). Memory is reported for whatever ran.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Scenario>,
    /// The `thingtotal` binary [default: next to this one].
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Where the results files go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Scratch space: part logs, archives, baseline files [default: a new directory in $TMPDIR].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Connections of the load generator for one-entry requests.
    #[arg(long, default_value_t = 128)]
    connections: usize,
    /// Concurrent 1,000-entry requests (and producer batches) in the bulk scenario.
    #[arg(long, default_value_t = 16)]
    bulk_connections: usize,
    /// Partitions of the entry topics, as `thingtotal` creates them.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Most entries one prefilled measurement may use (keeps the disk in check).
    #[arg(long, default_value_t = 8_000_000)]
    max_prefill: u64,
    /// An extra variable for every part, as KEY=VALUE (repeatable): to try a setting, such as
    /// THINGTOTAL_KAFKA_OPTIONS=linger.ms=1. Results name every one in their header.
    #[arg(long, value_name = "KEY=VALUE")]
    part_env: Vec<String>,
    /// Name of the results files [default: today's date, UTC].
    #[arg(long)]
    name: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Run(args) => scenarios::run(args).await,
            Command::BareServer(a) => baseline::bare_server(a).await,
            Command::RawProducer(a) => baseline::raw_producer(a).await,
            Command::Copy(a) => baseline::copy(a).await,
            Command::InfluxDirect(a) => baseline::influx_direct(a).await,
            Command::ArrowWriter(a) => baseline::arrow_writer(a),
        }
    })
}
