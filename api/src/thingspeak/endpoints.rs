//! The read endpoints: one function each, from the query to the answer.

use chrono::Utc;
use serde_json::{json, Map, Value};
use thingtotal_common::http::Credential;
use thingtotal_common::stream::StreamId;
use thingtotal_common::thingspeak::channel_fields;
use warp::reply::Response;
use warp::Reply;

use super::access::{channel, lookup};
use super::error::TsError;
use super::feeds::{last_feed, last_row, read_feeds};
use super::params::{feeds_request, field_index, FeedsRequest, ReadQuery};
use super::render::{channel_object, feed_json, feeds_csv, text, ts_value};
use super::routes::Format;
use crate::auth::{self, Access};
use crate::read::Range;
use crate::Api;

/// `feeds.json|csv` (`field` = None) and `fields/{n}.json|csv`.
pub(super) async fn feeds(
    api: Api,
    id: StreamId,
    field: Option<u8>,
    format: Format,
    c: Credential,
    q: &str,
) -> Result<Response, TsError> {
    let stream = channel(&api, id, &c).await?;
    let p = ReadQuery::parse(q);
    let req = feeds_request(&p)?;
    let names = channel_fields(&stream);
    let only = field_index(field, &names)?;
    let shape = api.shape(&stream);
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

/// `feeds/last.json` and `fields/{n}/last.json|txt`: the newest entry (with a value in that
/// field), or `-1` when there is none.
pub(super) async fn last(
    api: Api,
    id: StreamId,
    field: Option<u8>,
    format: Format,
    c: Credential,
    q: &str,
) -> Result<Response, TsError> {
    let stream = channel(&api, id, &c).await?;
    let p = ReadQuery::parse(q);
    let zone = p.zone()?;
    let round = p.number::<usize>("round")?.filter(|r| *r <= 16);
    let names = channel_fields(&stream);
    let only = field_index(field, &names)?;
    let shape = api.shape(&stream);
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

/// `…/last_data_age.json`: seconds since the newest entry (with a value in the field).
pub(super) async fn last_data_age(
    api: Api,
    id: StreamId,
    field: Option<u8>,
    c: Credential,
) -> Result<Response, TsError> {
    let stream = channel(&api, id, &c).await?;
    let names = channel_fields(&stream);
    let only = field_index(field, &names)?;
    let shape = api.shape(&stream);
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
pub(super) async fn describe(
    api: Api,
    id: StreamId,
    c: Credential,
    q: &str,
) -> Result<Response, TsError> {
    let stream = lookup(&api, id).await?;
    if !stream.public && auth::access(api.admin_token(), &c, Some(&stream)) != Access::Admin {
        return Err(TsError::NoAccess);
    }
    let zone = ReadQuery::parse(q).zone()?;
    let shape = api.shape(&stream);
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
    for (field, name) in channel_fields(&stream) {
        m.insert(field, json!(name));
    }
    m.insert("tags".into(), json!([]));
    Ok(warp::reply::json(&Value::Object(m)).into_response())
}
