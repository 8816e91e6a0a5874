//! The stream registry on both adapters: a record written to the compacted topic is seen by a
//! freshly started registry, and a tombstone removes it.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use thingtotal_common::log::{EmbeddedLog, EmbeddedOptions, Log, Record};
use thingtotal_common::registry::Registry;
use thingtotal_common::stream::{key_of, version_key, StreamRecord};
use thingtotal_common::topics::Topics;
use thingtotal_common::CancellationToken;

fn stream(id: u64, version: u32) -> StreamRecord {
    StreamRecord {
        id,
        name: format!("stream {id}"),
        description: "test".into(),
        schema: json!({"type": "object", "properties": {"t": {"type": "number"}}}),
        fields: None,
        tags: vec![],
        timestamp_field: None,
        measurement: None,
        public: false,
        version,
        created_at: Utc::now(),
        updated_at: Utc::now(),
        write_key_sha256: "00".into(),
        read_key_sha256: "11".into(),
    }
}

async fn round_trip(log: Log, prefix: &str) {
    let topics = Topics::new(prefix);
    log.ensure_topics(&topics.specs(2, 1, Default::default(), None))
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let t = Duration::from_secs(30);
    let a = stream(1001, 1);
    let b = stream(1002, 1);
    let mut b2 = stream(1002, 2);
    b2.schema = json!({"type": "object", "properties": {"temperature": {"type": "number"}}});
    for s in [&a, &b, &b2] {
        // As the api writes them: the version's copy, then the stream.
        let value = serde_json::to_vec(s).unwrap();
        log.append(
            &topics.streams,
            vec![
                Record::new(version_key(s.id, s.version), value.clone()),
                Record::new(s.key(), value),
            ],
        )
        .await
        .unwrap();
    }
    // A registry started now reads the whole topic before it answers.
    let registry = Registry::start(log.clone(), &topics.streams, shutdown.clone(), t)
        .await
        .unwrap();
    assert_eq!(registry.get(1001).as_deref(), Some(&a));
    assert_eq!(
        registry.get(1002).unwrap().version,
        2,
        "the latest record wins"
    );
    assert_eq!(registry.list().len(), 2);
    // Every version is kept, with its own schema.
    let versions = registry.versions(1002);
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(registry.version(1002, 1).as_deref(), Some(&b));
    assert_eq!(registry.version(1002, 2).as_deref(), Some(&b2));
    assert_eq!(registry.version(1002, 3), None);
    // A record under a version key that names another version is not taken.
    let pos = log
        .append(
            &topics.streams,
            vec![Record::new(
                version_key(1002, 7),
                serde_json::to_vec(&b).unwrap(),
            )],
        )
        .await
        .unwrap();
    registry.applied_through(pos[0].offset, t).await.unwrap();
    assert_eq!(registry.version(1002, 7), None);
    // A tombstone removes the stream from the running registry.
    let pos = log
        .append(
            &topics.streams,
            vec![Record {
                key: Some(key_of(1001)),
                ..Record::default()
            }],
        )
        .await
        .unwrap();
    registry.applied_through(pos[0].offset, t).await.unwrap();
    assert!(registry.get(1001).is_none());
    assert!(registry.versions(1001).is_empty());
    assert_eq!(
        registry.version(1001, 1),
        None,
        "a stream's tombstone drops its versions"
    );
    assert_eq!(registry.lookup(1001, t).await.unwrap(), None);
    // A stream written behind the registry's back is found by a lookup, which waits to catch up.
    let c = stream(1003, 1);
    log.append(
        &topics.streams,
        vec![Record::new(c.key(), serde_json::to_vec(&c).unwrap())],
    )
    .await
    .unwrap();
    assert_eq!(registry.lookup(1003, t).await.unwrap().as_deref(), Some(&c));
    // And a fresh registry agrees.
    let fresh = Registry::start(log.clone(), &topics.streams, shutdown.clone(), t)
        .await
        .unwrap();
    let ids: Vec<u64> = fresh.list().iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![1002, 1003]);
    // Unknown ids, which anyone can send, share the requests for the topic's end: two hundred
    // at once cost a few, not one each, and each still finds nothing.
    let before = registry.end_requests();
    let mut lookups = tokio::task::JoinSet::new();
    for id in 5000..5200 {
        let r = registry.clone();
        lookups.spawn(async move { r.lookup(id, t).await.unwrap() });
    }
    while let Some(found) = lookups.join_next().await {
        assert_eq!(found.unwrap(), None);
    }
    let sent = registry.end_requests() - before;
    assert!(
        (1..=50).contains(&sent),
        "{sent} requests for 200 unknown ids"
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_round_trip_on_kafka() {
    round_trip(
        thingtotal_testkit::kafka(),
        &thingtotal_testkit::random_prefix("registry"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_round_trip_on_the_embedded_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(EmbeddedOptions {
        dir: dir.path().to_owned(),
        retention: Duration::from_secs(3600),
    })
    .unwrap();
    round_trip(Log::Embedded(log), "t").await;
}
