//! The streams API, through `thingtotal api` itself, on real Kafka.

use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use thingtotal_testkit::{random_prefix, start_api, start_part, Process, ADMIN_TOKEN};

async fn call(
    method: Method,
    url: String,
    key: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Client::new().request(method, url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Creates a stream through `api` and returns the answer, keys included.
async fn create(api: &Process, name: &str, public: bool) -> Value {
    let (s, created) = call(
        Method::POST,
        format!("{}/api/streams", api.base),
        Some(ADMIN_TOKEN),
        Some(definition(name, public)),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    created
}

fn definition(name: &str, public: bool) -> Value {
    json!({
        "name": name,
        "description": "a greenhouse",
        "schema": {"type": "object", "properties": {
            "temperature": {"type": "number"},
            "site": {"type": "string"},
            "at": {"type": "string", "format": "date-time"}},
            "required": ["temperature"]},
        "tags": ["site"],
        "timestamp_field": "at",
        "public": public,
    })
}

/// Posts one entry to stream `id` through an ingest process, with the write key `key`.
async fn post_entry(ingest: &Process, id: u64, key: &str) -> StatusCode {
    Client::new()
        .post(format!("{}/api/streams/{id}/entries", ingest.base))
        .header("x-api-key", key)
        .json(&json!({"temperature": 20.5, "site": "a"}))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_have_a_full_crud_cycle() {
    let prefix = random_prefix("crud");
    let api = start_api(&prefix).await;
    let ingest = start_part("ingest", &prefix, &[]).await;
    let url = |p: &str| format!("{}{p}", api.base);
    let created = create(&api, "gh", false).await;
    let id = created["id"].as_u64().unwrap();
    let write_key = created["write_key"].as_str().unwrap().to_owned();
    assert_eq!(created["version"], 1);
    assert_eq!(
        post_entry(&ingest, id, &write_key).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(created["fields"], json!(["temperature", "site", "at"]));
    assert_eq!(created["measurement"], id.to_string());
    assert_eq!(created["created_at"], created["updated_at"]);
    let read_key = created["read_key"].as_str().unwrap().to_owned();
    assert!(created["write_key"].as_str().unwrap().len() >= 43);

    // Read with the admin token or the read key; the keys are never shown again.
    for key in [ADMIN_TOKEN, read_key.as_str()] {
        let (s, got) = call(
            Method::GET,
            url(&format!("/api/streams/{id}")),
            Some(key),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(got["name"], "gh");
        assert!(got.get("write_key").is_none() && got.get("read_key").is_none());
        assert!(got.get("write_key_sha256").is_none());
    }
    // Listing: the admin sees it, an anonymous caller does not (it is private).
    let (_, all) = call(Method::GET, url("/api/streams"), Some(ADMIN_TOKEN), None).await;
    assert!(all["streams"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["id"] == id));
    let (s, public) = call(Method::GET, url("/api/streams"), None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!public["streams"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["id"] == id));

    // Change it: version +1, updated_at moves, id and keys stay.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut changed = definition("gh renamed", true);
    changed["fields"] = json!(["site", "temperature"]);
    let (s, updated) = call(
        Method::PUT,
        url(&format!("/api/streams/{id}")),
        Some(ADMIN_TOKEN),
        Some(changed),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{updated}");
    assert_eq!(updated["id"], id);
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["name"], "gh renamed");
    assert_eq!(updated["fields"], json!(["site", "temperature"]));
    assert_eq!(updated["created_at"], created["created_at"]);
    assert!(updated["updated_at"].as_str().unwrap() > created["updated_at"].as_str().unwrap());
    let (_, got) = call(
        Method::GET,
        url(&format!("/api/streams/{id}")),
        Some(&read_key),
        None,
    )
    .await;
    assert_eq!(got["version"], 2, "the read key still works after a change");
    // Now public: anonymous callers read and list it.
    let (s, _) = call(Method::GET, url(&format!("/api/streams/{id}")), None, None).await;
    assert_eq!(s, StatusCode::OK);
    let (_, public) = call(Method::GET, url("/api/streams"), None, None).await;
    assert!(public["streams"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["id"] == id));

    // Pagination walks every stream once.
    for i in 0..3 {
        call(
            Method::POST,
            url("/api/streams"),
            Some(ADMIN_TOKEN),
            Some(definition(&format!("p{i}"), false)),
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut after = 0u64;
    loop {
        let (_, page) = call(
            Method::GET,
            url(&format!("/api/streams?limit=2&after={after}")),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
        let ids: Vec<u64> = page["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_u64().unwrap())
            .collect();
        assert!(ids.len() <= 2);
        seen.extend(ids);
        match page["next_after"].as_u64() {
            Some(n) => after = n,
            None => break,
        }
    }
    assert_eq!(seen.len(), 4);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));

    // Delete: 204, then 404.
    let (s, _) = call(
        Method::DELETE,
        url(&format!("/api/streams/{id}")),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, p) = call(
        Method::GET,
        url(&format!("/api/streams/{id}")),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(p["status"], 404);
    // Its entries are refused from then on.
    assert_eq!(
        post_entry(&ingest, id, &write_key).await,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_shown_once_and_rotation_retires_the_old_key() {
    let prefix = random_prefix("keys");
    let api = start_api(&prefix).await;
    let ingest = start_part("ingest", &prefix, &[]).await;
    let url = |p: &str| format!("{}{p}", api.base);
    let created = create(&api, "k", false).await;
    let id = created["id"].as_u64().unwrap();
    let old_read = created["read_key"].as_str().unwrap().to_owned();
    let old_write = created["write_key"].as_str().unwrap().to_owned();

    let (s, rotated) = call(
        Method::POST,
        url(&format!("/api/streams/{id}/keys")),
        Some(ADMIN_TOKEN),
        Some(json!({"rotate": "write"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    let new_write = rotated["write_key"].as_str().unwrap();
    assert_ne!(new_write, old_write);
    assert!(
        rotated.get("read_key").is_none(),
        "only the rotated key is shown"
    );
    assert_eq!(rotated["version"], 2, "a rotation is a change: {rotated}");
    assert_eq!(
        post_entry(&ingest, id, &old_write).await,
        StatusCode::FORBIDDEN,
        "the old write key is refused"
    );
    assert_eq!(
        post_entry(&ingest, id, new_write).await,
        StatusCode::ACCEPTED
    );
    let (s, _) = call(
        Method::GET,
        url(&format!("/api/streams/{id}")),
        Some(&old_read),
        None,
    )
    .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "the read key survives a write-key rotation"
    );

    let (_, rotated) = call(
        Method::POST,
        url(&format!("/api/streams/{id}/keys")),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert!(
        rotated["write_key"].is_string() && rotated["read_key"].is_string(),
        "an empty body rotates both"
    );
    let (s, both) = call(
        Method::POST,
        url(&format!("/api/streams/{id}/keys")),
        Some(ADMIN_TOKEN),
        Some(Value::Null),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "so does a null one: {both}");
    let new_read = both["read_key"].as_str().unwrap().to_owned();
    let (s, p) = call(
        Method::GET,
        url(&format!("/api/streams/{id}")),
        Some(&old_read),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "the old read key is refused: {p}");
    let (s, _) = call(
        Method::GET,
        url(&format!("/api/streams/{id}")),
        Some(&new_read),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    // The read key is not an admin token.
    let (s, _) = call(
        Method::PUT,
        url(&format!("/api/streams/{id}")),
        Some(&new_read),
        Some(definition("x", false)),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Keys also work as X-Api-Key and ?api_key=.
    let r = Client::new()
        .get(url(&format!("/api/streams/{id}")))
        .header("X-Api-Key", &new_read)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = Client::new()
        .get(url(&format!("/api/streams/{id}?api_key={new_read}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_a_precise_problem() {
    let api = start_api(&random_prefix("errors")).await;
    let url = |p: &str| format!("{}{p}", api.base);
    let created = create(&api, "e", false).await;
    let id = created["id"].as_u64().unwrap();

    let check = |resp: reqwest::Response, status: StatusCode| async move {
        assert_eq!(resp.status(), status);
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let p: Value = resp.json().await.unwrap();
        assert_eq!(p["status"], status.as_u16());
        assert!(p["type"].as_str().unwrap().starts_with("https://"));
        assert!(!p["title"].as_str().unwrap().is_empty());
        assert!(!p["detail"].as_str().unwrap().is_empty());
        p
    };
    let post = |body: Vec<u8>, key: Option<&str>| {
        let mut r = Client::new()
            .post(url("/api/streams"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    // 400: not JSON.
    let p = check(
        post(b"{\"name\": ".to_vec(), Some(ADMIN_TOKEN))
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("JSON"));
    // 422: JSON, but not a valid definition; each offending member has a pointer.
    let mut bad = definition("", false);
    bad["fields"] = json!(["nope"]);
    bad["colour"] = json!(1);
    let p = check(
        post(serde_json::to_vec(&bad).unwrap(), Some(ADMIN_TOKEN))
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(p["errors"][0]["pointer"], "/colour");
    bad.as_object_mut().unwrap().remove("colour");
    let p = check(
        post(serde_json::to_vec(&bad).unwrap(), Some(ADMIN_TOKEN))
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let pointers: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/name", "/fields/0"]);
    let mut not_a_schema = definition("s", false);
    not_a_schema["schema"]["properties"]["temperature"]["type"] = json!("numberish");
    let p = check(
        post(
            serde_json::to_vec(&not_a_schema).unwrap(),
            Some(ADMIN_TOKEN),
        )
        .await
        .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        p["errors"][0]["pointer"]
            .as_str()
            .unwrap()
            .starts_with("/schema/properties/temperature"),
        "{p}"
    );
    // A definition is an object, though serde would take one from an array of its members.
    let members = json!(["s", "", definition("s", false)["schema"]]);
    let p = check(
        post(serde_json::to_vec(&members).unwrap(), Some(ADMIN_TOKEN))
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(p["errors"][0]["pointer"], "", "{p}");
    // 401 and 403.
    let body = serde_json::to_vec(&definition("a", false)).unwrap();
    check(
        post(body.clone(), None).await.unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    check(
        post(body.clone(), Some("wrong")).await.unwrap(),
        StatusCode::FORBIDDEN,
    )
    .await;
    let r = Client::new()
        .get(url(&format!("/api/streams/{id}")))
        .send()
        .await
        .unwrap();
    check(r, StatusCode::UNAUTHORIZED).await;
    let r = Client::new()
        .get(url(&format!("/api/streams/{id}")))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    check(r, StatusCode::FORBIDDEN).await;
    // 404: an unknown id, for every method.
    for m in [Method::GET, Method::PUT, Method::DELETE] {
        let r = Client::new()
            .request(m, url("/api/streams/999"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&definition("x", false))
            .send()
            .await
            .unwrap();
        check(r, StatusCode::NOT_FOUND).await;
    }
    let r = Client::new()
        .post(url("/api/streams/999/keys"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    check(r, StatusCode::NOT_FOUND).await;
    // 413: a body that is too large.
    let mut huge = definition("h", false);
    huge["description"] = json!("x".repeat(300 * 1024));
    check(
        post(serde_json::to_vec(&huge).unwrap(), Some(ADMIN_TOKEN))
            .await
            .unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    // 400: a bad parameter.
    let r = Client::new()
        .get(url("/api/streams?limit=0"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    check(r, StatusCode::BAD_REQUEST).await;
    let r = Client::new()
        .get(url("/api/streams?limit=ten"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    check(r, StatusCode::BAD_REQUEST).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_sees_changes_and_a_restart_keeps_every_stream() {
    let prefix = random_prefix("instances");
    let first = start_api(&prefix).await;
    let second = start_api(&prefix).await;
    let created = create(&first, "shared", false).await;
    let id = created["id"].as_u64().unwrap();
    let started = Instant::now();
    loop {
        let (s, _) = call(
            Method::GET,
            format!("{}/api/streams/{id}", second.base),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
        if s == StatusCode::OK {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the second instance never saw the stream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let other = create(&second, "other", true).await;
    drop(first);
    drop(second);
    let restarted = start_api(&prefix).await;
    let (_, all) = call(
        Method::GET,
        format!("{}/api/streams", restarted.base),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    let mut ids: Vec<u64> = all["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect();
    ids.sort();
    let mut expected = vec![id, other["id"].as_u64().unwrap()];
    expected.sort();
    assert_eq!(ids, expected, "every stream is rebuilt from the topic");
    let (_, got) = call(
        Method::GET,
        format!("{}/api/streams/{id}", restarted.base),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(got["name"], "shared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_routes_both_ways() {
    // `up` serves every route of the product on one port.
    let api = start_part("up", &random_prefix("openapi"), &[]).await;
    let (s, doc) = call(
        Method::GET,
        format!("{}/api/openapi.json", api.base),
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["components"]["schemas"]["Problem"]["type"], "object");
    // It is a valid OpenAPI 3.1 document, as a third party's validator judges it.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(&doc).unwrap()).unwrap();
    let errors = crate::harness::python(&format!(
        "import json\n\
         from openapi_spec_validator import OpenAPIV31SpecValidator\n\
         spec = json.load(open({:?}))\n\
         print(json.dumps([f'{{list(e.absolute_path)}}: {{e.message}}' \
             for e in OpenAPIV31SpecValidator(spec).iter_errors()][:20]))",
        file.path()
    ));
    assert_eq!(
        errors,
        json!([]),
        "the OpenAPI document is not valid OpenAPI 3.1"
    );
    // Every JSON body, sent or answered, has a schema that says what is in it.
    let mut vague = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let bodies = op["responses"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(status, r)| (status.clone(), &r["content"]))
                .chain([("request".to_owned(), &op["requestBody"]["content"])]);
            for (which, content) in bodies {
                for (media, body) in content.as_object().into_iter().flatten() {
                    let schema = &body["schema"];
                    let described = schema.get("$ref").is_some()
                        || schema.get("properties").is_some()
                        || schema.get("items").is_some()
                        || schema["type"] != "object";
                    if media.contains("json") && !described {
                        vague.push(format!("{method} {path} {which} {media}"));
                    }
                }
            }
        }
    }
    assert!(vague.is_empty(), "bodies without a schema: {vague:#?}");
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    documented.sort();
    // Every route the server answers.
    let mut served: Vec<(String, String)> = [
        ("POST", "/api/streams"),
        ("GET", "/api/streams"),
        ("GET", "/api/streams/{id}"),
        ("PUT", "/api/streams/{id}"),
        ("DELETE", "/api/streams/{id}"),
        ("POST", "/api/streams/{id}/keys"),
        ("POST", "/api/streams/{id}/entries"),
        ("GET", "/update"),
        ("POST", "/update"),
        ("GET", "/update.json"),
        ("POST", "/update.json"),
        ("POST", "/channels/{id}/bulk_update.json"),
        ("GET", "/api/streams/{id}/entries"),
        ("GET", "/api/streams/{id}/entries/latest"),
        ("GET", "/api/streams/{id}/rejected"),
        ("GET", "/api/streams/{id}/versions"),
        ("GET", "/api/streams/{id}/versions/{version}"),
        ("GET", "/channels/{id}.json"),
        ("GET", "/channels/{id}/feeds.json"),
        ("GET", "/channels/{id}/feeds.csv"),
        ("GET", "/channels/{id}/fields/{n}.json"),
        ("GET", "/channels/{id}/fields/{n}.csv"),
        ("GET", "/channels/{id}/feeds/last.json"),
        ("GET", "/channels/{id}/fields/{n}/last.json"),
        ("GET", "/channels/{id}/fields/{n}/last.txt"),
        ("GET", "/channels/{id}/feeds/last_data_age.json"),
        ("GET", "/channels/{id}/fields/{n}/last_data_age.json"),
        ("GET", "/api/openapi.json"),
        ("GET", "/health"),
        ("GET", "/metrics"),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    served.sort();
    assert_eq!(
        documented, served,
        "no route is missing from the document, and none is extra"
    );
    // No documented route answers 404 (on a stream that exists), nor fails.
    let created = create(&api, "doc", false).await;
    let id = created["id"].as_u64().unwrap();
    // Delete last, so that the other routes still find the stream.
    documented.sort_by_key(|(m, _)| m == "DELETE");
    for (method, path) in &documented {
        let url = format!(
            "{}{}",
            api.base,
            path.replace("{id}", &id.to_string())
                .replace("{n}", "1")
                .replace("{version}", "1")
        );
        let body = match (method.as_str(), path.as_str()) {
            ("PUT", _) | ("POST", "/api/streams") => Some(definition("doc", false)),
            ("POST", "/api/streams/{id}/entries") => Some(json!({"temperature": 1})),
            _ => None,
        };
        let (s, b) = call(
            Method::from_bytes(method.as_bytes()).unwrap(),
            url,
            Some(ADMIN_TOKEN),
            body,
        )
        .await;
        // The latest entry of a stream without entries is the one documented 404.
        if path != "/api/streams/{id}/entries/latest" {
            assert_ne!(
                s,
                StatusCode::NOT_FOUND,
                "{method} {path} is documented but answers 404: {b}"
            );
        } else {
            assert!(b.to_string().contains("no entries yet"), "{b}");
        }
        assert!(!s.is_server_error(), "{method} {path}: {s} {b}");
    }
}
