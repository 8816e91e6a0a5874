//! The HTTP load generator: many keep-alive HTTP/1.1 connections, as fast as they go or at a
//! fixed request rate, with latency percentiles.
//!
//! Each connection is one task that sends its next request when the previous answer is in. At a
//! fixed rate, request `i` is due at `start + i / rate` whichever connection sends it, and its
//! latency is counted from when it was due, not from when it was sent: a server that stalls is
//! charged for the requests that queued behind the stall (no coordinated omission).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::stats::{self, Latency};

/// The body of request `i`.
pub(crate) type Bodies = Arc<dyn Fn(u64) -> Bytes + Send + Sync>;

/// One answer, for a caller that wants to look at each (the end-to-end scenario).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) index: u64,
    pub(crate) ok: bool,
    pub(crate) at: Instant,
}

/// What to send, where and how fast.
#[derive(Clone)]
pub(crate) struct Load {
    pub(crate) addr: SocketAddr,
    pub(crate) path: String,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) bodies: Bodies,
    pub(crate) connections: usize,
    /// Requests per second; `None`: as fast as the connections go.
    pub(crate) rate: Option<f64>,
    pub(crate) duration: Duration,
    pub(crate) answers: Option<mpsc::UnboundedSender<Answer>>,
}

impl std::fmt::Debug for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Load")
            .field("addr", &self.addr)
            .field("path", &self.path)
            .field("connections", &self.connections)
            .field("rate", &self.rate)
            .field("duration", &self.duration)
            .finish_non_exhaustive()
    }
}

/// What a load run measured.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// Answers with a 2xx status.
    pub(crate) ok: u64,
    /// Other answers and connection failures.
    pub(crate) failed: u64,
    /// The first failure's status or error, if any.
    pub(crate) first_failure: Option<String>,
    pub(crate) elapsed: Duration,
    pub(crate) latency: Latency,
}

impl Outcome {
    /// Successful requests per second.
    pub(crate) fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

struct Worker {
    ok: u64,
    failed: u64,
    first_failure: Option<String>,
    histogram: Histogram<u64>,
}

/// Runs `load` and returns what it measured.
pub(crate) async fn run(load: Load) -> anyhow::Result<Outcome> {
    let load = Arc::new(load);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        let (load, next) = (load.clone(), next.clone());
        tasks.push(tokio::spawn(
            async move { worker(&load, &next, start).await },
        ));
    }
    let mut ok = 0;
    let mut failed = 0;
    let mut first_failure = None;
    let mut histogram = stats::histogram();
    for t in tasks {
        let w = t.await.context("a load generator task panicked")??;
        ok += w.ok;
        failed += w.failed;
        first_failure = first_failure.or(w.first_failure);
        histogram.add(&w.histogram)?;
    }
    Ok(Outcome {
        ok,
        failed,
        first_failure,
        elapsed: start.elapsed(),
        latency: Latency::of(&histogram),
    })
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn worker(load: &Load, next: &AtomicU64, start: Instant) -> anyhow::Result<Worker> {
    let end = start + load.duration;
    let host = HeaderValue::from_str(&load.addr.to_string())?;
    let mut w = Worker {
        ok: 0,
        failed: 0,
        first_failure: None,
        histogram: stats::histogram(),
    };
    let mut sender: Option<Sender> = None;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let due = match load.rate {
            Some(rate) => start + Duration::from_secs_f64(i as f64 / rate),
            None => Instant::now(),
        };
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let s = match &mut sender {
            Some(s) if !s.is_closed() => s,
            _ => sender.insert(connect(load.addr).await?),
        };
        let mut request = hyper::Request::post(load.path.as_str())
            .header(hyper::header::HOST, host.clone())
            .body(Full::new((load.bodies)(i)))?;
        request.headers_mut().extend(load.headers.iter().cloned());
        let answered = async {
            s.ready().await?;
            let response = s.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        }
        .await;
        let at = Instant::now();
        let ok = match answered {
            Ok((status, _)) if status.is_success() => true,
            Ok((status, body)) => {
                w.first_failure
                    .get_or_insert_with(|| format!("{status}: {}", String::from_utf8_lossy(&body)));
                false
            }
            Err(e) => {
                w.first_failure.get_or_insert_with(|| e.to_string());
                sender = None;
                false
            }
        };
        if ok {
            w.ok += 1;
            stats::record(&mut w.histogram, at - due);
        } else {
            w.failed += 1;
        }
        if let Some(answers) = &load.answers {
            let _ = answers.send(Answer { index: i, ok, at });
        }
    }
    Ok(w)
}
