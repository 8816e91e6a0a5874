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
mod telemetry;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use thingtotal_common::config::LogPortArgs;
use thingtotal_common::consumer::{self, Commit, Drain, Handled, Handler};
use thingtotal_common::log::{
    positions_after, Consumed, GroupConsumer, GroupOptions, Log, TopicPartitionOffset,
};
use thingtotal_common::part::Part;
use thingtotal_common::stream::{StreamId, StreamRecord};
use thingtotal_common::topics::Topics;
use thingtotal_common::{http, CancellationToken};
use tracing::info;

use crate::check::{judge, output, stream_id, Verdict};
use crate::schemas::Schemas;

/// The validator's configuration.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Where the topics live.
    #[command(flatten)]
    pub log: LogPortArgs,
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
    /// How far back an entry's time may be, in days; older entries are dead-lettered as
    /// `bad_timestamp`.
    #[arg(long, env = "THINGTOTAL_ENTRY_TIME_PAST_DAYS", default_value_t = 3650)]
    pub entry_time_past_days: u64,
    /// How far ahead of now an entry's time may be, in seconds; later entries are dead-lettered
    /// as `bad_timestamp`.
    #[arg(
        long,
        env = "THINGTOTAL_ENTRY_TIME_FUTURE_SECS",
        default_value_t = 86_400
    )]
    pub entry_time_future_secs: u64,
}

/// The entry times the validator accepts: from `past` before the moment it judges an entry to
/// `future` after it.
#[derive(Debug, Clone, Copy)]
pub struct TimeWindow {
    /// How far back.
    pub past: Duration,
    /// How far ahead.
    pub future: Duration,
}

impl Default for TimeWindow {
    fn default() -> Self {
        Self {
            past: Duration::from_secs(3650 * 86_400),
            future: Duration::from_secs(86_400),
        }
    }
}

impl TimeWindow {
    /// Why `ts` is refused at `now`, if it is.
    fn refuses(
        self,
        ts: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<String> {
        let span = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        let earliest = now.checked_sub_signed(span(self.past));
        let latest = now.checked_add_signed(span(self.future));
        let too_early = earliest.is_some_and(|e| ts < e);
        let too_late = latest.is_some_and(|l| ts > l);
        (too_early || too_late).then(|| {
            format!(
                "the entry's time {} is outside the accepted window: {} days before now to {} \
                 seconds after (--entry-time-past-days, --entry-time-future-secs)",
                thingtotal_common::envelope::format_time(ts),
                self.past.as_secs() / 86_400,
                self.future.as_secs()
            )
        })
    }
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
    let part = Part::start(&config.log, log, shutdown.clone()).await?;
    let routes = http::part_routes(
        "validator",
        part.log.clone(),
        None,
        http::Methods::default(),
    );
    // The HTTP server stops only after the consumer has finished its batch.
    let http_shutdown = CancellationToken::new();
    let (_, server) =
        http::spawn_server("validator", config.http_addr, routes, http_shutdown.clone()).await?;
    let settings = config.worker.settings(&part.topics);
    let result = consume(part, settings, Drain::new(Duration::ZERO), shutdown).await;
    http_shutdown.cancel();
    let _ = server.await;
    result
}

/// The validator's settings, resolved from its flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The consumer group.
    pub group: String,
    /// This instance's stable name (the `transactional.id` suffix).
    pub instance_id: String,
    /// Most entries in one batch (one transaction).
    pub batch_max: usize,
    /// Longest wait to fill a batch.
    pub linger: Duration,
    /// The entry times accepted.
    pub window: TimeWindow,
}

impl ValidatorArgs {
    /// The settings these flags give, with defaults resolved against `topics`.
    pub fn settings(&self, topics: &Topics) -> Settings {
        Settings {
            group: self
                .validator_group
                .clone()
                .unwrap_or_else(|| topics.group("validator")),
            instance_id: self
                .instance_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string()),
            batch_max: self.validator_batch_max.max(1),
            linger: Duration::from_millis(self.validator_batch_linger_ms),
            window: TimeWindow {
                past: Duration::from_secs(self.entry_time_past_days.saturating_mul(86_400)),
                future: Duration::from_secs(self.entry_time_future_secs),
            },
        }
    }
}

/// Consumes `entries.raw` until `shutdown`; the batch in flight is finished and committed first,
/// and with a `drain` limit, everything in the topic.
pub async fn consume(
    part: Part,
    settings: Settings,
    drain: Drain,
    shutdown: CancellationToken,
) -> Result<()> {
    telemetry::describe();
    info!(group = %settings.group, "validator consuming");
    let driver = consumer::Settings {
        group: GroupOptions {
            group: settings.group,
            topics: vec![part.topics.raw.clone()],
            transactional: true,
            instance_id: settings.instance_id,
        },
        batch_max: settings.batch_max,
        linger: settings.linger,
        drain,
    };
    let log = part.log.clone();
    let validator = Validator {
        part,
        schemas: Arc::new(Schemas::default()),
        window: settings.window,
        pending: None,
    };
    consumer::run(&log, driver, validator, shutdown).await?;
    Ok(())
}

/// The validator as a handler of the consumer driver: each batch becomes one atomic
/// produce-and-commit.
struct Validator {
    part: Part,
    schemas: Arc<Schemas>,
    /// The entry times accepted.
    window: TimeWindow,
    /// The batch being committed: when it was judged, its size and its outcomes.
    pending: Option<Judged>,
}

struct Judged {
    at: Instant,
    size: usize,
    outcomes: HashMap<&'static str, u64>,
}

impl Handler for Validator {
    async fn handle(
        &mut self,
        batch: Vec<Consumed>,
        _stopping: bool,
        _consumer: &GroupConsumer,
    ) -> thingtotal_common::Result<Handled> {
        if batch.is_empty() {
            return Ok(Handled::Commit(Commit::Nothing));
        }
        // One registry lookup per stream and batch; an unknown id waits for the registry to
        // catch up.
        let mut streams: HashMap<StreamId, Option<Arc<StreamRecord>>> = HashMap::new();
        for c in &batch {
            if let Some(id) = stream_id(c) {
                if let std::collections::hash_map::Entry::Vacant(v) = streams.entry(id) {
                    v.insert(
                        self.part
                            .registry
                            .lookup(id, Duration::from_secs(5))
                            .await?,
                    );
                }
            }
        }
        let positions = positions_after(&batch);
        let size = batch.len();
        let (valid, dlq) = (self.part.topics.valid.clone(), self.part.topics.dlq.clone());
        let schemas = self.schemas.clone();
        let max_bytes = self.part.limits.max_record_bytes();
        let window = self.window;
        // Validation is CPU work: off the async threads.
        let (records, outcomes) = tokio::task::spawn_blocking(move || {
            let mut outcomes: HashMap<&'static str, u64> = HashMap::new();
            let records: Vec<_> = batch
                .into_iter()
                .map(|c| {
                    let stream = stream_id(&c).and_then(|id| streams.get(&id).cloned().flatten());
                    let verdict = judge(&c, stream.as_deref(), &schemas, window).within(
                        &c,
                        stream.as_ref().map(|s| s.version),
                        max_bytes,
                    );
                    let outcome = match &verdict {
                        Verdict::Valid(_) => "valid",
                        Verdict::Dead { kind, .. } => kind.as_str(),
                    };
                    *outcomes.entry(outcome).or_default() += 1;
                    output(c, verdict, &valid, &dlq, max_bytes)
                })
                .collect();
            (records, outcomes)
        })
        .await
        .map_err(|_| thingtotal_common::Error::Closed)?;
        self.pending = Some(Judged {
            at: Instant::now(),
            size,
            outcomes,
        });
        Ok(Handled::Commit(Commit::Atomic { records, positions }))
    }

    fn committed(&mut self, _positions: &[TopicPartitionOffset]) {
        if let Some(judged) = self.pending.take() {
            telemetry::batch_committed(judged.at.elapsed(), judged.size, judged.outcomes);
        }
    }

    fn reset(&mut self) {
        self.pending = None;
    }

    async fn tick(&mut self) {
        // Compiled schemas of deleted streams go.
        let registry = &self.part.registry;
        self.schemas.retain(|id| registry.get(id).is_some());
    }

    fn lag_gauge(&self) -> metrics::Gauge {
        telemetry::lag()
    }
}
