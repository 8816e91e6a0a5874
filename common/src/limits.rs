//! How large a record may be, derived from one flag (`--max-entry-bytes`) so that every link of
//! the chain agrees: ingest refuses an entry that the log would refuse, the producers take what
//! the validator and the sink make of any entry that ingest accepted (an envelope, a dead
//! letter), and the topics take what the producers send.

use crate::log::Record;

/// The default of `--max-entry-bytes`: 960 KiB, so that an entry plus the [`HEADROOM`] stays
/// under the brokers' default limit (1,048,588 bytes): topics made before their limit was set at
/// creation take whatever the producers send.
pub const DEFAULT_MAX_ENTRY_BYTES: u64 = 960 * 1024;

/// What the parts may add to an entry: the validator's envelope (about 200 bytes) and a dead
/// letter's headers (bounded by [`crate::dead_letter`] to about 20 KiB).
pub const HEADROOM: usize = 32 * 1024;

/// What a topic takes beyond the largest record: the record batch's own framing.
pub const BATCH_FRAMING: usize = 1024;

/// The size limits of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimits {
    /// The largest raw entry, as [`Record::wire_size`] counts it.
    pub max_entry_bytes: usize,
}

impl Default for SizeLimits {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_ENTRY_BYTES)
    }
}

impl SizeLimits {
    /// The limits for entries of at most `max_entry_bytes`.
    pub fn new(max_entry_bytes: u64) -> Self {
        Self {
            max_entry_bytes: usize::try_from(max_entry_bytes).unwrap_or(usize::MAX),
        }
    }

    /// Whether ingest may append `record` as a raw entry.
    pub fn entry_fits(self, record: &Record) -> bool {
        record.wire_size() <= self.max_entry_bytes
    }

    /// The largest record any part produces: the producers' `message.max.bytes`, and the bound
    /// every envelope and dead letter is kept within.
    pub fn max_record_bytes(self) -> usize {
        self.max_entry_bytes.saturating_add(HEADROOM)
    }

    /// The entry topics' `max.message.bytes`, set when a part creates them.
    pub fn max_topic_message_bytes(self) -> usize {
        self.max_record_bytes().saturating_add(BATCH_FRAMING)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_fit_the_brokers_default() {
        let l = SizeLimits::default();
        assert_eq!(l.max_entry_bytes, 983_040);
        assert!(l.max_record_bytes() <= 1_048_588 - BATCH_FRAMING);
        assert!(l.max_topic_message_bytes() <= 1_048_588);
        assert!(
            l.max_entry_bytes < 1_000_001,
            "a 1,000,001-byte entry is refused"
        );
    }
}
