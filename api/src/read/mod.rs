//! Reading a stream's entries back: time ranges, the latest entry and windowed aggregations,
//! from InfluxDB or from the Parquet archive, with the same answer from both.
//!
//! Both backends hand back rows in one order, by the entry's *point time*: its `ts` in
//! microseconds times 1000, plus `seq` mod 1000. That is the InfluxDB point's timestamp in
//! nanoseconds (see the sink), so it is unique per entry and serves as the pagination cursor, and
//! the archive computes the same key from its `ts` and `seq` columns.

pub(crate) mod archive;
pub(crate) mod influx;
pub(crate) mod params;
pub(crate) mod rejected;
pub(crate) mod shape;

use serde_json::Value;
use thingtotal_common::problem::Problem;
use thingtotal_common::stream::LeafType;
use thingtotal_common::time::point_time;

pub(crate) use shape::Shape;

/// The most entries or windows one request returns.
pub(crate) const MAX_LIMIT: usize = 10_000;

/// A time range, `[start, end)`, in microseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Range {
    pub(crate) start_us: i64,
    pub(crate) end_us: i64,
}

impl Range {
    pub(crate) fn contains(&self, ts_us: i64) -> bool {
        (self.start_us..self.end_us).contains(&ts_us)
    }
}

/// A page of entries.
#[derive(Debug, Clone)]
pub(crate) struct EntriesQuery {
    pub(crate) range: Range,
    pub(crate) limit: usize,
    pub(crate) desc: bool,
    /// Only entries after this point time (before it when descending).
    pub(crate) after: Option<i64>,
}

impl EntriesQuery {
    /// Whether `key` is on the far side of the cursor.
    pub(crate) fn past_cursor(&self, key: i64) -> bool {
        match (self.after, self.desc) {
            (None, _) => true,
            (Some(c), false) => key > c,
            (Some(c), true) => key < c,
        }
    }
}

/// The aggregation functions, InfluxQL's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Agg {
    Mean,
    Median,
    Sum,
    Min,
    Max,
    Count,
    First,
    Last,
}

impl Agg {
    pub(crate) const ALL: [Agg; 8] = [
        Agg::Mean,
        Agg::Median,
        Agg::Sum,
        Agg::Min,
        Agg::Max,
        Agg::Count,
        Agg::First,
        Agg::Last,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Agg::Mean => "mean",
            Agg::Median => "median",
            Agg::Sum => "sum",
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::Count => "count",
            Agg::First => "first",
            Agg::Last => "last",
        }
    }

    /// Whether it needs numbers; count, first and last take any field.
    pub(crate) fn numeric_only(self) -> bool {
        !matches!(self, Agg::Count | Agg::First | Agg::Last)
    }

    /// The type of its result for a field of type `ty`.
    pub(crate) fn result_type(self, ty: LeafType) -> LeafType {
        match self {
            Agg::Count => LeafType::Integer,
            Agg::Mean | Agg::Median => LeafType::Float,
            _ => ty,
        }
    }
}

/// Windowed aggregation over a range.
#[derive(Debug, Clone)]
pub(crate) struct AggQuery {
    pub(crate) range: Range,
    pub(crate) window_us: i64,
    pub(crate) agg: Agg,
    /// Indexes into the shape's leaves.
    pub(crate) leaves: Vec<usize>,
}

impl AggQuery {
    /// The start of every window the range touches, aligned to the epoch as InfluxDB's
    /// `GROUP BY time()` aligns them; the first and last may be cut by the range.
    pub(crate) fn window_starts(&self) -> Vec<i64> {
        let first = self.range.start_us.div_euclid(self.window_us) * self.window_us;
        let last = (self.range.end_us - 1).div_euclid(self.window_us) * self.window_us;
        (0..)
            .map(|i| first + i * self.window_us)
            .take_while(|t| *t <= last)
            .collect()
    }

    /// How many windows the range touches.
    pub(crate) fn window_count(&self) -> i64 {
        let first = self.range.start_us.div_euclid(self.window_us);
        let last = (self.range.end_us - 1).div_euclid(self.window_us);
        last - first + 1
    }
}

/// One entry read back. `values` holds a value per leaf of the stream's shape.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub(crate) key: i64,
    pub(crate) entry_id: String,
    pub(crate) seq: u64,
    pub(crate) ts_us: i64,
    pub(crate) values: Vec<Option<Value>>,
}

/// The order of entries: their point time ([`point_time`]), saturated outside its range (the
/// archive can hold times InfluxDB cannot).
pub(crate) fn point_key(ts_us: i64, seq: u64) -> i64 {
    point_time(ts_us, seq).unwrap_or(if ts_us < 0 { i64::MIN } else { i64::MAX })
}

/// Each window's aggregate, per requested leaf; `None` where a window has no value.
pub(crate) type Windows = Vec<Vec<Option<Value>>>;

/// Aggregates `rows` (any order) into the query's windows, the way InfluxQL does: `first` and
/// `last` by point time, `median` the mean of the middle two of an even count, `count` 0 in an
/// empty window.
pub(crate) fn aggregate(rows: &[Row], q: &AggQuery, shape: &Shape) -> Windows {
    let starts = q.window_starts();
    let first = starts.first().copied().unwrap_or_default();
    // Per window, per leaf: the (key, value) pairs.
    let mut cells: Vec<Vec<Vec<(i64, &Value)>>> =
        vec![vec![Vec::new(); q.leaves.len()]; starts.len()];
    for r in rows {
        if !q.range.contains(r.ts_us) {
            continue;
        }
        let w = ((r.ts_us - first).div_euclid(q.window_us)) as usize;
        let Some(cell) = cells.get_mut(w) else {
            continue;
        };
        for (j, &leaf) in q.leaves.iter().enumerate() {
            if let Some(v) = r.values.get(leaf).and_then(Option::as_ref) {
                cell[j].push((r.key, v));
            }
        }
    }
    cells
        .into_iter()
        .map(|window| {
            window
                .into_iter()
                .zip(&q.leaves)
                .map(|(mut points, &leaf)| {
                    let ty = shape.leaves[leaf].ty;
                    points.sort_by_key(|(k, _)| *k);
                    reduce(q.agg, ty, &points)
                })
                .collect()
        })
        .collect()
}

fn reduce(agg: Agg, ty: LeafType, points: &[(i64, &Value)]) -> Option<Value> {
    if agg == Agg::Count {
        return Some(Value::from(points.len() as i64));
    }
    if points.is_empty() {
        return None;
    }
    match agg {
        Agg::First => return Some(points[0].1.clone()),
        Agg::Last => return Some(points[points.len() - 1].1.clone()),
        _ => {}
    }
    if ty == LeafType::Integer && matches!(agg, Agg::Sum | Agg::Min | Agg::Max) {
        let ints = points.iter().filter_map(|(_, v)| v.as_i64());
        return match agg {
            Agg::Sum => Some(Value::from(ints.fold(0i64, i64::wrapping_add))),
            Agg::Min => ints.min().map(Value::from),
            _ => ints.max().map(Value::from),
        };
    }
    // Sums run in time order, as InfluxDB's reducers add them.
    let floats: Vec<f64> = points.iter().filter_map(|(_, v)| v.as_f64()).collect();
    if floats.is_empty() {
        return None;
    }
    let f = match agg {
        Agg::Sum => floats.iter().sum(),
        Agg::Mean => floats.iter().sum::<f64>() / floats.len() as f64,
        Agg::Min => floats.iter().copied().fold(f64::INFINITY, f64::min),
        Agg::Max => floats.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Agg::Median => {
            let mut sorted = floats;
            sorted.sort_by(f64::total_cmp);
            let n = sorted.len();
            if n % 2 == 1 {
                sorted[n / 2]
            } else {
                (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
            }
        }
        Agg::Count | Agg::First | Agg::Last => unreachable!("handled above"),
    };
    Some(shape::float(f))
}

/// Where reads come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Influx,
    Archive,
}

impl Backend {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Influx => "influx",
            Backend::Archive => "archive",
        }
    }
}

/// The configured backends: InfluxDB is preferred when both are there.
#[derive(Debug, Clone, Default)]
pub(crate) struct Backends {
    pub(crate) influx: Option<influx::InfluxReader>,
    pub(crate) archive: Option<archive::ArchiveReader>,
}

impl Backends {
    /// The source to read from: the one asked for, or InfluxDB if it is configured.
    pub(crate) fn pick(&self, asked: Option<Backend>) -> Result<Backend, Problem> {
        match asked {
            Some(Backend::Influx) if self.influx.is_none() => Err(Problem::bad_request(
                "source=influx: this server has no InfluxDB configured (--influx-url)",
            )),
            Some(Backend::Archive) if self.archive.is_none() => Err(Problem::bad_request(
                "source=archive: this server has no archive configured (--archive)",
            )),
            Some(s) => Ok(s),
            None if self.influx.is_some() => Ok(Backend::Influx),
            None if self.archive.is_some() => Ok(Backend::Archive),
            None => Err(Problem::unavailable(
                "this server has neither InfluxDB nor an archive to read from",
            )),
        }
    }

    /// A page of entries, in the query's order.
    pub(crate) async fn entries(
        &self,
        source: Backend,
        shape: &Shape,
        q: &EntriesQuery,
    ) -> Result<Vec<Row>, Problem> {
        match source {
            Backend::Influx => self.influx()?.entries(shape, q).await,
            Backend::Archive => self.archive()?.entries(shape, q).await,
        }
    }

    /// The newest `limit` entries, newest first.
    pub(crate) async fn newest(
        &self,
        source: Backend,
        shape: &Shape,
        limit: usize,
    ) -> Result<Vec<Row>, Problem> {
        let q = EntriesQuery {
            range: params::range(None, chrono::Utc::now().timestamp_micros() + 1)?,
            limit,
            desc: true,
            after: None,
        };
        self.entries(source, shape, &q).await
    }

    /// Every window's aggregates.
    pub(crate) async fn aggregate(
        &self,
        source: Backend,
        shape: &Shape,
        q: &AggQuery,
    ) -> Result<Windows, Problem> {
        match source {
            Backend::Influx => self.influx()?.aggregate(shape, q).await,
            Backend::Archive => {
                let rows = self.archive()?.rows(shape, q.range, &q.leaves).await?;
                Ok(aggregate(&rows, q, shape))
            }
        }
    }

    fn influx(&self) -> Result<&influx::InfluxReader, Problem> {
        self.influx
            .as_ref()
            .ok_or_else(|| Problem::unavailable("no InfluxDB configured"))
    }

    fn archive(&self) -> Result<&archive::ArchiveReader, Problem> {
        self.archive
            .as_ref()
            .ok_or_else(|| Problem::unavailable("no archive configured"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use thingtotal_common::stream::StreamRecord;

    fn shape() -> Shape {
        let s: StreamRecord = serde_json::from_value(json!({
            "id": 1, "name": "n", "schema": {"type": "object", "properties": {
                "t": {"type": "number"}, "n": {"type": "integer"}}},
            "version": 1, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "write_key_sha256": "", "read_key_sha256": ""}))
        .unwrap();
        Shape::of(&s)
    }

    fn row(seq: u64, ts_us: i64, t: f64, n: i64) -> Row {
        Row {
            key: point_key(ts_us, seq),
            entry_id: seq.to_string(),
            seq,
            ts_us,
            values: vec![Some(json!(t)), Some(json!(n))],
        }
    }

    fn run(agg: Agg, rows: &[Row]) -> Windows {
        let q = AggQuery {
            range: Range {
                start_us: 30_000_000,
                end_us: 240_000_000,
            },
            window_us: 60_000_000,
            agg,
            leaves: vec![0, 1],
        };
        aggregate(rows, &q, &shape())
    }

    #[test]
    fn windows_align_to_the_epoch_and_include_empty_ones() {
        let rows = [
            row(1, 10_000_000, 9.0, 9),    // before the range
            row(2, 30_000_000, 1.0, 1),    // the first window, cut by the range
            row(3, 59_999_999, 2.0, 2),    // its last microsecond
            row(4, 60_000_000, 4.0, 4),    // the next window's first
            row(5, 200_000_000, 8.0, 8),   // the fourth window; the third is empty
            row(6, 240_000_000, 16.0, 16), // the range's end is exclusive
        ];
        let w = run(Agg::Count, &rows);
        assert_eq!(w.len(), 4, "windows 0, 60, 120 and 180 s");
        let counts: Vec<_> = w.iter().map(|c| c[0].clone().unwrap()).collect();
        assert_eq!(counts, [json!(2), json!(1), json!(0), json!(1)]);
        let sums = run(Agg::Sum, &rows);
        assert_eq!(sums[0], [Some(json!(3.0)), Some(json!(3))]);
        assert_eq!(sums[2], [None, None]);
        assert_eq!(run(Agg::Mean, &rows)[0][1], Some(json!(1.5)));
        assert_eq!(run(Agg::First, &rows)[0][0], Some(json!(1.0)));
        assert_eq!(run(Agg::Last, &rows)[0][0], Some(json!(2.0)));
        assert_eq!(run(Agg::Min, &rows)[0][1], Some(json!(1)));
        assert_eq!(run(Agg::Max, &rows)[0][1], Some(json!(2)));
    }

    #[test]
    fn medians_average_the_middle_pair() {
        let rows = [
            row(1, 60_000_000, 4.0, 4),
            row(2, 60_000_001, 1.0, 1),
            row(3, 60_000_002, 3.0, 3),
            row(4, 60_000_003, 10.0, 10),
        ];
        assert_eq!(
            run(Agg::Median, &rows)[1],
            [Some(json!(3.5)), Some(json!(3.5))]
        );
        assert_eq!(run(Agg::Median, &rows[..3])[1][0], Some(json!(3.0)));
    }
}
