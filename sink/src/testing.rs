//! What the sink's unit tests share: a stream and its valid entries as the archiver reads them.

use thingtotal_common::envelope::ValidEntry;
use thingtotal_common::log::Consumed;
use thingtotal_common::stream::StreamRecord;

/// The topic the tests' files are named after.
pub(crate) const TOPIC: &str = "t.entries.valid";

/// Stream 7, version 1, with one number property `t`.
pub(crate) fn stream() -> StreamRecord {
    serde_json::from_value(serde_json::json!({
        "id": 7, "name": "s", "version": 1,
        "schema": {"type": "object", "properties": {"t": {"type": "number"}}},
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
        "write_key_sha256": "", "read_key_sha256": ""
    }))
    .unwrap()
}

/// The envelope of the entry of stream 7 at `offset` of `entries.valid`: seq `offset + 1`, on
/// 1970-01-01, `t` the offset.
pub(crate) fn envelope(offset: i64) -> bytes::Bytes {
    let entry = ValidEntry {
        entry_id: uuid::Uuid::now_v7(),
        seq: offset as u64 + 1,
        stream_id: 7,
        stream_version: 1,
        ts: chrono::DateTime::UNIX_EPOCH,
        received_at: chrono::DateTime::UNIX_EPOCH,
        data: serde_json::json!({"t": offset as f64}),
    };
    serde_json::to_vec(&entry).unwrap().into()
}

/// The record at `offset` of partition 0, holding [`envelope`].
pub(crate) fn consumed(offset: i64) -> Consumed {
    Consumed {
        topic: TOPIC.to_owned(),
        partition: 0,
        offset,
        timestamp_ms: 0,
        key: None,
        value: Some(envelope(offset)),
        headers: Vec::new(),
    }
}
