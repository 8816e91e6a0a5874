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
