//! Authenticating a write and appending its entries to `entries.raw`: shared by the native
//! endpoint and the ThingSpeak-compatible ones, which differ only in how they answer.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use thingtotal_common::envelope::{self, format_time};
use thingtotal_common::keys;
use thingtotal_common::log::Record;
use thingtotal_common::problem::Incident;
use thingtotal_common::stream::{StreamId, StreamRecord};
use uuid::Uuid;

use crate::{telemetry, Ingest};

/// Why a write was refused before anything was appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// No write key was sent.
    NoKey,
    /// The key is not this stream's write key.
    WrongKey,
    /// No such stream, even after the registry caught up.
    UnknownStream,
    /// The registry or the log did not answer in time (or failed); nothing is reported as
    /// accepted. The cause is logged; the answer carries the reason and the request id.
    Unavailable(Incident),
    /// Entry `index` (from 0) is `size` bytes with its headers, more than the log takes
    /// (`limit`); nothing of the request was appended.
    TooLarge {
        index: usize,
        size: usize,
        limit: usize,
    },
}

/// What the log acknowledged for one request.
#[derive(Debug, Clone)]
pub(crate) struct Appended {
    /// Each entry's id, in request order.
    pub(crate) entry_ids: Vec<Uuid>,
    /// Each entry's offset in `entries.raw` plus one, in request order.
    pub(crate) seq: Vec<u64>,
    /// When the request was received.
    pub(crate) received_at: DateTime<Utc>,
}

impl Ingest {
    /// The stream `id`, if `key` is its write key.
    pub(crate) async fn writable(
        &self,
        id: StreamId,
        key: Option<&str>,
    ) -> Result<Arc<StreamRecord>, Refused> {
        let key = key.ok_or(Refused::NoKey)?;
        let stream = self
            .part
            .registry
            .lookup(id, self.limits.lookup_timeout)
            .await
            .map_err(|e| {
                Refused::Unavailable(Incident::log("the stream registry did not answer", &e))
            })?
            .ok_or(Refused::UnknownStream)?;
        if keys::matches(key, &stream.write_key_sha256) {
            Ok(stream)
        } else {
            Err(Refused::WrongKey)
        }
    }

    /// The stream whose write key is `key` (ThingSpeak's `/update` names no channel). A stream
    /// created a moment ago may not be in the registry yet, so it waits for it to catch up.
    pub(crate) async fn stream_for_key(&self, key: &str) -> Result<Arc<StreamRecord>, Refused> {
        let hash = keys::hash(key);
        if let Some(s) = self.part.registry.by_write_key_hash(&hash) {
            return Ok(s);
        }
        self.part
            .registry
            .caught_up(self.limits.lookup_timeout)
            .await
            .map_err(|e| {
                Refused::Unavailable(Incident::log("the stream registry did not answer", &e))
            })?;
        self.part
            .registry
            .by_write_key_hash(&hash)
            .ok_or(Refused::WrongKey)
    }

    /// Appends `entries` to `entries.raw` and waits, at most the configured deadline, until the
    /// log acknowledged every one of them. `device_times[i]`, if there is one, goes into entry
    /// `i`'s `tt.created_at` header. If any entry is larger than the log takes, none is
    /// appended.
    pub(crate) async fn append(
        &self,
        stream: &StreamRecord,
        entries: Vec<Bytes>,
        device_times: &[Option<DateTime<Utc>>],
        source: &'static str,
    ) -> Result<Appended, Refused> {
        let received_at = Utc::now();
        let key = stream.key();
        let source_name = source;
        let source = Bytes::from_static(source.as_bytes());
        let entry_ids: Vec<Uuid> = entries.iter().map(|_| Uuid::now_v7()).collect();
        // Each entry of a request is received one microsecond after the one before it, so that
        // entries without a time of their own keep distinct times (InfluxDB keys points by time).
        let records: Vec<Record> = entries
            .into_iter()
            .zip(&entry_ids)
            .enumerate()
            .map(|(i, (value, id))| {
                let at = received_at + chrono::Duration::microseconds(i as i64);
                let mut headers = vec![
                    (envelope::ENTRY_ID.to_owned(), Bytes::from(id.to_string())),
                    (
                        envelope::RECEIVED_AT.to_owned(),
                        Bytes::from(format_time(at)),
                    ),
                    (envelope::SOURCE.to_owned(), source.clone()),
                ];
                if let Some(Some(t)) = device_times.get(i) {
                    headers.push((
                        envelope::CREATED_AT.to_owned(),
                        Bytes::from(format_time(*t)),
                    ));
                }
                Record {
                    key: Some(key.clone()),
                    value: Some(value),
                    headers,
                    timestamp_ms: Some(at.timestamp_millis()),
                }
            })
            .collect();
        // Every entry is checked before any is appended, so that a refused request stores
        // nothing.
        let limits = self.part.limits;
        if let Some((index, r)) = records
            .iter()
            .enumerate()
            .find(|(_, r)| !limits.entry_fits(r))
        {
            return Err(Refused::TooLarge {
                index,
                size: r.wire_size(),
                limit: limits.max_entry_bytes,
            });
        }
        let n = records.len();
        let started = Instant::now();
        let appended = self
            .part
            .log
            .append_within(&self.part.topics.raw, records, self.limits.ack_timeout)
            .await;
        telemetry::append_answered(started.elapsed());
        let positions = match appended {
            Ok(p) => p,
            Err(e) => {
                return Err(Refused::Unavailable(Incident::log(
                    "the log did not acknowledge the entries",
                    &e,
                )))
            }
        };
        telemetry::entries_accepted(source_name, n);
        Ok(Appended {
            entry_ids,
            seq: positions.iter().map(|p| p.offset as u64 + 1).collect(),
            received_at,
        })
    }
}
