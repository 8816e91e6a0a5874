//! Logs and metrics. Every part logs through `tracing` and records metrics through `metrics`,
//! exported in Prometheus' text format on `GET /metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global tracing subscriber. `RUST_LOG` sets the filter (default `info`).
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn,librdkafka=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Tests start several parts in one process; only the first install can win.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

const REGISTRY_END_REQUESTS: &str = "thingtotal_registry_end_requests_total";

/// The stream registry asked the log for the streams topic's end (to look up an id it did not
/// know).
pub fn registry_asked_for_end() {
    metrics::counter!(REGISTRY_END_REQUESTS).increment(1);
}

const IN_FLIGHT: &str = "thingtotal_http_requests_in_flight";
const REFUSED: &str = "thingtotal_http_requests_refused_total";

/// A request to `part` took a place among those in flight.
pub fn request_admitted(part: &'static str) {
    metrics::gauge!(IN_FLIGHT, "part" => part).increment(1.0);
}

/// A request to `part` gave its place back.
pub fn request_left(part: &'static str) {
    metrics::gauge!(IN_FLIGHT, "part" => part).decrement(1.0);
}

/// A request to `part` found no place and was answered 503.
pub fn request_refused(part: &'static str) {
    metrics::counter!(REFUSED, "part" => part).increment(1);
}

/// Describes the metrics every part records.
fn describe() {
    metrics::describe_gauge!(
        IN_FLIGHT,
        metrics::Unit::Count,
        "Requests being handled under the in-flight limit (--max-requests-in-flight), by part"
    );
    metrics::describe_counter!(
        REFUSED,
        metrics::Unit::Count,
        "Requests answered 503 at once because the in-flight limit was reached, by part"
    );
    metrics::describe_counter!(
        REGISTRY_END_REQUESTS,
        metrics::Unit::Count,
        "Requests to the log for the streams topic's end, which lookups of unknown stream ids share"
    );
}
