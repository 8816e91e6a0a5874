//! The scenarios, and what they share: the run's context, the rows of the results table, and
//! small helpers for InfluxDB and for alternating a part with its baseline.

mod e2e;
mod ingest;
mod sink;
mod validator;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use thingtotal_testkit::{Process, Services};

use crate::parts::Launcher;
use crate::stats::{Latency, Spread};
use crate::{report, RunArgs, Scenario};

/// Latency percentiles across repeats.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LatencySpread {
    pub(crate) p50_ms: Spread,
    pub(crate) p99_ms: Spread,
    pub(crate) max_ms: Spread,
}

impl LatencySpread {
    pub(crate) fn of(runs: &[Latency]) -> Self {
        let f = |g: fn(&Latency) -> f64| Spread::of(&runs.iter().map(g).collect::<Vec<_>>());
        Self {
            p50_ms: f(|l| l.p50_ms),
            p99_ms: f(|l| l.p99_ms),
            max_ms: f(|l| l.max_ms),
        }
    }
}

/// Whether a bigger figure is better (throughput) or a smaller one (latency, memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Better {
    Higher,
    Lower,
}

/// One line of the results table.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    /// The scenario's number in bench/README.md, with a letter for its sub-figures.
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) unit: String,
    pub(crate) better: Better,
    pub(crate) figure: Spread,
    pub(crate) baseline_name: String,
    pub(crate) baseline: Option<Spread>,
    /// Figure over baseline, repeat by repeat.
    pub(crate) ratio: Option<Spread>,
    pub(crate) target: String,
    /// Whether the target is met (by the medians); `None` where there is no target.
    pub(crate) met: Option<bool>,
    pub(crate) latency: Option<LatencySpread>,
    pub(crate) baseline_latency: Option<LatencySpread>,
    /// What else a reader needs to judge the figure.
    pub(crate) notes: Vec<String>,
}

impl Row {
    /// A row with a figure and a baseline measured in the same repeats.
    pub(crate) fn paired(
        id: &str,
        name: &str,
        unit: &str,
        figures: &[f64],
        baseline_name: &str,
        baselines: &[f64],
    ) -> Self {
        let ratios: Vec<f64> = figures.iter().zip(baselines).map(|(f, b)| f / b).collect();
        Self {
            id: id.into(),
            name: name.into(),
            unit: unit.into(),
            better: Better::Higher,
            figure: Spread::of(figures),
            baseline_name: baseline_name.into(),
            baseline: Some(Spread::of(baselines)),
            ratio: Some(Spread::of(&ratios)),
            target: String::new(),
            met: None,
            latency: None,
            baseline_latency: None,
            notes: Vec::new(),
        }
    }
}

/// A memory sample: a process's peak RSS at the end of a scenario.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Memory {
    pub(crate) process: String,
    /// `part` or `baseline`.
    pub(crate) kind: &'static str,
    pub(crate) scenario: &'static str,
    pub(crate) peak_rss_kib: u64,
}

/// What every scenario gets.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) args: RunArgs,
    pub(crate) launcher: Launcher,
    pub(crate) services: Services,
    pub(crate) work: PathBuf,
    pub(crate) http: reqwest::Client,
    pub(crate) memory: Vec<Memory>,
    /// Scenario 1's median requests/s, which scenario 6 runs at half of.
    pub(crate) max_ingest_rate: Option<f64>,
    run: u64,
}

impl Ctx {
    pub(crate) fn seconds(&self) -> Duration {
        Duration::from_secs(self.args.seconds)
    }

    /// A topic prefix of its own for one setup: `bench-<what>-<run>-<n>`.
    pub(crate) fn prefix(&mut self, what: &str) -> String {
        self.run += 1;
        format!("bench-{what}-{}-{}", std::process::id(), self.run)
    }

    /// Watches `group`, consumed by process `p`, work through the prefilled `topic`.
    pub(crate) async fn drain(
        &self,
        p: &Process,
        group: &str,
        topic: &str,
        stall: Duration,
    ) -> anyhow::Result<crate::kafka::Drained> {
        let watch = crate::kafka::GroupWatch::new(&self.services.kafka_brokers, group, topic)?;
        let pid = p.pid().to_string();
        tokio::task::spawn_blocking(move || crate::kafka::watch_drain(&watch, Some(&pid), stall))
            .await?
    }

    /// Notes a process's peak memory.
    pub(crate) fn sample(&mut self, p: &Process, kind: &'static str, scenario: &'static str) {
        self.memory.push(Memory {
            process: p.name.clone(),
            kind,
            scenario,
            peak_rss_kib: crate::parts::peak_rss_kib(p),
        });
    }

    /// Deletes a prefix's topics (and any others given).
    pub(crate) async fn drop_topics(&self, prefix: &str, more: &[String]) {
        let t = thingtotal_common::topics::Topics::new(prefix);
        let mut all = vec![t.streams, t.raw, t.valid, t.dlq];
        all.extend_from_slice(more);
        if let Err(e) = crate::kafka::delete_topics(&self.services.kafka_brokers, &all).await {
            eprintln!("bench: warning: deleting the topics of {prefix}: {e:#}");
        }
    }

    /// Runs an InfluxQL statement.
    pub(crate) async fn influxql(
        &self,
        db: Option<&str>,
        q: &str,
    ) -> anyhow::Result<serde_json::Value> {
        let mut params = vec![("q", q), ("epoch", "ns")];
        if let Some(db) = db {
            params.push(("db", db));
        }
        let r = self
            .http
            .post(format!("{}/query", self.services.influx_url))
            .form(&params)
            .send()
            .await?;
        let status = r.status();
        let v: serde_json::Value = r.json().await?;
        if !status.is_success() || v["results"][0]["error"].is_string() {
            bail!("InfluxQL {q:?}: {status} {v}");
        }
        Ok(v)
    }

    /// Creates an InfluxDB database of its own; returns it and its v2 bucket name.
    pub(crate) async fn influx_db(&mut self, what: &str) -> anyhow::Result<(String, String)> {
        self.run += 1;
        let db = format!("bench_{what}_{}_{}", std::process::id(), self.run);
        self.influxql(None, &format!("CREATE DATABASE \"{db}\""))
            .await?;
        let bucket = format!("{db}/autogen");
        Ok((db, bucket))
    }

    pub(crate) async fn drop_influx_db(&self, db: &str) {
        if let Err(e) = self
            .influxql(None, &format!("DROP DATABASE \"{db}\""))
            .await
        {
            eprintln!("bench: warning: {e:#}");
        }
    }

    /// How many points `db` holds, over every measurement.
    pub(crate) async fn influx_points(&self, db: &str) -> anyhow::Result<i64> {
        let v = self
            .influxql(Some(db), "SELECT count(seq) FROM /.*/")
            .await?;
        Ok(v["results"][0]["series"]
            .as_array()
            .map(|series| {
                series
                    .iter()
                    .filter_map(|s| s["values"][0][1].as_i64())
                    .sum()
            })
            .unwrap_or(0))
    }

    /// The environment that points a sink at InfluxDB database `bucket`.
    pub(crate) fn influx_env(&self, bucket: &str) -> Vec<(&'static str, String)> {
        vec![
            ("THINGTOTAL_INFLUX_URL", self.services.influx_url.clone()),
            ("THINGTOTAL_INFLUX_BUCKET", bucket.to_owned()),
            ("THINGTOTAL_INFLUX_ORG", self.services.influx_org.clone()),
            (
                "THINGTOTAL_INFLUX_TOKEN",
                self.services.influx_token.clone(),
            ),
        ]
    }
}

/// Says what is happening, on stderr.
pub(crate) fn say(msg: impl std::fmt::Display) {
    eprintln!("bench: {msg}");
}

/// The order of repeat `r`: `true` for the part, `false` for its baseline. Alternating which
/// goes first cancels drift in a noisy machine (a compile finishing, a cache warming).
pub(crate) fn order(r: usize) -> [bool; 2] {
    if r.is_multiple_of(2) {
        [true, false]
    } else {
        [false, true]
    }
}

/// How many records to prefill so that the faster of a part and its baseline takes `seconds`,
/// from their rates on a pilot run; rounded up to a multiple of `unit`, at least `min`.
pub(crate) fn prefill_size(rates: &[f64], seconds: f64, unit: u64, min: u64, max: u64) -> u64 {
    let fastest = rates.iter().copied().fold(0.0, f64::max);
    let n = ((fastest * seconds) as u64).clamp(min, max.max(min));
    n.div_ceil(unit) * unit
}

/// `thingtotal-bench run`.
pub(crate) async fn run(args: RunArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let services = Services::from_env().context(
        "run the benchmarks with scripts/bench, which starts Kafka and InfluxDB for them",
    )?;
    let exe = std::env::current_exe()?;
    let bin = match &args.bin {
        Some(b) => b.clone(),
        None => thingtotal_testkit::thingtotal_bin()?,
    };
    if !bin.is_file() {
        bail!(
            "no thingtotal binary at {} (build it with cargo build --release, or pass --bin)",
            bin.display()
        );
    }
    let work = match &args.work_dir {
        Some(w) => w.clone(),
        None => std::env::temp_dir().join(format!("thingtotal-bench-{}", std::process::id())),
    };
    let logs = work.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("create {}", logs.display()))?;
    say(format!(
        "work directory {} (part logs in logs/); kafka {}, influxdb {}",
        work.display(),
        services.kafka_brokers,
        services.influx_url
    ));
    let scenarios: Vec<Scenario> = if args.only.is_empty() {
        vec![
            Scenario::IngestSingle,
            Scenario::IngestBulk,
            Scenario::Validator,
            Scenario::SinkInflux,
            Scenario::SinkParquet,
            Scenario::EndToEnd,
        ]
    } else {
        let mut s = args.only.clone();
        s.sort();
        s.dedup();
        s
    };
    let mut ctx = Ctx {
        launcher: Launcher {
            bin: bin.clone(),
            exe,
            logs,
            data: work.join("data"),
            services: services.clone(),
            partitions: args.partitions,
            part_env: args
                .part_env
                .iter()
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
                    None => Err(anyhow::anyhow!("--part-env {kv:?} is not KEY=VALUE")),
                })
                .collect::<anyhow::Result<_>>()?,
        },
        args,
        services,
        work: work.clone(),
        http: reqwest::Client::new(),
        memory: Vec::new(),
        max_ingest_rate: None,
        run: 0,
    };
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for s in scenarios {
        let t0 = Instant::now();
        say(format!("scenario {s:?}"));
        let result = match s {
            Scenario::IngestSingle => ingest::single(&mut ctx).await,
            Scenario::IngestBulk => ingest::bulk(&mut ctx).await,
            Scenario::Validator => validator::run(&mut ctx).await,
            Scenario::SinkInflux => sink::influx(&mut ctx).await,
            Scenario::SinkParquet => sink::parquet(&mut ctx).await,
            Scenario::EndToEnd => e2e::run(&mut ctx).await,
        };
        match result {
            Ok(mut r) => {
                for row in &r {
                    say(format!(
                        "  {} {}: {:.0} {} (baseline {}), ratio {}",
                        row.id,
                        row.name,
                        row.figure.median,
                        row.unit,
                        row.baseline
                            .as_ref()
                            .map_or("-".into(), |b| format!("{:.0}", b.median)),
                        row.ratio
                            .as_ref()
                            .map_or("-".into(), |r| format!("{:.2}", r.median)),
                    ));
                }
                rows.append(&mut r);
            }
            Err(e) => {
                say(format!("scenario {s:?} FAILED: {e:#}"));
                failures.push(format!("{s:?}: {e:#}"));
            }
        }
        say(format!(
            "scenario {s:?} took {:.0} s",
            t0.elapsed().as_secs_f64()
        ));
    }
    rows.extend(report::memory_rows(&ctx.memory));
    let name = ctx
        .args
        .name
        .clone()
        .unwrap_or_else(|| started_at.format("%Y-%m-%d").to_string());
    let (md, json) = report::write(
        &ctx.args,
        &name,
        &bin,
        started_at,
        started.elapsed(),
        &rows,
        &ctx.memory,
        &failures,
    )?;
    say(format!(
        "results: {} and {} ({:.0} s in all)",
        md.display(),
        json.display(),
        started.elapsed().as_secs_f64()
    ));
    if ctx.args.work_dir.is_none() {
        // Logs are kept only on failure; archives and baseline files are large.
        if failures.is_empty() {
            let _ = std::fs::remove_dir_all(&work);
        } else {
            say(format!("keeping {} for its logs", work.display()));
            let _ = std::fs::remove_dir_all(work.join("archive"));
            let _ = std::fs::remove_dir_all(work.join("data"));
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} scenario(s) failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefill_size_follows_the_faster_rate_in_whole_units() {
        assert_eq!(
            prefill_size(&[1000.0, 2500.0], 20.0, 1, 10, 1_000_000),
            50_000
        );
        assert_eq!(
            prefill_size(&[1000.0], 20.0, 250_000, 10, 1_000_000),
            250_000
        );
        assert_eq!(prefill_size(&[1e9], 20.0, 1000, 10, 1_000_000), 1_000_000);
        assert_eq!(prefill_size(&[0.0], 20.0, 1, 10, 1_000_000), 10);
    }

    #[test]
    fn ratios_are_taken_repeat_by_repeat() {
        let r = Row::paired("1", "x", "req/s", &[10.0, 30.0], "b", &[20.0, 30.0]);
        let ratio = r.ratio.unwrap();
        assert_eq!(ratio.values, [0.5, 1.0]);
        assert_eq!(ratio.median, 0.75);
    }
}
