//! ThingSpeak's read API, so that existing clients read a stream as a channel by changing the
//! host: `/channels/{id}/feeds.json|csv`, `/fields/{n}.json|csv`, `/feeds/last.json`,
//! `/fields/{n}/last.json|txt`, `…/last_data_age.json` and `/channels/{id}.json`.
//!
//! It follows ThingSpeak's documented parameters and answers, quirks included: field values are
//! strings; `entry_id` is the entry's `seq`; `created_at` has whole seconds (`…Z`, or the offset
//! of `timezone`), and CSV writes it as `YYYY-MM-DD HH:MM:SS UTC`; the newest `results` entries
//! (100 by default, at most 8000) come back oldest first; a private channel read without its
//! key is a `400` with the body `-1`, and a `last` read of an empty channel is `-1`.
//! `field1..8` are the stream's `fields` (by default its first eight properties).
//!
//! Where ThingSpeak silently ignores a value it cannot use, this answers `400` with ThingSpeak's
//! error object instead: a bad `timezone`, date, window or number is a mistake worth seeing.

use std::sync::Arc;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{json, Map, Value};
use thingtotal_common::http::{self, Credential};
use thingtotal_common::keys;
use thingtotal_common::problem::Problem;
use thingtotal_common::stream::{StreamId, StreamRecord};
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::auth::{self, Access};
use crate::read::{self, params, Agg, AggQuery, EntriesQuery, Range, Row, Shape};
use crate::Api;

/// The most entries one request returns.
const MAX_RESULTS: usize = 8000;
/// Entries returned when no parameter narrows the request.
const DEFAULT_RESULTS: usize = 100;
/// The windows ThingSpeak aggregates over, in minutes.
const WINDOWS: [u32; 8] = [10, 15, 20, 30, 60, 240, 720, 1440];

/// A ThingSpeak answer that is not a success.
#[derive(Debug)]
enum TsError {
    /// No access: `400` with the body `-1`, as ThingSpeak answers.
    NoAccess,
    /// ThingSpeak's error object.
    Error {
        status: StatusCode,
        code: &'static str,
        message: &'static str,
        details: String,
    },
}

impl TsError {
    fn bad(details: impl Into<String>) -> Self {
        TsError::Error {
            status: StatusCode::BAD_REQUEST,
            code: "error_bad_request",
            message: "Bad Request",
            details: details.into(),
        }
    }

    fn not_found() -> Self {
        TsError::Error {
            status: StatusCode::NOT_FOUND,
            code: "error_resource_not_found",
            message: "Resource Not Found",
            details: "The requested resource was not found. Check the URL and try again.".into(),
        }
    }

    fn reply(self) -> Response {
        match self {
            TsError::NoAccess => {
                let mut r = text("-1", "application/json; charset=utf-8");
                *r.status_mut() = StatusCode::BAD_REQUEST;
                r
            }
            TsError::Error {
                status,
                code,
                message,
                details,
            } => {
                let body = json!({"status": status.as_u16().to_string(),
                    "error": {"error_code": code, "message": message, "details": details}});
                warp::reply::with_status(warp::reply::json(&body), status).into_response()
            }
        }
    }
}

impl From<Problem> for TsError {
    fn from(p: Problem) -> Self {
        let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status == StatusCode::BAD_REQUEST {
            return TsError::bad(p.detail);
        }
        TsError::Error {
            status,
            code: if status == StatusCode::NOT_FOUND {
                "error_resource_not_found"
            } else {
                "error_service_unavailable"
            },
            message: p.title,
            details: p.detail,
        }
    }
}

fn text(body: &str, content_type: &'static str) -> Response {
    let mut r = Response::new(body.to_owned().into());
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// What a ThingSpeak request names after `/channels/{id}/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    Txt,
}

fn format_of(ext: &str) -> Option<Format> {
    match ext {
        "json" => Some(Format::Json),
        "csv" => Some(Format::Csv),
        "txt" | "" => Some(Format::Txt),
        _ => None,
    }
}

/// The query, parsed leniently as ThingSpeak does: repeated and unknown names are ignored.
#[derive(Debug, Default)]
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(q: &str) -> Self {
        Self(serde_urlencoded::from_str(q).unwrap_or_default())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, TsError> {
        self.get(name)
            .map(|v| {
                v.parse::<T>()
                    .map_err(|_| TsError::bad(format!("{name}={v:?} is not a valid number")))
            })
            .transpose()
    }

    /// The zone of `timezone` (an IANA name), else of `offset` (hours), else UTC.
    fn zone(&self) -> Result<Zone, TsError> {
        if let Some(tz) = self.get("timezone") {
            return tz.parse::<Tz>().map(Zone::Named).map_err(|_| {
                TsError::bad(format!(
                    "timezone={tz:?} is not an IANA time zone name such as America/New_York"
                ))
            });
        }
        match self.number::<f64>("offset")? {
            None => Ok(Zone::Named(Tz::UTC)),
            Some(h) if (-14.0..=14.0).contains(&h) => FixedOffset::east_opt((h * 3600.0) as i32)
                .map(Zone::Fixed)
                .ok_or_else(|| TsError::bad("offset must be -14 to 14 hours")),
            Some(_) => Err(TsError::bad("offset must be -14 to 14 hours")),
        }
    }
}

/// The zone times are shown in, and `start` and `end` are read in.
#[derive(Debug, Clone, Copy)]
enum Zone {
    Named(Tz),
    Fixed(FixedOffset),
}

impl Zone {
    fn offset_at(&self, t: DateTime<Utc>) -> FixedOffset {
        match self {
            Zone::Named(tz) => tz.offset_from_utc_datetime(&t.naive_utc()).fix(),
            Zone::Fixed(o) => *o,
        }
    }

    fn local(&self, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self {
            Zone::Named(tz) => tz
                .from_local_datetime(&naive)
                .earliest()
                .map(|t| t.to_utc()),
            Zone::Fixed(o) => o.from_local_datetime(&naive).earliest().map(|t| t.to_utc()),
        }
    }

    /// `2026-01-02T03:04:05Z`, or `…-05:00` away from UTC.
    fn iso(&self, us: i64) -> String {
        let Some(t) = DateTime::from_timestamp_micros(us) else {
            return String::new();
        };
        let o = self.offset_at(t);
        if o.local_minus_utc() == 0 {
            t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
        } else {
            t.with_timezone(&o)
                .format("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        }
    }

    /// `2026-01-02 03:04:05 UTC`, or `… -0500` away from UTC, as ThingSpeak's CSV has it.
    fn csv(&self, us: i64) -> String {
        let Some(t) = DateTime::from_timestamp_micros(us) else {
            return String::new();
        };
        let o = self.offset_at(t);
        if o.local_minus_utc() == 0 {
            t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
        } else {
            t.with_timezone(&o)
                .format("%Y-%m-%d %H:%M:%S %z")
                .to_string()
        }
    }

    /// `start`/`end`: `YYYY-MM-DD HH:NN:SS` in this zone (or a date, or with its own offset).
    fn parse(&self, name: &str, s: &str) -> Result<i64, TsError> {
        let bad = || {
            TsError::bad(format!(
                "{name}={s:?} is not a date: use YYYY-MM-DD HH:NN:SS"
            ))
        };
        let naive = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(s.trim(), f).ok())
            .or_else(|| {
                NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
            });
        let t = match naive {
            Some(n) => self.local(n),
            None if s.len() > 10 => thingtotal_common::time::parse_device_time(s),
            None => None,
        }
        .ok_or_else(bad)?;
        // Checked against the same bounds as the native API's times.
        params::time(name, &t.to_rfc3339(), Utc::now()).map_err(|_| bad())
    }
}

/// The stream behind a channel; ThingSpeak's not-found answer if there is none.
async fn lookup(api: &Api, id: StreamId) -> Result<Arc<StreamRecord>, TsError> {
    crate::streams::existing(api, id).await.map_err(|p| {
        if p.status == StatusCode::NOT_FOUND.as_u16() {
            TsError::not_found()
        } else {
            TsError::from(p)
        }
    })
}

/// The stream behind a channel, if the caller may read it: public, or its read (or write) key,
/// or the admin token. ThingSpeak accepts the write key for reads too.
async fn channel(api: &Api, id: StreamId, c: &Credential) -> Result<Arc<StreamRecord>, TsError> {
    let stream = lookup(api, id).await?;
    if stream.public {
        return Ok(stream);
    }
    match auth::access(api.admin_token(), c, Some(&stream)) {
        Access::Admin | Access::Reader => Ok(stream),
        Access::Wrong
            if c.0
                .as_deref()
                .is_some_and(|k| keys::matches(k, &stream.write_key_sha256)) =>
        {
            Ok(stream)
        }
        _ => Err(TsError::NoAccess),
    }
}

/// A value as ThingSpeak shows it: always a string; null stays null.
fn ts_value(v: Option<&Value>, round: Option<usize>) -> Value {
    match v {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(s)) => Value::String(s.clone()),
        Some(Value::Number(n)) => match (round, n.as_f64()) {
            (Some(r), Some(f)) => Value::String(format!("{f:.r$}")),
            _ => Value::String(n.to_string()),
        },
        Some(other) => Value::String(other.to_string()),
    }
}

/// The channel's fields: (`fieldN`, the property it maps onto).
fn fields(stream: &StreamRecord) -> Vec<(String, String)> {
    stream
        .field_names()
        .into_iter()
        .take(8)
        .enumerate()
        .map(|(i, name)| (format!("field{}", i + 1), name))
        .collect()
}

/// The `channel` object of feeds answers.
fn channel_object(stream: &StreamRecord, zone: Zone, last_entry_id: Option<u64>) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(stream.id));
    m.insert("name".into(), json!(stream.name));
    if !stream.description.is_empty() {
        m.insert("description".into(), json!(stream.description));
    }
    for (field, name) in fields(stream) {
        m.insert(field, json!(name));
    }
    m.insert(
        "created_at".into(),
        json!(zone.iso(stream.created_at.timestamp_micros())),
    );
    m.insert(
        "updated_at".into(),
        json!(zone.iso(stream.updated_at.timestamp_micros())),
    );
    m.insert("last_entry_id".into(), json!(last_entry_id));
    Value::Object(m)
}

/// One feed: `created_at`, `entry_id` (absent for windows), then the fields asked for.
#[derive(Debug, Clone)]
struct Feed {
    ts_us: i64,
    entry_id: Option<u64>,
    values: Vec<Option<Value>>,
}

/// Each field's value of a row: the property's value in the rebuilt data (`ts` for the
/// stream's `timestamp_field`).
fn feed_of(stream: &StreamRecord, shape: &Shape, r: &Row) -> Feed {
    let data = shape.data(&shape.all(), &r.values);
    let values = fields(stream)
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

/// What a feeds request asked for.
#[derive(Debug)]
struct FeedsRequest {
    range: Range,
    results: usize,
    zone: Zone,
    round: Option<usize>,
    min: Option<f64>,
    max: Option<f64>,
    status: bool,
    location: bool,
    window: Option<(Agg, bool, i64)>,
}

fn feeds_request(p: &Params) -> Result<FeedsRequest, TsError> {
    let zone = p.zone()?;
    let now = Utc::now().timestamp_micros();
    let end = match p.get("end") {
        // ThingSpeak's end is inclusive, to the second.
        Some(e) => zone.parse("end", e)? + 1_000_000,
        None => now + 1,
    };
    let start = if let Some(s) = p.get("start") {
        Some(zone.parse("start", s)?)
    } else if let Some(m) = p.number::<u32>("minutes")? {
        Some(now - i64::from(m) * 60_000_000)
    } else {
        p.number::<u32>("days")?
            .map(|d| now - i64::from(d).min(365 * 300) * 86_400_000_000)
    };
    let narrowed = ["results", "days", "start", "end"]
        .iter()
        .any(|n| p.get(n).is_some());
    let results = match p.get("results") {
        None => {
            if narrowed {
                MAX_RESULTS
            } else {
                DEFAULT_RESULTS
            }
        }
        Some(r) => r
            .parse::<usize>()
            .map_err(|_| TsError::bad(format!("results={r:?}: give a whole number up to 8000")))?
            .min(MAX_RESULTS),
    };
    let mut window = None;
    for (name, agg, per_entry) in [
        ("timescale", Agg::First, false),
        ("sum", Agg::Sum, false),
        ("average", Agg::Sum, true),
        ("median", Agg::Median, false),
    ] {
        if let Some(v) = p.get(name) {
            let minutes = if v == "daily" {
                1440
            } else {
                v.parse::<u32>()
                    .ok()
                    .filter(|m| WINDOWS.contains(m))
                    .ok_or_else(|| {
                        TsError::bad(format!(
                            "{name}={v:?}: use 10, 15, 20, 30, 60, 240, 720, 1440 or daily"
                        ))
                    })?
            };
            window = Some((agg, per_entry, i64::from(minutes) * 60_000_000));
        }
    }
    let round = p.number::<usize>("round")?;
    if round.is_some_and(|r| r > 16) {
        return Err(TsError::bad("round must be 0 to 16"));
    }
    Ok(FeedsRequest {
        range: params::range(start, end)?,
        results,
        zone,
        round,
        min: p.number("min")?,
        max: p.number("max")?,
        status: p.flag("status"),
        location: p.flag("location"),
        window,
    })
}

/// The newest `results` entries of the range, oldest first, as feeds (or their windows).
async fn read_feeds(
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
    let names = fields(stream);
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

/// A feed as JSON; `only` keeps one field.
fn feed_json(
    f: &Feed,
    req_zone: Zone,
    names: &[(String, String)],
    only: Option<usize>,
    round: Option<usize>,
    status: bool,
    location: bool,
) -> Value {
    let mut m = Map::new();
    m.insert("created_at".into(), json!(req_zone.iso(f.ts_us)));
    if let Some(id) = f.entry_id {
        m.insert("entry_id".into(), json!(id));
    }
    for (i, ((field, _), v)) in names.iter().zip(&f.values).enumerate() {
        if only.is_none_or(|o| o == i) {
            m.insert(field.clone(), ts_value(v.as_ref(), round));
        }
    }
    if location {
        for k in ["latitude", "longitude", "elevation"] {
            m.insert(k.into(), Value::Null);
        }
    }
    if status {
        m.insert("status".into(), Value::Null);
    }
    Value::Object(m)
}

fn feeds_csv(
    feeds: &[Feed],
    req: &FeedsRequest,
    names: &[(String, String)],
    only: Option<usize>,
) -> Result<Response, TsError> {
    let failed = |e: csv::Error| {
        TsError::from(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e.to_string(),
        ))
    };
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    let aggregated = req.window.is_some();
    let mut header = vec!["created_at".to_owned()];
    if !aggregated {
        header.push("entry_id".into());
    }
    for (i, (field, _)) in names.iter().enumerate() {
        if only.is_none_or(|o| o == i) {
            header.push(field.clone());
        }
    }
    w.write_record(&header).map_err(failed)?;
    for f in feeds {
        let mut record = vec![req.zone.csv(f.ts_us)];
        if let Some(id) = f.entry_id {
            record.push(id.to_string());
        }
        for (i, v) in f.values.iter().enumerate() {
            if only.is_none_or(|o| o == i) {
                record.push(match ts_value(v.as_ref(), req.round) {
                    Value::String(s) => s,
                    _ => String::new(),
                });
            }
        }
        w.write_record(&record).map_err(failed)?;
    }
    let body = String::from_utf8(w.into_inner().map_err(|e| failed(e.into_error().into()))?)
        .unwrap_or_default();
    Ok(text(&body, "text/csv; charset=utf-8"))
}

/// The latest entry's `seq`, for `last_entry_id`.
async fn last_row(api: &Api, shape: &Shape) -> Result<Option<Row>, TsError> {
    let source = api.reads.pick(None)?;
    Ok(api.reads.newest(source, shape, 1).await?.into_iter().next())
}

/// `feeds.json|csv` (`field` = None) and `fields/{n}.json|csv`.
async fn feeds(
    api: Api,
    id: StreamId,
    field: Option<u8>,
    format: Format,
    c: Credential,
    q: &str,
) -> Result<Response, TsError> {
    let stream = channel(&api, id, &c).await?;
    let p = Params::parse(q);
    let req = feeds_request(&p)?;
    let names = fields(&stream);
    let only = field_index(field, &names)?;
    let shape = Shape::of(&stream);
    let feeds = read_feeds(&api, &stream, &shape, &req).await?;
    match format {
        Format::Csv => feeds_csv(&feeds, &req, &names, only),
        Format::Json | Format::Txt => {
            let last = last_row(&api, &shape).await?.map(|r| r.seq);
            let mut channel = channel_object(&stream, req.zone, last);
            if p.flag("metadata") {
                if let Some(m) = channel.as_object_mut() {
                    m.insert("metadata".into(), json!(""));
                }
            }
            let feeds: Vec<Value> = feeds
                .iter()
                .map(|f| {
                    feed_json(
                        f,
                        req.zone,
                        &names,
                        only,
                        req.round,
                        req.status,
                        req.location,
                    )
                })
                .collect();
            Ok(warp::reply::json(&json!({"channel": channel, "feeds": feeds})).into_response())
        }
    }
}

/// The index of `fieldN` among the channel's fields; `None` for all fields.
fn field_index(field: Option<u8>, names: &[(String, String)]) -> Result<Option<usize>, TsError> {
    match field {
        None => Ok(None),
        Some(n) if (1..=names.len()).contains(&(n as usize)) => Ok(Some(n as usize - 1)),
        Some(n) => Err(TsError::bad(format!(
            "field {n} is not a field of this channel: it has field1 to field{}",
            names.len()
        ))),
    }
}

/// `feeds/last.json` and `fields/{n}/last.json|txt`: the newest entry (with a value in that
/// field), or `-1` when there is none.
async fn last(
    api: Api,
    id: StreamId,
    field: Option<u8>,
    format: Format,
    c: Credential,
    q: &str,
) -> Result<Response, TsError> {
    let stream = channel(&api, id, &c).await?;
    let p = Params::parse(q);
    let zone = p.zone()?;
    let round = p.number::<usize>("round")?.filter(|r| *r <= 16);
    let names = fields(&stream);
    let only = field_index(field, &names)?;
    let shape = Shape::of(&stream);
    let Some(feed) = last_feed(&api, &stream, &shape, only).await? else {
        return Ok(match format {
            Format::Json => text("-1", "application/json; charset=utf-8"),
            _ => text("-1", "text/plain; charset=utf-8"),
        });
    };
    match (format, only) {
        (Format::Txt, Some(i)) => {
            let v = match ts_value(feed.values[i].as_ref(), round) {
                Value::String(s) => s,
                _ => String::new(),
            };
            let v = format!(
                "{}{v}{}",
                p.get("prepend").unwrap_or_default(),
                p.get("append").unwrap_or_default()
            );
            Ok(text(&v, "text/plain; charset=utf-8"))
        }
        (Format::Csv, _) => {
            let req = FeedsRequest {
                range: Range {
                    start_us: 0,
                    end_us: 1,
                },
                results: 1,
                zone,
                round,
                min: None,
                max: None,
                status: false,
                location: false,
                window: None,
            };
            feeds_csv(&[feed], &req, &names, only)
        }
        _ => Ok(warp::reply::json(&feed_json(
            &feed,
            zone,
            &names,
            only,
            round,
            p.flag("status"),
            p.flag("location"),
        ))
        .into_response()),
    }
}

/// The newest entry, or with `only`, the newest with a value in that field (searching the
/// newest 8000 entries).
async fn last_feed(
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

/// `…/last_data_age.json`: seconds since the newest entry (with a value in the field).
async fn last_data_age(
    api: Api,
    id: StreamId,
    field: Option<u8>,
    c: Credential,
) -> Result<Response, TsError> {
    let stream = channel(&api, id, &c).await?;
    let names = fields(&stream);
    let only = field_index(field, &names)?;
    let shape = Shape::of(&stream);
    let Some(feed) = last_feed(&api, &stream, &shape, only).await? else {
        return Ok(text("-1", "application/json; charset=utf-8"));
    };
    let age = ((Utc::now().timestamp_micros() - feed.ts_us) / 1_000_000).max(0);
    Ok(
        warp::reply::json(&json!({"last_data_age": age.to_string(), "last_data_age_units": "s"}))
            .into_response(),
    )
}

/// `/channels/{id}.json`: the channel's description. A private channel needs the admin token
/// (ThingSpeak's user API key); its read key is not enough, as on ThingSpeak.
async fn describe(api: Api, id: StreamId, c: Credential, q: &str) -> Result<Response, TsError> {
    let stream = lookup(&api, id).await?;
    if !stream.public && auth::access(api.admin_token(), &c, Some(&stream)) != Access::Admin {
        return Err(TsError::NoAccess);
    }
    let zone = Params::parse(q).zone()?;
    let shape = Shape::of(&stream);
    let last = last_row(&api, &shape).await.ok().flatten().map(|r| r.seq);
    let mut m = Map::new();
    m.insert("id".into(), json!(stream.id));
    m.insert("name".into(), json!(stream.name));
    m.insert(
        "description".into(),
        if stream.description.is_empty() {
            Value::Null
        } else {
            json!(stream.description)
        },
    );
    m.insert("metadata".into(), Value::Null);
    m.insert("latitude".into(), Value::Null);
    m.insert("longitude".into(), Value::Null);
    m.insert(
        "created_at".into(),
        json!(zone.iso(stream.created_at.timestamp_micros())),
    );
    m.insert("elevation".into(), Value::Null);
    m.insert("last_entry_id".into(), json!(last));
    m.insert("public_flag".into(), json!(stream.public));
    for (field, name) in fields(&stream) {
        m.insert(field, json!(name));
    }
    m.insert("tags".into(), json!([]));
    Ok(warp::reply::json(&Value::Object(m)).into_response())
}

async fn answer(r: Result<Response, TsError>) -> Response {
    r.unwrap_or_else(TsError::reply)
}

/// The path segment `name.ext` (or `name`), split.
fn split_ext(seg: &str) -> (&str, &str) {
    seg.rsplit_once('.').unwrap_or((seg, ""))
}

/// ThingSpeak's read routes. Path segments carry the format (`feeds.json`), so they are
/// matched by hand after `/channels/`.
pub(crate) fn routes(
    state: impl Filter<Extract = (Api,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
) -> BoxedFilter<(Response,)> {
    let query = || warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::path("channels")
        .and(warp::path::tail())
        .and(warp::get())
        .and(state)
        .and(http::credential())
        .and(query())
        .and_then(
            |tail: warp::path::Tail, api: Api, c: Credential, q: String| async move {
                let segs: Vec<&str> = tail.as_str().split('/').collect();
                let response = match dispatch(&segs) {
                    Some(Route::Describe(id)) => answer(describe(api, id, c, &q).await).await,
                    Some(Route::Feeds(id, field, f)) => {
                        answer(feeds(api, id, field, f, c, &q).await).await
                    }
                    Some(Route::Last(id, field, f)) => {
                        answer(last(api, id, field, f, c, &q).await).await
                    }
                    Some(Route::Age(id, field)) => {
                        answer(last_data_age(api, id, field, c).await).await
                    }
                    None => return Err(warp::reject::not_found()),
                };
                Ok::<_, warp::Rejection>(response)
            },
        )
        .boxed()
}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Describe(StreamId),
    Feeds(StreamId, Option<u8>, Format),
    Last(StreamId, Option<u8>, Format),
    Age(StreamId, Option<u8>),
}

fn dispatch(segs: &[&str]) -> Option<Route> {
    let field = |s: &str| s.parse::<u8>().ok();
    match segs {
        [one] => {
            let (id, ext) = split_ext(one);
            (ext == "json").then_some(Route::Describe(id.parse().ok()?))
        }
        [id, rest @ ..] => {
            let id: StreamId = id.parse().ok()?;
            match rest {
                [feeds] => {
                    let (name, ext) = split_ext(feeds);
                    let f = format_of(ext).filter(|f| *f != Format::Txt)?;
                    matches!(name, "feeds" | "feed").then_some(Route::Feeds(id, None, f))
                }
                ["feeds" | "feed", last] => match split_ext(last) {
                    ("last", ext) => Some(Route::Last(id, None, format_of(ext)?)),
                    ("last_data_age", "json") => Some(Route::Age(id, None)),
                    _ => None,
                },
                ["fields" | "field", n] => {
                    let (n, ext) = split_ext(n);
                    let f = format_of(ext).filter(|f| *f != Format::Txt)?;
                    Some(Route::Feeds(id, Some(field(n)?), f))
                }
                ["fields" | "field", n, last] => match split_ext(last) {
                    ("last", ext) => Some(Route::Last(id, Some(field(n)?), format_of(ext)?)),
                    ("last_data_age", "json") => Some(Route::Age(id, Some(field(n)?))),
                    _ => None,
                },
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_endpoint_and_format() {
        let d = |p: &str| dispatch(&p.split('/').collect::<Vec<_>>());
        assert_eq!(d("9.json"), Some(Route::Describe(9)));
        assert_eq!(d("9/feeds.json"), Some(Route::Feeds(9, None, Format::Json)));
        assert_eq!(d("9/feed.csv"), Some(Route::Feeds(9, None, Format::Csv)));
        assert_eq!(
            d("9/fields/2.csv"),
            Some(Route::Feeds(9, Some(2), Format::Csv))
        );
        assert_eq!(
            d("9/feeds/last.json"),
            Some(Route::Last(9, None, Format::Json))
        );
        assert_eq!(
            d("9/fields/1/last"),
            Some(Route::Last(9, Some(1), Format::Txt))
        );
        assert_eq!(
            d("9/fields/1/last.txt"),
            Some(Route::Last(9, Some(1), Format::Txt))
        );
        assert_eq!(
            d("9/fields/3/last_data_age.json"),
            Some(Route::Age(9, Some(3)))
        );
        assert_eq!(d("9/feeds/last_data_age.json"), Some(Route::Age(9, None)));
        for bad in [
            "9",
            "x.json",
            "9/feeds",
            "9/feeds.xml",
            "9/fields/x.json",
            "9/fields/1/first.json",
        ] {
            assert_eq!(d(bad), None, "{bad}");
        }
    }

    #[test]
    fn times_as_thingspeak_writes_them() {
        let us = 1_767_323_045_678_000; // 2026-01-02T03:04:05.678Z
        let utc = Zone::Named(Tz::UTC);
        assert_eq!(utc.iso(us), "2026-01-02T03:04:05Z");
        assert_eq!(utc.csv(us), "2026-01-02 03:04:05 UTC");
        let ny = Zone::Named("America/New_York".parse().unwrap());
        assert_eq!(ny.iso(us), "2026-01-01T22:04:05-05:00");
        assert_eq!(ny.csv(us), "2026-01-01 22:04:05 -0500");
        assert_eq!(
            ny.parse("start", "2026-01-01 22:04:05").unwrap(),
            1_767_323_045_000_000
        );
        assert!(utc.parse("start", "2026-01-01'; DROP").is_err());
    }

    #[test]
    fn values_are_strings() {
        assert_eq!(ts_value(Some(&json!(21.5)), None), json!("21.5"));
        assert_eq!(ts_value(Some(&json!(7)), None), json!("7"));
        assert_eq!(ts_value(Some(&json!(21.456)), Some(2)), json!("21.46"));
        assert_eq!(ts_value(Some(&json!(true)), None), json!("true"));
        assert_eq!(ts_value(None, None), Value::Null);
    }
}

/// The OpenAPI descriptions of the routes above, which are matched by hand.
pub(crate) mod doc {
    /// The newest entries of a channel, oldest first: `{"channel": {…}, "feeds": [{"created_at",
    /// "entry_id", "field1", …}]}`, values as strings. With `average`, `median`, `sum` or
    /// `timescale`, one feed per window, without `entry_id`.
    #[utoipa::path(get, path = "/channels/{id}/feeds.json", tag = "thingspeak",
        params(("id" = u64, Path, description = "Channel (stream) id"),
               ("api_key" = Option<String>, Query, description = "Read key (private channels)"),
               ("results" = Option<u32>, Query, description = "Entries, at most 8000; default 100 (8000 with days, start or end)"),
               ("days" = Option<u32>, Query, description = "24-hour periods before now"),
               ("minutes" = Option<u32>, Query, description = "Minutes before now"),
               ("start" = Option<String>, Query, description = "YYYY-MM-DD HH:NN:SS in timezone"),
               ("end" = Option<String>, Query, description = "YYYY-MM-DD HH:NN:SS in timezone, inclusive"),
               ("timezone" = Option<String>, Query, description = "IANA name, such as America/New_York"),
               ("offset" = Option<f64>, Query, description = "Hours from UTC (timezone wins)"),
               ("round" = Option<u32>, Query, description = "Decimal places"),
               ("min" = Option<f64>, Query, description = "Drop entries with a smaller value"),
               ("max" = Option<f64>, Query, description = "Drop entries with a larger value"),
               ("average" = Option<String>, Query, description = "10, 15, 20, 30, 60, 240, 720, 1440 or daily (minutes)"),
               ("median" = Option<String>, Query, description = "Likewise"),
               ("sum" = Option<String>, Query, description = "Likewise"),
               ("timescale" = Option<String>, Query, description = "Likewise: the first value of each window")),
        responses((status = 200, description = "The channel and its feeds", body = thingtotal_common::thingspeak::ThingSpeakFeeds),
                  (status = 400, description = "`-1` for a private channel without its key; ThingSpeak's error object for a bad parameter", body = thingtotal_common::thingspeak::ThingSpeakError),
                  (status = 404, description = "No such channel", body = thingtotal_common::thingspeak::ThingSpeakError)))]
    #[allow(dead_code)]
    fn feeds_json() {}

    /// The same as CSV: `created_at,entry_id,field1,…`, dates as `YYYY-MM-DD HH:MM:SS UTC`.
    #[utoipa::path(get, path = "/channels/{id}/feeds.csv", tag = "thingspeak",
        params(("id" = u64, Path, description = "Channel (stream) id")),
        responses((status = 200, description = "CSV", body = String, content_type = "text/csv"),
                  (status = 400, description = "`-1` or a bad parameter", body = String)))]
    #[allow(dead_code)]
    fn feeds_csv() {}

    /// One field's feeds: each feed holds `created_at`, `entry_id` and `fieldN`.
    #[utoipa::path(get, path = "/channels/{id}/fields/{n}.json", tag = "thingspeak",
        params(("id" = u64, Path, description = "Channel (stream) id"),
               ("n" = u8, Path, description = "Field number, 1 to 8")),
        responses((status = 200, description = "The channel and the field's feeds", body = thingtotal_common::thingspeak::ThingSpeakFeeds),
                  (status = 400, description = "`-1`, a bad parameter or a field the channel lacks", body = String)))]
    #[allow(dead_code)]
    fn field_json() {}

    /// One field's feeds as CSV.
    #[utoipa::path(get, path = "/channels/{id}/fields/{n}.csv", tag = "thingspeak",
        params(("id" = u64, Path, description = "Channel (stream) id"),
               ("n" = u8, Path, description = "Field number, 1 to 8")),
        responses((status = 200, description = "CSV", body = String, content_type = "text/csv"),
                  (status = 400, description = "`-1` or a bad parameter", body = String)))]
    #[allow(dead_code)]
    fn field_csv() {}

    /// The newest entry as a bare feed object; `-1` when there is none.
    #[utoipa::path(get, path = "/channels/{id}/feeds/last.json", tag = "thingspeak",
        params(("id" = u64, Path, description = "Channel (stream) id")),
        responses((status = 200, description = "The feed, or -1", body = thingtotal_common::thingspeak::ThingSpeakFeed),
                  (status = 400, description = "`-1`: a private channel without its key", body = String)))]
    #[allow(dead_code)]
    fn last_json() {}

    /// The newest entry with a value in field `n`; `-1` when there is none.
    #[utoipa::path(get, path = "/channels/{id}/fields/{n}/last.json", tag = "thingspeak",
        params(("id" = u64, Path, description = "Channel (stream) id"),
               ("n" = u8, Path, description = "Field number, 1 to 8")),
        responses((status = 200, description = "`{created_at, entry_id, fieldN}`, or -1", body = thingtotal_common::thingspeak::ThingSpeakFeed),
                  (status = 400, description = "`-1`", body = String)))]
    #[allow(dead_code)]
    fn field_last_json() {}

    /// The newest value of field `n` as text (`prepend` and `append` wrap it).
    #[utoipa::path(get, path = "/channels/{id}/fields/{n}/last.txt", tag = "thingspeak",
        params(("id" = u64, Path, description = "Channel (stream) id"),
               ("n" = u8, Path, description = "Field number, 1 to 8")),
        responses((status = 200, description = "The value, or -1", body = String, content_type = "text/plain"),
                  (status = 400, description = "`-1`", body = String)))]
    #[allow(dead_code)]
    fn field_last_txt() {}

    /// Seconds since the newest entry: `{"last_data_age": "174", "last_data_age_units": "s"}`.
    #[utoipa::path(get, path = "/channels/{id}/feeds/last_data_age.json", tag = "thingspeak",
        params(("id" = u64, Path, description = "Channel (stream) id")),
        responses((status = 200, description = "The age, or -1", body = thingtotal_common::thingspeak::ThingSpeakDataAge),
                  (status = 400, description = "`-1`", body = String)))]
    #[allow(dead_code)]
    fn last_data_age_json() {}

    /// Seconds since the newest value of field `n`.
    #[utoipa::path(get, path = "/channels/{id}/fields/{n}/last_data_age.json", tag = "thingspeak",
        params(("id" = u64, Path, description = "Channel (stream) id"),
               ("n" = u8, Path, description = "Field number, 1 to 8")),
        responses((status = 200, description = "The age, or -1", body = thingtotal_common::thingspeak::ThingSpeakDataAge),
                  (status = 400, description = "`-1`", body = String)))]
    #[allow(dead_code)]
    fn field_last_data_age_json() {}

    /// The channel's description. A private channel needs the admin token (ThingSpeak's user
    /// API key).
    #[utoipa::path(get, path = "/channels/{id}.json", tag = "thingspeak",
        params(("id" = u64, Path, description = "Channel (stream) id")),
        responses((status = 200, description = "id, name, description, created_at, last_entry_id, field labels…", body = thingtotal_common::thingspeak::ThingSpeakChannelSettings),
                  (status = 400, description = "`-1`: private, and not the admin token", body = String),
                  (status = 404, description = "No such channel", body = thingtotal_common::thingspeak::ThingSpeakError)))]
    #[allow(dead_code)]
    fn channel_json() {}
}
