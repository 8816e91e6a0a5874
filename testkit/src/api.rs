//! The API as the tests and benchmarks use it to set up: the admin token and creating streams.

use anyhow::{bail, Context};
use serde_json::Value;

/// The admin token the parts that [`crate::part_command`] starts run with.
pub const ADMIN_TOKEN: &str = "admin-secret-for-tests";

/// A stream the API created.
#[derive(Debug, Clone)]
pub struct CreatedStream {
    /// Its id.
    pub id: u64,
    /// The key to write its entries with.
    pub write_key: String,
    /// The key to read them with.
    pub read_key: String,
}

/// Creates a stream from `definition` through the API at `base` with the admin `token`, and
/// expects `201 Created`.
pub async fn create_stream(
    base: &str,
    token: &str,
    definition: &Value,
) -> anyhow::Result<CreatedStream> {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/streams"))
        .bearer_auth(token)
        .json(definition)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    if status != reqwest::StatusCode::CREATED {
        bail!("creating a stream answered {status}: {v}");
    }
    let key = |k: &str| {
        v[k].as_str()
            .map(str::to_owned)
            .with_context(|| format!("the stream has no {k}: {v}"))
    };
    Ok(CreatedStream {
        id: v["id"]
            .as_u64()
            .with_context(|| format!("the stream has no id: {v}"))?,
        write_key: key("write_key")?,
        read_key: key("read_key")?,
    })
}

/// Every entry of `GET /api/streams/{id}/entries?{query}` through the API at `base`, following
/// `next_cursor` page by page, with the read `key` if there is one. A page that is not `200 OK`
/// is an error.
pub async fn read_entries(
    base: &str,
    id: u64,
    query: &str,
    key: Option<&str>,
) -> anyhow::Result<Vec<Value>> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let mut request = client.get(format!("{base}/api/streams/{id}/entries?{query}{cursor}"));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        let r = request.send().await?;
        let status = r.status();
        let page: Value = r.json().await?;
        if status != reqwest::StatusCode::OK {
            bail!("reading entries ?{query}{cursor} answered {status}: {page}");
        }
        let entries = page["entries"]
            .as_array()
            .with_context(|| format!("a page without entries: {page}"))?;
        out.extend(entries.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return Ok(out),
        }
    }
}

/// `GET url` with the key `key` (as `X-Api-Key`) if there is one: the status and the body as
/// JSON (`null` if it is not JSON).
pub async fn get_json(
    url: &str,
    key: Option<&str>,
) -> anyhow::Result<(reqwest::StatusCode, Value)> {
    let mut request = reqwest::Client::new().get(url);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let r = request.send().await?;
    let status = r.status();
    let body = r.bytes().await?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}
