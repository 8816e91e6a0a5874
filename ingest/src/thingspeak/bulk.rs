//! `POST /channels/{id}/bulk_update.json`: many entries, each at its `created_at` or
//! `delta_t`.

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Map, Value};
use thingtotal_common::stream::StreamId;
use thingtotal_common::thingspeak::ErrorCode;
use thingtotal_common::time::parse_device_time;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;
use warp::Reply;

use super::entry::Update;
use super::params::{write_key, WriteParams};
use super::{decoded, is_compressed, ts_error, ts_refused};
use crate::append::Refused;
use crate::Ingest;

/// ThingSpeak's `error_bad_request`.
fn bad_request(details: &str) -> Response {
    ts_error(ErrorCode::BAD_REQUEST, details)
}

/// An update's `created_at`, if it has one, and its `delta_t` in seconds.
type Timing = (Option<DateTime<Utc>>, f64);

/// The times of a bulk update's entries. An entry with `created_at` is at that time; one with
/// `delta_t` is that many seconds after the entry before it. Entries before the first
/// `created_at` count back from it, and if no entry has one, the last entry is at `now`.
/// `Err(i)` if update `i`'s `delta_t` puts an entry outside the times that can be represented:
/// the arithmetic is checked, since `delta_t` is whatever the client sent.
fn bulk_times(updates: &[Timing], now: DateTime<Utc>) -> Result<Vec<DateTime<Utc>>, usize> {
    // Saturates for huge values, which the checked additions below then refuse.
    let secs = |d: f64| Duration::microseconds((d * 1e6) as i64);
    let mut times: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(updates.len());
    for (i, (at, delta)) in updates.iter().enumerate() {
        let t = match (at, i.checked_sub(1).and_then(|j| times[j])) {
            (Some(at), _) => Some(*at),
            (None, Some(prev)) => Some(prev.checked_add_signed(secs(*delta)).ok_or(i)?),
            (None, None) => None,
        };
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
                let t = next
                    .checked_sub_signed(secs(updates[i + 1].1))
                    .ok_or(i + 1)?;
                times[i] = Some(t);
                next = t;
            }
        }
    }
    Ok(times.into_iter().map(|t| t.unwrap_or(now)).collect())
}

/// Update `i` of a bulk update: what it sends, its `created_at` and its `delta_t` (0 if it
/// has only `created_at`). `Err` with the details of a 400 if it cannot be used.
fn bulk_entry(i: usize, u: &Value) -> Result<(Update, Timing), String> {
    let Some(o) = u.as_object() else {
        return Err(format!("update {i} is not an object"));
    };
    let p: WriteParams = o
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
            None => return Err(format!("update {i}: created_at {s:?} is not a time")),
        },
        None => None,
    };
    let delta = match p.get("delta_t") {
        Some(d) => match d.parse::<f64>() {
            Ok(d) if d.is_finite() && d >= 0.0 => d,
            _ => {
                return Err(format!(
                    "update {i}: delta_t {d:?} is not a number of seconds"
                ))
            }
        },
        None if created_at.is_none() => {
            return Err(format!("update {i} needs created_at or delta_t"))
        }
        None => 0.0,
    };
    Ok((Update::from_params(&p), (created_at, delta)))
}

/// `POST /channels/{id}/bulk_update.json`.
pub(super) async fn bulk_update(
    ingest: Ingest,
    id: StreamId,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // A compressed body is inflated only for a caller whose key, in a header, is the channel's:
    // a key inside it would cost the inflating to find.
    let outer = if is_compressed(&headers) {
        match ingest
            .writable(id, write_key(&headers, &WriteParams::new()).as_deref())
            .await
        {
            Ok(s) => Some(s),
            Err(Refused::NoKey) => {
                return ts_error(
                    ErrorCode::AUTH_REQUIRED,
                    "a compressed body needs its write key in the THINGSPEAKAPIKEY header",
                )
            }
            Err(refused) => return ts_refused(refused),
        }
    } else {
        None
    };
    let body = match decoded(&ingest, &headers, body).await {
        Ok(b) => b,
        Err(p) if p.status == 413 => return ts_error(ErrorCode::REQUEST_TOO_LARGE, &p.detail),
        Err(p) => return bad_request(&p.detail),
    };
    let v: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(&format!("the body is not a JSON object: {e}")),
    };
    let mut p = WriteParams::new();
    if let Some(Value::String(k)) = v.get("write_api_key") {
        p.insert("write_api_key".into(), k.clone());
    }
    let stream = match outer {
        Some(s) => s,
        None => match ingest
            .writable(id, write_key(&headers, &p).as_deref())
            .await
        {
            Ok(s) => s,
            Err(refused) => return ts_refused(refused),
        },
    };
    let Some(Value::Array(updates)) = v.get("updates") else {
        return bad_request("the body needs an \"updates\" array");
    };
    if updates.is_empty() {
        return bad_request("\"updates\" is empty");
    }
    if updates.len() > ingest.limits.max_entries {
        return ts_error(
            ErrorCode::REQUEST_TOO_LARGE,
            &format!("at most {} updates per request", ingest.limits.max_entries),
        );
    }
    let mut parsed = Vec::with_capacity(updates.len());
    let mut timing = Vec::with_capacity(updates.len());
    for (i, u) in updates.iter().enumerate() {
        match bulk_entry(i, u) {
            Ok((update, at)) => {
                parsed.push(update);
                timing.push(at);
            }
            Err(details) => return bad_request(&details),
        }
    }
    let times = match bulk_times(&timing, Utc::now()) {
        Ok(times) => times,
        Err(i) => {
            return bad_request(&format!(
                "update {i}: delta_t {} puts an entry outside the representable times",
                timing[i].1
            ))
        }
    };
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
        Err(refused) => ts_refused(refused),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_device_time(s).unwrap()
    }

    #[test]
    fn bulk_times_follow_created_at_and_delta_t() {
        let now = t("2026-01-01 12:00:00");
        // Only delta_t: the last entry is now, the others count back.
        assert_eq!(
            bulk_times(&[(None, 0.0), (None, 10.0), (None, 5.0)], now),
            Ok(vec![
                t("2026-01-01 11:59:45"),
                t("2026-01-01 11:59:55"),
                now
            ])
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
            Ok(vec![
                t("2026-01-01 10:00:00"),
                t("2026-01-01 10:00:00"),
                t("2026-01-01 10:00:30"),
                t("2026-01-01 11:00:00"),
                t("2026-01-01 11:00:01.5"),
            ])
        );
    }

    #[test]
    fn a_delta_t_beyond_the_representable_times_is_refused_not_a_panic() {
        let now = t("2026-01-01 12:00:00");
        // Counting back from now, and forward from a created_at.
        assert_eq!(bulk_times(&[(None, 0.0), (None, 1e13)], now), Err(1));
        assert_eq!(
            bulk_times(&[(Some(now), 0.0), (None, 1e13), (None, 1.0)], now),
            Err(1)
        );
        assert_eq!(bulk_times(&[(None, 0.0), (None, f64::MAX)], now), Err(1));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// `delta_t` seconds as `bulk_times` counts them, to the microsecond.
    fn secs(d: f64) -> Duration {
        Duration::microseconds((d * 1e6) as i64)
    }

    /// A time within about a thousand years of 1970, to the second.
    fn any_time() -> impl Strategy<Value = DateTime<Utc>> {
        (-30_000_000_000i64..30_000_000_000).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
    }

    /// An update's `created_at` (for some) and `delta_t`: whole seconds, fractions, or zero.
    fn timings(
        delta: BoxedStrategy<f64>,
    ) -> impl Strategy<Value = Vec<(Option<DateTime<Utc>>, f64)>> {
        prop::collection::vec((prop::option::weighted(0.3, any_time()), delta), 1..12)
    }

    fn moderate_delta() -> BoxedStrategy<f64> {
        prop_oneof![Just(0.0), 0.0..1e6f64, (0u32..100_000).prop_map(f64::from)].boxed()
    }

    /// A bulk update's entry, as clients write them and otherwise.
    fn any_update() -> impl Strategy<Value = Value> {
        let value = prop_oneof![
            any::<String>().prop_map(Value::String),
            "[0-9 :.TZ+-]{0,25}".prop_map(Value::String),
            "-?[0-9]{0,6}(\\.[0-9]{0,3})?(e[0-9]{1,3})?|NaN|inf".prop_map(Value::String),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter_map("finite", serde_json::Number::from_f64)
                .prop_map(Value::Number),
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Null),
            Just(json!([1, {"a": null}])),
        ];
        let name = prop_oneof![
            prop::sample::select(vec!["created_at", "delta_t", "field1", "status", "lat"])
                .prop_map(str::to_owned),
            any::<String>(),
        ];
        prop_oneof![
            9 => prop::collection::vec((name, value.clone()), 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            1 => value,
        ]
    }

    proptest! {
        #[test]
        fn each_entry_is_at_its_created_at_or_delta_t_after_the_one_before(
            updates in timings(moderate_delta()),
            now in any_time(),
        ) {
            // Within a thousand years of 1970 every time can be represented.
            let times = bulk_times(&updates, now).unwrap();
            prop_assert_eq!(times.len(), updates.len());
            let first_known = updates.iter().position(|(at, _)| at.is_some());
            for (i, (at, delta)) in updates.iter().enumerate() {
                if let Some(at) = at {
                    prop_assert_eq!(times[i], *at, "update {}", i);
                }
                // Entries before the first created_at count back from it; later ones without
                // one count on from the entry before.
                let counted = at.is_none() || first_known.is_none_or(|f| i <= f);
                if i > 0 && counted {
                    prop_assert_eq!(times[i] - times[i - 1], secs(*delta), "update {}", i);
                }
            }
            if first_known.is_none() {
                prop_assert_eq!(times.last(), Some(&now));
            }
        }

        #[test]
        fn a_delta_t_of_any_size_gives_times_or_names_the_update_it_breaks(
            updates in timings(prop_oneof![moderate_delta(), 1e9..f64::MAX].boxed()),
            now in any_time(),
        ) {
            match bulk_times(&updates, now) {
                Ok(times) => prop_assert_eq!(times.len(), updates.len()),
                // The first update's delta_t places no entry, so it is never the one named.
                Err(i) => prop_assert!((1..updates.len()).contains(&i), "{}", i),
            }
        }

        #[test]
        fn created_at_and_delta_t_read_back_as_sent(
            at in any_time(),
            delta in 0.0..1e9f64,
            as_text in any::<bool>(),
        ) {
            let d = if as_text { json!(delta.to_string()) } else { json!(delta) };
            let u = json!({"created_at": at.to_rfc3339(), "delta_t": d, "field1": "21.5"});
            let (_, timing) = bulk_entry(3, &u).unwrap();
            prop_assert_eq!(timing, (Some(at), delta));
        }

        #[test]
        fn any_update_is_usable_or_a_bad_request_that_names_it(u in any_update(), i in 0..100usize) {
            match bulk_entry(i, &u) {
                Ok((_, (at, delta))) => {
                    prop_assert!(delta.is_finite() && delta >= 0.0);
                    let sent = u.get("created_at").filter(|v| !v.is_null());
                    prop_assert_eq!(at.is_some(), sent.is_some());
                }
                Err(details) => {
                    prop_assert!(details.starts_with(&format!("update {i}")), "{}", details)
                }
            }
        }
    }
}
