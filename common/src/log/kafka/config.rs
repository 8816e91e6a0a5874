//! The producer settings every Kafka producer of the product uses.

use rdkafka::config::ClientConfig;
use tracing::warn;

use crate::limits::SizeLimits;

/// Producer settings the delivery contract relies on: an entry is acknowledged only once every
/// in-sync replica has it, retries never duplicate it, and a stream's entries share a partition
/// (the embedded log hashes keys the same way). A `--kafka-option` cannot change them.
pub(super) const PRODUCER_REQUIRED: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("partitioner", "murmur2_random"),
];

/// Producer settings a `--kafka-option` may tune.
pub(super) const PRODUCER_DEFAULTS: &[(&str, &str)] =
    &[("linger.ms", "5"), ("compression.type", "lz4")];

/// Sets each default that the user's options did not set.
pub(super) fn with_defaults(mut c: ClientConfig, defaults: &[(&str, &str)]) -> ClientConfig {
    for (k, v) in defaults {
        if c.get(k).is_none() {
            c.set(*k, *v);
        }
    }
    c
}

/// The configuration of the producer that serves a process's appends: `user` (the connection
/// and the user's options) over the defaults, then the settings the delivery contract relies on
/// over both, and `message.max.bytes` from `limits`. The benchmarks' baselines produce with it
/// too, so that they write as the product does.
pub fn producer_config(user: ClientConfig, limits: SizeLimits) -> ClientConfig {
    tuned_producer_config(user, &[("message.timeout.ms", "30000")], limits)
}

/// The configuration of a transactional group consumer's producer, as
/// [`producer_config`] but for the transaction timeout, and without its `transactional.id`.
pub fn transactional_producer_config(user: ClientConfig, limits: SizeLimits) -> ClientConfig {
    // librdkafka keeps the message timeout within the transaction timeout when none is set.
    tuned_producer_config(user, &[("transaction.timeout.ms", "10000")], limits)
}

/// A producer's configuration: the user's options over the defaults, then the required
/// settings (and `message.max.bytes`, which follows `--max-entry-bytes` so that the whole chain
/// agrees) over both, with a warning for each option of the user's that is overridden.
fn tuned_producer_config(
    user: ClientConfig,
    defaults: &[(&str, &str)],
    limits: SizeLimits,
) -> ClientConfig {
    let max = limits.max_record_bytes().to_string();
    let derived = [("message.max.bytes", max.as_str())];
    let mut c = with_defaults(user, &[PRODUCER_DEFAULTS, defaults].concat());
    for (k, v) in PRODUCER_REQUIRED.iter().chain(&derived) {
        if let Some(set) = c.get(k).filter(|set| set != v) {
            warn!(
                option = k,
                set,
                used = v,
                "ignoring a Kafka option that the delivery guarantees or --max-entry-bytes set"
            );
        }
        c.set(*k, *v);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_tune_the_producer_but_never_its_guarantees() {
        let mut user = ClientConfig::new();
        user.set("acks", "1")
            .set("enable.idempotence", "false")
            .set("linger.ms", "50")
            .set("message.max.bytes", "5000000");
        let c = producer_config(user, SizeLimits::new(1_000_000));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(
            c.get("message.max.bytes"),
            Some(
                SizeLimits::new(1_000_000)
                    .max_record_bytes()
                    .to_string()
                    .as_str()
            )
        );
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("partitioner"), Some("murmur2_random"));
        assert_eq!(c.get("linger.ms"), Some("50"));
        assert_eq!(c.get("compression.type"), Some("lz4"));
        assert_eq!(c.get("message.timeout.ms"), Some("30000"));
    }
}
