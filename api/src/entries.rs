//! `GET /api/streams/{id}/entries`, `/entries/latest` and `/rejected`: reading a stream back.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thingtotal_common::envelope::format_time;
use thingtotal_common::http::Credential;
use thingtotal_common::openapi::one_of;
use thingtotal_common::problem::Problem;
use thingtotal_common::stream::{StreamId, StreamRecord};
use utoipa::{IntoParams, ToSchema};
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Reply;

pub use crate::read::rejected::{Rejected, RejectedPage};
use crate::read::shape::{cell, csv_text};
use crate::read::{params, Agg, AggQuery, Backend, EntriesQuery, Row, Shape, MAX_LIMIT};
use crate::{auth, Api};

/// Parameters of `GET /api/streams/{id}/entries`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EntriesParams {
    /// Inclusive start: RFC 3339, a date, `now`, or relative such as `-1h`. Default: the first
    /// entry; for windows, the start of the newest `limit` windows, the last of which holds
    /// `end`, so that the default range always answers. Before `end`.
    #[param(value_type = Option<Time>, inline)]
    pub start: Option<String>,
    /// Exclusive end, in the same forms. Default: now.
    #[param(value_type = Option<Time>, inline)]
    pub end: Option<String>,
    /// Entries (or windows) per page, 1 to 10000. Default 100. With `window`, the range may
    /// hold no more windows than this.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 10000)]
    pub limit: Option<String>,
    /// `asc` (default) or `desc`, by the entry's time. Not with `window`.
    #[param(value_type = Option<Order>, inline)]
    pub order: Option<String>,
    /// The `next_cursor` of the previous page. Not with `window`.
    #[param(pattern = r"^-?[0-9]+$")]
    pub cursor: Option<String>,
    /// `json` or `csv`; default from `Accept`, else JSON.
    #[param(value_type = Option<Format>, inline)]
    pub format: Option<String>,
    /// Aggregation window: a positive number and `s`, `m`, `h`, `d` or `w` (`1m`, `15m`, `1h`,
    /// `1d`), at most 230 years. Needs `agg`.
    #[param(pattern = r"^[0-9]+[smhdw]$")]
    pub window: Option<String>,
    /// `mean`, `median`, `sum`, `min`, `max`, `count`, `first` or `last`. Needs `window`.
    #[param(value_type = Option<AggName>, inline)]
    pub agg: Option<String>,
    /// Comma-separated fields (`a.b` for nested ones) of the stream's schema to aggregate
    /// (numeric ones, but for `count`, `first` and `last`). Default: every numeric field. Needs
    /// `window`.
    pub fields: Option<String>,
    /// `influx` or `archive`: one this server reads from (400 otherwise). Default: InfluxDB
    /// when it is configured.
    #[param(value_type = Option<Source>, inline)]
    pub source: Option<String>,
    /// The read key, as ThingSpeak clients send it.
    pub api_key: Option<String>,
}

/// One entry as read back.
#[derive(Debug, Serialize, ToSchema)]
pub struct Entry {
    /// The UUIDv7 assigned at the edge.
    pub entry_id: String,
    /// The entry's sequence number in its stream (ThingSpeak's `entry_id`).
    pub seq: u64,
    /// The reading's time: its `timestamp_field`, or when it was received. RFC 3339, µs, UTC.
    pub ts: String,
    /// The data in the schema's shape. The `timestamp_field` is `ts` and is not repeated here.
    #[schema(value_type = Object)]
    pub data: Value,
}

/// A page of entries.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntriesPage {
    /// The entries, in the requested order.
    pub entries: Vec<Entry>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// One aggregation window.
#[derive(Debug, Serialize, ToSchema)]
pub struct Window {
    /// The window's start (inclusive), aligned to the epoch.
    pub start: String,
    /// Its end (exclusive).
    pub end: String,
    /// Each aggregated field's value in the schema's shape; absent where the window has none.
    #[schema(value_type = Object)]
    pub data: Value,
}

/// Windowed aggregates.
#[derive(Debug, Serialize, ToSchema)]
pub struct WindowsPage {
    /// The window length, as asked.
    pub window: String,
    /// The function.
    pub agg: String,
    /// The aggregated fields.
    pub fields: Vec<String>,
    /// Every window the range touches, empty ones included, oldest first.
    pub windows: Vec<Window>,
}

/// Parameters of `GET /api/streams/{id}/entries/latest`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LatestParams {
    /// `influx` or `archive`: one this server reads from (400 otherwise).
    #[param(value_type = Option<Source>, inline)]
    pub source: Option<String>,
    /// The read key, as ThingSpeak clients send it.
    pub api_key: Option<String>,
}

/// Parameters of `GET /api/streams/{id}/rejected`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RejectedParams {
    /// From when: RFC 3339, a date, or relative such as `-1h`. Default: `-24h`.
    #[param(value_type = Option<Time>, inline)]
    pub start: Option<String>,
    /// At most this many, 1 to 1000. Default 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// The read key.
    pub api_key: Option<String>,
}

thingtotal_common::schema_type!(
    /// A time as the native API reads it.
    Time = thingtotal_common::openapi::time()
);
thingtotal_common::schema_type!(Order = one_of(["asc", "desc"]));
thingtotal_common::schema_type!(Format = one_of(["json", "csv"]));
thingtotal_common::schema_type!(AggName = one_of(Agg::ALL.map(Agg::name)));
thingtotal_common::schema_type!(Source = one_of(["influx", "archive"]));
thingtotal_common::schema_type!(
    /// A page of entries, or windows.
    EntriesOrWindows = utoipa::openapi::schema::OneOfBuilder::new()
        .item(utoipa::openapi::Ref::from_schema_name("EntriesPage"))
        .item(utoipa::openapi::Ref::from_schema_name("WindowsPage"))
);

/// The stream, if it exists and the caller may read it.
pub(crate) async fn readable(
    api: &Api,
    id: StreamId,
    c: &Credential,
) -> Result<std::sync::Arc<StreamRecord>, Problem> {
    let stream = crate::streams::existing(api, id).await?;
    auth::require_read(api.admin_token(), c, &stream)?;
    Ok(stream)
}

fn parse<T: serde::de::DeserializeOwned>(query: &str) -> Result<T, Problem> {
    serde_urlencoded::from_str(query)
        .map_err(|e| Problem::bad_request(format!("bad query parameter: {e}")))
}

fn source(s: Option<&str>) -> Result<Option<Backend>, Problem> {
    match s {
        None => Ok(None),
        Some("influx") => Ok(Some(Backend::Influx)),
        Some("archive") => Ok(Some(Backend::Archive)),
        Some(other) => Err(Problem::bad_request(format!(
            "source={other:?}: use influx or archive"
        ))),
    }
}

/// CSV or JSON, from `format=` or else `Accept`.
fn wants_csv(format: Option<&str>, accept: Option<&str>) -> Result<bool, Problem> {
    match format {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(other) => Err(Problem::bad_request(format!(
            "format={other:?}: use json or csv"
        ))),
        None => Ok(accept.is_some_and(|a| a.contains("text/csv"))),
    }
}

fn iso(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .map(format_time)
        .unwrap_or_default()
}

/// Read a stream's entries: a time range, paginated, or windowed aggregates.
#[utoipa::path(get, path = "/api/streams/{id}/entries", tag = "entries", operation_id = "list_entries",
    params(("id" = u64, Path, description = "Stream id"), EntriesParams),
    responses(
        (status = 200, description = "A page of entries (or, with `window` and `agg`, the windows). \
            CSV has a header row: entry_id, seq, ts and one column per field (start, end and the \
            fields for windows); text that starts with =, +, -, @, a tab or a carriage return \
            (and is not a number) gets a leading ', so that spreadsheets do not run it.",
            content((EntriesOrWindows = "application/json"), (String = "text/csv")),
            headers(("X-ThingTotal-Backend" = String, description = "influx or archive"))),
        (status = 400, description = "Bad parameter, more windows than `limit`, or more archive rows than `--archive-read-max-rows` to scan", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Private stream, no credentials", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Wrong credentials", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such stream", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The backend did not answer", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("api_key" = []), ("admin" = [])))]
pub(crate) async fn list(
    api: Api,
    id: StreamId,
    c: Credential,
    accept: Option<String>,
    query: &str,
) -> Result<Response, Problem> {
    let p: EntriesParams = parse(query)?;
    let stream = readable(&api, id, &c).await?;
    let shape = api.shape(&stream);
    let csv = wants_csv(p.format.as_deref(), accept.as_deref())?;
    let source = api.reads.pick(source(p.source.as_deref())?)?;
    let now = Utc::now();
    let end = match &p.end {
        Some(e) => params::time("end", e, now)?,
        None => now.timestamp_micros() + 1,
    };
    let start = p
        .start
        .as_deref()
        .map(|s| params::time("start", s, now))
        .transpose()?;
    let limit = params::limit("limit", p.limit.as_deref(), 100, MAX_LIMIT)?;
    let response = match (&p.window, &p.agg) {
        (None, None) => {
            let desc = match p.order.as_deref() {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(o) => {
                    return Err(Problem::bad_request(format!(
                        "order={o:?}: use asc or desc"
                    )))
                }
            };
            if p.fields.is_some() {
                return Err(Problem::bad_request(
                    "fields= chooses what to aggregate: it needs window and agg",
                ));
            }
            let after = p
                .cursor
                .as_deref()
                .map(|c| {
                    c.parse::<i64>().map_err(|_| {
                        Problem::bad_request(format!("cursor={c:?} is not a cursor this API gave"))
                    })
                })
                .transpose()?;
            let q = EntriesQuery {
                range: params::range(start, end)?,
                limit,
                desc,
                after,
            };
            let rows = api.reads.entries(source, &shape, &q).await?;
            let next = (rows.len() == limit).then(|| rows[rows.len() - 1].key.to_string());
            if csv {
                entries_csv(&shape, &rows, next.as_deref())?
            } else {
                let entries = rows.iter().map(|r| entry(&shape, r)).collect();
                let mut r = warp::reply::json(&EntriesPage {
                    entries,
                    next_cursor: next.clone(),
                })
                .into_response();
                add_next(&mut r, next.as_deref());
                r
            }
        }
        (Some(window), Some(agg)) => {
            if p.order.is_some() || p.cursor.is_some() {
                return Err(Problem::bad_request(
                    "order and cursor apply to entries, not to windows",
                ));
            }
            let window_us = params::duration("window", window)?;
            let agg = Agg::ALL
                .into_iter()
                .find(|a| a.name() == agg)
                .ok_or_else(|| {
                    Problem::bad_request(format!(
                        "agg={agg:?}: use mean, median, sum, min, max, count, first or last"
                    ))
                })?;
            let leaves = aggregated(&shape, agg, p.fields.as_deref())?;
            let start = start.unwrap_or_else(|| newest_windows(end, window_us, limit));
            let q = AggQuery {
                range: params::range(Some(start), end)?,
                window_us,
                agg,
                leaves,
            };
            let windows = q.window_count();
            if windows > limit as i64 {
                return Err(Problem::bad_request(format!(
                    "the range holds {windows} windows of {window}; at most limit={limit} \
                     (up to {MAX_LIMIT}) are answered: narrow the range or widen the window"
                )));
            }
            let values = api.reads.aggregate(source, &shape, &q).await?;
            windows_reply(&shape, &q, window, &values, csv)?
        }
        _ => {
            return Err(Problem::bad_request(
                "window and agg go together: window=15m&agg=mean",
            ))
        }
    };
    Ok(with_source(response, source))
}

/// The default start of windows: the newest `limit` windows, the last of them the one that
/// holds `end`'s last microsecond, and none before the earliest time a query may name.
fn newest_windows(end: i64, window_us: i64, limit: usize) -> i64 {
    let last = (end - 1).div_euclid(window_us) * window_us;
    let before = window_us.saturating_mul(i64::try_from(limit).unwrap_or(i64::MAX) - 1);
    last.saturating_sub(before).max(params::MIN_US)
}

/// The leaves an aggregation covers: those named in `fields`, or every numeric one.
fn aggregated(shape: &Shape, agg: Agg, fields: Option<&str>) -> Result<Vec<usize>, Problem> {
    let Some(fields) = fields else {
        let numeric: Vec<usize> = (0..shape.leaves.len())
            .filter(|&i| shape.leaves[i].ty.is_numeric())
            .collect();
        if numeric.is_empty() {
            return Err(Problem::bad_request(
                "this stream has no numeric fields to aggregate; name some in fields=",
            ));
        }
        return Ok(numeric);
    };
    let mut out = Vec::new();
    for name in fields.split(',') {
        let i = shape.index(name).ok_or_else(|| {
            Problem::bad_request(format!(
                "fields: {name:?} is not a field of this stream's schema"
            ))
        })?;
        if agg.numeric_only() && !shape.leaves[i].ty.is_numeric() {
            return Err(Problem::bad_request(format!(
                "fields: {name:?} is not numeric, and {} needs numbers",
                agg.name()
            )));
        }
        if !out.contains(&i) {
            out.push(i);
        }
    }
    Ok(out)
}

fn entry(shape: &Shape, r: &Row) -> Entry {
    Entry {
        entry_id: r.entry_id.clone(),
        seq: r.seq,
        ts: iso(r.ts_us),
        data: shape.data(&shape.all(), &r.values),
    }
}

fn add_next(r: &mut Response, next: Option<&str>) {
    if let Some(n) = next.and_then(|n| HeaderValue::from_str(n).ok()) {
        r.headers_mut().insert("X-Next-Cursor", n);
    }
}

fn with_source(mut r: Response, source: Backend) -> Response {
    r.headers_mut().insert(
        "X-ThingTotal-Backend",
        HeaderValue::from_static(source.name()),
    );
    r
}

fn csv_reply(body: Vec<u8>) -> Response {
    let mut r = Response::new(body.into());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    r
}

fn csv_failed(e: impl std::fmt::Display) -> Problem {
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        format!("CSV: {e}"),
    )
}

fn entries_csv(shape: &Shape, rows: &[Row], next: Option<&str>) -> Result<Response, Problem> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["entry_id".into(), "seq".into(), "ts".into()];
    header.extend(shape.leaves.iter().map(|l| csv_text(&l.name)));
    w.write_record(header.iter().map(|h| h.as_bytes()))
        .map_err(csv_failed)?;
    for r in rows {
        let mut record = vec![r.entry_id.clone(), r.seq.to_string(), iso(r.ts_us)];
        record.extend(r.values.iter().map(|v| cell(v.as_ref())));
        w.write_record(&record).map_err(csv_failed)?;
    }
    let mut r = csv_reply(w.into_inner().map_err(csv_failed)?);
    add_next(&mut r, next);
    Ok(r)
}

fn windows_reply(
    shape: &Shape,
    q: &AggQuery,
    window: &str,
    values: &[Vec<Option<Value>>],
    csv: bool,
) -> Result<Response, Problem> {
    let starts = q.window_starts();
    if csv {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header = vec!["start".into(), "end".into()];
        header.extend(q.leaves.iter().map(|&l| csv_text(&shape.leaves[l].name)));
        w.write_record(header.iter().map(|h| h.as_bytes()))
            .map_err(csv_failed)?;
        for (start, v) in starts.iter().zip(values) {
            let mut record = vec![iso(*start), iso(start + q.window_us)];
            record.extend(v.iter().map(|v| cell(v.as_ref())));
            w.write_record(&record).map_err(csv_failed)?;
        }
        return Ok(csv_reply(w.into_inner().map_err(csv_failed)?));
    }
    let windows = starts
        .iter()
        .zip(values)
        .map(|(start, v)| Window {
            start: iso(*start),
            end: iso(start + q.window_us),
            data: shape.data(&q.leaves, v),
        })
        .collect();
    Ok(warp::reply::json(&WindowsPage {
        window: window.to_owned(),
        agg: q.agg.name().to_owned(),
        fields: q
            .leaves
            .iter()
            .map(|&l| shape.leaves[l].name.clone())
            .collect(),
        windows,
    })
    .into_response())
}

/// The stream's latest entry.
#[utoipa::path(get, path = "/api/streams/{id}/entries/latest", tag = "entries",
    params(("id" = u64, Path, description = "Stream id"), LatestParams),
    responses(
        (status = 200, description = "The entry with the latest time", body = Entry,
            headers(("X-ThingTotal-Backend" = String, description = "influx or archive"))),
        (status = 400, description = "Bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Private stream, no credentials", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Wrong credentials", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such stream, or no entries yet", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The backend did not answer", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("api_key" = []), ("admin" = [])))]
pub(crate) async fn latest(
    api: Api,
    id: StreamId,
    c: Credential,
    query: &str,
) -> Result<Response, Problem> {
    let p: LatestParams = parse(query)?;
    let stream = readable(&api, id, &c).await?;
    let shape = api.shape(&stream);
    let source = api.reads.pick(source(p.source.as_deref())?)?;
    let rows = api.reads.newest(source, &shape, 1).await?;
    let row = rows
        .first()
        .ok_or_else(|| Problem::not_found(format!("stream {id} has no entries yet")))?;
    Ok(with_source(
        warp::reply::json(&entry(&shape, row)).into_response(),
        source,
    ))
}

/// The stream's recent dead-lettered entries, with their reasons and original bodies. They hold
/// what the schema refused to store, so they need the read key or the admin token even on a
/// public stream.
#[utoipa::path(get, path = "/api/streams/{id}/rejected", tag = "entries",
    params(("id" = u64, Path, description = "Stream id"), RejectedParams),
    responses(
        (status = 200, description = "Rejected entries, oldest first", body = RejectedPage),
        (status = 400, description = "Bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No credentials (public streams too)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Wrong credentials", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such stream", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The dead-letter topic did not answer, or too many searches at once; retry after Retry-After", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("admin" = [])))]
pub(crate) async fn rejected(
    api: Api,
    id: StreamId,
    c: Credential,
    query: &str,
) -> Result<Response, Problem> {
    let p: RejectedParams = parse(query)?;
    // Dead letters hold what the schema refused to store: the read key or the admin token,
    // even on a public stream.
    let stream = crate::streams::existing(&api, id).await?;
    auth::require_reader(api.admin_token(), &c, &stream)?;
    let now = Utc::now();
    let start = params::time("start", p.start.as_deref().unwrap_or("-24h"), now)?;
    let limit = params::limit("limit", p.limit.as_deref(), 100, 1000)?;
    let page = api
        .dead_letters
        .search(&stream.key(), start.div_euclid(1000), limit)
        .await?;
    Ok(warp::reply::json(&page).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_windows_are_the_newest_limit_ending_with_end() {
        let (minute, day) = (60_000_000, 86_400_000_000);
        let midnight = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
        for end in [
            midnight,
            midnight + 1,
            midnight + 12 * 3_600_000_000 + 123_456,
        ] {
            for (window_us, limit) in [(day, 100), (minute, 1), (7 * day, MAX_LIMIT)] {
                let start = newest_windows(end, window_us, limit);
                let q = AggQuery {
                    range: params::range(Some(start), end).unwrap(),
                    window_us,
                    agg: Agg::Mean,
                    leaves: Vec::new(),
                };
                assert_eq!(q.window_count(), limit as i64, "{end} {window_us} {limit}");
                assert_eq!(start.rem_euclid(window_us), 0);
                assert!(q.range.contains(end - 1));
            }
        }
        // Wide windows stop at the earliest time a query may name, with fewer windows.
        let century = params::duration("window", "5200w").unwrap();
        let start = newest_windows(midnight, century, 10);
        assert_eq!(start, params::MIN_US);
        let q = AggQuery {
            range: params::range(Some(start), midnight).unwrap(),
            window_us: century,
            agg: Agg::Mean,
            leaves: Vec::new(),
        };
        assert!(q.window_count() <= 10);
    }
}
