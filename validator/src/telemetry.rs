//! The validator's metrics, each described once and recorded through a named event.

use std::collections::HashMap;
use std::time::Duration;

use metrics::Unit;

const ENTRIES: &str = "thingtotal_validator_entries_total";
const TRANSACTION: &str = "thingtotal_validator_transaction_seconds";
const BATCH: &str = "thingtotal_validator_batch_size";
const LAG: &str = "thingtotal_validator_lag";

/// Describes the validator's metrics to the recorder.
pub(crate) fn describe() {
    metrics::describe_counter!(
        ENTRIES,
        Unit::Count,
        "Raw entries judged and committed, by outcome (valid, or the dead-letter kind)"
    );
    metrics::describe_histogram!(
        TRANSACTION,
        Unit::Seconds,
        "Time from a batch's judgement to its committed transaction"
    );
    metrics::describe_histogram!(BATCH, Unit::Count, "Entries per committed batch");
    metrics::describe_gauge!(
        LAG,
        Unit::Count,
        "Records of entries.raw the validator group has not committed"
    );
}

/// A batch's outputs and offsets were committed.
pub(crate) fn batch_committed(took: Duration, size: usize, outcomes: HashMap<&'static str, u64>) {
    metrics::histogram!(TRANSACTION).record(took.as_secs_f64());
    metrics::histogram!(BATCH).record(size as f64);
    for (outcome, n) in outcomes {
        metrics::counter!(ENTRIES, "outcome" => outcome).increment(n);
    }
}

/// The validator group's lag gauge.
pub(crate) fn lag() -> metrics::Gauge {
    metrics::gauge!(LAG)
}
