//! The sink's metrics, each described once and recorded through a named event.

use std::time::Duration;

use metrics::Unit;

const ARCHIVE_FILES: &str = "thingtotal_sink_archive_files_total";
const ARCHIVE_ROWS: &str = "thingtotal_sink_archive_rows_total";
const ARCHIVE_BYTES: &str = "thingtotal_sink_archive_bytes_total";
const ARCHIVE_WRITE: &str = "thingtotal_sink_archive_write_seconds";
const COMPACTIONS: &str = "thingtotal_sink_compactions_total";
const COMPACTED_FILES: &str = "thingtotal_sink_compacted_files_total";
const INFLUX_POINTS: &str = "thingtotal_sink_influx_points_total";
const INFLUX_WRITE: &str = "thingtotal_sink_influx_write_seconds";
const INFLUX_RETRIES: &str = "thingtotal_sink_influx_retries_total";
const INFLUX_REJECTED: &str = "thingtotal_sink_influx_rejected_total";
const LAG: &str = "thingtotal_sink_lag";

/// Describes the sink's metrics to the recorder.
pub(crate) fn describe() {
    metrics::describe_counter!(
        ARCHIVE_FILES,
        Unit::Count,
        "Parquet files written to the archive"
    );
    metrics::describe_counter!(ARCHIVE_ROWS, Unit::Count, "Rows written to the archive");
    metrics::describe_counter!(
        ARCHIVE_BYTES,
        Unit::Bytes,
        "Envelope bytes written to the archive (before encoding)"
    );
    metrics::describe_histogram!(
        ARCHIVE_WRITE,
        Unit::Seconds,
        "Time to encode, write and put one archive file in place"
    );
    metrics::describe_counter!(COMPACTIONS, Unit::Count, "Compactions of the local archive");
    metrics::describe_counter!(
        COMPACTED_FILES,
        Unit::Count,
        "Archive files removed by merging them into larger ones"
    );
    metrics::describe_counter!(INFLUX_POINTS, Unit::Count, "Points InfluxDB accepted");
    metrics::describe_histogram!(
        INFLUX_WRITE,
        Unit::Seconds,
        "Time of one successful InfluxDB write"
    );
    metrics::describe_counter!(
        INFLUX_RETRIES,
        Unit::Count,
        "InfluxDB writes retried after a failure"
    );
    metrics::describe_counter!(
        INFLUX_REJECTED,
        Unit::Count,
        "Entries dead-lettered by the InfluxDB writer (points InfluxDB refused, unreadable envelopes)"
    );
    metrics::describe_gauge!(
        LAG,
        Unit::Count,
        "Records of entries.valid a sink group has not committed, by group"
    );
}

/// An archive file was put in place.
pub(crate) fn archive_file_written(rows: usize, bytes: usize, took: Duration) {
    metrics::counter!(ARCHIVE_FILES).increment(1);
    metrics::counter!(ARCHIVE_ROWS).increment(rows as u64);
    metrics::counter!(ARCHIVE_BYTES).increment(bytes as u64);
    metrics::histogram!(ARCHIVE_WRITE).record(took.as_secs_f64());
}

/// A compaction ran and removed `removed` files.
pub(crate) fn compacted(removed: usize) {
    metrics::counter!(COMPACTIONS).increment(1);
    metrics::counter!(COMPACTED_FILES).increment(removed as u64);
}

/// InfluxDB accepted a write of `points`.
pub(crate) fn influx_written(points: usize, took: Duration) {
    metrics::histogram!(INFLUX_WRITE).record(took.as_secs_f64());
    metrics::counter!(INFLUX_POINTS).increment(points as u64);
}

/// An InfluxDB write failed and will be retried.
pub(crate) fn influx_retry() {
    metrics::counter!(INFLUX_RETRIES).increment(1);
}

/// The InfluxDB writer dead-lettered `n` entries.
pub(crate) fn influx_rejected(n: usize) {
    metrics::counter!(INFLUX_REJECTED).increment(n as u64);
}

/// A sink group's lag gauge.
pub(crate) fn sink_lag(group: &str) -> metrics::Gauge {
    metrics::gauge!(LAG, "group" => group.to_owned())
}
