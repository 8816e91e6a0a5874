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

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use thingtotal_common::envelope::dlq;
use thingtotal_common::log::{positions_after, Consumed, Drain, GroupOptions, Record};
use thingtotal_common::runtime::Runtime;
use thingtotal_common::stream::StreamId;
use thingtotal_common::time::envelope_micros;
use thingtotal_common::CancellationToken;
use tracing::{info, warn};

use crate::line_protocol::Layout;

/// Where and how to write.
#[derive(Debug, Clone)]
pub struct InfluxTarget {
    /// Base URL.
    pub url: String,
    /// Token (`user:password` on 1.8 with authentication).
    pub token: String,
    /// Organisation.
    pub org: String,
    /// Bucket (`db/rp` on 1.8).
    pub bucket: String,
}

enum WriteError {
    /// 4xx: InfluxDB refused (some of) the points; retrying the same points will not help.
    Rejected(String),
    /// 413: the batch is too large; halves will pass.
    TooLarge(String),
    /// 5xx, network, credentials or a missing bucket: retry.
    Retry(String),
}

struct Writer {
    http: reqwest::Client,
    target: InfluxTarget,
}

impl Writer {
    async fn post(&self, body: &[u8]) -> Result<(), WriteError> {
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 4),
            flate2::Compression::fast(),
        );
        gz.write_all(body)
            .map_err(|e| WriteError::Retry(e.to_string()))?;
        let gz = gz.finish().map_err(|e| WriteError::Retry(e.to_string()))?;
        let mut req = self
            .http
            .post(format!(
                "{}/api/v2/write",
                self.target.url.trim_end_matches('/')
            ))
            .query(&[
                ("org", self.target.org.as_str()),
                ("bucket", self.target.bucket.as_str()),
                ("precision", "ns"),
            ])
            .header("content-encoding", "gzip")
            .header("content-type", "text/plain; charset=utf-8")
            .body(gz);
        if !self.target.token.is_empty() {
            req = req.header("authorization", format!("Token {}", self.target.token));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| WriteError::Retry(e.to_string()))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        match status.as_u16() {
            // The points themselves: a type conflict, a partial write, a bad point.
            400 | 422 => Err(WriteError::Rejected(format!("{status}: {text}"))),
            // Too large for this server: smaller writes will pass.
            413 => Err(WriteError::TooLarge(format!("{status}: {text}"))),
            // Credentials, a missing bucket, rate limits and server errors are not the points'
            // fault: retry until the operator fixes them, and never dead-letter good points.
            _ => Err(WriteError::Retry(format!("{status}: {text}"))),
        }
    }

    /// Writes `lines` (point `i` is `body[lines[i]]`), retrying transient failures until they
    /// succeed or `shutdown`; returns the points InfluxDB rejects on their own, with its message.
    async fn write(
        &self,
        body: &str,
        lines: &[std::ops::Range<usize>],
        shutdown: &CancellationToken,
    ) -> Result<Vec<(usize, String)>, ()> {
        let mut rejected = Vec::new();
        // Ranges of points still to write; bisected on rejection.
        let mut todo = vec![(0usize, lines.len())];
        let mut backoff = Duration::from_millis(100);
        while let Some((from, to)) = todo.pop() {
            if from == to {
                continue;
            }
            let bytes = &body.as_bytes()[lines[from].start..lines[to - 1].end];
            let started = Instant::now();
            match self.post(bytes).await {
                Ok(()) => {
                    metrics::histogram!("thingtotal_sink_influx_write_seconds")
                        .record(started.elapsed().as_secs_f64());
                    metrics::counter!("thingtotal_sink_influx_points_total")
                        .increment((to - from) as u64);
                    backoff = Duration::from_millis(100);
                }
                Err(WriteError::Rejected(message) | WriteError::TooLarge(message))
                    if to - from > 1 =>
                {
                    warn!(points = to - from, %message, "InfluxDB rejected a batch; bisecting");
                    let mid = from + (to - from) / 2;
                    todo.push((mid, to));
                    todo.push((from, mid));
                }
                Err(WriteError::Rejected(message)) => rejected.push((from, message)),
                Err(WriteError::Retry(message) | WriteError::TooLarge(message)) => {
                    metrics::counter!("thingtotal_sink_influx_retries_total").increment(1);
                    warn!(%message, retry_in = ?backoff, "InfluxDB write failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Err(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    todo.push((from, to));
                }
            }
        }
        Ok(rejected)
    }
}

/// The point time: the entry's `ts` (microseconds) plus `seq mod 1000` nanoseconds. Entries of one
/// request share their receive time, and points with the same series and time overwrite each
/// other, so the nanoseconds keep such entries apart; `seq` makes it the same on every replay.
/// `None` outside what InfluxDB can store (years 1677 to 2262).
pub(crate) fn point_time(entry: &Envelope<'_>) -> Option<i64> {
    envelope_micros(&entry.ts)?
        .checked_mul(1000)?
        .checked_add((entry.seq % 1000) as i64)
}

/// An envelope of `entries.valid` as the writer reads it: the strings borrowed, the times left
/// as text (`ts` is read by [`point_time`] without chrono's general parser), `received_at`
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

/// The layout of the stream version an entry was validated against. The registry holds the
/// current version; if it is behind the entry's, it is given time to catch up. A layout is only
/// built from the version it is cached under.
async fn layout_for(
    rt: &Runtime,
    entry: &Envelope<'_>,
) -> thingtotal_common::Result<Option<Layout>> {
    let timeout = Duration::from_secs(5);
    let Some(mut stream) = rt.registry.lookup(entry.stream_id, timeout).await? else {
        return Ok(None);
    };
    if stream.version < entry.stream_version {
        rt.registry.caught_up(timeout).await?;
        match rt.registry.get(entry.stream_id) {
            Some(s) => stream = s,
            None => return Ok(None),
        }
    }
    // A newer version (the entry was validated before a change) keeps the field types of the
    // current schema: a field never changes type in InfluxDB, whatever the entry's version.
    Ok(Some(Layout::of(&stream)))
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

/// A dead letter for a point InfluxDB rejected: the valid envelope unchanged, plus the reason.
fn dead_letter(c: &Consumed, message: &str, stream_version: Option<u32>) -> Record {
    let mut headers = c.headers.clone();
    let mut add = |k: &str, v: String| headers.push((k.to_owned(), Bytes::from(v)));
    add(dlq::TOPIC, c.topic.clone());
    add(dlq::PARTITION, c.partition.to_string());
    add(dlq::OFFSET, c.offset.to_string());
    add(dlq::STAGE, "SINK_INFLUX".into());
    add(dlq::CLASS, "sink_rejected".into());
    add(dlq::MESSAGE, message.to_owned());
    add(dlq::KIND, "sink_rejected".into());
    if let Some(v) = stream_version {
        add(dlq::STREAM_VERSION, v.to_string());
    }
    add(
        dlq::DETAILS,
        serde_json::json!([{"instance_path": "", "schema_path": "", "keyword": "influxdb", "message": message}]).to_string(),
    );
    Record {
        key: c.key.clone(),
        value: c.value.clone(),
        headers,
        timestamp_ms: Some(c.timestamp_ms),
    }
}

/// Consumes `entries.valid` into InfluxDB until `shutdown`; the batch in flight is written and
/// committed first.
pub(crate) async fn run(
    rt: Runtime,
    target: InfluxTarget,
    group: String,
    batch_max: usize,
    linger: Duration,
    mut drain: Drain,
    shutdown: CancellationToken,
) -> thingtotal_common::Result<()> {
    let mut consumer = rt
        .log
        .consumer(GroupOptions {
            group: group.clone(),
            topics: vec![rt.topics.valid.clone()],
            transactional: false,
            instance_id: String::new(),
        })
        .await?;
    let writer = Writer {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| thingtotal_common::Error::Config(e.to_string()))?,
        target,
    };
    info!(%group, "InfluxDB writer consuming");
    let mut layouts: HashMap<(StreamId, u32), Arc<Layout>> = HashMap::new();
    let mut body = String::new();
    let mut last_lag = Instant::now();
    loop {
        // Never cancelled half-way: a dropped poll would lose the records it had fetched. After
        // shutdown the linger is short, so that draining does not wait for full batches.
        let wait = if shutdown.is_cancelled() {
            Duration::from_millis(100)
        } else {
            linger
        };
        let polled = consumer.poll(batch_max, wait).await;
        // Points are idempotent and a commit of a lost partition fails into a rewind: nothing
        // else to do on a rebalance.
        let _ = consumer.take_rebalances();
        let batch = match polled {
            Ok(b) if b.is_empty() => {
                if drain
                    .done(&shutdown, &consumer, &rt.log, &rt.topics.valid, true)
                    .await
                {
                    break;
                }
                continue;
            }
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "polling entries.valid failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        body.clear();
        let mut lines = Vec::with_capacity(batch.len());
        let mut line_of = Vec::with_capacity(batch.len());
        let mut dead = Vec::new();
        let mut lookup_failed = None;
        for (i, c) in batch.iter().enumerate() {
            let entry = match parse(c) {
                Ok(e) => e,
                Err(e) => {
                    dead.push(dead_letter(c, &format!("not a valid envelope: {e}"), None));
                    continue;
                }
            };
            let layout = match layouts.get(&(entry.stream_id, entry.stream_version)) {
                Some(l) => l.clone(),
                None => match layout_for(&rt, &entry).await {
                    Ok(Some(l)) => {
                        let l = Arc::new(l);
                        layouts.insert((entry.stream_id, entry.stream_version), l.clone());
                        l
                    }
                    Ok(None) => {
                        dead.push(dead_letter(
                            c,
                            "the stream was deleted before its entry reached InfluxDB",
                            Some(entry.stream_version),
                        ));
                        continue;
                    }
                    Err(e) => {
                        lookup_failed = Some(e);
                        break;
                    }
                },
            };
            let start = body.len();
            let Some(ts_ns) = point_time(&entry) else {
                dead.push(dead_letter(
                    c,
                    &format!("ts {} is outside InfluxDB's time range", entry.ts),
                    Some(entry.stream_version),
                ));
                continue;
            };
            layout.write(&mut body, &entry.data, entry.seq, &entry.entry_id, ts_ns);
            lines.push(start..body.len());
            line_of.push(i);
        }
        if let Some(e) = lookup_failed {
            // The registry did not answer: nothing of this batch is written or committed.
            warn!(error = %e, "looking up a stream failed; the batch will be read again");
            if consumer.rewind_until_done(&shutdown).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let Ok(rejected) = writer.write(&body, &lines, &shutdown).await else {
            // Shut down mid-retry: nothing is committed, so the batch is written again next time.
            break;
        };
        for (line, message) in rejected {
            let c = &batch[line_of[line]];
            let version = parse(c).ok().map(|e| e.stream_version);
            dead.push(dead_letter(c, &message, version));
        }
        if !dead.is_empty() {
            metrics::counter!("thingtotal_sink_influx_rejected_total").increment(dead.len() as u64);
            if let Err(e) = rt.log.append(&rt.topics.dlq, dead).await {
                warn!(error = %e, "writing dead letters failed; the batch will be written again");
                if consumer.rewind_until_done(&shutdown).await.is_err() {
                    break;
                }
                continue;
            }
        }
        if let Err(e) = consumer.commit(&positions_after(&batch)).await {
            // Points are idempotent: the rewound batch rewrites the same points.
            warn!(error = %e, "commit failed; rewinding");
            if consumer.rewind_until_done(&shutdown).await.is_err() {
                break;
            }
        }
        if drain
            .done(&shutdown, &consumer, &rt.log, &rt.topics.valid, false)
            .await
        {
            break;
        }
        crate::publish_lag(&rt, &consumer, &group, &mut last_lag).await;
    }
    info!("InfluxDB writer stopped");
    Ok(())
}
