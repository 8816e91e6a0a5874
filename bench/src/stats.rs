//! Repeats and their spread, and latency histograms.

use hdrhistogram::Histogram;
use serde::Serialize;

/// One figure measured several times.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Spread {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    /// Every repeat, in the order they ran.
    pub(crate) values: Vec<f64>,
}

impl Spread {
    /// The spread of `values` (not empty).
    pub(crate) fn of(values: &[f64]) -> Self {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n == 0 {
            f64::NAN
        } else if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Self {
            median,
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
            values: values.to_vec(),
        }
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Latency {
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) count: u64,
}

/// A histogram of microseconds, 1 µs to 10 minutes, three significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

impl Latency {
    /// The percentiles of a histogram of microseconds.
    pub(crate) fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50_ms: ms(h.value_at_quantile(0.50)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            count: h.len(),
        }
    }
}

/// Records a duration in microseconds, clamped to the histogram's range.
pub(crate) fn record(h: &mut Histogram<u64>, d: std::time::Duration) {
    let us = (d.as_micros() as u64).clamp(1, 600_000_000);
    h.record(us).expect("value within the histogram's bounds");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_reports_median_and_range() {
        let s = Spread::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(s.values, [3.0, 1.0, 2.0]);
        assert_eq!(Spread::of(&[1.0, 2.0, 3.0, 10.0]).median, 2.5);
    }

    #[test]
    fn latency_percentiles_are_in_milliseconds() {
        let mut h = histogram();
        for ms in 1..=100u64 {
            record(&mut h, std::time::Duration::from_millis(ms));
        }
        let l = Latency::of(&h);
        assert!((l.p50_ms - 50.0).abs() < 0.1, "{l:?}");
        assert!((l.p99_ms - 99.0).abs() < 0.1, "{l:?}");
        assert!((l.max_ms - 100.0).abs() < 0.1, "{l:?}");
        assert_eq!(l.count, 100);
    }
}
