//! The embedded log keeps everything it acknowledged across a `kill -9`.
//!
//! The test re-runs its own binary as a writer child that appends concurrently and prints every
//! acknowledgement; it is killed with SIGKILL mid-write, and the log is reopened and checked.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use thingtotal_common::log::{EmbeddedLog, EmbeddedOptions, Log, Record, TopicSpec};

const CHILD_DIR: &str = "THINGTOTAL_TEST_EMBEDDED_WRITER_DIR";
const TOPIC: &str = "crash.entries";

fn open(dir: &std::path::Path) -> Log {
    Log::Embedded(
        EmbeddedLog::open(EmbeddedOptions {
            dir: dir.to_owned(),
            retention: Duration::from_secs(3600),
        })
        .unwrap(),
    )
}

/// The writer child. Ignored in a normal run; the parent test starts it explicitly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by acknowledged_appends_survive_kill_9"]
async fn embedded_writer_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let log = open(std::path::Path::new(&dir));
    log.ensure_topics(&[TopicSpec {
        name: TOPIC.into(),
        partitions: 3,
        replication: 1,
        compacted: false,
        max_message_bytes: None,
        ..TopicSpec::default()
    }])
    .await
    .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for writer in 0..32u64 {
        let log = log.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            for i in 0u64.. {
                let value = format!("w{writer}-{i}");
                let p = log
                    .append(TOPIC, vec![Record::new(format!("{writer}"), value.clone())])
                    .await
                    .unwrap();
                if tx
                    .send(format!("ack {} {} {value}", p[0].partition, p[0].offset))
                    .is_err()
                {
                    return;
                }
            }
        });
    }
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    while let Some(line) = rx.recv().await {
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn acknowledged_appends_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "embedded_crash::embedded_writer_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acks = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acks.len() < 3000 {
        let line = lines.next().expect("the writer exited early").unwrap();
        if let Some(rest) = line.strip_prefix("ack ") {
            acks.push(rest.to_owned());
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Acknowledgements already printed before the kill count too.
    for line in lines.map_while(Result::ok) {
        if let Some(rest) = line.strip_prefix("ack ") {
            acks.push(rest.to_owned());
        }
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let log = open(dir.path());
        let ends = log.end_offsets(TOPIC).await.unwrap();
        let mut stored = std::collections::HashMap::new();
        for (p, end) in ends.iter().enumerate() {
            let mut reader = log.reader(TOPIC, p as i32, 0).await.unwrap();
            let mut n = 0;
            while n < *end {
                for r in reader.read(10_000, Duration::from_secs(1)).await.unwrap() {
                    n = r.offset + 1;
                    stored.insert(
                        (p as i32, r.offset),
                        String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
                    );
                }
            }
        }
        for ack in &acks {
            let mut parts = ack.split(' ');
            let p: i32 = parts.next().unwrap().parse().unwrap();
            let o: i64 = parts.next().unwrap().parse().unwrap();
            let value = parts.next().unwrap();
            assert_eq!(
                stored.get(&(p, o)).map(String::as_str),
                Some(value),
                "acknowledged {p}@{o} lost"
            );
        }
        assert!(stored.len() >= acks.len());
        // The reopened log keeps appending after what survived.
        let pos = log
            .append(TOPIC, vec![Record::new("0", "after")])
            .await
            .unwrap();
        assert_eq!(pos[0].offset, ends[pos[0].partition as usize]);
    });
}
