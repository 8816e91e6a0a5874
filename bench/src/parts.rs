//! Parts and baselines as child processes: started with their environment, waited for until
//! healthy, read for CPU time and peak memory, and stopped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::env::Services;

/// The admin token the benchmark's api processes run with.
pub(crate) const ADMIN: &str = "bench-admin-token";

/// A running child process; killed when dropped.
#[derive(Debug)]
pub(crate) struct Proc {
    pub(crate) name: String,
    pub(crate) base: String,
    pub(crate) addr: std::net::SocketAddr,
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port on loopback.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Proc {
    /// Spawns `cmd` (whose stdout and stderr go to `log`) listening on `port`, and waits until
    /// `GET /health` answers 200, unless `health` is false.
    async fn spawn(
        name: &str,
        mut cmd: Command,
        port: u16,
        log: &Path,
        health: bool,
    ) -> anyhow::Result<Self> {
        let out =
            std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = cmd.spawn().with_context(|| format!("start {name}"))?;
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let mut p = Self {
            name: name.to_owned(),
            base: format!("http://{addr}"),
            addr,
            child,
        };
        if !health {
            return Ok(p);
        }
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = p.child.try_wait()? {
                bail!(
                    "{name} exited during start-up ({status}); its log {}:\n{}",
                    log.display(),
                    tail(log)
                );
            }
            if let Ok(r) = http.get(format!("{}/health", p.base)).send().await {
                if r.status().is_success() {
                    return Ok(p);
                }
            }
            if Instant::now() > deadline {
                bail!("{name} is not healthy after 60 s; its log:\n{}", tail(log));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process id, as `/proc` names it.
    pub(crate) fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Peak resident memory so far, in KiB.
    pub(crate) fn peak_rss_kib(&self) -> u64 {
        crate::env::peak_rss_kib(&self.pid()).unwrap_or(0)
    }

    /// Waits for the process to exit by itself and returns its stdout's last JSON line.
    pub(crate) async fn result(mut self, log: &Path, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait()? {
                break s;
            }
            if Instant::now() > deadline {
                bail!("{} did not finish within {timeout:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if !status.success() {
            bail!("{} failed ({status}); its log:\n{}", self.name, tail(log));
        }
        let text = std::fs::read_to_string(log)?;
        let line = text
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .with_context(|| format!("{} printed no result; its log:\n{}", self.name, tail(log)))?;
        Ok(serde_json::from_str(line)?)
    }
}

/// The last lines of a log, for an error message.
pub(crate) fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
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
    ) -> anyhow::Result<Proc> {
        let port = free_port()?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg(part)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("THINGTOTAL_KAFKA_BROKERS", &self.services.kafka_brokers)
            .env("THINGTOTAL_TOPIC_PREFIX", prefix)
            .env("THINGTOTAL_PARTITIONS", self.partitions.to_string())
            .env("THINGTOTAL_ADMIN_TOKEN", ADMIN)
            .env("THINGTOTAL_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env(
                "THINGTOTAL_DATA_DIR",
                self.data.join(format!("{prefix}-{part}")),
            )
            .env(
                "RUST_LOG",
                std::env::var("THINGTOTAL_BENCH_PART_LOG").unwrap_or_else(|_| "warn".into()),
            );
        for (k, v) in self
            .part_env
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .chain(env.iter().map(|(k, v)| (*k, v)))
        {
            cmd.env(k, v);
        }
        Proc::spawn(part, cmd, port, &self.log(part), true).await
    }

    /// Starts this binary's baseline subcommand `what` with `args`. A baseline with an HTTP
    /// server gets `--addr` and is waited for; the others run to the end and print a JSON line.
    pub(crate) async fn baseline(
        &self,
        what: &str,
        args: &[String],
        server: bool,
    ) -> anyhow::Result<(Proc, PathBuf)> {
        let port = free_port()?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg(what).args(args);
        if server {
            cmd.arg("--addr").arg(format!("127.0.0.1:{port}"));
        }
        let log = self.log(what);
        let p = Proc::spawn(what, cmd, port, &log, server).await?;
        Ok((p, log))
    }
}

/// Creates a stream through the api and returns its id and write key.
pub(crate) async fn create_stream(api: &Proc, definition: Value) -> anyhow::Result<(u64, String)> {
    let r = reqwest::Client::new()
        .post(format!("{}/api/streams", api.base))
        .bearer_auth(ADMIN)
        .json(&definition)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    if status.as_u16() != 201 {
        bail!("creating a stream answered {status}: {v}");
    }
    Ok((
        v["id"].as_u64().context("the stream has an id")?,
        v["write_key"]
            .as_str()
            .context("the stream has a write key")?
            .to_owned(),
    ))
}
