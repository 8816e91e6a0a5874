//! Scenario 6: latency from the `202` until an entry is visible in InfluxDB and until it is in
//! the archive, with every part running as its own process, at half of scenario 1's rate.
//!
//! Each entry carries its index `n` and its own time `at` (the stream's `timestamp_field`), so
//! the benchmark knows each point's InfluxDB time: a poller asks InfluxDB every 50 ms for the
//! points from the oldest not yet seen onwards, and another reads each new archive file's `n`
//! column. The baseline is the same poller on points written straight to InfluxDB at the same
//! rate, one per request: how soon the measurement itself can see a point at all.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use thingtotal_testkit::{create_stream, ADMIN_TOKEN};
use tokio::sync::mpsc;

use super::{say, Better, Ctx, LatencySpread, Row};
use crate::loadgen::{self, Answer, Load};
use crate::stats::{self, Latency, Spread};
use crate::workload;

/// Poll intervals: they bound how late a visibility can be noticed.
const INFLUX_POLL: Duration = Duration::from_millis(50);
const ARCHIVE_POLL: Duration = Duration::from_millis(200);
/// The archive's age limit in this scenario (`up` uses 5 s; `sink` on its own 60 s).
const ARCHIVE_AGE_SECS: u64 = 5;

#[derive(Default)]
struct Track {
    acked: HashMap<u64, Instant>,
    failed: HashSet<u64>,
    influx: HashMap<u64, Instant>,
    archive: HashMap<u64, Instant>,
    /// No request at or past this index was sent (set when the load is over).
    sent: Option<u64>,
}

impl Track {
    /// The oldest index InfluxDB has not shown yet (and that did not fail).
    fn oldest_unseen(&self, from: u64) -> u64 {
        let mut i = from;
        while self.influx.contains_key(&i) || self.failed.contains(&i) {
            i += 1;
        }
        i
    }

    fn done(&self, archive: bool) -> bool {
        self.sent.is_some()
            && self
                .acked
                .keys()
                .all(|n| self.influx.contains_key(n) && (!archive || self.archive.contains_key(n)))
    }

    fn latency(&self, seen: &HashMap<u64, Instant>) -> (Latency, usize) {
        let mut h = stats::histogram();
        let mut missing = 0;
        for (n, acked) in &self.acked {
            match seen.get(n) {
                Some(t) => stats::record(&mut h, t.saturating_duration_since(*acked)),
                None => missing += 1,
            }
        }
        (Latency::of(&h), missing)
    }
}

/// The times of entry `n`: sent at `start + n / rate`, carrying that wall-clock time as `at`.
#[derive(Debug, Clone, Copy)]
struct Clock {
    wall0_us: i64,
    period_us: f64,
}

impl Clock {
    fn at_us(&self, n: u64) -> i64 {
        self.wall0_us + (n as f64 * self.period_us) as i64
    }

    fn at(&self, n: u64) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.at_us(n)).expect("a time in range")
    }
}

/// Asks InfluxDB for `measurement`'s points from the oldest unseen one on, until `done`.
async fn poll_influx(
    http: reqwest::Client,
    url: String,
    db: String,
    measurement: String,
    clock: Clock,
    track: Arc<Mutex<Track>>,
    deadline: Arc<Mutex<Option<Instant>>>,
) -> anyhow::Result<()> {
    let mut oldest = 0;
    loop {
        oldest = track.lock().expect("track").oldest_unseen(oldest);
        let q = format!(
            "SELECT n FROM \"{measurement}\" WHERE time >= {}",
            clock.at_us(oldest) * 1000
        );
        let v: serde_json::Value = http
            .post(format!("{url}/query"))
            .form(&[("db", db.as_str()), ("q", q.as_str()), ("epoch", "ns")])
            .send()
            .await?
            .json()
            .await?;
        let now = Instant::now();
        {
            let mut t = track.lock().expect("track");
            if let Some(values) = v["results"][0]["series"][0]["values"].as_array() {
                for row in values {
                    if let Some(n) = row[1].as_i64() {
                        t.influx.entry(n as u64).or_insert(now);
                    }
                }
            }
            if t.done(false) {
                return Ok(());
            }
        }
        if deadline.lock().expect("deadline").is_some_and(|d| now > d) {
            return Ok(());
        }
        tokio::time::sleep(INFLUX_POLL).await;
    }
}

/// Reads every new archive file of one stream and notes when each row's `n` appeared.
fn poll_archive(
    root: PathBuf,
    track: Arc<Mutex<Track>>,
    deadline: Arc<Mutex<Option<Instant>>>,
) -> anyhow::Result<()> {
    let mut read: HashSet<PathBuf> = HashSet::new();
    loop {
        let mut fresh = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "parquet") && !read.contains(&p) {
                    fresh.push(p);
                }
            }
        }
        let now = Instant::now();
        for p in fresh {
            let ns = column_n(&p)?;
            let mut t = track.lock().expect("track");
            for n in ns {
                t.archive.entry(n).or_insert(now);
            }
            read.insert(p);
        }
        if track.lock().expect("track").done(true) {
            return Ok(());
        }
        if deadline.lock().expect("deadline").is_some_and(|d| now > d) {
            return Ok(());
        }
        std::thread::sleep(ARCHIVE_POLL);
    }
}

/// The `n` column of an archive file.
fn column_n(path: &Path) -> anyhow::Result<Vec<u64>> {
    use arrow::array::{Array, Int64Array};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ProjectionMask;
    let b = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path)?)?;
    let mask = ProjectionMask::columns(b.parquet_schema(), ["n"]);
    let mut out = Vec::new();
    for batch in b.with_projection(mask).build()? {
        let batch = batch?;
        let col = batch
            .column_by_name("n")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .with_context(|| format!("{} has no Int64 column n", path.display()))?;
        out.extend(col.iter().flatten().map(|n| n as u64));
    }
    Ok(out)
}

/// Collects the load generator's answers into `track`.
async fn collect(mut rx: mpsc::UnboundedReceiver<Answer>, track: Arc<Mutex<Track>>) {
    while let Some(a) = rx.recv().await {
        let mut t = track.lock().expect("track");
        if a.ok {
            t.acked.insert(a.index, a.at);
        } else {
            t.failed.insert(a.index);
        }
    }
}

struct Measured {
    influx: Latency,
    archive: Option<Latency>,
    ack: Latency,
    missing_influx: usize,
    missing_archive: usize,
    acked: usize,
    failed: usize,
    rate: f64,
}

/// Sends `load` (whose bodies carry `n` and `at` from `clock`), and measures until every
/// acknowledged entry is seen in InfluxDB as `measurement` (and in `archive`, if given).
#[allow(clippy::too_many_arguments)]
async fn measure(
    ctx: &Ctx,
    mut load: Load,
    clock: Clock,
    db: &str,
    measurement: &str,
    archive: Option<PathBuf>,
    tail: Duration,
) -> anyhow::Result<Measured> {
    let track = Arc::new(Mutex::new(Track::default()));
    let deadline = Arc::new(Mutex::new(None));
    let (tx, rx) = mpsc::unbounded_channel();
    load.answers = Some(tx);
    let collector = tokio::spawn(collect(rx, track.clone()));
    let influx = tokio::spawn(poll_influx(
        ctx.http.clone(),
        ctx.services.influx_url.clone(),
        db.to_owned(),
        measurement.to_owned(),
        clock,
        track.clone(),
        deadline.clone(),
    ));
    let archiver = archive.map(|root| {
        let (track, deadline) = (track.clone(), deadline.clone());
        tokio::task::spawn_blocking(move || poll_archive(root, track, deadline))
    });
    let has_archive = archiver.is_some();
    let outcome = loadgen::run(load).await?;
    collector.await?;
    {
        let mut t = track.lock().expect("track");
        t.sent = Some(outcome.ok + outcome.failed);
    }
    *deadline.lock().expect("deadline") = Some(Instant::now() + tail);
    influx.await??;
    if let Some(a) = archiver {
        a.await??;
    }
    let t = track.lock().expect("track");
    let (influx, missing_influx) = t.latency(&t.influx);
    let (archive, missing_archive) = if has_archive {
        let (l, m) = t.latency(&t.archive);
        (Some(l), m)
    } else {
        (None, 0)
    };
    Ok(Measured {
        influx,
        archive,
        ack: outcome.latency,
        missing_influx,
        missing_archive,
        acked: t.acked.len(),
        failed: t.failed.len(),
        rate: outcome.rate(),
    })
}

fn clock_now(rate: f64) -> Clock {
    Clock {
        wall0_us: Utc::now().timestamp_micros(),
        period_us: 1e6 / rate,
    }
}

pub(super) async fn run(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let prefix = ctx.prefix("e2e");
    let (db, bucket) = ctx.influx_db("e2e").await?;
    let archive = ctx.work.join("archive").join(&prefix);
    let api = ctx.launcher.part("api", &prefix, &[]).await?;
    let ingest = ctx.launcher.part("ingest", &prefix, &[]).await?;
    let validator = ctx.launcher.part("validator", &prefix, &[]).await?;
    let mut env = ctx.influx_env(&bucket);
    env.push(("THINGTOTAL_ARCHIVE", archive.to_string_lossy().into_owned()));
    env.push((
        "THINGTOTAL_ARCHIVE_MAX_AGE_SECS",
        ARCHIVE_AGE_SECS.to_string(),
    ));
    let sink = ctx.launcher.part("sink", &prefix, &env).await?;

    let max_rate = match ctx.max_ingest_rate {
        Some(r) => r,
        None => {
            bail!("the end-to-end scenario runs at half of scenario 1's rate: run it with ingest-single")
        }
    };
    let rate = max_rate / 2.0;
    say(format!(
        "  at {rate:.0} entries/s (half of {max_rate:.0} requests/s)"
    ));
    let influx_addr: std::net::SocketAddr = ctx
        .services
        .influx_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .context("THINGTOTAL_INFLUX_URL is http://<ip>:<port>")?;
    let tail = Duration::from_secs(ARCHIVE_AGE_SECS * 2 + 30);
    let (mut influx, mut archive_l, mut direct, mut ack) = (vec![], vec![], vec![], vec![]);
    let mut notes = Vec::new();
    for r in 0..ctx.args.repeats {
        let mut schema = workload::five_field_schema(true);
        schema["required"] = serde_json::json!(["temperature", "at", "n"]);
        let created = create_stream(
            &api.base,
            ADMIN_TOKEN,
            &serde_json::json!({"name": format!("e2e {r}"), "schema": schema, "timestamp_field": "at"}),
        )
        .await?;
        let (stream, key) = (created.id, created.write_key);
        let clock = clock_now(rate);
        let bodies = Arc::new(move |n: u64| {
            let mut e = workload::five_field_data(n);
            e["n"] = serde_json::json!(n);
            e["at"] = serde_json::json!(thingtotal_common::envelope::format_time(clock.at(n)));
            Bytes::from(serde_json::to_vec(&e).expect("entries serialise"))
        });
        let load = Load {
            addr: ingest.addr,
            path: format!("/api/streams/{stream}/entries"),
            headers: vec![
                (CONTENT_TYPE, HeaderValue::from_static("application/json")),
                (
                    HeaderName::from_static("x-api-key"),
                    HeaderValue::from_str(&key)?,
                ),
            ],
            bodies,
            connections: ctx.args.connections,
            rate: Some(rate),
            duration: ctx.seconds(),
            answers: None,
        };
        let m = measure(
            ctx,
            load,
            clock,
            &db,
            &stream.to_string(),
            Some(archive.join(format!("stream={stream}"))),
            tail,
        )
        .await?;
        // The baseline: the same poller on points posted straight to InfluxDB, one per request.
        let measurement = format!("direct{r}");
        let clock = clock_now(rate);
        let bodies = Arc::new({
            let measurement = measurement.clone();
            move |n: u64| {
                Bytes::from(format!(
                    "{measurement},stream_id=0 n={n}i {}\n",
                    clock.at_us(n) * 1000
                ))
            }
        });
        let mut headers = vec![(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )];
        if !ctx.services.influx_token.is_empty() {
            headers.push((
                hyper::header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Token {}", ctx.services.influx_token))?,
            ));
        }
        let load = Load {
            addr: influx_addr,
            path: format!(
                "/api/v2/write?org={}&bucket={}&precision=ns",
                ctx.services.influx_org,
                bucket.replace('/', "%2F")
            ),
            headers,
            bodies,
            connections: ctx.args.connections,
            rate: Some(rate),
            duration: ctx.seconds(),
            answers: None,
        };
        let d = measure(ctx, load, clock, &db, &measurement, None, tail).await?;
        say(format!(
            "  repeat {}: InfluxDB p50 {:.0} ms p99 {:.0} ms, archive p50 {:.0} ms p99 {:.0} ms, direct p99 {:.0} ms; {} acked, {} failed, {} not in InfluxDB, {} not archived",
            r + 1,
            m.influx.p50_ms,
            m.influx.p99_ms,
            m.archive.map_or(f64::NAN, |a| a.p50_ms),
            m.archive.map_or(f64::NAN, |a| a.p99_ms),
            d.influx.p99_ms,
            m.acked,
            m.failed,
            m.missing_influx,
            m.missing_archive,
        ));
        if m.failed > 0 || m.missing_influx > 0 || m.missing_archive > 0 || d.missing_influx > 0 {
            bail!(
                "repeat {}: {} requests failed, {} acknowledged entries never reached InfluxDB, {} never reached the archive (direct: {} missing)",
                r + 1,
                m.failed,
                m.missing_influx,
                m.missing_archive,
                d.missing_influx
            );
        }
        notes.push(format!(
            "repeat {}: {} entries at {:.0}/s; 202 p50 {:.1} ms, p99 {:.1} ms",
            r + 1,
            m.acked,
            m.rate,
            m.ack.p50_ms,
            m.ack.p99_ms
        ));
        influx.push(m.influx);
        archive_l.push(m.archive.unwrap_or_default());
        direct.push(d.influx);
        ack.push(m.ack);
    }
    for p in [&api, &ingest, &validator, &sink] {
        ctx.sample(p, "part", "6 end to end");
    }
    drop((sink, validator, ingest, api));
    ctx.drop_influx_db(&db).await;
    let _ = std::fs::remove_dir_all(&archive);
    ctx.drop_topics(&prefix, &[]).await;

    let p99 = |ls: &[Latency]| ls.iter().map(|l| l.p99_ms).collect::<Vec<_>>();
    let mut a = Row::paired(
        "6a",
        "End to end: 202 -> visible in InfluxDB, p99",
        "ms",
        &p99(&influx),
        "points posted straight to InfluxDB at the same rate, same poller",
        &p99(&direct),
    );
    a.better = Better::Lower;
    a.target = "p99 < 1,000 ms".into();
    a.met = Some(a.figure.median < 1000.0);
    a.latency = Some(LatencySpread::of(&influx));
    a.baseline_latency = Some(LatencySpread::of(&direct));
    a.notes.push(format!(
        "{rate:.0} entries/s, one per request, for {} s; all parts as processes (sink with its defaults: InfluxDB batches of 5,000 or 0.5 s linger); InfluxDB polled every {} ms",
        ctx.args.seconds,
        INFLUX_POLL.as_millis()
    ));
    a.notes.extend(notes);
    let mut b = Row {
        id: "6b".into(),
        name: "End to end: 202 -> in the archive, p99".into(),
        unit: "ms".into(),
        better: Better::Lower,
        figure: Spread::of(&p99(&archive_l)),
        baseline_name: String::new(),
        baseline: None,
        ratio: None,
        target: "(none)".into(),
        met: None,
        latency: Some(LatencySpread::of(&archive_l)),
        baseline_latency: None,
        notes: Vec::new(),
    };
    b.notes.push(format!(
        "archive files roll at {ARCHIVE_AGE_SECS} s of age in this scenario (THINGTOTAL_ARCHIVE_MAX_AGE_SECS, `up`'s default), so the archive's latency is that age by design; directory polled every {} ms",
        ARCHIVE_POLL.as_millis()
    ));
    let mut c = Row {
        id: "6c".into(),
        name: "End to end: the 202 itself at that rate, p99".into(),
        unit: "ms".into(),
        better: Better::Lower,
        figure: Spread::of(&p99(&ack)),
        baseline_name: String::new(),
        baseline: None,
        ratio: None,
        target: "(none)".into(),
        met: None,
        latency: Some(LatencySpread::of(&ack)),
        baseline_latency: None,
        notes: Vec::new(),
    };
    c.notes
        .push("latency counted from when each request was due (open loop)".into());
    Ok(vec![a, b, c])
}
