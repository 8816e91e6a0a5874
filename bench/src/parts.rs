//! Parts and baselines as child processes (`thingtotal_testkit::Process`): started with their
//! environment and a log each, waited for until healthy, read for CPU time and peak memory, and
//! stopped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;
use thingtotal_testkit::{free_port, part_command, tail, Process, Services};

/// Peak resident memory of `p` so far, in KiB.
pub(crate) fn peak_rss_kib(p: &Process) -> u64 {
    crate::env::peak_rss_kib(&p.pid().to_string()).unwrap_or(0)
}

/// Waits for `p` to exit by itself and returns the last JSON line of its `log`.
pub(crate) async fn result(mut p: Process, log: &Path, timeout: Duration) -> anyhow::Result<Value> {
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = p.child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            bail!("{} did not finish within {timeout:?}", p.name);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if !status.success() {
        bail!("{} failed ({status}); its log:\n{}", p.name, tail(log));
    }
    let text = std::fs::read_to_string(log)?;
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("{} printed no result; its log:\n{}", p.name, tail(log)))?;
    Ok(serde_json::from_str(line)?)
}

/// Starts `thingtotal` parts and baselines for one run, with their logs in `logs`.
#[derive(Debug, Clone)]
pub(crate) struct Launcher {
    pub(crate) bin: PathBuf,
    pub(crate) exe: PathBuf,
    pub(crate) logs: PathBuf,
    /// Each part's `--data-dir` goes below this.
    pub(crate) data: PathBuf,
    pub(crate) services: Services,
    pub(crate) partitions: i32,
    /// Extra variables for every part (`--part-env`).
    pub(crate) part_env: Vec<(String, String)>,
}

impl Launcher {
    fn log(&self, name: &str) -> PathBuf {
        let n = std::fs::read_dir(&self.logs).map_or(0, |d| d.count());
        self.logs.join(format!("{n:03}-{name}.log"))
    }

    /// Starts `thingtotal <part>` on `prefix` with `env` added, and waits until it is healthy.
    pub(crate) async fn part(
        &self,
        part: &str,
        prefix: &str,
        env: &[(&str, String)],
    ) -> anyhow::Result<Process> {
        let port = free_port()?;
        let mut cmd = part_command(&self.bin, part, &self.services.kafka_brokers, prefix, port);
        cmd.env("THINGTOTAL_PARTITIONS", self.partitions.to_string())
            .env(
                "THINGTOTAL_DATA_DIR",
                self.data.join(format!("{prefix}-{part}")),
            );
        if let Ok(level) = std::env::var("THINGTOTAL_BENCH_PART_LOG") {
            cmd.env("RUST_LOG", level);
        }
        for (k, v) in self
            .part_env
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .chain(env.iter().map(|(k, v)| (*k, v)))
        {
            cmd.env(k, v);
        }
        Process::spawn(part, cmd, port, Some(&self.log(part)))?
            .healthy()
            .await
    }

    /// Starts this binary's baseline subcommand `what` with `args`. A baseline with an HTTP
    /// server gets `--addr` and is waited for; the others run to the end and print a JSON line.
    pub(crate) async fn baseline(
        &self,
        what: &str,
        args: &[String],
        server: bool,
    ) -> anyhow::Result<(Process, PathBuf)> {
        let port = free_port()?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg(what).args(args);
        if server {
            cmd.arg("--addr").arg(format!("127.0.0.1:{port}"));
        }
        let log = self.log(what);
        let p = Process::spawn(what, cmd, port, Some(&log))?;
        let p = if server { p.healthy().await? } else { p };
        Ok((p, log))
    }
}
