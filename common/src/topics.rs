//! Topic names, derived from the configured prefix.

use crate::log::TopicSpec;

/// The four topics of a ThingTotal deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Compacted, one partition: stream records keyed by stream id.
    pub streams: String,
    /// Raw entries exactly as received, keyed by stream id.
    pub raw: String,
    /// Validated, normalised entries.
    pub valid: String,
    /// Dead letters from the validator and the sink.
    pub dlq: String,
}

impl Topics {
    /// Topic names under `prefix` (default `thingtotal`).
    pub fn new(prefix: &str) -> Self {
        Self {
            streams: format!("{prefix}.streams"),
            raw: format!("{prefix}.entries.raw"),
            valid: format!("{prefix}.entries.valid"),
            dlq: format!("{prefix}.entries.dlq"),
        }
    }

    /// What to create at start-up: the entry topics get `partitions`, the streams topic is
    /// compacted with a single partition so that every reader sees one total order of changes.
    pub fn specs(&self, partitions: i32, replication: i32) -> Vec<TopicSpec> {
        let entry = |name: &str| TopicSpec {
            name: name.to_owned(),
            partitions,
            replication,
            compacted: false,
        };
        vec![
            TopicSpec {
                name: self.streams.clone(),
                partitions: 1,
                replication,
                compacted: true,
            },
            entry(&self.raw),
            entry(&self.valid),
            entry(&self.dlq),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let t = Topics::new("acme");
        assert_eq!(t.streams, "acme.streams");
        assert_eq!(t.raw, "acme.entries.raw");
        assert_eq!(t.valid, "acme.entries.valid");
        assert_eq!(t.dlq, "acme.entries.dlq");
        let specs = t.specs(6, 3);
        assert_eq!(specs[0].partitions, 1);
        assert!(specs[0].compacted);
        assert!(specs[1..].iter().all(|s| s.partitions == 6 && !s.compacted));
    }
}
