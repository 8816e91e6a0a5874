//! The stream registry: every part's live, in-memory view of the compacted `streams` topic.
//!
//! A background task tails the topic from its beginning and applies each record in order; a
//! tombstone removes the stream. Reads never wait. A part that meets an id it has not seen waits
//! for the registry to catch up to the topic's end before it decides the stream does not exist,
//! and the api waits for its own write to be applied before it answers (read-your-writes).
//!
//! The topic also keeps every version of each stream, under `<id>/<version>`
//! ([`RecordKey`]), so that an entry validated against an older version is stored with that
//! version's types and columns. A stream's tombstone removes its versions from the registry; the
//! api writes a tombstone for each of them too, so that compaction drops them from the topic.
//!
//! Anyone can send an unknown id, so asking the log for the topic's end must not cost a request
//! per lookup. One request is in flight at a time, and every lookup that arrived before it was
//! sent takes its answer: however many unknown ids arrive at once, a part sends the log at most
//! one request per round trip, and a lookup never decides on an end learnt before it arrived.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::log::{Consumed, Log};
use crate::stream::{RecordKey, StreamId, StreamRecord};
use crate::{Error, Result};

#[derive(Debug, Default)]
struct Streams {
    by_id: HashMap<StreamId, Arc<StreamRecord>>,
    /// Write key hash → stream, for ThingSpeak's `/update`, whose key is all it names.
    by_write_key: HashMap<String, StreamId>,
    /// Every version kept of each stream, the current one included.
    versions: HashMap<StreamId, BTreeMap<u32, Arc<StreamRecord>>>,
}

impl Streams {
    fn remove(&mut self, id: StreamId) {
        if let Some(old) = self.by_id.remove(&id) {
            self.by_write_key.remove(&old.write_key_sha256);
        }
        self.versions.remove(&id);
    }

    fn insert(&mut self, s: StreamRecord) {
        if let Some(old) = self.by_id.remove(&s.id) {
            self.by_write_key.remove(&old.write_key_sha256);
        }
        self.by_write_key.insert(s.write_key_sha256.clone(), s.id);
        let s = Arc::new(s);
        self.versions
            .entry(s.id)
            .or_default()
            .insert(s.version, s.clone());
        self.by_id.insert(s.id, s);
    }

    fn apply(&mut self, key: RecordKey, value: Option<&[u8]>, offset: i64) {
        let parsed = value.map(serde_json::from_slice::<StreamRecord>);
        match (key, parsed) {
            (RecordKey::Stream(id), None) => self.remove(id),
            (RecordKey::Version(id, v), None) => {
                if let Some(versions) = self.versions.get_mut(&id) {
                    versions.remove(&v);
                }
            }
            (_, Some(Err(e))) => warn!(offset, error = %e, "registry: bad stream record"),
            (RecordKey::Stream(id), Some(Ok(s))) if s.id == id => self.insert(s),
            (RecordKey::Version(id, v), Some(Ok(s))) if s.id == id && s.version == v => {
                self.versions.entry(id).or_default().insert(v, Arc::new(s));
            }
            (key, Some(Ok(s))) => warn!(
                offset,
                ?key,
                id = s.id,
                version = s.version,
                "registry: the key does not name the record's stream and version"
            ),
        }
    }
}

/// The live map of streams.
#[derive(Debug)]
pub struct Registry {
    log: Log,
    topic: String,
    streams: RwLock<Streams>,
    /// The offset of the next record to apply.
    applied: watch::Sender<i64>,
    /// How many requests for the topic's end were sent, counting the one in flight.
    probes_sent: AtomicU64,
    /// The last answer to one: (its number, the end), if it succeeded. Held while one is in
    /// flight, so that lookups queue behind it.
    probe: tokio::sync::Mutex<Option<(u64, i64)>>,
}

impl Registry {
    /// Starts tailing `topic` and waits until the registry has caught up with it.
    pub async fn start(
        log: Log,
        topic: &str,
        shutdown: CancellationToken,
        timeout: Duration,
    ) -> Result<Arc<Self>> {
        let (applied, _) = watch::channel(0);
        let registry = Arc::new(Self {
            log: log.clone(),
            topic: topic.to_owned(),
            streams: RwLock::new(Streams::default()),
            applied,
            probes_sent: AtomicU64::new(0),
            probe: tokio::sync::Mutex::new(None),
        });
        let mut reader = log.reader(topic, 0, 0).await?;
        let r = registry.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    batch = reader.read(1000, Duration::from_millis(500)) => match batch {
                        Ok(batch) => r.apply(batch),
                        Err(_) if shutdown.is_cancelled() => return,
                        Err(e) => {
                            warn!(error = %e, "registry: reading the streams topic failed");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
        });
        registry.caught_up(timeout).await?;
        Ok(registry)
    }

    fn apply(&self, batch: Vec<Consumed>) {
        let Some(last) = batch.last().map(|c| c.offset) else {
            return;
        };
        {
            let mut streams = self.streams.write().expect("registry lock");
            for c in batch {
                match c.key.as_deref().and_then(RecordKey::parse) {
                    Some(key) => streams.apply(key, c.value.as_deref(), c.offset),
                    None => warn!(
                        offset = c.offset,
                        "registry: skipping a record without a stream id"
                    ),
                }
            }
        }
        debug!(offset = last, "registry applied");
        self.applied.send_replace(last + 1);
    }

    /// The stream with this id, as the registry knows it now.
    pub fn get(&self, id: StreamId) -> Option<Arc<StreamRecord>> {
        self.streams
            .read()
            .expect("registry lock")
            .by_id
            .get(&id)
            .cloned()
    }

    /// Version `version` of the stream with this id, as the registry knows it now: the current
    /// record, or one kept from before a change.
    pub fn version(&self, id: StreamId, version: u32) -> Option<Arc<StreamRecord>> {
        self.streams
            .read()
            .expect("registry lock")
            .versions
            .get(&id)?
            .get(&version)
            .cloned()
    }

    /// Every version kept of the stream with this id, oldest first; empty once it is deleted.
    /// Streams created before versions were kept start at the version current then.
    pub fn versions(&self, id: StreamId) -> Vec<Arc<StreamRecord>> {
        let streams = self.streams.read().expect("registry lock");
        if !streams.by_id.contains_key(&id) {
            return vec![];
        }
        streams
            .versions
            .get(&id)
            .map(|v| v.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Version `version` of the stream with this id; if unknown, first waits (up to `timeout`)
    /// for the registry to catch up with the topic, as [`Registry::lookup`] does.
    pub async fn lookup_version(
        &self,
        id: StreamId,
        version: u32,
        timeout: Duration,
    ) -> Result<Option<Arc<StreamRecord>>> {
        if let Some(s) = self.version(id, version) {
            return Ok(Some(s));
        }
        self.caught_up(timeout).await?;
        Ok(self.version(id, version))
    }

    /// The stream whose write key hashes to `hash` (hex SHA-256).
    pub fn by_write_key_hash(&self, hash: &str) -> Option<Arc<StreamRecord>> {
        let streams = self.streams.read().expect("registry lock");
        streams
            .by_write_key
            .get(hash)
            .and_then(|id| streams.by_id.get(id))
            .cloned()
    }

    /// Every stream, ordered by id.
    pub fn list(&self) -> Vec<Arc<StreamRecord>> {
        let mut all: Vec<_> = self
            .streams
            .read()
            .expect("registry lock")
            .by_id
            .values()
            .cloned()
            .collect();
        all.sort_by_key(|s| s.id);
        all
    }

    /// The stream with this id; if unknown, first waits (up to `timeout`) for the registry to
    /// catch up with the topic, so that a stream created a moment ago is found.
    pub async fn lookup(
        &self,
        id: StreamId,
        timeout: Duration,
    ) -> Result<Option<Arc<StreamRecord>>> {
        if let Some(s) = self.get(id) {
            return Ok(Some(s));
        }
        self.caught_up(timeout).await?;
        Ok(self.get(id))
    }

    /// How many requests for the topic's end this registry has sent.
    pub fn end_requests(&self) -> u64 {
        self.probes_sent.load(Ordering::Acquire)
    }

    /// Waits until every record that is in the topic now has been applied.
    pub async fn caught_up(&self, timeout: Duration) -> Result<()> {
        let end = tokio::time::timeout(timeout, self.end())
            .await
            .map_err(|_| Error::Timeout {
                what: "the streams topic's end offset",
                after: timeout,
            })??;
        self.applied_through(end - 1, timeout).await
    }

    /// The topic's end, from a request sent after this call began: its own, or one that
    /// another lookup sent meanwhile (see the module's documentation).
    async fn end(&self) -> Result<i64> {
        let arrived = self.probes_sent.load(Ordering::Acquire);
        let mut last = self.probe.lock().await;
        if let Some((n, end)) = *last {
            if n > arrived {
                return Ok(end);
            }
        }
        let n = self.probes_sent.fetch_add(1, Ordering::AcqRel) + 1;
        crate::telemetry::registry_asked_for_end();
        *last = None;
        let end = self
            .log
            .end_offsets(&self.topic)
            .await?
            .first()
            .copied()
            .unwrap_or(0);
        *last = Some((n, end));
        Ok(end)
    }

    /// Waits until the record at `offset` has been applied (read-your-writes).
    pub async fn applied_through(&self, offset: i64, timeout: Duration) -> Result<()> {
        let mut rx = self.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|next| *next > offset))
            .await
            .map_err(|_| Error::Timeout {
                what: "the stream registry catching up",
                after: timeout,
            })?
            .map_err(|_| Error::Closed)?;
        Ok(())
    }
}
