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

    #[test]
    fn json_numbers_keep_every_digit_the_device_sent() {
        let p = params(
            "",
            None,
            br#"{"field1":8.351501357612126e-57,"field2":0.30000000000000004}"#,
        )
        .unwrap();
        assert_eq!(p["field1"], "8.351501357612126e-57");
        assert_eq!(p["field2"], "0.30000000000000004");
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// A parameter: one of ThingSpeak's names or any other, with any value.
    fn pair() -> impl Strategy<Value = (String, String)> {
        let name = prop_oneof![
            prop::sample::select(vec![
                "api_key",
                "field1",
                "field8",
                "created_at",
                "status",
                "lat"
            ])
            .prop_map(str::to_owned),
            any::<String>(),
        ];
        (name, any::<String>())
    }

    /// The parameters as a map: a later one of the same name wins, the body over the query.
    fn merged(query: &[(String, String)], body: &[(String, String)]) -> WriteParams {
        query.iter().chain(body).cloned().collect()
    }

    proptest! {
        #[test]
        fn a_form_reads_back_the_parameters_it_was_written_with(
            query in prop::collection::vec(pair(), 0..5),
            body in prop::collection::vec(pair(), 0..5),
            content_type in prop::option::of(Just("application/x-www-form-urlencoded")),
        ) {
            let q = serde_urlencoded::to_string(&query).unwrap();
            let b = serde_urlencoded::to_string(&body).unwrap();
            prop_assert_eq!(params(&q, content_type, b.as_bytes()), Ok(merged(&query, &body)));
        }

        #[test]
        fn a_json_body_gives_each_member_as_text_and_drops_nulls(
            query in prop::collection::vec(pair(), 0..3),
            members in prop::collection::vec(
                (any::<String>(), prop_oneof![
                    any::<String>().prop_map(Value::String),
                    any::<i64>().prop_map(Value::from),
                    any::<f64>().prop_filter_map("finite", serde_json::Number::from_f64)
                        .prop_map(Value::Number),
                    any::<bool>().prop_map(Value::Bool),
                    Just(Value::Null),
                    Just(serde_json::json!({"a": [1, "b"]})),
                ]),
                0..6,
            ),
            declared in any::<bool>(),
        ) {
            let object: Map<String, Value> = members.iter().cloned().collect();
            let body = serde_json::to_vec(&object).unwrap();
            let q = serde_urlencoded::to_string(&query).unwrap();
            let text: Vec<(String, String)> = object
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect();
            let mut expected = merged(&query, &text);
            // A null member leaves what the query gave.
            for (k, v) in &object {
                if v.is_null() && !text.iter().any(|(t, _)| t == k) {
                    match query.iter().rev().find(|(n, _)| n == k) {
                        Some((_, qv)) => expected.insert(k.clone(), qv.clone()),
                        None => expected.remove(k),
                    };
                }
            }
            let content_type = declared.then_some("application/json");
            prop_assert_eq!(params(&q, content_type, &body), Ok(expected));
        }

        #[test]
        fn any_request_gives_parameters_or_an_error(
            query in any::<String>(),
            content_type in prop::option::of("(application/json|text/plain|[a-z/+]{0,20})"),
            body in prop_oneof![
                any::<Vec<u8>>(),
                "[{ ]?[a-z0-9=&%+\":,{}]{0,40}".prop_map(String::into_bytes),
            ],
        ) {
            if let Ok(p) = params(&query, content_type.as_deref(), &body) {
                // Whatever the body, the query's parameters are there unless the body set them.
                let from_query: Vec<(String, String)> =
                    serde_urlencoded::from_str(&query).unwrap();
                for (k, _) in from_query {
                    prop_assert!(p.contains_key(&k));
                }
            }
        }
    }
}
