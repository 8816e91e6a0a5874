//! The api's metrics, each described once and recorded through a named event.

use std::time::Duration;

use metrics::Unit;

const REQUESTS: &str = "thingtotal_api_requests_total";
const LATENCY: &str = "thingtotal_api_request_seconds";
const DEAD_LETTER_READERS: &str = "thingtotal_api_dead_letter_readers_opened_total";

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
