//! Scenario 3: the validator on a prefilled `entries.raw` with a realistic schema and one entry
//! in ten invalid, against a pass-through transactional copy of the same records.

use std::time::Duration;

use chrono::Utc;
use thingtotal_common::topics::Topics;
use thingtotal_testkit::{create_stream, ADMIN_TOKEN};

use super::{order, prefill_size, say, Ctx, Row};
use crate::kafka::{self, Fill, GroupWatch};
use crate::workload;

const STREAMS: usize = 6;
const PILOT: u64 = 200_000;

struct Round {
    part: kafka::Drained,
    base: kafka::Drained,
    valid: i64,
    dead: i64,
}

async fn round(ctx: &mut Ctx, n: u64, r: usize) -> anyhow::Result<Round> {
    let prefix = ctx.prefix("validator");
    let copy_topic = format!("{prefix}.baseline.copy");
    let result = measure(ctx, &prefix, &copy_topic, n, r).await;
    ctx.drop_topics(&prefix, &[copy_topic]).await;
    result
}

async fn measure(
    ctx: &mut Ctx,
    prefix: &str,
    copy_topic: &str,
    n: u64,
    r: usize,
) -> anyhow::Result<Round> {
    let topics = Topics::new(prefix);
    let api = ctx.launcher.part("api", prefix, &[]).await?;
    let mut streams = Vec::new();
    for s in 0..STREAMS {
        let definition = serde_json::json!({
            "name": format!("station {s}"),
            "description": "a weather station fleet",
            "schema": workload::station_schema(),
        });
        streams.push(create_stream(&api.base, ADMIN_TOKEN, &definition).await?.id);
    }
    kafka::create_topic(&ctx.services.kafka_brokers, copy_topic, ctx.args.partitions).await?;
    let brokers = ctx.services.kafka_brokers.clone();
    let raw = topics.raw.clone();
    let run = ctx.memory.len() as u64 + r as u64;
    let took = tokio::task::spawn_blocking(move || {
        let now = Utc::now();
        kafka::prefill(&brokers, &raw, n, |i| {
            let stream = streams[(workload::mix(i) % STREAMS as u64) as usize];
            let at = now + chrono::Duration::microseconds(i as i64);
            Fill {
                key: thingtotal_common::stream::key_of(stream),
                value: workload::station_entry(i),
                headers: workload::raw_headers(&workload::entry_id(run, i + 1), at).into(),
                timestamp_ms: at.timestamp_millis(),
            }
        })
    })
    .await??;
    say(format!(
        "  prefilled {n} raw entries in {:.1} s",
        took.as_secs_f64()
    ));
    let stall = Duration::from_secs(60);
    let mut part = None;
    let mut base = None;
    for first in order(r) {
        if first {
            let v = ctx.launcher.part("validator", prefix, &[]).await?;
            part = Some(
                ctx.drain(&v, &topics.group("validator"), &topics.raw, stall)
                    .await?,
            );
            ctx.sample(&v, "part", "3 validator");
        } else {
            let group = format!("{prefix}-copy");
            let args = [
                "--brokers",
                &ctx.services.kafka_brokers,
                "--from",
                &topics.raw,
                "--to",
                copy_topic,
                "--group",
                &group,
            ]
            .map(String::from);
            let (c, _) = ctx.launcher.baseline("copy", &args, false).await?;
            base = Some(ctx.drain(&c, &group, &topics.raw, stall).await?);
            ctx.sample(&c, "baseline", "3 validator");
        }
    }
    let ends = |topic: &str| -> anyhow::Result<i64> {
        GroupWatch::new(&ctx.services.kafka_brokers, "bench-ends", topic)?.end()
    };
    // The validator writes its outputs in transactions: each commit marker takes an offset too.
    let valid = ends(&topics.valid)?;
    let dead = ends(&topics.dlq)?;
    ctx.sample(&api, "part", "3 validator");
    Ok(Round {
        part: part.expect("ran"),
        base: base.expect("ran"),
        valid,
        dead,
    })
}

pub(super) async fn run(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let pilot = round(ctx, PILOT, 0).await?;
    let seconds = ctx.args.seconds as f64;
    let n = prefill_size(
        &[pilot.part.rate(), pilot.base.rate()],
        seconds,
        1000,
        PILOT,
        ctx.args.max_prefill,
    );
    say(format!(
        "  pilot: validator {:.0}/s, copy {:.0}/s; measuring with {n} entries",
        pilot.part.rate(),
        pilot.base.rate()
    ));
    let (mut figures, mut baselines, mut notes) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..ctx.args.repeats {
        let x = round(ctx, n, r).await?;
        say(format!(
            "  repeat {}: validator {:.0} entries/s over {:.1} s ({:.2} CPU s), copy {:.0} entries/s over {:.1} s ({:.2} CPU s)",
            r + 1,
            x.part.rate(),
            x.part.seconds,
            x.part.cpu_seconds.unwrap_or(f64::NAN),
            x.base.rate(),
            x.base.seconds,
            x.base.cpu_seconds.unwrap_or(f64::NAN),
        ));
        figures.push(x.part.rate());
        baselines.push(x.base.rate());
        notes.push(format!(
            "repeat {}: {n} entries; valid topic end {} and dead-letter end {} (offsets, with transaction markers); validator {:.1} s and {:.1} CPU s, copy {:.1} s and {:.1} CPU s",
            r + 1,
            x.valid,
            x.dead,
            x.part.seconds,
            x.part.cpu_seconds.unwrap_or(f64::NAN),
            x.base.seconds,
            x.base.cpu_seconds.unwrap_or(f64::NAN),
        ));
    }
    let mut row = Row::paired(
        "3",
        "Validator, realistic schema, 10% invalid",
        "entries/s",
        &figures,
        "pass-through transactional copy raw -> copy topic",
        &baselines,
    );
    row.target = "ratio >= 0.8".into();
    row.met = row.ratio.as_ref().map(|r| r.median >= 0.8);
    row.notes.push(format!(
        "{STREAMS} streams of one weather-station schema (bounds, enum, pattern, nested object, required, no extra members); rate from the group's first commit to its last"
    ));
    row.notes.extend(notes);
    Ok(vec![row])
}
