//! `thingtotal` parts and other servers as child processes: started with their environment,
//! waited for until healthy, and killed when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::ADMIN_TOKEN;

/// How long a process may take to answer `/health`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A free port on loopback.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The `thingtotal` binary that cargo built beside the running program: both are in
/// `target/<profile>/`, or the program is a test binary in its `deps/`.
pub fn thingtotal_bin() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().unwrap_or(Path::new(".")).to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    Ok(dir.join("thingtotal"))
}

/// The command for `thingtotal <part>` on Kafka `brokers` with topic prefix `prefix`, to listen
/// on loopback `port`: with an environment of its own (only `PATH` comes from this process), the
/// [`ADMIN_TOKEN`] and `RUST_LOG=warn`. Add the part's settings with [`Command::env`].
pub fn part_command(bin: &Path, part: &str, brokers: &str, prefix: &str, port: u16) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg(part)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("THINGTOTAL_KAFKA_BROKERS", brokers)
        .env("THINGTOTAL_TOPIC_PREFIX", prefix)
        .env("THINGTOTAL_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("THINGTOTAL_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn");
    cmd
}

/// A running child process that serves (or may serve) HTTP on a loopback port; killed when
/// dropped.
#[derive(Debug)]
pub struct Process {
    /// What it runs (a part, a baseline), for messages.
    pub name: String,
    /// Where it listens: `127.0.0.1:<port>`.
    pub addr: SocketAddr,
    /// Its base URL: `http://127.0.0.1:<port>`.
    pub base: String,
    /// The child itself, for a caller that signals, stops or waits for it.
    pub child: Child,
    log: Option<PathBuf>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// Spawns `cmd`, which is to listen on loopback `port`, with no standard input. With a `log`
    /// its standard output and error go to that file; without, its output is dropped and its
    /// errors go to this process's standard error.
    pub fn spawn(
        name: &str,
        mut cmd: Command,
        port: u16,
        log: Option<&Path>,
    ) -> anyhow::Result<Self> {
        cmd.stdin(Stdio::null());
        match log {
            Some(log) => {
                let out = std::fs::File::create(log)
                    .with_context(|| format!("create {}", log.display()))?;
                cmd.stdout(out.try_clone()?).stderr(out);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
            }
        }
        let child = cmd.spawn().with_context(|| format!("start {name}"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        Ok(Self {
            name: name.to_owned(),
            addr,
            base: format!("http://{addr}"),
            child,
            log: log.map(Path::to_path_buf),
        })
    }

    /// Waits until `GET /health` answers 200, for at most a minute. Fails at once, with the end
    /// of the log, if the process exits first.
    pub async fn healthy(mut self) -> anyhow::Result<Self> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited during start-up ({status}){}",
                    self.name,
                    self.log_tail()
                );
            }
            if let Ok(r) = http.get(format!("{}/health", self.base)).send().await {
                if r.status() == reqwest::StatusCode::OK {
                    return Ok(self);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{} is not healthy after {START_TIMEOUT:?}{}",
                    self.name,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `; its log <path>:` and the log's last lines, for an error message (empty without a log).
    pub fn log_tail(&self) -> String {
        self.log.as_deref().map_or_else(String::new, |log| {
            format!("; its log {}:\n{}", log.display(), tail(log))
        })
    }
}

/// The last 30 lines of a log, for an error message.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
