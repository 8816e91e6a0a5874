//! Scenarios 1 and 2: the ingest edge, one entry per request against a bare warp server, and
//! arrays of 1,000 entries against a raw rdkafka producer.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use thingtotal_testkit::{create_stream, Process, ADMIN_TOKEN};

use super::{order, say, Ctx, LatencySpread, Row};
use crate::loadgen::{self, Load, Outcome};
use crate::parts;
use crate::stats::Latency;
use crate::workload;

struct Edge {
    prefix: String,
    api: Process,
    ingest: Process,
    stream: u64,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Edge {
    /// The same `body` posted to the stream's entries at `p`, as fast as `connections` go.
    fn load(&self, p: &Process, body: &Bytes, connections: usize, duration: Duration) -> Load {
        let body = body.clone();
        Load {
            addr: p.addr,
            path: format!("/api/streams/{}/entries", self.stream),
            headers: self.headers.clone(),
            bodies: Arc::new(move |_| body.clone()),
            connections,
            rate: None,
            duration,
            answers: None,
        }
    }
}

async fn edge(ctx: &mut Ctx, what: &str) -> anyhow::Result<Edge> {
    let prefix = ctx.prefix(what);
    let api = ctx.launcher.part("api", &prefix, &[]).await?;
    let ingest = ctx.launcher.part("ingest", &prefix, &[]).await?;
    let created = create_stream(
        &api.base,
        ADMIN_TOKEN,
        &serde_json::json!({"name": format!("bench {what}"), "schema": workload::five_field_schema(false)}),
    )
    .await?;
    let (stream, key) = (created.id, created.write_key);
    let headers = vec![
        (CONTENT_TYPE, HeaderValue::from_static("application/json")),
        (
            HeaderName::from_static("x-api-key"),
            HeaderValue::from_str(&key)?,
        ),
    ];
    Ok(Edge {
        prefix,
        api,
        ingest,
        stream,
        headers,
    })
}

/// Runs the load generator and fails on any non-2xx answer: a figure made of errors is no figure.
async fn drive(load: Load, what: &str) -> anyhow::Result<Outcome> {
    let o = loadgen::run(load).await?;
    if o.failed > 0 {
        bail!(
            "{what}: {} of {} requests failed; the first: {}",
            o.failed,
            o.failed + o.ok,
            o.first_failure.as_deref().unwrap_or("?")
        );
    }
    Ok(o)
}

/// Scenario 1: one entry per request, as fast as `--connections` keep-alive connections go.
pub(super) async fn single(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let e = edge(ctx, "single").await?;
    let (bare, _) = ctx.launcher.baseline("bare-server", &[], true).await?;
    let body = workload::ingest_entry(0);
    let load = |p: &Process, duration: Duration| e.load(p, &body, ctx.args.connections, duration);
    // Warm-up: connections, Kafka metadata, the idempotent producer's id, the registry.
    drive(load(&e.ingest, Duration::from_secs(3)), "ingest warm-up").await?;
    drive(load(&bare, Duration::from_secs(3)), "bare warm-up").await?;
    let (mut figures, mut baselines) = (Vec::new(), Vec::new());
    let (mut lat, mut base_lat) = (Vec::new(), Vec::new());
    for r in 0..ctx.args.repeats {
        let mut run_part = None;
        let mut run_base = None;
        for part in order(r) {
            if part {
                run_part = Some(drive(load(&e.ingest, ctx.seconds()), "ingest").await?);
            } else {
                run_base = Some(drive(load(&bare, ctx.seconds()), "bare server").await?);
            }
        }
        let (p, b) = (run_part.expect("ran"), run_base.expect("ran"));
        say(format!(
            "  repeat {}: ingest {:.0} req/s (p99 {:.1} ms), bare {:.0} req/s (p99 {:.1} ms)",
            r + 1,
            p.rate(),
            p.latency.p99_ms,
            b.rate(),
            b.latency.p99_ms
        ));
        figures.push(p.rate());
        baselines.push(b.rate());
        lat.push(p.latency);
        base_lat.push(b.latency);
    }
    ctx.sample(&e.ingest, "part", "1 ingest, one entry per request");
    ctx.sample(&e.api, "part", "1 ingest, one entry per request");
    ctx.sample(&bare, "baseline", "1 ingest, one entry per request");
    drop(bare);
    drop(e.ingest);
    drop(e.api);
    ctx.drop_topics(&e.prefix, &[]).await;
    let mut row = Row::paired(
        "1",
        "Ingest, one entry per request",
        "requests/s",
        &figures,
        "bare warp server answering 202",
        &baselines,
    );
    row.target = "ratio >= 0.5".into();
    row.met = row.ratio.as_ref().map(|r| r.median >= 0.5);
    row.latency = Some(LatencySpread::of(&lat));
    row.baseline_latency = Some(LatencySpread::of(&base_lat));
    row.notes.push(format!(
        "{} keep-alive connections, each sending its next request when the answer is in",
        ctx.args.connections
    ));
    ctx.max_ingest_rate = Some(row.figure.median);
    Ok(vec![row])
}

/// Scenario 2: JSON arrays of 1,000 entries, `--bulk-connections` requests in flight, against a
/// raw producer with as many batches of 1,000 in flight.
pub(super) async fn bulk(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    const BATCH: u64 = 1000;
    let e = edge(ctx, "bulk").await?;
    let mut body = Vec::with_capacity(100 * BATCH as usize);
    body.push(b'[');
    for i in 0..BATCH {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&workload::ingest_entry(i));
    }
    body.push(b']');
    let body = Bytes::from(body);
    let load = |duration: Duration| e.load(&e.ingest, &body, ctx.args.bulk_connections, duration);
    let raw_topic = thingtotal_common::topics::Topics::new(&e.prefix).raw;
    let producer_args = |seconds: f64| {
        vec![
            "--brokers".into(),
            ctx.services.kafka_brokers.clone(),
            "--topic".into(),
            raw_topic.clone(),
            "--key".into(),
            e.stream.to_string(),
            "--batch".into(),
            BATCH.to_string(),
            "--concurrency".into(),
            ctx.args.bulk_connections.to_string(),
            "--seconds".into(),
            seconds.to_string(),
        ]
    };
    let timeout = ctx.seconds() * 3 + Duration::from_secs(60);
    drive(load(Duration::from_secs(3)), "bulk warm-up").await?;
    let (mut figures, mut baselines) = (Vec::new(), Vec::new());
    let (mut lat, mut base_lat) = (Vec::new(), Vec::new());
    for r in 0..ctx.args.repeats {
        let mut run_part = None;
        let mut run_base = None;
        for part in order(r) {
            if part {
                run_part = Some(drive(load(ctx.seconds()), "bulk ingest").await?);
            } else {
                let (p, log) = ctx
                    .launcher
                    .baseline(
                        "raw-producer",
                        &producer_args(ctx.args.seconds as f64),
                        false,
                    )
                    .await?;
                let v = parts::result(p, &log, timeout).await?;
                let entries = v["entries"].as_f64().unwrap_or(0.0);
                let seconds = v["seconds"].as_f64().unwrap_or(f64::NAN);
                let l: Latency = Latency {
                    p50_ms: v["latency"]["p50_ms"].as_f64().unwrap_or(f64::NAN),
                    p99_ms: v["latency"]["p99_ms"].as_f64().unwrap_or(f64::NAN),
                    max_ms: v["latency"]["max_ms"].as_f64().unwrap_or(f64::NAN),
                    count: v["latency"]["count"].as_u64().unwrap_or(0),
                };
                let peak = v["peak_rss_kib"].as_u64();
                if let Some(kib) = peak {
                    ctx.memory.push(super::Memory {
                        process: "raw-producer".into(),
                        kind: "baseline",
                        scenario: "2 ingest in bulk",
                        peak_rss_kib: kib,
                    });
                }
                run_base = Some((entries / seconds, l));
            }
        }
        let (p, (b_rate, b_lat)) = (run_part.expect("ran"), run_base.expect("ran"));
        let p_rate = p.rate() * BATCH as f64;
        say(format!(
            "  repeat {}: ingest {:.0} entries/s (p99 {:.1} ms), raw producer {:.0} entries/s (p99 {:.1} ms)",
            r + 1,
            p_rate,
            p.latency.p99_ms,
            b_rate,
            b_lat.p99_ms
        ));
        figures.push(p_rate);
        baselines.push(b_rate);
        lat.push(p.latency);
        base_lat.push(b_lat);
    }
    ctx.sample(&e.ingest, "part", "2 ingest in bulk");
    ctx.sample(&e.api, "part", "2 ingest in bulk");
    drop(e.ingest);
    drop(e.api);
    ctx.drop_topics(&e.prefix, &[]).await;
    let mut row = Row::paired(
        "2",
        "Ingest in bulk, arrays of 1,000",
        "entries/s",
        &figures,
        "raw rdkafka producer, same records and settings",
        &baselines,
    );
    row.target = "ratio >= 0.7 and >= 200,000 entries/s".into();
    row.met = row
        .ratio
        .as_ref()
        .map(|r| r.median >= 0.7 && row.figure.median >= 200_000.0);
    row.latency = Some(LatencySpread::of(&lat));
    row.baseline_latency = Some(LatencySpread::of(&base_lat));
    row.notes.push(format!(
        "{} requests (baseline: batches of 1,000 records) in flight; latency is per request or batch",
        ctx.args.bulk_connections
    ));
    Ok(vec![row])
}
