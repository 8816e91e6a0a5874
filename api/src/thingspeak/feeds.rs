//! Feeds: a channel's entries (or their windows) as ThingSpeak counts them, read from the
//! stores.

use chrono::DateTime;
use serde_json::Value;
use thingtotal_common::stream::StreamRecord;
use thingtotal_common::thingspeak::channel_fields;

use super::error::TsError;
use super::params::{FeedsRequest, MAX_RESULTS};
use crate::read::{self, Agg, AggQuery, EntriesQuery, Range, Row, Shape};
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
/// stream's `timestamp_field`).
fn feed_of(stream: &StreamRecord, shape: &Shape, r: &Row) -> Feed {
    let data = shape.data(&shape.all(), &r.values);
    let values = channel_fields(stream)
        .iter()
        .map(|(_, name)| {
            if stream.timestamp_field.as_deref() == Some(name.as_str()) {
                return Some(Value::String(thingtotal_common::envelope::format_time(
                    DateTime::from_timestamp_micros(r.ts_us).unwrap_or_default(),
                )));
            }
            data.get(name).cloned()
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
            windows(stream, shape, &rows, agg, per_entry, window_us)
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
/// sum by the number of entries in the window.
fn windows(
    stream: &StreamRecord,
    shape: &Shape,
    rows: &[Row],
    agg: Agg,
    per_entry: bool,
    window_us: i64,
) -> Vec<Feed> {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Vec::new();
    };
    let names = channel_fields(stream);
    // The fields are top-level properties; a field that is not a leaf (an object) has no
    // aggregate.
    let leaves: Vec<Option<usize>> = names.iter().map(|(_, n)| shape.index(n)).collect();
    let q = AggQuery {
        range: Range {
            start_us: first.ts_us,
            end_us: last.ts_us + 1,
        },
        window_us,
        agg,
        leaves: leaves.iter().flatten().copied().collect(),
    };
    let values = read::aggregate(rows, &q, shape);
    let starts = q.window_starts();
    let mut counts = vec![0usize; starts.len()];
    for r in rows {
        let w = ((r.ts_us - starts[0]).div_euclid(window_us)) as usize;
        if let Some(c) = counts.get_mut(w) {
            *c += 1;
        }
    }
    starts
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
        .collect()
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
