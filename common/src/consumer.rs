//! The consumer driver: the one loop that every consumer group of ThingTotal runs (the validator,
//! the InfluxDB writer and the archiver), with the part-specific work behind [`Handler`].
//!
//! The driver owns the delivery rules, so that they hold in one place:
//!
//! 1. **Positions move only by commit.** A handler turns a batch into a [`Commit`]: positions to
//!    commit, or records to produce and positions to commit in one transaction. The driver
//!    applies it; a handler that holds rows it has not made durable yet (the archiver's open
//!    files) simply does not return their positions.
//! 2. **A failure rewinds.** If the handler or the commit fails, the handler drops what it holds
//!    ([`Handler::reset`]), the group goes back to its committed positions (retrying the rewind
//!    until it succeeds, since polling on would let the next commit skip the failed records), and
//!    the batch is read again after a pause. Nothing is skipped, and handlers are written so that
//!    doing a batch twice is harmless (idempotent points, deterministic file names, transactions).
//! 3. **A batch polled across a revocation is dropped.** It may hold records of a partition that
//!    another member now owns, and its commit would be accepted under this member's new
//!    generation. The handler hears of every rebalance ([`Handler::rebalanced`]) and may ask for
//!    the rewind too, which the archiver does because its open files are per partition.
//! 4. **Shutdown finishes the batch in flight.** Polls are never cancelled half-way (a dropped
//!    poll loses what it fetched); after shutdown, polls wait at most 100 ms, and the loop stops
//!    once [`Drain`] says so: at once (after the batch in flight is committed), or once the
//!    handler has caught up with its topic, within a time limit.
//!
//! Failed polls back off for a second; every ten seconds the handler does its housekeeping
//! ([`Handler::tick`]) and the group's lag is published on the handler's gauge.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::log::{
    Consumed, GroupConsumer, GroupOptions, Log, Rebalances, Record, TopicPartitionOffset,
};
use crate::Result;

/// How often the driver calls [`Handler::tick`] and publishes the lag.
const TICK: Duration = Duration::from_secs(10);
/// The pause after a failed poll or a failed batch.
const BACKOFF: Duration = Duration::from_secs(1);
/// The longest poll after shutdown, so that draining does not wait for full batches.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// What a handler made durable with a batch, for the driver to commit.
#[derive(Debug, Default)]
pub enum Commit {
    /// Nothing to commit (an empty batch, or rows still held).
    #[default]
    Nothing,
    /// Commit these positions.
    Positions(Vec<TopicPartitionOffset>),
    /// Produce these records (topic, record) and commit these positions in one transaction.
    Atomic {
        /// The outputs, each with its topic.
        records: Vec<(String, Record)>,
        /// The positions that go with them.
        positions: Vec<TopicPartitionOffset>,
    },
}

/// What became of a batch.
#[derive(Debug)]
pub enum Handled {
    /// The batch's outputs are durable: commit this.
    Commit(Commit),
    /// Shutdown interrupted the batch before its outputs were durable: stop without committing.
    Interrupted,
}

/// The part-specific work of a consumer group. The driver calls it from one task, so `&mut self`
/// is the handler's own state.
pub trait Handler: Send {
    /// Handles a batch (empty when the poll found nothing; a handler with time-based work does it
    /// then). `stopping` is true on the last call before the loop ends: a handler that holds
    /// rows makes them durable now and returns their positions.
    fn handle(
        &mut self,
        batch: Vec<Consumed>,
        stopping: bool,
        consumer: &GroupConsumer,
    ) -> impl Future<Output = Result<Handled>> + Send;

    /// Partitions were assigned or revoked. The handler drops state of partitions it may no
    /// longer own, and returns true if the group must go back to its committed positions even
    /// though nothing was revoked from a non-empty batch (the driver rewinds in that case anyway).
    fn rebalanced(&mut self, _changes: &Rebalances) -> bool {
        false
    }

    /// The batch failed or its commit did: drop whatever is held, it will be read again.
    fn reset(&mut self) {}

    /// These positions were committed.
    fn committed(&mut self, _positions: &[TopicPartitionOffset]) {}

    /// Work that must succeed before the next poll (the archiver rereads what is archived after
    /// a rebalance). An error is retried after a pause.
    fn prepare(&mut self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Whether everything in the topic is handled, for draining at shutdown: by default, once the
    /// group has committed up to the end of every partition.
    fn caught_up(
        &mut self,
        consumer: &GroupConsumer,
        log: &Log,
        topic: &str,
    ) -> impl Future<Output = bool> + Send {
        async move { consumer.lag(log, topic).await.is_ok_and(|lag| lag == 0) }
    }

    /// Housekeeping every ten seconds.
    fn tick(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// The gauge the group's lag is published on.
    fn lag_gauge(&self) -> metrics::Gauge;
}

/// How the driver consumes.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The group, its topic and whether it produces transactionally.
    pub group: GroupOptions,
    /// Most records in one batch.
    pub batch_max: usize,
    /// Longest wait to fill a batch.
    pub linger: Duration,
    /// How to stop after shutdown.
    pub drain: Drain,
}

/// Consumes `settings.group` with `handler` until `shutdown`, by the rules above.
pub async fn run<H: Handler>(
    log: &Log,
    mut settings: Settings,
    mut handler: H,
    shutdown: CancellationToken,
) -> Result<()> {
    let group = settings.group.group.clone();
    let topic = settings.group.topics.first().cloned().unwrap_or_default();
    let mut consumer = log.consumer(settings.group.clone()).await?;
    let mut last_tick = tokio::time::Instant::now();
    loop {
        if let Err(e) = handler.prepare().await {
            warn!(%group, error = %e, "preparing to consume failed; retrying");
            if pause_or_stop(&shutdown, &mut settings.drain, &topic).await {
                break;
            }
            continue;
        }
        let wait = if shutdown.is_cancelled() {
            settings.linger.min(DRAIN_POLL)
        } else {
            settings.linger
        };
        let polled = consumer.poll(settings.batch_max, wait).await;
        let changes = consumer.take_rebalances();
        let batch = match polled {
            Ok(b) => b,
            Err(e) => {
                warn!(%group, %topic, error = %e, "polling failed");
                if pause_or_stop(&shutdown, &mut settings.drain, &topic).await {
                    break;
                }
                continue;
            }
        };
        if changes != Rebalances::default() {
            let asked = handler.rebalanced(&changes);
            if asked || (!changes.revoked.is_empty() && !batch.is_empty()) {
                info!(%group, records = batch.len(), ?changes, "rebalanced; dropping the batch and rewinding");
                if consumer.rewind_until_done(&shutdown).await.is_err() {
                    break;
                }
                continue;
            }
        }
        let polled_empty = batch.is_empty();
        let stopping = shutdown.is_cancelled()
            && (settings.drain.expired(&topic)
                || (polled_empty && handler.caught_up(&consumer, log, &topic).await));
        let result = match handler.handle(batch, stopping, &consumer).await {
            Ok(Handled::Interrupted) => break,
            Ok(Handled::Commit(commit)) => apply(&mut consumer, commit, &mut handler).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            warn!(%group, error = %e, "the batch failed; rewinding to the committed positions");
            handler.reset();
            if consumer.rewind_until_done(&shutdown).await.is_err() {
                break;
            }
            if pause_or_stop(&shutdown, &mut settings.drain, &topic).await {
                break;
            }
            continue;
        }
        if stopping {
            break;
        }
        if last_tick.elapsed() >= TICK {
            last_tick = tokio::time::Instant::now();
            handler.tick().await;
            if let Ok(lag) = consumer.lag(log, &topic).await {
                handler.lag_gauge().set(lag as f64);
            }
        }
    }
    info!(%group, "stopped consuming");
    Ok(())
}

/// Commits what a handler made durable.
async fn apply<H: Handler>(
    consumer: &mut GroupConsumer,
    commit: Commit,
    handler: &mut H,
) -> Result<()> {
    let positions = match commit {
        Commit::Nothing => return Ok(()),
        Commit::Positions(p) if p.is_empty() => return Ok(()),
        Commit::Positions(p) => {
            consumer.commit(&p).await?;
            p
        }
        Commit::Atomic { records, positions } => {
            consumer.produce_and_commit(records, &positions).await?;
            positions
        }
    };
    handler.committed(&positions);
    Ok(())
}

/// Waits out a failure's pause; true if the loop should stop instead (shutdown, and draining is
/// over).
async fn pause_or_stop(shutdown: &CancellationToken, drain: &mut Drain, topic: &str) -> bool {
    if shutdown.is_cancelled() {
        if drain.expired(topic) {
            return true;
        }
        tokio::time::sleep(BACKOFF).await;
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(BACKOFF) => false,
        _ = shutdown.cancelled() => drain.expired(topic),
    }
}

/// How a consumer stops: at once after its batch in flight, or once it has caught up with its
/// topic (bounded by a time limit), so that `thingtotal up` can drain on Ctrl-C.
#[derive(Debug, Clone)]
pub struct Drain {
    limit: Duration,
    deadline: Option<tokio::time::Instant>,
}

impl Drain {
    /// Drain for at most `limit` after shutdown; `Duration::ZERO` stops at once.
    pub fn new(limit: Duration) -> Self {
        Self {
            limit,
            deadline: None,
        }
    }

    /// Whether the drain limit has passed (counting from the first call after shutdown).
    pub fn expired(&mut self, topic: &str) -> bool {
        let deadline = *self
            .deadline
            .get_or_insert_with(|| tokio::time::Instant::now() + self.limit);
        let expired = tokio::time::Instant::now() >= deadline;
        if expired && !self.limit.is_zero() {
            warn!(
                topic,
                "stopping before the topic was drained: the drain limit passed"
            );
        }
        expired
    }
}
