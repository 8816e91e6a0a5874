//! Rendering: feeds, channels and values as ThingSpeak writes them, in JSON, CSV and text.

use serde_json::{json, Map, Value};
use thingtotal_common::problem::Problem;
use thingtotal_common::stream::StreamRecord;
use thingtotal_common::thingspeak::channel_fields;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

use super::error::TsError;
use super::feeds::Feed;
use super::params::FeedsRequest;
use super::zone::Zone;
use crate::read::shape::cell;

/// An answer of `body` as `content_type`.
pub(super) fn text(body: &str, content_type: &'static str) -> Response {
    let mut r = Response::new(body.to_owned().into());
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A value as ThingSpeak shows it: always a string; null stays null.
pub(super) fn ts_value(v: Option<&Value>, round: Option<usize>) -> Value {
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

/// The `channel` object of feeds answers.
pub(super) fn channel_object(
    stream: &StreamRecord,
    zone: Zone,
    last_entry_id: Option<u64>,
) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(stream.id));
    m.insert("name".into(), json!(stream.name));
    if !stream.description.is_empty() {
        m.insert("description".into(), json!(stream.description));
    }
    for (field, name) in channel_fields(stream) {
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

/// A feed as JSON; `only` keeps one field.
pub(super) fn feed_json(
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

/// Feeds as ThingSpeak's CSV: `created_at,entry_id,field1,…` (no `entry_id` for windows);
/// `only` keeps one field.
pub(super) fn feeds_csv(
    feeds: &[Feed],
    req: &FeedsRequest,
    names: &[(String, String)],
    only: Option<usize>,
) -> Result<Response, TsError> {
    let body = csv_body(feeds, req, names, only)?;
    Ok(text(&body, "text/csv; charset=utf-8"))
}

fn csv_body(
    feeds: &[Feed],
    req: &FeedsRequest,
    names: &[(String, String)],
    only: Option<usize>,
) -> Result<String, TsError> {
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
                record.push(cell(Some(&ts_value(v.as_ref(), req.round))));
            }
        }
        w.write_record(&record).map_err(failed)?;
    }
    Ok(
        String::from_utf8(w.into_inner().map_err(|e| failed(e.into_error().into()))?)
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_strings() {
        assert_eq!(ts_value(Some(&json!(21.5)), None), json!("21.5"));
        assert_eq!(ts_value(Some(&json!(7)), None), json!("7"));
        assert_eq!(ts_value(Some(&json!(21.456)), Some(2)), json!("21.46"));
        assert_eq!(ts_value(Some(&json!(true)), None), json!("true"));
        assert_eq!(ts_value(None, None), Value::Null);
    }

    #[test]
    fn csv_strings_are_safe_in_a_spreadsheet_and_numbers_stay() {
        let req =
            super::super::params::feeds_request(&super::super::params::ReadQuery::parse("round=1"))
                .unwrap();
        let names = [
            ("field1".to_owned(), "t".to_owned()),
            ("field2".to_owned(), "note".to_owned()),
        ];
        let feed = Feed {
            ts_us: 0,
            entry_id: Some(1),
            values: vec![Some(json!(-3.54)), Some(json!("=1+2"))],
        };
        assert_eq!(
            csv_body(&[feed], &req, &names, None).unwrap(),
            "created_at,entry_id,field1,field2\n1970-01-01 00:00:00 UTC,1,-3.5,'=1+2\n"
        );
    }
}
