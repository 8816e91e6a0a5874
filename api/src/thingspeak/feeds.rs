//! Feeds: a channel's entries (or their windows) as ThingSpeak counts them, read from the
//! stores.

use chrono::DateTime;
use serde_json::Value;
use thingtotal_common::stream::StreamRecord;
use thingtotal_common::thingspeak::channel_fields;

use super::error::TsError;
use super::params::{FeedsRequest, MAX_RESULTS};
use crate::read::{self, Agg, AggQuery, Aggregator, EntriesQuery, Range, Row, Shape};
use crate::Api;

/// One feed: `created_at`, `entry_id` (absent for windows), then the fields asked for.
#[derive(Debug, Clone)]
pub(super) struct Feed {
    /// The entry's time, or the window's start, in microseconds since the epoch.
    pub(super) ts_us: i64,
    /// The entry's `seq`; `None` for a window.
    pub(super) entry_id: Option<u64>,
    /// The value of each of the channel's fields, in field order.
    pub(super) values: Vec<Option<Value>>,
}

/// Each field's value of a row: the property's value in the rebuilt data (`ts` for the
/// stream's `timestamp_field`), or, for an entry of an earlier version, the value of the
/// property that field was mapped onto then.
fn feed_of(stream: &StreamRecord, shape: &Shape, r: &Row) -> Feed {
    let data = shape.data(&shape.all(), &r.values);
    let values = channel_fields(stream)
        .iter()
        .enumerate()
        .map(|(i, (_, name))| {
            if stream.timestamp_field.as_deref() == Some(name.as_str()) {
                return Some(Value::String(thingtotal_common::envelope::format_time(
                    DateTime::from_timestamp_micros(r.ts_us).unwrap_or_default(),
                )));
            }
            data.get(name)
                .or_else(|| {
                    let earlier = shape.earlier_fields.get(i)?;
                    earlier.iter().find_map(|n| data.get(n))
                })
                .cloned()
        })
        .collect();
    Feed {
        ts_us: r.ts_us,
        entry_id: Some(r.seq),
        values,
    }
}

/// The newest `results` entries of the range, oldest first, as feeds (or their windows).
pub(super) async fn read_feeds(
    api: &Api,
    stream: &StreamRecord,
    shape: &Shape,
    req: &FeedsRequest,
) -> Result<Vec<Feed>, TsError> {
    if req.results == 0 {
        return Ok(Vec::new());
    }
    let source = api.reads.pick(None)?;
    let q = EntriesQuery {
        range: req.range,
        limit: req.results,
        desc: true,
        after: None,
    };
    let mut rows = api.reads.entries(source, shape, &q).await?;
    rows.reverse();
    let mut feeds: Vec<Feed> = match req.window {
        None => rows.iter().map(|r| feed_of(stream, shape, r)).collect(),
        Some((agg, per_entry, window_us)) => {
            windows(stream, shape, &rows, agg, per_entry, window_us)?
        }
    };
    let numbers = |f: &Feed| -> Vec<f64> {
        f.values
            .iter()
            .flatten()
            .filter_map(|v| match v {
                Value::Number(n) => n.as_f64(),
                _ => None,
            })
            .collect()
    };
    if let Some(min) = req.min {
        feeds.retain(|f| numbers(f).iter().all(|v| *v >= min));
    }
    if let Some(max) = req.max {
        feeds.retain(|f| numbers(f).iter().all(|v| *v <= max));
    }
    Ok(feeds)
}

/// ThingSpeak's windows: from the first entry's window to the last one's, empty ones included,
/// each starting on an epoch-aligned boundary and carrying no `entry_id`. `average` divides the
/// sum by the number of entries in the window. As many windows as `results` allows entries
/// (8000) at most: the newest, ending with the last entry's; older entries are left out, as
/// entries beyond `results` are.
fn windows(
    stream: &StreamRecord,
    shape: &Shape,
    rows: &[Row],
    agg: Agg,
    per_entry: bool,
    window_us: i64,
) -> Result<Vec<Feed>, TsError> {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(Vec::new());
    };
    let names = channel_fields(stream);
    // The fields are top-level properties; a field that is not a leaf (an object) has no
    // aggregate.
    let leaves: Vec<Option<usize>> = names.iter().map(|(_, n)| shape.index(n)).collect();
    // An entry of an earlier version counts in a field under the property that version mapped
    // the field onto, as its feed shows it.
    let aliases: Vec<(usize, Vec<usize>)> = leaves
        .iter()
        .enumerate()
        .filter_map(|(i, leaf)| {
            let earlier = shape.earlier_fields.get(i)?;
            let earlier: Vec<usize> = earlier.iter().filter_map(|n| shape.index(n)).collect();
            Some(((*leaf)?, earlier)).filter(|(_, e)| !e.is_empty())
        })
        .collect();
    let renamed;
    let rows = if aliases.is_empty() {
        rows
    } else {
        renamed = rows
            .iter()
            .map(|r| {
                let mut r = r.clone();
                for (current, earlier) in &aliases {
                    if r.values[*current].is_none() {
                        r.values[*current] = earlier.iter().find_map(|e| r.values[*e].clone());
                    }
                }
                r
            })
            .collect::<Vec<Row>>();
        &renamed[..]
    };
    let last_window = last.ts_us.div_euclid(window_us) * window_us;
    let oldest = last_window.saturating_sub(window_us.saturating_mul(MAX_RESULTS as i64 - 1));
    let q = AggQuery {
        range: Range {
            start_us: first.ts_us.max(oldest),
            end_us: last.ts_us + 1,
        },
        window_us,
        agg,
        leaves: leaves.iter().flatten().copied().collect(),
    };
    // At most 8000 rows: a median may hold all of their values.
    let mut aggregator = Aggregator::new(&q, shape, usize::MAX);
    let mut counts = vec![0usize; usize::try_from(q.window_count()).unwrap_or_default()];
    for r in rows {
        aggregator.add(r)?;
        if let Some(w) = aggregator.window_of(r.ts_us) {
            counts[w] += 1;
        }
    }
    let values = aggregator.finish();
    Ok(q.window_starts()
        .iter()
        .zip(values)
        .zip(counts)
        .map(|((&start, v), n)| {
            let mut v = v.into_iter();
            let values = leaves
                .iter()
                .map(|leaf| {
                    leaf.and_then(|_| v.next().flatten())
                        .map(|x| match (per_entry, x.as_f64()) {
                            (true, Some(sum)) if n > 0 => read::shape::float(sum / n as f64),
                            (true, _) => Value::Null,
                            (false, _) => x,
                        })
                })
                .map(|v| v.filter(|v| !v.is_null()))
                .collect();
            Feed {
                ts_us: start,
                entry_id: None,
                values,
            }
        })
        .collect())
}

/// The latest entry's `seq`, for `last_entry_id`.
pub(super) async fn last_row(api: &Api, shape: &Shape) -> Result<Option<Row>, TsError> {
    let source = api.reads.pick(None)?;
    Ok(api.reads.newest(source, shape, 1).await?.into_iter().next())
}

/// The newest entry, or with `only`, the newest with a value in that field (searching the
/// newest 8000 entries).
pub(super) async fn last_feed(
    api: &Api,
    stream: &StreamRecord,
    shape: &Shape,
    only: Option<usize>,
) -> Result<Option<Feed>, TsError> {
    let Some(i) = only else {
        return Ok(last_row(api, shape)
            .await?
            .map(|r| feed_of(stream, shape, &r)));
    };
    let source = api.reads.pick(None)?;
    Ok(api
        .reads
        .newest(source, shape, MAX_RESULTS)
        .await?
        .iter()
        .map(|r| feed_of(stream, shape, r))
        .find(|f| f.values[i].is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::point_key;
    use serde_json::json;

    fn stream() -> StreamRecord {
        serde_json::from_value(json!({
            "id": 1, "name": "n", "schema": {"type": "object", "properties": {
                "t": {"type": "number"}}},
            "version": 1, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "write_key_sha256": "", "read_key_sha256": ""}))
        .unwrap()
    }

    fn row(seq: u64, ts_us: i64, t: f64) -> Row {
        Row {
            key: point_key(ts_us, seq),
            entry_id: seq.to_string(),
            seq,
            ts_us,
            values: vec![Some(json!(t))],
        }
    }

    #[test]
    fn windows_stop_at_the_newest_8000() {
        let stream = stream();
        let shape = Shape::of(&stream);
        let ten_minutes = 600_000_000;
        let now = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
                                         // One entry in 1970, one in each of the last two windows.
        let rows = [
            row(1, 0, 1.0),
            row(2, now - ten_minutes, 2.0),
            row(3, now + 1, 3.0),
        ];
        for (agg, per_entry) in [(Agg::First, false), (Agg::Sum, true), (Agg::Median, false)] {
            let feeds = windows(&stream, &shape, &rows, agg, per_entry, ten_minutes).unwrap();
            assert_eq!(feeds.len(), MAX_RESULTS, "{agg:?}");
            let last = &feeds[MAX_RESULTS - 1];
            assert_eq!((last.ts_us, &last.values), (now, &vec![Some(json!(3.0))]));
            assert_eq!(feeds[MAX_RESULTS - 2].values, [Some(json!(2.0))]);
            assert_eq!(feeds[0].ts_us, now - 7999 * ten_minutes);
            assert_eq!(feeds[0].values, [None]);
        }
    }
}
