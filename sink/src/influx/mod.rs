//! The InfluxDB writer: a consumer group on `entries.valid` that writes points and commits its
//! offsets only after InfluxDB answered 2xx.
//!
//! Batches go gzipped to `/api/v2/write` (InfluxDB 1.8 with bucket `db/rp`, 2.x and 3.x). A 5xx or
//! a network error is retried with capped exponential backoff for as long as it takes, and the
//! group does not consume meanwhile. A 4xx that names bad points (a type conflict, say) is
//! narrowed down by bisecting the batch: the points InfluxDB rejects on their own go to the
//! dead-letter topic as `sink_rejected` at stage `SINK_INFLUX` with InfluxDB's message, and the
//! rest are written. Points are keyed by measurement, tags and time, so a replay after a crash
//! rewrites them rather than adding new ones.
//!
//! The `influxdb2` crate's line-protocol write cannot send `Content-Encoding: gzip` (its header
//! variant is private) and folds every failure into one error, while this writer needs both; so it
//! speaks the small HTTP API itself with reqwest.

mod write;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use thingtotal_common::consumer::{self, Commit, Drain, Handled, Handler};
use thingtotal_common::dead_letter::{Kind, Reason, Stage, Violation};
use thingtotal_common::log::{positions_after, Consumed, GroupConsumer, GroupOptions, Record};
use thingtotal_common::part::Part;
use thingtotal_common::stream::{FieldKeys, StreamId};
use thingtotal_common::time::{envelope_micros, point_time};
use thingtotal_common::CancellationToken;
use tracing::{info, warn};

pub use write::InfluxTarget;

use crate::line_protocol::Layout;
use crate::telemetry;
use write::Writer;

/// An envelope of `entries.valid` as the writer reads it: the strings borrowed, the times left
/// as text (`ts` is read by [`envelope_micros`] without chrono's general parser), `received_at`
/// skipped.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Envelope<'a> {
    #[serde(borrow)]
    entry_id: Cow<'a, str>,
    seq: u64,
    stream_id: StreamId,
    stream_version: u32,
    #[serde(borrow)]
    ts: Cow<'a, str>,
    data: serde_json::Value,
}

/// The layout of the stream version an entry was validated against: that version's fields,
/// tags and measurement, with field keys that keep every field at one type across versions
/// ([`FieldKeys`]). A version the registry has not applied yet is waited for. A stream created
/// before versions were kept may lack its older ones: such an entry gets the current version's
/// layout, as it always did. `None` once the stream is deleted.
async fn layout_for(
    part: &Part,
    entry: &Envelope<'_>,
) -> thingtotal_common::Result<Option<Layout>> {
    let timeout = Duration::from_secs(5);
    let registry = &part.registry;
    let stream = match registry
        .lookup_version(entry.stream_id, entry.stream_version, timeout)
        .await?
    {
        Some(s) => s,
        None => match registry.get(entry.stream_id) {
            Some(current) => {
                warn!(
                    stream = entry.stream_id,
                    version = entry.stream_version,
                    current = current.version,
                    "this version of the stream is not kept; writing with the current one's layout"
                );
                current
            }
            None => return Ok(None),
        },
    };
    let versions = registry.versions(entry.stream_id);
    let keys = FieldKeys::of(versions.iter().map(|v| &**v));
    Ok(Some(Layout::of(&stream, &keys)))
}

/// Parsed `entries.valid` records: the envelope, or why it could not be read.
fn parse(c: &Consumed) -> Result<Envelope<'_>, String> {
    let e: Envelope<'_> = serde_json::from_slice(c.value.as_deref().unwrap_or_default())
        .map_err(|e| e.to_string())?;
    uuid::Uuid::try_parse(&e.entry_id)
        .map_err(|_| format!("entry_id {:?} is not a UUID", e.entry_id))?;
    if envelope_micros(&e.ts).is_none() {
        return Err(format!("ts {:?} is not RFC 3339", e.ts));
    }
    Ok(e)
}

/// A dead letter for a point InfluxDB rejected: the valid envelope unchanged, plus the reason,
/// at most `max_bytes`.
fn dead_letter(
    c: &Consumed,
    message: String,
    stream_version: Option<u32>,
    max_bytes: usize,
) -> Record {
    Reason {
        stage: Stage::SinkInflux,
        kind: Kind::SinkRejected,
        violations: vec![Violation {
            instance_path: String::new(),
            schema_path: String::new(),
            keyword: "influxdb".into(),
            message: message.clone(),
        }],
        message,
        stream_version,
    }
    .dead_letter(c.clone(), max_bytes)
}

/// The InfluxDB writer's settings.
#[derive(Debug, Clone)]
pub struct InfluxSettings {
    /// Where to write.
    pub target: InfluxTarget,
    /// The consumer group.
    pub group: String,
    /// Most points in one write.
    pub batch_max: usize,
    /// Longest wait to fill a batch.
    pub linger: Duration,
}

/// Consumes `entries.valid` into InfluxDB until `shutdown`; the batch in flight is written and
/// committed first.
pub(crate) async fn run(
    part: Part,
    settings: InfluxSettings,
    drain: Drain,
    shutdown: CancellationToken,
) -> thingtotal_common::Result<()> {
    let writer = Writer {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| thingtotal_common::Error::Config(e.to_string()))?,
        target: settings.target,
    };
    info!(group = %settings.group, "InfluxDB writer consuming");
    let driver = consumer::Settings {
        group: GroupOptions {
            group: settings.group.clone(),
            topics: vec![part.topics.valid.clone()],
            transactional: false,
            instance_id: String::new(),
        },
        batch_max: settings.batch_max.max(1),
        linger: settings.linger,
        drain,
    };
    let log = part.log.clone();
    let handler = InfluxWriter {
        part,
        writer,
        group: settings.group,
        layouts: HashMap::new(),
        body: String::new(),
        shutdown: shutdown.clone(),
    };
    consumer::run(&log, driver, handler, shutdown).await
}

/// The InfluxDB writer as a handler of the consumer driver. Points are idempotent, so a batch
/// written twice (after a failed commit, or by two members across a rebalance) rewrites the same
/// points.
struct InfluxWriter {
    part: Part,
    writer: Writer,
    group: String,
    /// Layouts by (stream, version).
    layouts: HashMap<(StreamId, u32), Arc<Layout>>,
    /// The line-protocol buffer, reused across batches.
    body: String,
    /// Cuts a write's retries short at shutdown.
    shutdown: CancellationToken,
}

impl Handler for InfluxWriter {
    async fn handle(
        &mut self,
        batch: Vec<Consumed>,
        _stopping: bool,
        _consumer: &GroupConsumer,
    ) -> thingtotal_common::Result<Handled> {
        if batch.is_empty() {
            return Ok(Handled::Commit(Commit::Nothing));
        }
        self.body.clear();
        let mut lines = Vec::with_capacity(batch.len());
        let mut line_of = Vec::with_capacity(batch.len());
        let mut dead = Vec::new();
        let max_bytes = self.part.limits.max_record_bytes();
        let letter = |c: &Consumed, message: String, version: Option<u32>| {
            dead_letter(c, message, version, max_bytes)
        };
        for (i, c) in batch.iter().enumerate() {
            let entry = match parse(c) {
                Ok(e) => e,
                Err(e) => {
                    dead.push(letter(c, format!("not a valid envelope: {e}"), None));
                    continue;
                }
            };
            let layout = match self.layouts.get(&(entry.stream_id, entry.stream_version)) {
                Some(l) => l.clone(),
                // A failed lookup fails the batch: nothing of it is written or committed.
                None => match layout_for(&self.part, &entry).await? {
                    Some(l) => {
                        let l = Arc::new(l);
                        self.layouts
                            .insert((entry.stream_id, entry.stream_version), l.clone());
                        l
                    }
                    None => {
                        dead.push(letter(
                            c,
                            "the stream was deleted before its entry reached InfluxDB".into(),
                            Some(entry.stream_version),
                        ));
                        continue;
                    }
                },
            };
            let Some(ts_ns) = envelope_micros(&entry.ts).and_then(|us| point_time(us, entry.seq))
            else {
                dead.push(letter(
                    c,
                    format!("ts {} is outside InfluxDB's time range", entry.ts),
                    Some(entry.stream_version),
                ));
                continue;
            };
            let start = self.body.len();
            layout.write(
                &mut self.body,
                &entry.data,
                entry.seq,
                &entry.entry_id,
                ts_ns,
            );
            lines.push(start..self.body.len());
            line_of.push(i);
        }
        let Ok(rejected) = self.writer.write(&self.body, &lines, &self.shutdown).await else {
            // Shut down mid-retry: nothing is committed, so the batch is written again next time.
            return Ok(Handled::Interrupted);
        };
        for (line, message) in rejected {
            let c = &batch[line_of[line]];
            let version = parse(c).ok().map(|e| e.stream_version);
            dead.push(letter(c, message, version));
        }
        if !dead.is_empty() {
            telemetry::influx_rejected(dead.len());
            // A failure here fails the batch, which is then written again: points are idempotent.
            self.part.log.append(&self.part.topics.dlq, dead).await?;
        }
        Ok(Handled::Commit(Commit::Positions(positions_after(&batch))))
    }

    fn lag_gauge(&self) -> metrics::Gauge {
        telemetry::sink_lag(&self.group)
    }
}
