//! One InfluxDB write: gzipped line protocol to `/api/v2/write`, retried until it succeeds, with
//! the points InfluxDB refuses on their own found by bisecting.

use std::io::Write;
use std::time::{Duration, Instant};

use thingtotal_common::CancellationToken;
use tracing::warn;

use crate::telemetry;

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

pub(super) struct Writer {
    pub(super) http: reqwest::Client,
    pub(super) target: InfluxTarget,
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
    pub(super) async fn write(
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
                    telemetry::influx_written(to - from, started.elapsed());
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
                    telemetry::influx_retry();
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
