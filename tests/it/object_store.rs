//! The archive in an object store: the sink writes `s3://bucket/prefix` on an S3-compatible
//! server (scripts/services starts one), survives `kill -9`, and the api reads it back.

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use thingtotal_testkit::{feed_valid, random_prefix, services, start_part, stream, ADMIN_TOKEN};

use crate::harness::python;

/// Objects under `prefix/` in the bucket, through the S3 API itself.
async fn objects(endpoint: &str, bucket: &str, prefix: &str) -> usize {
    let body = Client::new()
        .get(format!("{endpoint}/{bucket}"))
        .query(&[("list-type", "2"), ("prefix", &format!("{prefix}/"))])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    body.matches("<Key>").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_archive_holds_every_entry_once_across_a_kill_and_reads_back() {
    let (endpoint, bucket) = services().s3.clone().expect(
        "the object-store tests need an S3-compatible server: scripts/services up starts one",
    );
    let prefix = random_prefix("s3");
    let url = format!("s3://{bucket}/{prefix}");
    let s3 = [
        ("THINGTOTAL_ARCHIVE", url.as_str()),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "thingtotal"),
        ("AWS_SECRET_ACCESS_KEY", "thingtotal"),
        ("AWS_REGION", "us-east-1"),
    ];
    let api = start_part("api", &prefix, &s3).await;
    let definition = json!({"name": "s3", "public": true, "schema": {"type": "object", "properties": {
        "t": {"type": "number"}, "n": {"type": "integer"}, "label": {"type": "string"}}}});
    let streams = [
        stream(&api, definition.clone()).await.0,
        stream(&api, definition).await.0,
    ];
    let mut sink_env = s3.to_vec();
    sink_env.extend([
        ("THINGTOTAL_SINK_INFLUX", "false"),
        ("THINGTOTAL_ARCHIVE_MAX_ROWS", "4000"),
        ("THINGTOTAL_ARCHIVE_MAX_AGE_SECS", "1"),
    ]);
    let mut sink = start_part("sink", &prefix, &sink_env).await;
    let per_stream = 20_000u64;
    let total = per_stream * streams.len() as u64;
    feed_valid(&prefix, &streams, 0, per_stream as usize).await;
    // kill -9 once some files are in the bucket, then start again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while objects(&endpoint, &bucket, &prefix).await < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no objects archived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sink.child.kill().unwrap();
    sink.child.wait().unwrap();
    drop(sink);
    let _sink = start_part("sink", &prefix, &sink_env).await;
    // The api counts each stream's entries from the bucket, per day.
    let counted = |id: u64| {
        let url = format!(
            "{}/api/streams/{id}/entries?source=archive&window=1d&agg=count&fields=t&start=2026-01-01&end=2026-01-03",
            api.base
        );
        async move {
            let r = Client::new()
                .get(url)
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let v: Value = r.json().await.unwrap();
            v["windows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w["data"]["t"].as_u64().unwrap())
                .sum::<u64>()
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    loop {
        let (a, b) = (counted(streams[0]).await, counted(streams[1]).await);
        if a + b == total {
            break;
        }
        assert!(
            a <= per_stream && b <= per_stream,
            "duplicates: {a} and {b}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "{a} and {b} of {per_stream} each"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // A reader that is not ours, pyarrow's S3 filesystem, sees every entry exactly once.
    let (host, scheme) = endpoint.split_once("://").map(|(s, h)| (h, s)).unwrap();
    let v = python(&format!(
        "import json, pyarrow.dataset as ds, pyarrow.compute as pc, pyarrow.fs as fs\n\
         s3 = fs.S3FileSystem(endpoint_override={host:?}, scheme={scheme:?}, access_key='x', \
         secret_key='x', region='us-east-1')\n\
         t = ds.dataset({path:?}, filesystem=s3, format='parquet', partitioning='hive').to_table()\n\
         print(json.dumps([t.num_rows, len(pc.unique(t['entry_id'])), \
         sorted(int(s) for s in pc.unique(t['stream']).to_pylist())]))",
        path = format!("{bucket}/{prefix}"),
    ));
    let mut ids = streams.to_vec();
    ids.sort();
    assert_eq!(v, json!([total, total, ids]));
    // Entries read back from the bucket page by page, in order, none missing.
    let entries =
        thingtotal_testkit::read_entries(&api.base, streams[1], "source=archive&limit=7000", None)
            .await
            .unwrap();
    let mut seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=per_stream).collect::<Vec<_>>());
}

/// The archive as the sink opens it, on the test's S3 server, with what
/// `AmazonS3Builder::from_env` would read from the environment given explicitly.
fn s3_archive(prefix: &str) -> (thingtotal_common::archive::Archive, String) {
    let (endpoint, bucket) = services().s3.clone().expect(
        "the object-store tests need an S3-compatible server: scripts/services up starts one",
    );
    let url = format!("s3://{bucket}/{prefix}");
    let store = object_store::aws::AmazonS3Builder::new()
        .with_url(&url)
        .with_endpoint(&endpoint)
        .with_allow_http(true)
        .with_access_key_id("thingtotal")
        .with_secret_access_key("thingtotal")
        .with_region("us-east-1")
        .build()
        .unwrap();
    let archive = thingtotal_common::archive::Archive::Remote {
        store: std::sync::Arc::new(store),
        prefix: object_store::path::Path::from(prefix),
        url,
    };
    (archive, format!("{endpoint}/{bucket}/{prefix}"))
}

/// Two members that both think they own a partition write a file of the same name: the first
/// `PUT` stands, the second is refused and changes nothing (the archiver then reads the archive
/// again and goes on after the file that stands).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_archive_file_is_never_replaced() {
    let prefix = random_prefix("s3-create");
    let (archive, base) = s3_archive(&prefix);
    let rel = "stream=7/date=1970-01-01/t.entries.valid+0+00000000000000000000.parquet";
    archive.put(rel, "first".into()).await.unwrap();
    let e = archive.put(rel, "second".into()).await.unwrap_err();
    assert!(e.is_already_exists(), "{e}");
    let body = Client::new()
        .get(format!("{base}/{rel}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "first");
}
