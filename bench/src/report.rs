//! The results files: `<name>.md` for people (the table the README quotes) and `<name>.json`
//! with every repeat, for tools.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::scenarios::{Better, Memory, Row};
use crate::stats::Spread;
use crate::RunArgs;

const MIB: f64 = 1024.0;

/// The parts' baselines for memory: the baseline process doing the same job.
fn memory_baselines(part: &str) -> &'static [&'static str] {
    match part {
        "ingest" => &["raw-producer", "bare-server"],
        "validator" => &["copy"],
        "sink" => &["influx-direct", "arrow-writer"],
        _ => &[],
    }
}

/// Scenario 7: each part's peak RSS over every scenario it ran in, next to its baselines'.
pub(crate) fn memory_rows(samples: &[Memory]) -> Vec<Row> {
    let peak = |process: &str| {
        samples
            .iter()
            .filter(|m| m.process == process)
            .max_by_key(|m| m.peak_rss_kib)
    };
    let mut rows = Vec::new();
    for (letter, part) in ["ingest", "validator", "sink", "api"].iter().enumerate() {
        let Some(p) = peak(part) else { continue };
        let base = memory_baselines(part)
            .iter()
            .filter_map(|b| peak(b))
            .max_by_key(|m| m.peak_rss_kib);
        let figure = p.peak_rss_kib as f64 / MIB;
        let mut row = Row {
            id: format!("7{}", (b'a' + letter as u8) as char),
            name: format!("Peak RSS of {part}"),
            unit: "MiB".into(),
            better: Better::Lower,
            figure: Spread::of(&[figure]),
            baseline_name: base.map_or(String::new(), |b| format!("{} (peak RSS)", b.process)),
            baseline: base.map(|b| Spread::of(&[b.peak_rss_kib as f64 / MIB])),
            ratio: base.map(|b| Spread::of(&[p.peak_rss_kib as f64 / b.peak_rss_kib as f64])),
            target: "(none)".into(),
            met: None,
            latency: None,
            baseline_latency: None,
            notes: vec![format!("highest in scenario {}", p.scenario)],
        };
        if let Some(b) = base {
            row.notes
                .push(format!("baseline's highest in scenario {}", b.scenario));
        }
        rows.push(row);
    }
    rows
}

/// A figure for the table: thousands separated, or two decimals for small numbers.
fn num(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    if x.abs() >= 100.0 {
        let s = format!("{:.0}", x.abs());
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if x < 0.0 {
            out.insert(0, '-');
        }
        out
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn spread(s: &Spread, unit: &str) -> String {
    if s.values.len() > 1 {
        format!("{} {unit} ({}–{})", num(s.median), num(s.min), num(s.max))
    } else {
        format!("{} {unit}", num(s.median))
    }
}

fn ratio(s: &Spread) -> String {
    if s.values.len() > 1 {
        format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max)
    } else {
        format!("{:.2}", s.median)
    }
}

#[derive(Serialize)]
struct Json<'a> {
    name: &'a str,
    started_at: DateTime<Utc>,
    duration_seconds: f64,
    commit: String,
    machine: Machine,
    settings: Settings,
    rows: &'a [Row],
    memory: &'a [Memory],
    failures: &'a [String],
}

#[derive(Serialize)]
struct Settings {
    seconds: u64,
    repeats: usize,
    connections: usize,
    bulk_connections: usize,
    partitions: i32,
    part_env: Vec<String>,
}

#[derive(Serialize)]
struct Machine {
    cores: usize,
    cpu: String,
    memory_gib: f64,
    load_average: String,
    kernel: String,
}

fn machine() -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let memory_gib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    Machine {
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu,
        memory_gib,
        load_average: read("/proc/loadavg")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
    }
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// The results table in Markdown, as the README quotes it.
pub(crate) fn table(rows: &[Row]) -> String {
    let mut md = String::new();
    md.push_str("| # | scenario | figure | baseline | ratio | target | met |\n");
    md.push_str("|---|---|---|---|---|---|---|\n");
    for r in rows {
        let met = match r.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "–",
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.id,
            r.name,
            spread(&r.figure, &r.unit),
            r.baseline.as_ref().map_or("–".into(), |b| format!(
                "{}: {}",
                r.baseline_name,
                spread(b, &r.unit)
            )),
            r.ratio.as_ref().map_or("–".into(), ratio),
            r.target,
            met
        );
    }
    md
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn write(
    args: &RunArgs,
    name: &str,
    bin: &Path,
    started_at: DateTime<Utc>,
    took: Duration,
    rows: &[Row],
    memory: &[Memory],
    failures: &[String],
) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(&args.out)?;
    let m = machine();
    let commit = commit();
    let mut md = String::new();
    let _ = writeln!(md, "# ThingTotal benchmark results, {name}\n");
    let _ = writeln!(
        md,
        "Run as `thingtotal-bench {}` at {} UTC on commit `{commit}`, {:.0} s in all: each measurement {} s, \
         {} repeats, the order of part and baseline alternating between repeats. Machine: {} cores \
         ({}), {:.0} GiB, Linux {}, load average {} at the end; shared with other work while it ran. \
         Kafka and InfluxDB ran on loopback on the same machine. `thingtotal` binary: `{}`.\n",
        std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        started_at.format("%Y-%m-%d %H:%M"),
        took.as_secs_f64(),
        args.seconds,
        args.repeats,
        m.cores,
        m.cpu,
        m.memory_gib,
        m.kernel,
        m.load_average,
        bin.display()
    );
    if !args.part_env.is_empty() {
        let _ = writeln!(
            md,
            "**Settings changed for this run**, in every part: `{}`.\n",
            args.part_env.join("`, `")
        );
    }
    md.push_str(
        "Each figure is the median of the repeats with their range in brackets; each ratio is the \
         figure over its baseline taken repeat by repeat (so both saw the same machine), then the \
         median. For latency and memory, lower is better and a ratio above 1 is worse than the \
         baseline.\n\n",
    );
    md.push_str(&table(rows));
    let lat: Vec<&Row> = rows.iter().filter(|r| r.latency.is_some()).collect();
    if !lat.is_empty() {
        md.push_str("\n## Latency\n\nMedian across repeats (range in brackets).\n\n");
        md.push_str("| # | measured | p50 | p99 | max |\n|---|---|---|---|---|\n");
        for r in lat {
            for (who, l) in [
                ("ThingTotal".to_owned(), r.latency.as_ref()),
                (
                    format!("baseline: {}", r.baseline_name),
                    r.baseline_latency.as_ref(),
                ),
            ] {
                if let Some(l) = l {
                    let _ = writeln!(
                        md,
                        "| {} | {who} | {} | {} | {} |",
                        r.id,
                        spread(&l.p50_ms, "ms"),
                        spread(&l.p99_ms, "ms"),
                        spread(&l.max_ms, "ms")
                    );
                }
            }
        }
    }
    md.push_str("\n## Notes\n\n");
    for r in rows {
        if r.notes.is_empty() {
            continue;
        }
        let _ = writeln!(md, "**{} {}**\n", r.id, r.name);
        for n in &r.notes {
            let _ = writeln!(md, "- {n}");
        }
        md.push('\n');
    }
    if !memory.is_empty() {
        md.push_str("## Peak RSS of every process, by scenario\n\n");
        md.push_str("| process | kind | scenario | peak RSS |\n|---|---|---|---|\n");
        let mut by: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
        for s in memory {
            let e = by
                .entry((s.scenario, s.kind, s.process.as_str()))
                .or_default();
            *e = (*e).max(s.peak_rss_kib);
        }
        for ((scenario, kind, process), kib) in by {
            let _ = writeln!(
                md,
                "| {process} | {kind} | {scenario} | {} MiB |",
                num(kib as f64 / MIB)
            );
        }
        md.push('\n');
    }
    if !failures.is_empty() {
        md.push_str("## Failed scenarios\n\n");
        for f in failures {
            let _ = writeln!(md, "- {}", f.replace('\n', " "));
        }
    }
    let md_path = args.out.join(format!("{name}.md"));
    let json_path = args.out.join(format!("{name}.json"));
    std::fs::write(&md_path, md)?;
    let json = Json {
        name,
        started_at,
        duration_seconds: took.as_secs_f64(),
        commit,
        machine: m,
        settings: Settings {
            seconds: args.seconds,
            repeats: args.repeats,
            connections: args.connections,
            bulk_connections: args.bulk_connections,
            partitions: args.partitions,
            part_env: args.part_env.clone(),
        },
        rows,
        memory,
        failures,
    };
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)? + "\n")?;
    Ok((md_path, json_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(1234567.8), "1,234,568");
        assert_eq!(num(123.0), "123");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(0.456), "0.46");
        assert_eq!(num(f64::NAN), "n/a");
    }

    #[test]
    fn memory_rows_compare_a_part_with_its_baseline() {
        let m = |process: &str, kind, kib| Memory {
            process: process.into(),
            kind,
            scenario: "x",
            peak_rss_kib: kib,
        };
        let rows = memory_rows(&[
            m("ingest", "part", 40 * 1024),
            m("ingest", "part", 80 * 1024),
            m("raw-producer", "baseline", 20 * 1024),
            m("api", "part", 10 * 1024),
        ]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].figure.median, 80.0);
        assert_eq!(rows[0].ratio.as_ref().unwrap().median, 4.0);
        assert!(rows[1].baseline.is_none());
        let md = table(&rows);
        assert!(
            md.contains("| 7a | Peak RSS of ingest | 80.0 MiB |"),
            "{md}"
        );
    }
}
