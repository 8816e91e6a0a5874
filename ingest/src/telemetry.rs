//! The ingest edge's metrics, each described once and recorded through a named event.

use std::time::Duration;

use metrics::Unit;

const REQUESTS: &str = "thingtotal_ingest_requests_total";
const ACK: &str = "thingtotal_ingest_ack_seconds";
const ACCEPTED: &str = "thingtotal_ingest_entries_accepted_total";

/// Describes the ingest edge's metrics to the recorder.
pub(crate) fn describe() {
    metrics::describe_counter!(
        REQUESTS,
        Unit::Count,
        "Write requests answered, by route and HTTP status"
    );
    metrics::describe_histogram!(
        ACK,
        Unit::Seconds,
        "Time from appending a request's entries to the log's acknowledgement (or the deadline)"
    );
    metrics::describe_counter!(
        ACCEPTED,
        Unit::Count,
        "Entries the log acknowledged, by source (http, thingspeak)"
    );
}

/// A write request on `route` was answered with `status`.
pub(crate) fn request_answered(route: &'static str, status: u16) {
    metrics::counter!(REQUESTS, "route" => route, "status" => status.to_string()).increment(1);
}

/// The log answered an append (or the deadline passed) after `took`.
pub(crate) fn append_answered(took: Duration) {
    metrics::histogram!(ACK).record(took.as_secs_f64());
}

/// The log acknowledged `n` entries that came from `source`.
pub(crate) fn entries_accepted(source: &'static str, n: usize) {
    metrics::counter!(ACCEPTED, "source" => source).increment(n as u64);
}
