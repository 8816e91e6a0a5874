//! ThingSpeak's write API, so that existing devices and client libraries work by changing the
//! host: `GET|POST /update[.json]` and `POST /channels/{id}/bulk_update.json`.
//!
//! Field values arrive as strings (`field1=21.5`); each is converted here to the type the
//! stream's schema gives its property (`field1..field8` map onto the stream's `fields`), and the
//! validator judges the result like any other entry. A value that does not convert stays a
//! string, so the validator rejects it with the reason. `created_at` goes into the stream's
//! `timestamp_field`, or, on a stream without one, into the `tt.created_at` header, from which
//! the validator takes the entry's `ts`; `lat`, `long`, `elevation` and `status` are kept if the schema has
//! properties of those names (`latitude`/`longitude` are accepted too).
//!
//! Answers follow ThingSpeak: `/update` returns the new entry's id (its `seq`) as text, or `0`
//! on failure; `/update.json` returns the entry object with values as strings; a bulk update
//! answers `202 {"success":true}`, and its errors use ThingSpeak's error object.

use std::collections::HashMap;

use bytes::Bytes;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use thingtotal_common::http::BodyTooLarge;
use thingtotal_common::stream::{StreamId, StreamRecord};
use thingtotal_common::time::parse_device_time;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::native::decode;
use crate::append::Refused;
use crate::Ingest;

/// Request parameters merged from the query string and the body (form or JSON).
type Params = HashMap<String, String>;

fn params(query: &str, content_type: Option<&str>, body: &[u8]) -> Result<Params, String> {
    let mut out: Params = serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(out);
    }
    let is_json = content_type.is_some_and(|c| c.contains("json"))
        || body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if is_json {
        let v: Map<String, Value> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        for (k, v) in v {
            let s = match v {
                Value::String(s) => s,
                Value::Null => continue,
                other => other.to_string(),
            };
            out.insert(k, s);
        }
    } else {
        let body = std::str::from_utf8(body).map_err(|e| e.to_string())?;
        out.extend(
            serde_urlencoded::from_str::<Vec<(String, String)>>(body).map_err(|e| e.to_string())?,
        );
    }
    Ok(out)
}

/// The write key, wherever ThingSpeak clients put it.
fn write_key(headers: &warp::http::HeaderMap, params: &Params) -> Option<String> {
    headers
        .iter()
        .find(|(name, _)| name.as_str().contains("thingspeakapikey"))
        .and_then(|(_, v)| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            ["api_key", "key", "apikey", "write_api_key"]
                .iter()
                .find_map(|k| params.get(*k).cloned())
        })
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
}

/// Converts a form value to the JSON type the schema gives the property.
fn typed(value: &str, property: Option<&Value>) -> Value {
    let value = value.trim_end_matches(['\r', '\n']);
    let types: Vec<&str> = match property.and_then(|p| p.get("type")) {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if value.is_empty() && types.contains(&"null") {
        return Value::Null;
    }
    for t in &types {
        match *t {
            "integer" => {
                if let Ok(i) = value.trim().parse::<i64>() {
                    return json!(i);
                }
                if let Ok(f) = value.trim().parse::<f64>() {
                    if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 {
                        return json!(f as i64);
                    }
                }
            }
            "number" => {
                if let Some(n) = value
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                {
                    return Value::Number(n);
                }
            }
            "boolean" => match value.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => return Value::Bool(true),
                "false" | "0" => return Value::Bool(false),
                _ => {}
            },
            "string" => return Value::String(value.to_owned()),
            _ => {}
        }
    }
    Value::String(value.to_owned())
}

/// One ThingSpeak update, as sent.
#[derive(Debug, Default)]
struct Update {
    fields: [Option<String>; 8],
    latitude: Option<String>,
    longitude: Option<String>,
    elevation: Option<String>,
    status: Option<String>,
    created_at: Option<DateTime<Utc>>,
}

impl Update {
    fn from_params(p: &Params) -> Self {
        let get = |names: &[&str]| names.iter().find_map(|n| p.get(*n).cloned());
        let mut u = Update {
            latitude: get(&["lat", "latitude"]),
            longitude: get(&["long", "longitude"]),
            elevation: get(&["elevation"]),
            status: get(&["status"]),
            // ThingSpeak ignores a created_at it cannot parse and uses the server time.
            created_at: get(&["created_at"]).and_then(|s| parse_device_time(&s)),
            ..Update::default()
        };
        for (i, f) in u.fields.iter_mut().enumerate() {
            *f = get(&[&format!("field{}", i + 1), &format!("{}", i + 1)]);
        }
        u
    }

    /// The entry's data in the stream's shape.
    fn entry(&self, stream: &StreamRecord) -> Bytes {
        let properties = stream.schema.get("properties").and_then(Value::as_object);
        let property = |name: &str| properties.and_then(|p| p.get(name));
        let mut data = Map::new();
        for (name, value) in stream.field_names().iter().zip(&self.fields) {
            if let Some(v) = value {
                data.insert(name.clone(), typed(v, property(name)));
            }
        }
        for (names, value) in [
            (&["lat", "latitude"][..], &self.latitude),
            (&["long", "longitude"][..], &self.longitude),
            (&["elevation"][..], &self.elevation),
            (&["status"][..], &self.status),
        ] {
            if let (Some(v), Some(name)) = (value, names.iter().find(|n| property(n).is_some())) {
                data.insert((*name).to_owned(), typed(v, property(name)));
            }
        }
        if let (Some(t), Some(field)) = (self.created_at, &stream.timestamp_field) {
            data.insert(
                field.clone(),
                json!(t.to_rfc3339_opts(SecondsFormat::Micros, true)),
            );
        }
        Bytes::from(serde_json::to_vec(&Value::Object(data)).expect("a JSON object serialises"))
    }

    /// The time that travels in the `tt.created_at` header: `created_at`, when the stream has
    /// no `timestamp_field` to hold it in the entry's data.
    fn header_time(&self, stream: &StreamRecord) -> Option<DateTime<Utc>> {
        self.created_at.filter(|_| stream.timestamp_field.is_none())
    }

    /// ThingSpeak's entry object: values as strings, compact.
    fn answer(&self, stream: &StreamRecord, seq: u64, created_at: DateTime<Utc>) -> Value {
        let mut o = Map::new();
        o.insert("channel_id".into(), json!(stream.id));
        o.insert(
            "created_at".into(),
            json!(created_at.to_rfc3339_opts(SecondsFormat::Secs, true)),
        );
        o.insert("entry_id".into(), json!(seq));
        for (i, v) in self.fields.iter().enumerate() {
            o.insert(format!("field{}", i + 1), json!(v));
        }
        o.insert("latitude".into(), json!(self.latitude));
        o.insert("longitude".into(), json!(self.longitude));
        o.insert("elevation".into(), json!(self.elevation));
        o.insert("status".into(), json!(self.status));
        Value::Object(o)
    }
}

fn text(status: StatusCode, body: &'static str) -> Response {
    warp::reply::with_status(body, status).into_response()
}

/// The body with its `Content-Encoding` undone.
async fn decoded(
    ingest: &Ingest,
    headers: &warp::http::HeaderMap,
    body: Bytes,
) -> Result<Bytes, thingtotal_common::problem::Problem> {
    let encoding = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok());
    decode(encoding, body, ingest.limits.max_decompressed_bytes).await
}

/// `GET|POST /update` and `/update.json`.
async fn update(
    ingest: Ingest,
    json_answer: bool,
    headers: warp::http::HeaderMap,
    query: String,
    body: Bytes,
) -> Response {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    let Ok(body) = decoded(&ingest, &headers, body).await else {
        return text(StatusCode::BAD_REQUEST, "0");
    };
    let Ok(p) = params(&query, content_type, &body) else {
        return text(StatusCode::BAD_REQUEST, "0");
    };
    // As ThingSpeak: a missing or unknown key is a 400 with the body 0.
    let Some(key) = write_key(&headers, &p) else {
        return text(StatusCode::BAD_REQUEST, "0");
    };
    let stream = match ingest.stream_for_key(&key).await {
        Ok(s) => s,
        Err(Refused::Unavailable(_)) => return unavailable_zero(),
        Err(_) => return text(StatusCode::BAD_REQUEST, "0"),
    };
    let u = Update::from_params(&p);
    match ingest
        .append(
            &stream,
            vec![u.entry(&stream)],
            &[u.header_time(&stream)],
            "thingspeak",
        )
        .await
    {
        Ok(a) if json_answer => {
            let created = u.created_at.unwrap_or(a.received_at);
            warp::reply::json(&u.answer(&stream, a.seq[0], created)).into_response()
        }
        Ok(a) => warp::reply::with_header(
            a.seq[0].to_string(),
            "content-type",
            "text/plain; charset=utf-8",
        )
        .into_response(),
        Err(Refused::TooLarge { .. }) => text(StatusCode::PAYLOAD_TOO_LARGE, "0"),
        Err(_) => unavailable_zero(),
    }
}

fn unavailable_zero() -> Response {
    let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "0");
    r.headers_mut()
        .insert("retry-after", warp::http::HeaderValue::from_static("1"));
    r
}

/// ThingSpeak's error object; its `status` is a string.
fn ts_error(status: StatusCode, code: &str, message: &str, details: &str) -> Response {
    let body = json!({"status": status.as_str(), "error": {"error_code": code, "message": message, "details": details}});
    let mut r = warp::reply::with_status(warp::reply::json(&body), status).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert("retry-after", warp::http::HeaderValue::from_static("1"));
    }
    r
}

fn bad_request(details: &str) -> Response {
    ts_error(
        StatusCode::BAD_REQUEST,
        "error_bad_request",
        "Bad Request",
        details,
    )
}

fn too_large(details: &str) -> Response {
    ts_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "error_request_too_large",
        "Request Entity Too Large",
        details,
    )
}

/// The times of a bulk update's entries. An entry with `created_at` is at that time; one with
/// `delta_t` is that many seconds after the entry before it. Entries before the first
/// `created_at` count back from it, and if no entry has one, the last entry is at `now`.
fn bulk_times(updates: &[(Option<DateTime<Utc>>, f64)], now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let secs = |d: f64| Duration::microseconds((d * 1e6) as i64);
    let mut times: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(updates.len());
    for (i, (at, delta)) in updates.iter().enumerate() {
        let t = at.or_else(|| {
            i.checked_sub(1)
                .and_then(|j| times[j])
                .map(|prev| prev + secs(*delta))
        });
        times.push(t);
    }
    let anchor = times.iter().rposition(Option::is_some);
    let mut next = match anchor {
        Some(i) => times[i].expect("anchor is known"),
        None => now,
    };
    let start = anchor.unwrap_or(updates.len());
    if anchor.is_none() {
        if let Some(last) = times.last_mut() {
            *last = Some(now);
        }
    }
    for i in (0..start.min(updates.len())).rev() {
        match times[i] {
            Some(t) => next = t,
            None => {
                let t = next - secs(updates[i + 1].1);
                times[i] = Some(t);
                next = t;
            }
        }
    }
    times.into_iter().map(|t| t.unwrap_or(now)).collect()
}

/// `POST /channels/{id}/bulk_update.json`.
async fn bulk_update(
    ingest: Ingest,
    id: StreamId,
    headers: warp::http::HeaderMap,
    body: Bytes,
) -> Response {
    let body = match decoded(&ingest, &headers, body).await {
        Ok(b) => b,
        Err(p) if p.status == 413 => return too_large(&p.detail),
        Err(p) => return bad_request(&p.detail),
    };
    let v: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(&format!("the body is not a JSON object: {e}")),
    };
    let mut p = Params::new();
    if let Some(Value::String(k)) = v.get("write_api_key") {
        p.insert("write_api_key".into(), k.clone());
    }
    let key = write_key(&headers, &p);
    let stream = match ingest.writable(id, key.as_deref()).await {
        Ok(s) => s,
        Err(Refused::UnknownStream) => {
            return ts_error(
                StatusCode::NOT_FOUND,
                "error_resource_not_found",
                "Resource Not Found",
                "no such channel",
            )
        }
        Err(Refused::Unavailable(d)) => {
            return ts_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "error_service_unavailable",
                "Service Unavailable",
                &d,
            )
        }
        Err(_) => {
            return ts_error(
                StatusCode::UNAUTHORIZED,
                "error_auth_required",
                "Authorization Required",
                "Please make sure that your API key is correct.",
            )
        }
    };
    let Some(Value::Array(updates)) = v.get("updates") else {
        return bad_request("the body needs an \"updates\" array");
    };
    if updates.is_empty() {
        return bad_request("\"updates\" is empty");
    }
    if updates.len() > ingest.limits.max_entries {
        return too_large(&format!(
            "at most {} updates per request",
            ingest.limits.max_entries
        ));
    }
    let mut parsed = Vec::with_capacity(updates.len());
    let mut timing = Vec::with_capacity(updates.len());
    for (i, u) in updates.iter().enumerate() {
        let Some(o) = u.as_object() else {
            return bad_request(&format!("update {i} is not an object"));
        };
        let p: Params = o
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                )
            })
            .collect();
        let created_at = match p.get("created_at") {
            Some(s) => match parse_device_time(s) {
                Some(t) => Some(t),
                None => return bad_request(&format!("update {i}: created_at {s:?} is not a time")),
            },
            None => None,
        };
        let delta = match p.get("delta_t") {
            Some(d) => match d.parse::<f64>() {
                Ok(d) if d.is_finite() && d >= 0.0 => d,
                _ => {
                    return bad_request(&format!(
                        "update {i}: delta_t {d:?} is not a number of seconds"
                    ))
                }
            },
            None if created_at.is_none() => {
                return bad_request(&format!("update {i} needs created_at or delta_t"))
            }
            None => 0.0,
        };
        parsed.push(Update::from_params(&p));
        timing.push((created_at, delta));
    }
    let times = bulk_times(&timing, Utc::now());
    let mut header_times = Vec::with_capacity(parsed.len());
    let entries = parsed
        .iter_mut()
        .zip(times)
        .map(|(u, t)| {
            u.created_at = Some(t);
            header_times.push(u.header_time(&stream));
            u.entry(&stream)
        })
        .collect();
    match ingest
        .append(&stream, entries, &header_times, "thingspeak")
        .await
    {
        Ok(_) => warp::reply::with_status(
            warp::reply::json(&json!({"success": true})),
            StatusCode::ACCEPTED,
        )
        .into_response(),
        Err(Refused::TooLarge { index, size, limit }) => too_large(&format!(
            "update {index} is {size} bytes as an entry; at most {limit} bytes"
        )),
        Err(e) => ts_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "error_service_unavailable",
            "Service Unavailable",
            &format!("{e:?}"),
        ),
    }
}

/// The ThingSpeak-compatible write routes.
pub(crate) fn routes(
    state: impl Filter<Extract = (Ingest,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    max_body: u64,
) -> warp::filters::BoxedFilter<(Response,)> {
    let query = || warp::query::raw().or(warp::any().map(String::new)).unify();
    let format = warp::path("update")
        .and(warp::path::end())
        .map(|| false)
        .or(warp::path("update.json")
            .and(warp::path::end())
            .map(|| true))
        .unify();
    let update = format
        .and(warp::get().or(warp::post()).unify())
        .and(state.clone())
        .and(warp::header::headers_cloned())
        .and(query())
        .and(thingtotal_common::http::body_or_refusal(max_body))
        .then(
            |json_answer, i, h, q, b: Result<Bytes, warp::Rejection>| async move {
                let answer = match b {
                    Ok(b) => update(i, json_answer, h, q, b).await,
                    // ThingSpeak's answer to any failed write.
                    Err(r) if r.find::<BodyTooLarge>().is_some() => {
                        text(StatusCode::PAYLOAD_TOO_LARGE, "0")
                    }
                    Err(refused) => crate::refusal(refused).await,
                };
                crate::counted("update", answer).await
            },
        );
    let bulk = warp::path!("channels" / u64 / "bulk_update.json")
        .and(warp::post())
        .and(state)
        .and(warp::header::headers_cloned())
        .and(thingtotal_common::http::body_or_refusal(max_body))
        .then(|id, i, h, b: Result<Bytes, warp::Rejection>| async move {
            let answer = match b {
                Ok(b) => bulk_update(i, id, h, b).await,
                Err(r) => match r.find::<BodyTooLarge>() {
                    Some(large) => {
                        too_large(&format!("the body is larger than {} bytes", large.limit))
                    }
                    None => crate::refusal(r).await,
                },
            };
            crate::counted("bulk_update", answer).await
        });
    update.or(bulk).unify().boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_device_time(s).unwrap()
    }

    #[test]
    fn form_values_take_the_schema_type() {
        let p = |t: &str| json!({"type": t});
        assert_eq!(typed("21.5", Some(&p("number"))), json!(21.5));
        assert_eq!(typed("21", Some(&p("number"))), json!(21.0));
        assert_eq!(typed("7", Some(&p("integer"))), json!(7));
        assert_eq!(typed("7.0", Some(&p("integer"))), json!(7));
        assert_eq!(
            typed("7.5", Some(&p("integer"))),
            json!("7.5"),
            "left for the validator to reject"
        );
        assert_eq!(typed("1", Some(&p("boolean"))), json!(true));
        assert_eq!(typed("FALSE", Some(&p("boolean"))), json!(false));
        assert_eq!(typed("0042", Some(&p("string"))), json!("0042"));
        assert_eq!(typed("abc", Some(&p("number"))), json!("abc"));
        assert_eq!(typed("NaN", Some(&p("number"))), json!("NaN"));
        assert_eq!(
            typed("", Some(&json!({"type": ["number", "null"]}))),
            Value::Null
        );
        assert_eq!(typed("3\r\n", Some(&p("integer"))), json!(3));
        assert_eq!(typed("x", None), json!("x"));
    }

    #[test]
    fn bulk_times_follow_created_at_and_delta_t() {
        let now = t("2026-01-01 12:00:00");
        // Only delta_t: the last entry is now, the others count back.
        assert_eq!(
            bulk_times(&[(None, 0.0), (None, 10.0), (None, 5.0)], now),
            vec![t("2026-01-01 11:59:45"), t("2026-01-01 11:59:55"), now]
        );
        // created_at anchors what follows and what precedes it.
        assert_eq!(
            bulk_times(
                &[
                    (None, 0.0),
                    (Some(t("2026-01-01 10:00:00")), 0.0),
                    (None, 30.0),
                    (Some(t("2026-01-01 11:00:00")), 0.0),
                    (None, 1.5)
                ],
                now
            ),
            vec![
                t("2026-01-01 10:00:00"),
                t("2026-01-01 10:00:00"),
                t("2026-01-01 10:00:30"),
                t("2026-01-01 11:00:00"),
                t("2026-01-01 11:00:01.5"),
            ]
        );
    }

    #[test]
    fn keys_come_from_headers_or_parameters() {
        let mut h = warp::http::HeaderMap::new();
        let mut p = Params::new();
        assert_eq!(write_key(&h, &p), None);
        p.insert("api_key".into(), " k1 ".into());
        assert_eq!(write_key(&h, &p).as_deref(), Some("k1"));
        h.insert("x-thingspeakapikey", "k2".parse().unwrap());
        assert_eq!(write_key(&h, &p).as_deref(), Some("k2"));
        let p = params(
            "api_key=a&field1=1",
            Some("application/x-www-form-urlencoded"),
            b"field2=2%2E5&status=hi+there",
        )
        .unwrap();
        assert_eq!(p["field2"], "2.5");
        assert_eq!(p["status"], "hi there");
        let p = params(
            "",
            Some("application/json"),
            br#"{"api_key":"k","field1":21.5,"field2":"x","lat":null}"#,
        )
        .unwrap();
        assert_eq!(p["field1"], "21.5");
        assert!(!p.contains_key("lat"));
    }
}
