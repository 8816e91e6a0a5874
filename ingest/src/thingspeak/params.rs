//! A write's parameters, merged from the query string and the body, and its write key.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// A write's parameters, merged from the query string and the body (form or JSON).
pub(super) type WriteParams = HashMap<String, String>;

/// The parameters of the query and the body; a body that starts with `{` (or is sent as JSON)
/// is a JSON object, any other a form.
pub(super) fn params(
    query: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<WriteParams, String> {
    let mut out: WriteParams = serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    // No body, or a JSON `null`, adds nothing to the query.
    if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
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
pub(super) fn write_key(headers: &warp::http::HeaderMap, params: &WriteParams) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_headers_or_parameters() {
        let mut h = warp::http::HeaderMap::new();
        let mut p = WriteParams::new();
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
        let p = params("api_key=k", Some("application/json"), b" null ").unwrap();
        assert_eq!(p.len(), 1, "a null body adds nothing: {p:?}");
    }
}
