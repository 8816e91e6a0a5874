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

/// What one window keeps of one field: no rows, only what its function needs.
#[derive(Debug, Clone, Default)]
struct Cell {
    /// Values taken (for a closed median window, the values it had).
    n: u64,
    /// The float sum or extreme; a closed window's median.
    f: f64,
    /// The integer sum or extreme.
    i: i64,
    /// `first` or `last`: the point time and the value.
    edge: Option<(i64, Value)>,
}

/// Windowed aggregation built one row at a time, the way InfluxQL computes it: `first` and
/// `last` by point time, `median` the mean of the middle two of an even count, `count` 0 in an
/// empty window. Each window keeps a count, a running sum, an extreme or its first and last
/// value, never the rows. Sums are added in the order rows arrive, which is the order InfluxDB
/// adds them in when rows arrive in time order.
///
/// A median needs the values themselves: they are held only for windows that may still get
/// rows (see [`Aggregator::close_before`]), and at most `max_held` of them at once.
#[derive(Debug)]
pub(crate) struct Aggregator<'q> {
    q: &'q AggQuery,
    /// The type of each aggregated leaf.
    types: Vec<LeafType>,
    /// The first window's start.
    first_us: i64,
    windows: usize,
    /// Per window, per aggregated leaf.
    cells: Vec<Cell>,
    /// Medians only: the values of each window and leaf not yet closed.
    values: Vec<Vec<f64>>,
    /// The windows before this one are closed.
    closed: usize,
    held: usize,
    max_held: usize,
    peak: usize,
}

impl<'q> Aggregator<'q> {
    /// An aggregation of `q`'s windows (the caller bounds their number), holding at most
    /// `max_held` values for medians.
    pub(crate) fn new(q: &'q AggQuery, shape: &Shape, max_held: usize) -> Self {
        let windows = usize::try_from(q.window_count()).unwrap_or_default();
        let n = windows * q.leaves.len();
        Self {
            q,
            types: q.leaves.iter().map(|&l| shape.leaves[l].ty).collect(),
            first_us: q.range.start_us.div_euclid(q.window_us) * q.window_us,
            windows,
            cells: vec![Cell::default(); n],
            values: if q.agg == Agg::Median {
                vec![Vec::new(); n]
            } else {
                Vec::new()
            },
            closed: 0,
            held: 0,
            max_held,
            peak: 0,
        }
    }

    /// The window of a row at `ts_us`, if the range holds it.
    pub(crate) fn window_of(&self, ts_us: i64) -> Option<usize> {
        if !self.q.range.contains(ts_us) {
            return None;
        }
        let w = usize::try_from((ts_us - self.first_us).div_euclid(self.q.window_us)).ok()?;
        (w < self.windows).then_some(w)
    }

    /// Takes one row (any order, but never into a closed window); `400` when a median would
    /// hold more than `max_held` values.
    pub(crate) fn add(&mut self, row: &Row) -> Result<(), Problem> {
        let Some(w) = self.window_of(row.ts_us) else {
            return Ok(());
        };
        debug_assert!(w >= self.closed, "a row in a closed window");
        let agg = self.q.agg;
        for (j, &leaf) in self.q.leaves.iter().enumerate() {
            let Some(v) = row.values.get(leaf).and_then(Option::as_ref) else {
                continue;
            };
            let at = w * self.q.leaves.len() + j;
            if agg == Agg::Median {
                let Some(x) = v.as_f64() else { continue };
                if self.held >= self.max_held {
                    return Err(Problem::bad_request(format!(
                        "a median holds the values of each window until no more rows can fall \
                         in it, and this read needs more than {} at once, the most one read \
                         may hold (--archive-read-max-rows): narrow the range or the window, \
                         or name fewer fields",
                        self.max_held
                    )));
                }
                self.values[at].push(x);
                self.held += 1;
                self.peak = self.peak.max(self.held);
                continue;
            }
            let c = &mut self.cells[at];
            match agg {
                Agg::Count => c.n += 1,
                Agg::First | Agg::Last => {
                    let replace = c.edge.as_ref().is_none_or(|(k, _)| {
                        if agg == Agg::First {
                            row.key < *k
                        } else {
                            row.key > *k
                        }
                    });
                    if replace {
                        c.edge = Some((row.key, v.clone()));
                    }
                }
                Agg::Sum | Agg::Min | Agg::Max if self.types[j] == LeafType::Integer => {
                    let Some(x) = v.as_i64() else { continue };
                    c.i = match (c.n, agg) {
                        (0, _) => x,
                        (_, Agg::Sum) => c.i.wrapping_add(x),
                        (_, Agg::Min) => c.i.min(x),
                        _ => c.i.max(x),
                    };
                    c.n += 1;
                }
                _ => {
                    let Some(x) = v.as_f64() else { continue };
                    c.f = match (c.n, agg) {
                        (0, _) => x,
                        (_, Agg::Min) => c.f.min(x),
                        (_, Agg::Max) => c.f.max(x),
                        _ => c.f + x,
                    };
                    c.n += 1;
                }
            }
        }
        Ok(())
    }

    /// Closes every window that ends by `t_us`: the caller promises that no row before `t_us`
    /// is still to come. A closed window's median is computed and its values let go.
    pub(crate) fn close_before(&mut self, t_us: i64) {
        let ended = t_us
            .saturating_sub(self.first_us)
            .div_euclid(self.q.window_us);
        self.close(usize::try_from(ended).unwrap_or_default().min(self.windows));
    }

    fn close(&mut self, upto: usize) {
        if self.q.agg == Agg::Median {
            let n = self.q.leaves.len();
            for at in self.closed * n..upto.max(self.closed) * n {
                let mut values = std::mem::take(&mut self.values[at]);
                self.held -= values.len();
                if !values.is_empty() {
                    values.sort_by(f64::total_cmp);
                    let k = values.len();
                    self.cells[at].f = if k % 2 == 1 {
                        values[k / 2]
                    } else {
                        (values[k / 2 - 1] + values[k / 2]) / 2.0
                    };
                    self.cells[at].n = k as u64;
                }
            }
        }
        self.closed = self.closed.max(upto);
    }

    /// The most values held at once for medians so far.
    #[cfg(test)]
    pub(crate) fn peak_held(&self) -> usize {
        self.peak
    }

    /// Every window's aggregates.
    pub(crate) fn finish(mut self) -> Windows {
        self.close(self.windows);
        let n = self.q.leaves.len();
        let agg = self.q.agg;
        let mut cells = self.cells.into_iter();
        (0..self.windows)
            .map(|_| {
                (0..n)
                    .map(|j| {
                        let c = cells.next().unwrap_or_default();
                        match agg {
                            Agg::Count => Some(Value::from(c.n)),
                            Agg::First | Agg::Last => c.edge.map(|(_, v)| v),
                            _ if c.n == 0 => None,
                            Agg::Mean => Some(shape::float(c.f / c.n as f64)),
                            Agg::Sum | Agg::Min | Agg::Max
                                if self.types[j] == LeafType::Integer =>
                            {
                                Some(Value::from(c.i))
                            }
                            _ => Some(shape::float(c.f)),
                        }
                    })
                    .collect()
            })
            .collect()
    }
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
    /// The backends this server reads from.
    fn configured(&self) -> Vec<&'static str> {
        let influx = self.influx.as_ref().map(|_| Backend::Influx.name());
        let archive = self.archive.as_ref().map(|_| Backend::Archive.name());
        influx.into_iter().chain(archive).collect()
    }

    /// `document` with the values of every `source` parameter narrowed to the backends this
    /// server reads from, the others being a 400 here.
    pub(crate) fn narrow(&self, mut document: serde_json::Value) -> serde_json::Value {
        let configured = self.configured();
        let paths = document["paths"].as_object_mut().into_iter().flatten();
        for (_, operation) in paths.flat_map(|(_, item)| item.as_object_mut().into_iter().flatten())
        {
            let parameters = operation
                .get_mut("parameters")
                .and_then(Value::as_array_mut);
            let parameters = parameters.into_iter().flatten();
            for p in parameters.filter(|p| p["name"] == "source" && p["in"] == "query") {
                p["schema"]["enum"] = serde_json::json!(configured);
            }
        }
        document
    }

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
            None => Err(Problem::not_configured(
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
            Backend::Archive => self.archive()?.aggregate(shape, q).await,
        }
    }

    fn influx(&self) -> Result<&influx::InfluxReader, Problem> {
        self.influx
            .as_ref()
            .ok_or_else(|| Problem::not_configured("no InfluxDB configured"))
    }

    fn archive(&self) -> Result<&archive::ArchiveReader, Problem> {
        self.archive
            .as_ref()
            .ok_or_else(|| Problem::not_configured("no archive configured"))
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
        let shape = shape();
        let mut a = Aggregator::new(&q, &shape, usize::MAX);
        for r in rows {
            a.add(r).unwrap();
        }
        a.finish()
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

    /// 100 one-minute windows of 50 rows each, read in "row groups" of 10 in time order.
    fn stream_of_windows(agg: Agg, max_held: usize) -> Result<(Windows, usize), Problem> {
        let q = AggQuery {
            range: Range {
                start_us: 0,
                end_us: 100 * 60_000_000,
            },
            window_us: 60_000_000,
            agg,
            leaves: vec![0, 1],
        };
        let shape = shape();
        let mut a = Aggregator::new(&q, &shape, max_held);
        let rows: Vec<Row> = (0..5000u64)
            .map(|i| row(i, i as i64 * 1_200_000, (i % 50) as f64, (i % 50) as i64))
            .collect();
        for group in rows.chunks(10) {
            a.close_before(group[0].ts_us);
            for r in group {
                a.add(r)?;
            }
        }
        let peak = a.peak_held();
        Ok((a.finish(), peak))
    }

    #[test]
    fn aggregates_keep_no_rows_and_medians_only_the_open_window() {
        let (mean, held) = stream_of_windows(Agg::Mean, usize::MAX).unwrap();
        assert_eq!(held, 0, "a mean holds no values");
        assert_eq!(mean.len(), 100);
        assert!(mean
            .iter()
            .all(|w| w == &[Some(json!(24.5)), Some(json!(24.5))]));
        let (median, held) = stream_of_windows(Agg::Median, usize::MAX).unwrap();
        assert_eq!(
            held, 100,
            "one window's 50 rows of two fields, not 5000 rows"
        );
        assert!(median
            .iter()
            .all(|w| w == &[Some(json!(24.5)), Some(json!(24.5))]));
        let e = stream_of_windows(Agg::Median, 99).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(
            e.detail.contains("99") && e.detail.contains("--archive-read-max-rows"),
            "{}",
            e.detail
        );
        assert!(stream_of_windows(Agg::Median, 100).is_ok());
    }
}
