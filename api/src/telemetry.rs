//! The api's metrics, each described once and recorded through a named event.

use std::time::Duration;

use metrics::Unit;

const REQUESTS: &str = "thingtotal_api_requests_total";
const LATENCY: &str = "thingtotal_api_request_seconds";
const DEAD_LETTER_READERS: &str = "thingtotal_api_dead_letter_readers_opened_total";
const SCHEMA_CHANGES: &str = "thingtotal_api_stream_changes_total";
const BREAKING_REFUSED: &str = "thingtotal_api_breaking_changes_refused_total";

/// Describes the api's metrics to the recorder.
pub(crate) fn describe() {
    metrics::describe_counter!(
        REQUESTS,
        Unit::Count,
        "API requests answered, by route and HTTP status"
    );
    metrics::describe_histogram!(
        LATENCY,
        Unit::Seconds,
        "Time to answer an API request once its body was read, by route"
    );
    metrics::describe_counter!(
        DEAD_LETTER_READERS,
        Unit::Count,
        "Readers of the dead-letter topic opened for searches of rejected entries"
    );
    metrics::describe_counter!(
        SCHEMA_CHANGES,
        Unit::Count,
        "Stream definitions changed, by whether the change was breaking (accepted with force=true)"
    );
    metrics::describe_counter!(
        BREAKING_REFUSED,
        Unit::Count,
        "Breaking changes of a stream's definition refused with 409 (no force=true)"
    );
}

/// A stream's definition changed; `breaking` if it was accepted with `force=true`.
pub(crate) fn schema_changed(breaking: bool) {
    metrics::counter!(SCHEMA_CHANGES, "breaking" => breaking.to_string()).increment(1);
}

/// A breaking change was refused.
pub(crate) fn breaking_change_refused() {
    metrics::counter!(BREAKING_REFUSED).increment(1);
}

/// A search of rejected entries found no idle reader and opened one.
pub(crate) fn dead_letter_reader_opened() {
    metrics::counter!(DEAD_LETTER_READERS).increment(1);
}

/// A request on `route` was answered with `status` after `took`.
pub(crate) fn request_answered(route: &'static str, status: u16, took: Duration) {
    metrics::counter!(REQUESTS, "route" => route, "status" => status.to_string()).increment(1);
    metrics::histogram!(LATENCY, "route" => route).record(took.as_secs_f64());
}
