//! Topic names, derived from the configured prefix.

use crate::limits::SizeLimits;
use crate::log::TopicSpec;

/// The four topics of a ThingTotal deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// The prefix; also the start of the consumer groups' default names.
    pub prefix: String,
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
            prefix: prefix.to_owned(),
            streams: format!("{prefix}.streams"),
            raw: format!("{prefix}.entries.raw"),
            valid: format!("{prefix}.entries.valid"),
            dlq: format!("{prefix}.entries.dlq"),
        }
    }

    /// The default name of a part's consumer group: `thingtotal-validator` with the default
    /// prefix, and a group of its own for every prefix, so that deployments sharing a cluster
    /// never share a group.
    pub fn group(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// What to create at start-up: the entry topics get `partitions`, take the largest record
    /// any part produces under `limits` and keep records for `retention_ms` (if set); the
    /// streams topic is compacted with a single partition so that every reader sees one total
    /// order of changes, and kept whole. With three replicas or more, `acks=all` waits for two.
    pub fn specs(
        &self,
        partitions: i32,
        replication: i32,
        limits: SizeLimits,
        retention_ms: Option<i64>,
    ) -> Vec<TopicSpec> {
        let min_insync_replicas = (replication >= 3).then_some(2);
        let entry = |name: &str| TopicSpec {
            name: name.to_owned(),
            partitions,
            replication,
            compacted: false,
            max_message_bytes: Some(limits.max_topic_message_bytes()),
            retention_ms,
            min_insync_replicas,
        };
        vec![
            TopicSpec {
                name: self.streams.clone(),
                partitions: 1,
                replication,
                compacted: true,
                max_message_bytes: None,
                retention_ms: None,
                min_insync_replicas,
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
        assert_eq!(
            Topics::new("thingtotal").group("validator"),
            "thingtotal-validator"
        );
        let limits = SizeLimits::new(1000);
        let specs = t.specs(6, 3, limits, Some(3_600_000));
        assert_eq!(specs[0].partitions, 1);
        assert!(specs[0].compacted);
        assert!(specs[1..].iter().all(|s| s.partitions == 6 && !s.compacted));
        assert!(specs[1..]
            .iter()
            .all(|s| s.max_message_bytes == Some(limits.max_topic_message_bytes())));
        assert!(specs[1..].iter().all(|s| s.retention_ms == Some(3_600_000)));
        assert_eq!(specs[0].retention_ms, None, "stream records are kept whole");
        assert!(specs.iter().all(|s| s.min_insync_replicas == Some(2)));
        let single = t.specs(6, 1, limits, None);
        assert!(single.iter().all(|s| s.min_insync_replicas.is_none()));
    }
}
