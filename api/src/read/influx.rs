//! Reads from InfluxDB with InfluxQL over `/query`, which InfluxDB 1.8, 2.x (through a DBRP
//! mapping) and 3.x all serve. Every identifier and string literal is quoted and escaped here;
//! times and limits are integers the handler parsed. Aggregations run in InfluxDB
//! (`GROUP BY time()`), so only one row per window comes back.

use std::fmt::Write;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use thingtotal_common::problem::Problem;
use thingtotal_common::stream::LeafType;

use super::shape::{coerce, Shape};
use super::{AggQuery, EntriesQuery, Row, Windows};

/// How long one query may take before the client gives up.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// InfluxDB as a read backend.
#[derive(Debug, Clone)]
pub(crate) struct InfluxReader {
    client: reqwest::Client,
    query_url: String,
    db: String,
    rp: Option<String>,
    token: String,
}

/// `"name"`, with backslashes, double quotes and newlines escaped as InfluxQL's scanner reads them.
pub(crate) fn ident(name: &str) -> String {
    quote(name, '"')
}

/// `'value'`, escaped the same way.
pub(crate) fn literal(value: &str) -> String {
    quote(value, '\'')
}

fn quote(s: &str, q: char) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

#[derive(Debug, Deserialize)]
struct Response {
    #[serde(default)]
    results: Vec<StatementResult>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StatementResult {
    #[serde(default)]
    series: Vec<Series>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Series {
    columns: Vec<String>,
    #[serde(default)]
    values: Vec<Vec<Value>>,
}

impl InfluxReader {
    /// A reader of `bucket` (`db/rp` on InfluxDB 1.8; a bucket with a DBRP mapping on 2.x).
    pub(crate) fn new(url: &str, token: &str, bucket: &str) -> Self {
        let (db, rp) = match bucket.split_once('/') {
            Some((db, rp)) if !rp.is_empty() => (db.to_owned(), Some(rp.to_owned())),
            _ => (bucket.trim_end_matches('/').to_owned(), None),
        };
        Self {
            client: reqwest::Client::builder()
                .timeout(QUERY_TIMEOUT)
                .build()
                .expect("a plain reqwest client builds"),
            query_url: format!("{}/query", url.trim_end_matches('/')),
            db,
            rp,
            token: token.to_owned(),
        }
    }

    async fn query(&self, q: &str) -> Result<Vec<Series>, Problem> {
        let mut form = vec![("db", self.db.as_str()), ("q", q), ("epoch", "ns")];
        if let Some(rp) = &self.rp {
            form.push(("rp", rp));
        }
        let mut req = self.client.post(&self.query_url).form(&form);
        if !self.token.is_empty() {
            req = req.header("Authorization", format!("Token {}", self.token));
        }
        let unavailable = |e: &dyn std::fmt::Display| {
            Problem::unavailable("InfluxDB did not answer the query", e)
        };
        let resp = req.send().await.map_err(|e| unavailable(&e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| unavailable(&e))?;
        let parsed: Response = serde_json::from_slice(&body).map_err(|e| {
            unavailable(&format!(
                "{status}: {e}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))
        })?;
        let error = parsed
            .error
            .or_else(|| parsed.results.iter().find_map(|r| r.error.clone()));
        if let Some(e) = error {
            return Err(unavailable(&format!("{status}: {e}")));
        }
        if !status.is_success() {
            return Err(unavailable(&status));
        }
        Ok(parsed.results.into_iter().flat_map(|r| r.series).collect())
    }

    /// `FROM "measurement" WHERE "stream_id" = 'id' AND time >= … AND time < …`.
    fn from_where(shape: &Shape, start_us: i64, end_us: i64) -> String {
        format!(
            " FROM {} WHERE \"stream_id\" = {} AND time >= {} AND time < {}",
            ident(&shape.measurement),
            literal(&shape.stream_id.to_string()),
            start_us.saturating_mul(1000),
            end_us.saturating_mul(1000),
        )
    }

    pub(crate) fn entries_query(shape: &Shape, q: &EntriesQuery) -> String {
        let mut s = String::from("SELECT \"seq\", \"entry_id\"");
        for keys in &shape.keys {
            for (key, _) in keys {
                let _ = write!(s, ", {}", ident(key));
            }
        }
        s.push_str(&Self::from_where(shape, q.range.start_us, q.range.end_us));
        if let Some(c) = q.after {
            let _ = write!(s, " AND time {} {c}", if q.desc { "<" } else { ">" });
        }
        if q.desc {
            s.push_str(" ORDER BY time DESC");
        }
        let _ = write!(s, " LIMIT {}", q.limit);
        s
    }

    pub(crate) fn aggregate_query(shape: &Shape, q: &AggQuery) -> String {
        let mut s = String::from("SELECT ");
        let mut column = 0;
        for &leaf in &q.leaves {
            for (function, key) in selected(q.agg, &shape.keys[leaf]) {
                if column > 0 {
                    s.push_str(", ");
                }
                let _ = write!(s, "{function}({}) AS \"v{column}\"", ident(key));
                column += 1;
            }
        }
        s.push_str(&Self::from_where(shape, q.range.start_us, q.range.end_us));
        let _ = write!(s, " GROUP BY time({}u) fill(null)", q.window_us);
        s
    }

    pub(crate) async fn entries(
        &self,
        shape: &Shape,
        q: &EntriesQuery,
    ) -> Result<Vec<Row>, Problem> {
        let series = self.query(&Self::entries_query(shape, q)).await?;
        let mut rows = Vec::new();
        for s in series {
            // time, seq, entry_id, then one column per key of each leaf, in the order selected.
            let selected: usize = shape.keys.iter().map(Vec::len).sum();
            if s.columns.len() != selected + 3 {
                return Err(Problem::unavailable(
                    "InfluxDB's answer did not have the columns asked for",
                    &format!("{} columns for {} selected", s.columns.len(), selected + 3),
                ));
            }
            for mut v in s.values {
                let key = v[0].as_i64().unwrap_or_default();
                let seq = v[1].as_u64().unwrap_or_default();
                let entry_id = v[2].as_str().unwrap_or_default().to_owned();
                let mut cells = v.drain(3..);
                // A point holds a leaf under the one key of its version's type.
                let values = shape
                    .keys
                    .iter()
                    .map(|keys| {
                        keys.iter()
                            .filter_map(|(_, ty)| coerce(*ty, cells.next()?))
                            .fold(None, |found, v| found.or(Some(v)))
                    })
                    .collect();
                rows.push(Row {
                    key,
                    entry_id,
                    seq,
                    ts_us: key.div_euclid(1000),
                    values,
                });
            }
        }
        Ok(rows)
    }

    pub(crate) async fn aggregate(&self, shape: &Shape, q: &AggQuery) -> Result<Windows, Problem> {
        let starts = q.window_starts();
        let mut out: Windows = vec![vec![None; q.leaves.len()]; starts.len()];
        if let Some(first) = starts.first().copied() {
            for s in self.query(&Self::aggregate_query(shape, q)).await? {
                for v in s.values {
                    let t_us = v[0].as_i64().unwrap_or_default().div_euclid(1000);
                    let Some(window) = out.get_mut(((t_us - first) / q.window_us) as usize) else {
                        continue;
                    };
                    let mut column = 1;
                    for (cell, &leaf) in window.iter_mut().zip(&q.leaves) {
                        let ty = q.agg.result_type(shape.leaves[leaf].ty);
                        let keys = &shape.keys[leaf];
                        let n = selected(q.agg, keys).len();
                        let cells = v.get(column..column + n).unwrap_or_default();
                        column += n;
                        *cell = if n == 2 * keys.len() && q.agg == super::Agg::Mean {
                            // (sum, count) per key: the mean over every key's values.
                            let (sum, count) = cells.chunks(2).fold((0.0, 0.0), |(s, c), pair| {
                                let f = |v: &Value| v.as_f64().unwrap_or(0.0);
                                (s + f(&pair[0]), c + f(&pair[1]))
                            });
                            (count > 0.0).then(|| super::shape::float(sum / count))
                        } else {
                            let values: Vec<Option<Value>> =
                                cells.iter().map(|v| coerce(ty, v.clone())).collect();
                            combine(q.agg, ty, keys, shape.leaves[leaf].ty, values)
                        };
                    }
                }
            }
        }
        if q.agg == super::Agg::Count {
            for cell in out.iter_mut().flatten() {
                cell.get_or_insert(Value::from(0));
            }
        }
        Ok(out)
    }
}

/// The aggregate functions and keys a window query selects for one leaf: the aggregate of each
/// key; for the mean of a leaf kept under several keys, each key's sum and count, so that the
/// mean covers them all.
fn selected(agg: super::Agg, keys: &[(String, LeafType)]) -> Vec<(&'static str, &str)> {
    if agg == super::Agg::Mean && keys.len() > 1 {
        keys.iter()
            .flat_map(|(k, _)| [("sum", k.as_str()), ("count", k.as_str())])
            .collect()
    } else {
        keys.iter().map(|(k, _)| (agg.name(), k.as_str())).collect()
    }
}

/// One window's aggregate of a leaf kept under several keys (a version changed its type), from
/// the aggregate of each key. Counts and sums add up, minimums and maximums compare; a median,
/// first or last cannot be combined from per-key results, so it is that of the key of the
/// leaf's newest type (`newest`), or of the first key with a value.
fn combine(
    agg: super::Agg,
    ty: LeafType,
    keys: &[(String, LeafType)],
    newest: LeafType,
    values: Vec<Option<Value>>,
) -> Option<Value> {
    use super::Agg;
    if values.len() == 1 {
        return values.into_iter().next().flatten();
    }
    let numbers = || values.iter().flatten().filter_map(Value::as_f64);
    let as_type = |f: f64| coerce(ty, super::shape::float(f));
    match agg {
        Agg::Count => Some(Value::from(
            values
                .iter()
                .flatten()
                .filter_map(Value::as_i64)
                .sum::<i64>(),
        )),
        Agg::Sum if values.iter().any(Option::is_some) => as_type(numbers().sum()),
        Agg::Min => numbers().reduce(f64::min).and_then(as_type),
        Agg::Max => numbers().reduce(f64::max).and_then(as_type),
        _ => {
            let newest_at = keys.iter().position(|(_, t)| *t == newest);
            newest_at
                .and_then(|i| values.get(i).cloned().flatten())
                .or_else(|| values.into_iter().flatten().next())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::{Agg, Range};
    use thingtotal_common::stream::{Leaf, LeafType};

    #[test]
    fn identifiers_and_literals_are_escaped() {
        assert_eq!(ident("temp"), "\"temp\"");
        assert_eq!(ident("a\"b"), "\"a\\\"b\"");
        assert_eq!(ident("x\\"), "\"x\\\\\"");
        assert_eq!(ident("a\nb"), "\"a\\nb\"");
        assert_eq!(literal("it's"), "'it\\'s'");
        assert_eq!(literal("a\"b"), "'a\"b'");
    }

    fn shape() -> Shape {
        Shape {
            stream_id: 7,
            measurement: "m\" WHERE 1=1; DROP DATABASE x".into(),
            leaves: vec![Leaf {
                path: vec!["t".into()],
                name: "t".into(),
                ty: LeafType::Float,
            }],
            keys: vec![vec![("t".into(), LeafType::Float)]],
            earlier_fields: vec![],
        }
    }

    #[test]
    fn queries_quote_everything_the_user_named() {
        let range = Range {
            start_us: 1,
            end_us: 2,
        };
        let q = EntriesQuery {
            range,
            limit: 10,
            desc: true,
            after: Some(1500),
        };
        assert_eq!(
            InfluxReader::entries_query(&shape(), &q),
            "SELECT \"seq\", \"entry_id\", \"t\" FROM \"m\\\" WHERE 1=1; DROP DATABASE x\" \
             WHERE \"stream_id\" = '7' AND time >= 1000 AND time < 2000 AND time < 1500 \
             ORDER BY time DESC LIMIT 10"
        );
        let a = AggQuery {
            range,
            window_us: 60_000_000,
            agg: Agg::Median,
            leaves: vec![0],
        };
        assert!(InfluxReader::aggregate_query(&shape(), &a)
            .starts_with("SELECT median(\"t\") AS \"v0\" FROM \"m\\\" WHERE"));
        assert!(InfluxReader::aggregate_query(&shape(), &a)
            .ends_with("GROUP BY time(60000000u) fill(null)"));
        // A leaf under two keys: its mean from each key's sum and count.
        let mut two = shape();
        two.keys[0].push(("t.v2".into(), LeafType::Integer));
        let mean = AggQuery {
            agg: Agg::Mean,
            ..a.clone()
        };
        assert!(InfluxReader::aggregate_query(&two, &mean).starts_with(
            "SELECT sum(\"t\") AS \"v0\", count(\"t\") AS \"v1\", sum(\"t.v2\") AS \"v2\", \
             count(\"t.v2\") AS \"v3\" FROM"
        ));
    }

    #[test]
    fn buckets_name_a_database_and_retention_policy() {
        let r = InfluxReader::new("http://h:8086/", "", "db/rp");
        assert_eq!((r.db.as_str(), r.rp.as_deref()), ("db", Some("rp")));
        assert_eq!(r.query_url, "http://h:8086/query");
        let r = InfluxReader::new("http://h:8086", "t", "bucket");
        assert_eq!((r.db.as_str(), r.rp), ("bucket", None));
    }
}
