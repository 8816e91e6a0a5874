//! Scenarios 4 and 5: the sink on a prefilled `entries.valid`, writing InfluxDB against direct
//! gzipped writes, and writing the Parquet archive against `ArrowWriter` alone.

use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use chrono::Utc;
use thingtotal_common::topics::Topics;
use thingtotal_testkit::{create_stream, Process, ADMIN_TOKEN};

use super::{order, prefill_size, say, Ctx, Row};
use crate::kafka::{self, Fill};
use crate::parts;
use crate::workload;

/// Rows per archive file: the sink's default row limit. The byte limit is raised so that files
/// roll on rows alone, and a prefill of whole files ends with a commit.
const FILE_ROWS: u64 = 250_000;

struct Setup {
    prefix: String,
    api: Process,
    streams: Vec<u64>,
}

/// An api, `streams` five-field streams and `n` valid envelopes spread over them.
async fn setup(ctx: &mut Ctx, prefix: &str, streams: usize, n: u64) -> anyhow::Result<Setup> {
    let prefix = prefix.to_owned();
    let api = ctx.launcher.part("api", &prefix, &[]).await?;
    let mut ids = Vec::new();
    for s in 0..streams {
        let definition = serde_json::json!({
            "name": format!("greenhouse {s}"),
            "schema": workload::five_field_schema(false),
        });
        ids.push(create_stream(&api.base, ADMIN_TOKEN, &definition).await?.id);
    }
    let brokers = ctx.services.kafka_brokers.clone();
    let topic = Topics::new(&prefix).valid;
    let run = u64::from(std::process::id());
    let streams = ids.clone();
    let took = tokio::task::spawn_blocking(move || {
        let base = Utc::now() - chrono::Duration::hours(1);
        kafka::prefill(&brokers, &topic, n, |i| {
            let seq = i + 1;
            let stream = streams[(i % streams.len() as u64) as usize];
            let ts = workload::entry_time(base, seq);
            let id = workload::entry_id(run, seq);
            Fill {
                key: thingtotal_common::stream::key_of(stream),
                value: workload::envelope(stream, seq, &id, ts),
                headers: workload::raw_headers(&id, ts).into(),
                timestamp_ms: ts.timestamp_millis(),
            }
        })
    })
    .await??;
    say(format!(
        "  prefilled {n} valid envelopes in {:.1} s",
        took.as_secs_f64()
    ));
    Ok(Setup {
        prefix,
        api,
        streams: ids,
    })
}

struct InfluxRound {
    part: kafka::Drained,
    base_rate: f64,
    written: i64,
}

async fn influx_round(
    ctx: &mut Ctx,
    n: u64,
    seconds: f64,
    r: usize,
) -> anyhow::Result<InfluxRound> {
    let prefix = ctx.prefix("influx");
    let (db, bucket) = ctx.influx_db("sink").await?;
    let (base_db, base_bucket) = ctx.influx_db("direct").await?;
    let result = influx_measure(ctx, &prefix, &db, &bucket, &base_bucket, n, seconds, r).await;
    ctx.drop_influx_db(&db).await;
    ctx.drop_influx_db(&base_db).await;
    ctx.drop_topics(&prefix, &[]).await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn influx_measure(
    ctx: &mut Ctx,
    prefix: &str,
    db: &str,
    bucket: &str,
    base_bucket: &str,
    n: u64,
    seconds: f64,
    r: usize,
) -> anyhow::Result<InfluxRound> {
    let s = setup(ctx, prefix, 6, n).await?;
    let mut part = None;
    let mut base_rate = None;
    for first in order(r) {
        if first {
            let mut env = ctx.influx_env(bucket);
            env.push(("THINGTOTAL_SINK_ARCHIVE", "false".into()));
            let sink = ctx.launcher.part("sink", &s.prefix, &env).await?;
            let topics = Topics::new(&s.prefix);
            part = Some(
                ctx.drain(
                    &sink,
                    &topics.group("sink-influx"),
                    &topics.valid,
                    Duration::from_secs(60),
                )
                .await?,
            );
            ctx.sample(&sink, "part", "4 sink to InfluxDB");
        } else {
            let streams = s
                .streams
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let args = [
                "--url",
                &ctx.services.influx_url,
                "--bucket",
                base_bucket,
                "--org",
                &ctx.services.influx_org,
                "--token",
                &ctx.services.influx_token,
                "--streams",
                &streams,
                "--seconds",
                &seconds.to_string(),
            ]
            .map(String::from);
            let (p, log) = ctx.launcher.baseline("influx-direct", &args, false).await?;
            let v = parts::result(p, &log, Duration::from_secs_f64(seconds * 3.0 + 60.0)).await?;
            push_peak(ctx, "influx-direct", "4 sink to InfluxDB", &v);
            base_rate = Some(
                v["points"].as_f64().unwrap_or(0.0) / v["seconds"].as_f64().unwrap_or(f64::NAN),
            );
        }
    }
    let written = ctx.influx_points(db).await?;
    ctx.sample(&s.api, "part", "4 sink to InfluxDB");
    if written != n as i64 {
        bail!("the sink wrote {written} points for {n} envelopes");
    }
    Ok(InfluxRound {
        part: part.expect("ran"),
        base_rate: base_rate.expect("ran"),
        written,
    })
}

/// A baseline's own peak memory, from its JSON result.
fn push_peak(ctx: &mut Ctx, process: &str, scenario: &'static str, v: &serde_json::Value) {
    if let Some(kib) = v["peak_rss_kib"].as_u64() {
        ctx.memory.push(super::Memory {
            process: process.into(),
            kind: "baseline",
            scenario,
            peak_rss_kib: kib,
        });
    }
}

/// Scenario 4.
pub(super) async fn influx(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    const PILOT: u64 = 200_000;
    let pilot = influx_round(ctx, PILOT, 5.0, 0).await?;
    let seconds = ctx.args.seconds as f64;
    let n = prefill_size(
        &[pilot.part.rate(), pilot.base_rate],
        seconds,
        1000,
        PILOT,
        ctx.args.max_prefill,
    );
    say(format!(
        "  pilot: sink {:.0} points/s, direct {:.0} points/s; measuring with {n} envelopes",
        pilot.part.rate(),
        pilot.base_rate
    ));
    let (mut figures, mut baselines, mut notes) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..ctx.args.repeats {
        let x = influx_round(ctx, n, seconds, r).await?;
        say(format!(
            "  repeat {}: sink {:.0} points/s over {:.1} s, direct {:.0} points/s",
            r + 1,
            x.part.rate(),
            x.part.seconds,
            x.base_rate
        ));
        figures.push(x.part.rate());
        baselines.push(x.base_rate);
        notes.push(format!(
            "repeat {}: {} points written for {n} envelopes; sink {:.1} s and {:.1} CPU s",
            r + 1,
            x.written,
            x.part.seconds,
            x.part.cpu_seconds.unwrap_or(f64::NAN)
        ));
    }
    let mut row = Row::paired(
        "4",
        "Sink -> InfluxDB",
        "points/s",
        &figures,
        "gzipped 5,000-line batches posted directly, one at a time",
        &baselines,
    );
    row.target = "ratio >= 0.9".into();
    row.met = row.ratio.as_ref().map(|r| r.median >= 0.9);
    row.notes.push(
        "6 five-field streams, no tags; sink with its defaults (5,000 points a write, 0.5 s linger), archive off; \
         rate from the InfluxDB group's first commit to its last; every point counted in InfluxDB afterwards"
            .into(),
    );
    row.notes.extend(notes);
    Ok(vec![row])
}

struct ParquetRound {
    part: kafka::Drained,
    base_rows_per_cpu_s: f64,
    base_rows_per_s: f64,
    rows: u64,
    files: usize,
}

/// The rows in the archive's Parquet files under `root`, and how many files there are.
fn archived_rows(root: &Path) -> anyhow::Result<(u64, usize)> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let mut rows = 0u64;
    let mut files = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)?.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "parquet") {
                let reader = SerializedFileReader::new(std::fs::File::open(&path)?)?;
                rows += reader.metadata().file_metadata().num_rows() as u64;
                files += 1;
            }
        }
    }
    Ok((rows, files))
}

async fn parquet_round(
    ctx: &mut Ctx,
    n: u64,
    seconds: f64,
    r: usize,
) -> anyhow::Result<ParquetRound> {
    let prefix = ctx.prefix("parquet");
    let root = ctx.work.join("archive").join(&prefix);
    let scratch = ctx.work.join("archive").join(format!("{prefix}-arrow"));
    let result = parquet_measure(ctx, &prefix, &root, &scratch, n, seconds, r).await;
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&scratch);
    ctx.drop_topics(&prefix, &[]).await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn parquet_measure(
    ctx: &mut Ctx,
    prefix: &str,
    root: &Path,
    scratch: &Path,
    n: u64,
    seconds: f64,
    r: usize,
) -> anyhow::Result<ParquetRound> {
    let s = setup(ctx, prefix, 1, n).await?;
    let mut part = None;
    let mut base = None;
    for first in order(r) {
        if first {
            let env = vec![
                ("THINGTOTAL_SINK_INFLUX", "false".to_owned()),
                ("THINGTOTAL_ARCHIVE", root.to_string_lossy().into_owned()),
                ("THINGTOTAL_ARCHIVE_MAX_BYTES", (1u64 << 30).to_string()),
            ];
            let sink = ctx.launcher.part("sink", &s.prefix, &env).await?;
            let topics = Topics::new(&s.prefix);
            part = Some(
                ctx.drain(
                    &sink,
                    &topics.group("sink-archive"),
                    &topics.valid,
                    Duration::from_secs(90),
                )
                .await?,
            );
            ctx.sample(&sink, "part", "5 sink to Parquet");
        } else {
            let args = [
                "--dir".to_owned(),
                scratch.to_string_lossy().into_owned(),
                "--rows".to_owned(),
                FILE_ROWS.to_string(),
                "--seconds".to_owned(),
                seconds.to_string(),
            ];
            let (p, log) = ctx.launcher.baseline("arrow-writer", &args, false).await?;
            let v = parts::result(p, &log, Duration::from_secs_f64(seconds * 3.0 + 120.0)).await?;
            push_peak(ctx, "arrow-writer", "5 sink to Parquet", &v);
            let rows = v["rows"].as_f64().unwrap_or(0.0);
            base = Some((
                rows / v["cpu_seconds"].as_f64().unwrap_or(f64::NAN),
                rows / v["seconds"].as_f64().unwrap_or(f64::NAN),
            ));
        }
    }
    let (rows, files) = archived_rows(root)?;
    ctx.sample(&s.api, "part", "5 sink to Parquet");
    if rows != n {
        bail!("the archive holds {rows} rows for {n} envelopes");
    }
    let (base_rows_per_cpu_s, base_rows_per_s) = base.expect("ran");
    Ok(ParquetRound {
        part: part.expect("ran"),
        base_rows_per_cpu_s,
        base_rows_per_s,
        rows,
        files,
    })
}

/// Scenario 5. The figure is rows per CPU second of the sink process, which is rows/s per core.
pub(super) async fn parquet(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let pilot = parquet_round(ctx, 3 * FILE_ROWS, 5.0, 0).await?;
    let seconds = ctx.args.seconds as f64;
    // Wall-clock rates: the prefill must last `seconds` of the sink's time.
    let n = prefill_size(
        &[pilot.part.rate()],
        seconds,
        FILE_ROWS,
        3 * FILE_ROWS,
        ctx.args.max_prefill,
    );
    let per_cpu = |d: &kafka::Drained| d.records as f64 / d.cpu_seconds.unwrap_or(f64::NAN);
    say(format!(
        "  pilot: sink {:.0} rows/s ({:.0} per CPU s), ArrowWriter {:.0} rows per CPU s; measuring with {n} envelopes",
        pilot.part.rate(),
        per_cpu(&pilot.part),
        pilot.base_rows_per_cpu_s
    ));
    let (mut figures, mut baselines, mut notes) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..ctx.args.repeats {
        let x = parquet_round(ctx, n, seconds, r).await?;
        say(format!(
            "  repeat {}: sink {:.0} rows per CPU s ({:.0} rows/s wall), ArrowWriter {:.0} rows per CPU s ({:.0} rows/s wall)",
            r + 1,
            per_cpu(&x.part),
            x.part.rate(),
            x.base_rows_per_cpu_s,
            x.base_rows_per_s
        ));
        figures.push(per_cpu(&x.part));
        baselines.push(x.base_rows_per_cpu_s);
        notes.push(format!(
            "repeat {}: {} rows in {} files; sink {:.0} rows/s wall over {:.1} s using {:.1} CPU s; ArrowWriter {:.0} rows/s wall",
            r + 1,
            x.rows,
            x.files,
            x.part.rate(),
            x.part.seconds,
            x.part.cpu_seconds.unwrap_or(f64::NAN),
            x.base_rows_per_s
        ));
    }
    let mut row = Row::paired(
        "5",
        "Sink -> Parquet, 5-field stream",
        "rows/s per core",
        &figures,
        "arrow-rs ArrowWriter alone, same columns and properties",
        &baselines,
    );
    row.target = ">= 1,000,000 rows/s per core".into();
    row.met = Some(row.figure.median >= 1_000_000.0);
    row.notes.push(format!(
        "one five-field stream; files of {FILE_ROWS} rows (the default row limit; the byte limit raised so that rows decide), zstd; \
         rows/s per core = rows archived / CPU seconds of the sink process between its first and last commit"
    ));
    row.notes.extend(notes);
    Ok(vec![row])
}
