//! The validator: a consumer group on `entries.raw` that checks each entry against its stream's
//! JSON Schema and writes it to exactly one place: `entries.valid` as the normalised envelope, or
//! `entries.dlq` with the original bytes and headers plus the reason.
//!
//! Exactly once: each batch's outputs and its consumed offsets are committed in one Kafka
//! transaction (one storage transaction on the embedded log), and the consumer group's metadata
//! goes with the offsets, so a member that lost its partitions in a rebalance is fenced instead
//! of committing twice. On any error the transaction is aborted and the group rewinds to its
//! committed positions, so nothing is skipped and nothing is written twice. Downstream readers
//! use `read_committed`.
//!
//! Schema changes: an entry is checked against the version of its stream that this validator's
//! registry holds when the entry's batch is processed, and that version is recorded on the output
//! (`stream_version`, `tt.stream_version`). An entry posted just before a change may therefore be
//! checked against the new version; entries are never checked twice.

mod check;
mod schemas;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use thingtotal_common::config::LogArgs;
use thingtotal_common::log::{positions_after, Drain, GroupConsumer, GroupOptions, Log};
use thingtotal_common::problem;
use thingtotal_common::runtime::Runtime;
use thingtotal_common::stream::{StreamId, StreamRecord};
use thingtotal_common::{http, CancellationToken};
use tracing::{info, warn};
use warp::Filter;

use crate::check::{judge, output, stream_id, Verdict};
use crate::schemas::Schemas;

/// The validator's configuration.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Where the topics live.
    #[command(flatten)]
    pub log: LogArgs,
    /// How the validator consumes.
    #[command(flatten)]
    pub worker: ValidatorArgs,
    /// Address of `/health` and `/metrics`.
    #[arg(long, env = "THINGTOTAL_HTTP_ADDR", default_value = "127.0.0.1:8082")]
    pub http_addr: SocketAddr,
}

/// How the validator consumes.
#[derive(Debug, Clone, Args)]
pub struct ValidatorArgs {
    /// Consumer group of the validators [default: <topic-prefix>-validator, so
    /// `thingtotal-validator`].
    #[arg(long, env = "THINGTOTAL_VALIDATOR_GROUP")]
    pub validator_group: Option<String>,
    /// A name for this instance that stays the same across its restarts (Kafka
    /// `transactional.id` suffix), so that a restarted instance fences its predecessor's open
    /// transaction at once. Default: random per process; a crashed instance's open transaction
    /// then holds back read_committed readers until it times out (10 s).
    #[arg(long, env = "THINGTOTAL_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Most entries in one batch (one transaction).
    #[arg(long, env = "THINGTOTAL_VALIDATOR_BATCH_MAX", default_value_t = 5000)]
    pub validator_batch_max: usize,
    /// Longest wait to fill a batch, in milliseconds.
    #[arg(
        long,
        env = "THINGTOTAL_VALIDATOR_BATCH_LINGER_MS",
        default_value_t = 20
    )]
    pub validator_batch_linger_ms: u64,
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

/// Runs the validator on `log`: the consumer and `/health` and `/metrics`.
pub async fn run_on(config: Config, log: Log, shutdown: CancellationToken) -> Result<()> {
    let rt = Runtime::start(&config.log, log, shutdown.clone()).await?;
    let routes = http::ops_routes("validator", rt.log.clone())
        .recover(problem::recover)
        .unify();
    // The HTTP server stops only after the consumer has finished its batch.
    let http_shutdown = CancellationToken::new();
    let (_, server) =
        http::spawn_server("validator", config.http_addr, routes, http_shutdown.clone()).await?;
    let result = consume(rt, &config.worker, Drain::new(Duration::ZERO), shutdown).await;
    http_shutdown.cancel();
    let _ = server.await;
    result
}

/// Consumes `entries.raw` until `shutdown`; the batch in flight is finished and committed first,
/// and with a `drain` limit, everything in the topic.
pub async fn consume(
    rt: Runtime,
    args: &ValidatorArgs,
    mut drain: Drain,
    shutdown: CancellationToken,
) -> Result<()> {
    let instance_id = args
        .instance_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    let group = args
        .validator_group
        .clone()
        .unwrap_or_else(|| rt.topics.group("validator"));
    let mut consumer = rt
        .log
        .consumer(GroupOptions {
            group: group.clone(),
            topics: vec![rt.topics.raw.clone()],
            transactional: true,
            instance_id,
        })
        .await?;
    info!(%group, "validator consuming");
    let schemas = Arc::new(Schemas::default());
    let linger = Duration::from_millis(args.validator_batch_linger_ms);
    let mut last_maintenance = Instant::now();
    loop {
        // Never cancelled half-way: a dropped poll would lose the records it had fetched. The
        // linger bounds how long a shutdown waits for it.
        let polled = consumer.poll(args.validator_batch_max, linger).await;
        let revoked = !consumer.take_rebalances().revoked.is_empty();
        let batch = match polled {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "polling entries.raw failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // A batch polled across a revocation may hold records of a partition that another member
        // now owns (its commit would be accepted under this member's new generation), or records
        // that are fetched again from the committed position when the partition comes back. None
        // of it is written: the batch is dropped and reading restarts from the committed
        // positions. A commit made with the old generation is fenced by the broker instead.
        if revoked && !batch.is_empty() {
            info!(
                records = batch.len(),
                "partitions were revoked during the poll; dropping the batch"
            );
            if consumer.rewind_until_done(&shutdown).await.is_err() {
                break;
            }
            continue;
        }
        if last_maintenance.elapsed() > Duration::from_secs(10) {
            last_maintenance = Instant::now();
            maintain(&rt, &consumer, &schemas).await;
        }
        if batch.is_empty() {
            if drain
                .done(&shutdown, &consumer, &rt.log, &rt.topics.raw, true)
                .await
            {
                break;
            }
            continue;
        }
        if let Err(e) = process(&rt, &mut consumer, &schemas, batch).await {
            warn!(error = %e, "batch failed; rewinding to the committed positions");
            if consumer.rewind_until_done(&shutdown).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if drain
            .done(&shutdown, &consumer, &rt.log, &rt.topics.raw, false)
            .await
        {
            break;
        }
    }
    info!("validator stopped");
    Ok(())
}

/// Judges a batch and commits its outputs with its offsets, atomically.
async fn process(
    rt: &Runtime,
    consumer: &mut GroupConsumer,
    schemas: &Arc<Schemas>,
    batch: Vec<thingtotal_common::log::Consumed>,
) -> Result<()> {
    // One registry lookup per stream and batch; an unknown id waits for the registry to catch up.
    let mut streams: HashMap<StreamId, Option<Arc<StreamRecord>>> = HashMap::new();
    for c in &batch {
        if let Some(id) = stream_id(c) {
            if let std::collections::hash_map::Entry::Vacant(v) = streams.entry(id) {
                v.insert(rt.registry.lookup(id, Duration::from_secs(5)).await?);
            }
        }
    }
    let positions = positions_after(&batch);
    let size = batch.len();
    let (valid, dlq) = (rt.topics.valid.clone(), rt.topics.dlq.clone());
    let schemas = schemas.clone();
    // Validation is CPU work: off the async threads.
    let (outputs, counts) = tokio::task::spawn_blocking(move || {
        let mut counts: HashMap<&'static str, u64> = HashMap::new();
        let outputs: Vec<_> = batch
            .into_iter()
            .map(|c| {
                let stream = stream_id(&c).and_then(|id| streams.get(&id).cloned().flatten());
                let verdict = judge(&c, stream.as_deref(), &schemas);
                let outcome = match &verdict {
                    Verdict::Valid(_) => "valid",
                    Verdict::Dead { kind, .. } => kind.as_str(),
                };
                *counts.entry(outcome).or_default() += 1;
                output(c, verdict, &valid, &dlq)
            })
            .collect();
        (outputs, counts)
    })
    .await
    .map_err(|_| thingtotal_common::Error::Closed)?;
    let started = Instant::now();
    consumer.produce_and_commit(outputs, &positions).await?;
    metrics::histogram!("thingtotal_validator_transaction_seconds")
        .record(started.elapsed().as_secs_f64());
    metrics::histogram!("thingtotal_validator_batch_size").record(size as f64);
    for (outcome, n) in counts {
        metrics::counter!("thingtotal_validator_entries_total", "outcome" => outcome).increment(n);
    }
    Ok(())
}

/// Drops compiled schemas of deleted streams and publishes the consumer lag.
async fn maintain(rt: &Runtime, consumer: &GroupConsumer, schemas: &Schemas) {
    schemas.retain(|id| rt.registry.get(id).is_some());
    if let Ok(lag) = consumer.lag(&rt.log, &rt.topics.raw).await {
        metrics::gauge!("thingtotal_validator_lag").set(lag as f64);
    }
}
