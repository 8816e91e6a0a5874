//! Overload: four times the request rate a part sustains, for 30 s, against `up` (the embedded
//! log) and against `thingtotal ingest` on Kafka. Every `202` must be stored exactly once, every
//! other answer must be `503` with `Retry-After`, and the server's memory must stay flat.
//!
//! The sustainable rate is measured first, in the same run, with a closed loop of a few
//! connections; the overload is a fleet of devices on a schedule (each request due at its time,
//! whatever the answers to the others; each device one request at a time, as a device does).
//! Nothing here asserts a timing.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use thingtotal_common::log::Log;
use thingtotal_common::topics::Topics;
use thingtotal_testkit as kit;

/// Entries per request: enough work per request that the server, not this client, is the
/// bottleneck on a shared machine.
const ENTRIES: u64 = 50;
/// Devices in the fleet, each with one connection and one request at a time: twice the
/// ingest's default in-flight limit.
const DEVICES: u64 = 512;
/// How long the overload lasts.
const OVERLOAD: Duration = Duration::from_secs(30);
/// The most resident memory a server may reach under overload.
const RSS_CAP_MIB: u64 = 512;
/// How much more the server may hold in the last third of the overload than in the first:
/// memory that grows with time under a steady overload is a queue without a bound.
const RSS_DRIFT_MIB: u64 = 64;

fn schema() -> Value {
    json!({"name": "overload", "schema": {"type": "object", "properties": {
        "r": {"type": "integer"}, "i": {"type": "integer"}, "t": {"type": "number"}}}})
}

/// Request `r`'s body: its entries `(r, 0..ENTRIES)`.
fn body(r: u64) -> String {
    let entries: Vec<Value> = (0..ENTRIES)
        .map(|i| json!({"r": r, "i": i, "t": 21.5}))
        .collect();
    Value::Array(entries).to_string()
}

/// The process's resident memory now, in MiB.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

/// Where to write and with which key.
#[derive(Clone)]
struct Target {
    url: String,
    key: String,
    client: Client,
}

impl Target {
    async fn send(&self, r: u64) -> Result<reqwest::Response, reqwest::Error> {
        self.client
            .post(&self.url)
            .header("x-api-key", &self.key)
            .header("content-type", "application/json")
            .body(body(r))
            .send()
            .await
    }
}

/// What the overload's answers were.
#[derive(Debug, Default)]
struct Answers {
    /// Requests answered 202.
    accepted: BTreeSet<u64>,
    /// Requests answered 503 with `Retry-After`.
    refused: u64,
    /// Anything else: status and body, or the client's error.
    wrong: Vec<String>,
}

/// Requests per second that `connections` closed loops get answered 202 over `time`; the
/// requests are numbered from `first` and their numbers added to `accepted`.
async fn sustainable(
    t: &Target,
    connections: u64,
    time: Duration,
    first: u64,
    accepted: &mut BTreeSet<u64>,
) -> f64 {
    let started = Instant::now();
    let mut loops = tokio::task::JoinSet::new();
    for c in 0..connections {
        let t = t.clone();
        loops.spawn(async move {
            let mut mine = Vec::new();
            let mut r = first + c;
            while started.elapsed() < time {
                let answer = t.send(r).await.unwrap();
                assert_eq!(answer.status(), StatusCode::ACCEPTED, "while measuring");
                mine.push(r);
                r += connections;
            }
            mine
        });
    }
    while let Some(mine) = loops.join_next().await {
        accepted.extend(mine.unwrap());
    }
    accepted.len() as f64 / started.elapsed().as_secs_f64()
}

/// A fleet of `DEVICES` devices, each on its own connection, sending request `first + k` at
/// `k / rate` seconds for `OVERLOAD` (device `k mod DEVICES` sends it, as soon as its previous
/// request is answered if that is late), while sampling the resident memory of `pid`. Returns
/// the answers and the samples, one every 200 ms.
async fn open_loop(t: &Target, rate: f64, first: u64, pid: u32) -> (Answers, Vec<u64>) {
    let started = tokio::time::Instant::now();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                samples.push(rss_mib(pid));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            samples
        })
    };
    let n = (rate * OVERLOAD.as_secs_f64()) as u64;
    let mut devices = tokio::task::JoinSet::new();
    for d in 0..DEVICES.min(n) {
        let t = t.clone();
        devices.spawn(async move {
            let mut answers = Answers::default();
            for k in (d..n).step_by(DEVICES as usize) {
                let due = started + Duration::from_secs_f64(k as f64 / rate);
                tokio::time::sleep_until(due).await;
                let r = first + k;
                match t.send(r).await {
                    Ok(a) if a.status() == StatusCode::ACCEPTED => {
                        answers.accepted.insert(r);
                    }
                    Ok(a)
                        if a.status() == StatusCode::SERVICE_UNAVAILABLE
                            && a.headers().contains_key("retry-after") =>
                    {
                        answers.refused += 1
                    }
                    Ok(a) => answers.wrong.push(format!(
                        "{r}: {} {}",
                        a.status(),
                        a.text().await.unwrap_or_default()
                    )),
                    Err(e) => answers.wrong.push(format!("{r}: {e}")),
                }
            }
            answers
        });
    }
    let mut answers = Answers::default();
    while let Some(a) = devices.join_next().await {
        let a = a.unwrap();
        answers.accepted.extend(a.accepted);
        answers.refused += a.refused;
        answers.wrong.extend(a.wrong);
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    (answers, sampler.await.unwrap())
}

/// Measures, then overloads `t` at four times the sustainable rate; checks the answers and
/// the memory of `pid`. Returns every request answered 202, the warm-up's included.
async fn overload(what: &str, t: &Target, pid: u32) -> BTreeSet<u64> {
    let mut accepted = BTreeSet::new();
    // A first round warms the server up; the second is the measure.
    sustainable(t, 8, Duration::from_secs(2), 0, &mut accepted).await;
    let rate = sustainable(t, 8, Duration::from_secs(3), 1_000_000, &mut accepted).await;
    let before = rss_mib(pid);
    let (answers, samples) = open_loop(t, 4.0 * rate, 2_000_000, pid).await;
    let third = samples.len() / 3;
    let peak_of = |s: &[u64]| s.iter().copied().max().unwrap_or(0);
    let (first_third, last_third) = (
        peak_of(&samples[..third]),
        peak_of(&samples[samples.len() - third..]),
    );
    let peak = peak_of(&samples);
    eprintln!(
        "{what}: sustained {rate:.0} requests/s of {ENTRIES} entries; at 4x for {OVERLOAD:?}: \
         {} accepted, {} refused with 503; RSS {before} MiB before, peak {first_third} MiB in \
         the first third, {last_third} MiB in the last, {peak} MiB in all",
        answers.accepted.len(),
        answers.refused
    );
    assert!(
        answers.wrong.is_empty(),
        "{what}: {} answers neither 202 nor 503 with Retry-After, such as {:?}",
        answers.wrong.len(),
        &answers.wrong[..answers.wrong.len().min(5)]
    );
    assert!(
        answers.refused > 0,
        "{what}: four times the rate was never refused"
    );
    assert!(!answers.accepted.is_empty(), "{what}: nothing accepted");
    assert!(
        peak <= RSS_CAP_MIB,
        "{what}: RSS reached {peak} MiB under overload"
    );
    assert!(
        last_third <= first_third + RSS_DRIFT_MIB,
        "{what}: RSS kept growing under overload: {first_third} MiB, then {last_third} MiB"
    );
    accepted.extend(answers.accepted);
    accepted
}

/// Checks that the entries `(r, i)` stored (counted by the caller) are every entry of every
/// accepted request once; `extra_allowed` lets entries of refused requests be there too (once).
fn exactly_once(stored: &HashMap<(u64, u64), u64>, accepted: &BTreeSet<u64>, extra_allowed: bool) {
    let twice: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    for r in accepted {
        for i in 0..ENTRIES {
            assert!(
                stored.contains_key(&(*r, i)),
                "accepted ({r}, {i}) was not stored"
            );
        }
    }
    if !extra_allowed {
        let extra: Vec<_> = stored
            .keys()
            .filter(|(r, _)| !accepted.contains(r))
            .take(5)
            .collect();
        assert!(extra.is_empty(), "refused entries were stored: {extra:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_times_the_sustainable_rate_against_up_is_refused_with_503_and_loses_nothing() {
    let _alone = crate::OUTAGE.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let port = kit::free_port().unwrap();
    let mut cmd = Command::new(kit::thingtotal_bin().unwrap());
    cmd.args(["up", "--data-dir"])
        .arg(dir.path())
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .args(["--admin-token", kit::ADMIN_TOKEN])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn");
    let up = kit::Process::spawn("up", cmd, port, None)
        .unwrap()
        .healthy()
        .await
        .unwrap();
    let (id, key, read_key) = kit::stream(&up, schema()).await;
    let t = Target {
        url: format!("{}/api/streams/{id}/entries", up.base),
        key,
        client: Client::new(),
    };
    let accepted = overload("up", &t, up.pid()).await;
    // Every accepted entry reaches the archive once, and nothing of a refused request does:
    // the embedded log never stores an append it answered 503.
    let expected = accepted.len() as u64 * ENTRIES;
    let deadline = Instant::now() + Duration::from_secs(180);
    let stored = loop {
        let stored = archived(&up, id, &read_key).await;
        let total: u64 = stored.values().sum();
        if total >= expected || Instant::now() > deadline {
            break stored;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    exactly_once(&stored, &accepted, false);
}

/// Every entry's `(r, i)` in the archive, counted, through the API's reads.
async fn archived(up: &kit::Process, id: u64, read_key: &str) -> HashMap<(u64, u64), u64> {
    let entries = kit::read_entries(&up.base, id, "start=-1d&limit=10000", Some(read_key))
        .await
        .unwrap();
    let mut stored = HashMap::new();
    for e in entries {
        let key = (
            e["data"]["r"].as_u64().unwrap(),
            e["data"]["i"].as_u64().unwrap(),
        );
        *stored.entry(key).or_insert(0) += 1;
    }
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_times_the_sustainable_rate_against_kafka_ingest_is_refused_with_503() {
    let _alone = crate::OUTAGE.lock().await;
    let p = kit::pipeline("overload", &[]).await;
    let (id, key, _) = kit::stream(&p.api, schema()).await;
    let t = Target {
        url: format!("{}/api/streams/{id}/entries", p.ingest.base),
        key,
        client: Client::new(),
    };
    let accepted = overload("kafka ingest", &t, p.ingest.pid()).await;
    // Every accepted entry is on entries.raw once. A request answered 503 after its deadline
    // may still have been stored (Kafka cannot take back what the producer sent): allowed, once.
    let log = kit::kafka();
    let stored = raw(&log, &Topics::new(&p.prefix).raw).await;
    exactly_once(&stored, &accepted, true);
}

/// Every record of `topic`, as `(r, i)` counted.
async fn raw(log: &Log, topic: &str) -> HashMap<(u64, u64), u64> {
    let ends = log.end_offsets(topic).await.unwrap();
    let mut stored = HashMap::new();
    for (partition, &end) in ends.iter().enumerate() {
        if end == 0 {
            continue;
        }
        let mut reader = log.reader(topic, partition as i32, 0).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut next = 0;
        while next < end {
            assert!(
                Instant::now() < deadline,
                "partition {partition}: {next} of {end}"
            );
            for c in reader
                .read(10_000, Duration::from_millis(500))
                .await
                .unwrap()
            {
                next = c.offset + 1;
                let v: Value = serde_json::from_slice(c.value.as_deref().unwrap()).unwrap();
                let key = (v["r"].as_u64().unwrap(), v["i"].as_u64().unwrap());
                *stored.entry(key).or_insert(0) += 1;
            }
        }
    }
    stored
}
