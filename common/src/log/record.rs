//! The records that cross the log port.

use bytes::Bytes;

/// A record to append.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// Records with the same key go to the same partition.
    pub key: Option<Bytes>,
    /// `None` is a tombstone, which removes the key from a compacted topic.
    pub value: Option<Bytes>,
    /// Header name and value pairs, in order.
    pub headers: Vec<(String, Bytes)>,
    /// Milliseconds since the epoch; the append time if `None`.
    pub timestamp_ms: Option<i64>,
}

impl Record {
    /// A record with a key and a value and nothing else.
    pub fn new(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        Self {
            key: Some(key.into()),
            value: Some(value.into()),
            ..Self::default()
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the timestamp.
    pub fn timestamp_ms(mut self, ms: i64) -> Self {
        self.timestamp_ms = Some(ms);
        self
    }

    /// The most bytes this record takes in a record batch, as librdkafka counts it against
    /// `message.max.bytes`.
    pub fn wire_size(&self) -> usize {
        wire_size(self.key.as_deref(), self.value.as_deref(), &self.headers)
    }
}

/// A record's fixed framing in a record batch, at most: length, attributes, timestamp and offset
/// deltas, and the key, value and header-count lengths, as varints of their largest size.
const RECORD_FRAMING: usize = 36;
/// A header's framing, at most: the varint lengths of its name and its value.
const HEADER_FRAMING: usize = 10;

/// The most bytes a record of this key, value and headers takes in a record batch.
pub fn wire_size(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(String, Bytes)]) -> usize {
    RECORD_FRAMING
        + key.map_or(0, <[u8]>::len)
        + value.map_or(0, <[u8]>::len)
        + headers
            .iter()
            .map(|(k, v)| HEADER_FRAMING + k.len() + v.len())
            .sum::<usize>()
}

/// A record read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    /// The topic it was read from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset within the partition.
    pub offset: i64,
    /// Milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// The key, if any.
    pub key: Option<Bytes>,
    /// The value; `None` for a tombstone.
    pub value: Option<Bytes>,
    /// The headers, in order.
    pub headers: Vec<(String, Bytes)>,
}

impl Consumed {
    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The position to commit once this record is done with: its offset plus one.
    pub fn next_position(&self) -> TopicPartitionOffset {
        TopicPartitionOffset {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset + 1,
        }
    }
}

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    /// The partition.
    pub partition: i32,
    /// The offset within the partition.
    pub offset: i64,
}

/// A group position: the next offset to read from a partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicPartitionOffset {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The next offset to read.
    pub offset: i64,
}

/// A topic to create at start-up, and what an existing one should hold to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicSpec {
    /// Its full name.
    pub name: String,
    /// How many partitions.
    pub partitions: i32,
    /// Its replication factor (Kafka only).
    pub replication: i32,
    /// Whether it is compacted (`cleanup.policy=compact`).
    pub compacted: bool,
    /// Its largest record batch (`max.message.bytes`, Kafka only); the broker's default if
    /// `None`.
    pub max_message_bytes: Option<usize>,
    /// How long records are kept (`retention.ms`, Kafka only); the broker's default if `None`.
    pub retention_ms: Option<i64>,
    /// How many replicas must hold a record before `acks=all` acknowledges it
    /// (`min.insync.replicas`, Kafka only); the broker's default if `None`.
    pub min_insync_replicas: Option<i32>,
}

/// Keeps, for each (topic, partition), the highest position seen: what a batch commits.
pub fn positions_after(records: &[Consumed]) -> Vec<TopicPartitionOffset> {
    let mut out: Vec<TopicPartitionOffset> = Vec::new();
    for r in records {
        match out
            .iter_mut()
            .find(|p| p.partition == r.partition && p.topic == r.topic)
        {
            Some(p) => p.offset = p.offset.max(r.offset + 1),
            None => out.push(r.next_position()),
        }
    }
    out
}
