//! The baselines: the same job as a part, done as directly as the libraries allow. Each runs as
//! a child process of the benchmark (a hidden subcommand), so that its CPU time and memory are
//! its own, just like a part's. Those that measure themselves print one JSON line at the end.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use chrono::Utc;
use futures::future::join_all;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::json;
use thingtotal_common::limits::SizeLimits;
use thingtotal_common::log::{producer_config, transactional_producer_config};
use warp::Filter;

use crate::kafka::config;
use crate::stats::{self, Latency};
use crate::workload;

/// `bare-server`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BareServerArgs {
    #[arg(long)]
    addr: SocketAddr,
}

/// Baseline 1: warp on the same runtime as ingest, reading the body and answering 202 with a
/// body of the same shape, and nothing else: what an HTTP edge costs before it does any work.
pub(crate) async fn bare_server(a: BareServerArgs) -> anyhow::Result<()> {
    let entries = warp::path!("api" / "streams" / u64 / "entries")
        .and(warp::post())
        .and(warp::body::bytes())
        .map(|_id: u64, _body: Bytes| {
            let id = uuid::Uuid::now_v7();
            warp::reply::with_status(
                warp::reply::json(&json!({"accepted": 1, "entry_ids": [id], "seq": [1]})),
                warp::http::StatusCode::ACCEPTED,
            )
        });
    let health = warp::path!("health").map(|| "ok");
    warp::serve(entries.or(health)).run(a.addr).await;
    Ok(())
}

/// `raw-producer`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RawProducerArgs {
    #[arg(long)]
    brokers: String,
    #[arg(long)]
    topic: String,
    /// The stream id: the records' key.
    #[arg(long)]
    key: String,
    /// Entries per batch (one ingest request).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Batches in flight at once (the load generator's connections).
    #[arg(long)]
    concurrency: usize,
    #[arg(long)]
    seconds: f64,
}

/// Baseline 2: what ingest writes for a request of `batch` entries, written straight with a
/// `FutureProducer` with the product's settings: the same entry bytes, key, headers (a fresh
/// UUIDv7, the receive time, the source) and timestamp, `concurrency` batches in flight.
pub(crate) async fn raw_producer(a: RawProducerArgs) -> anyhow::Result<()> {
    let producer: FutureProducer =
        producer_config(config(&a.brokers), SizeLimits::default()).create()?;
    let entries: Arc<Vec<Bytes>> =
        Arc::new((0..a.batch as u64).map(workload::ingest_entry).collect());
    let a = Arc::new(a);
    // Warm up: metadata, connections, the idempotent producer id.
    send_batch(&producer, &a, &entries).await?;
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(a.seconds);
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency {
        let (producer, a, entries) = (producer.clone(), a.clone(), entries.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = stats::histogram();
            let mut sent = 0u64;
            while Instant::now() < end {
                let t = Instant::now();
                send_batch(&producer, &a, &entries).await?;
                stats::record(&mut h, t.elapsed());
                sent += entries.len() as u64;
            }
            anyhow::Ok((sent, h))
        }));
    }
    let mut sent = 0;
    let mut h = stats::histogram();
    for t in tasks {
        let (n, th) = t.await??;
        sent += n;
        h.add(&th)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"entries": sent, "seconds": seconds, "latency": Latency::of(&h),
               "peak_rss_kib": crate::env::peak_rss_kib("self")})
    );
    Ok(())
}

async fn send_batch(
    producer: &FutureProducer,
    a: &RawProducerArgs,
    entries: &[Bytes],
) -> anyhow::Result<()> {
    let received_at = Utc::now();
    let mut futures = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let at = received_at + chrono::Duration::microseconds(i as i64);
        let id = uuid::Uuid::now_v7().to_string();
        let headers = workload::raw_headers(&id, at).iter().fold(
            OwnedHeaders::new_with_capacity(3),
            |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                })
            },
        );
        let record = FutureRecord::to(&a.topic)
            .key(a.key.as_bytes())
            .payload(e.as_ref())
            .headers(headers)
            .timestamp(at.timestamp_millis());
        futures.push(producer.send(record, Duration::from_secs(30)));
    }
    for r in join_all(futures).await {
        r.map_err(|(e, _)| e)
            .context("a record was not acknowledged")?;
    }
    Ok(())
}

/// `copy`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CopyArgs {
    #[arg(long)]
    brokers: String,
    #[arg(long)]
    from: String,
    #[arg(long)]
    to: String,
    #[arg(long)]
    group: String,
    /// Most records in one transaction (the validator's default).
    #[arg(long, default_value_t = 5000)]
    batch_max: usize,
    /// Longest wait to fill a batch (the validator's default).
    #[arg(long, default_value_t = 20)]
    linger_ms: u64,
}

struct Copied {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp: Option<i64>,
}

/// Baseline 3: the validator's consume-transform-produce loop with the transform taken out. The
/// same group settings (read_committed, explicit offsets, cooperative-sticky) and transactional
/// producer settings, batches of the same size and linger, each record copied unchanged with
/// its headers, and each batch's offsets sent inside its transaction. Runs until killed.
pub(crate) async fn copy(a: CopyArgs) -> anyhow::Result<()> {
    let mut cc = config(&a.brokers);
    cc.set("group.id", &a.group)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest");
    let consumer: StreamConsumer = cc.create()?;
    consumer.subscribe(&[&a.from])?;
    // As the product's transactional producer.
    let mut pc = transactional_producer_config(config(&a.brokers), SizeLimits::default());
    pc.set(
        "transactional.id",
        format!("{}-{}", a.group, uuid::Uuid::now_v7().simple()),
    );
    let producer: FutureProducer = pc.create()?;
    producer.init_transactions(Duration::from_secs(30))?;
    let linger = Duration::from_millis(a.linger_ms);
    loop {
        let deadline = tokio::time::Instant::now() + linger;
        let mut batch: Vec<Copied> = Vec::with_capacity(a.batch_max);
        while batch.len() < a.batch_max {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(e.into()),
                Ok(Ok(m)) => batch.push(Copied {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers: m
                        .headers()
                        .map(|hs| {
                            hs.iter()
                                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default(),
                    timestamp: m.timestamp().to_millis(),
                }),
            }
        }
        if batch.is_empty() {
            continue;
        }
        producer.begin_transaction()?;
        let mut futures = Vec::with_capacity(batch.len());
        for c in &batch {
            let headers = c.headers.iter().fold(
                OwnedHeaders::new_with_capacity(c.headers.len()),
                |h, (k, v)| {
                    h.insert(Header {
                        key: k,
                        value: Some(v),
                    })
                },
            );
            let mut r: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&a.to).headers(headers);
            if let Some(k) = &c.key {
                r = r.key(k);
            }
            if let Some(v) = &c.value {
                r = r.payload(v);
            }
            if let Some(t) = c.timestamp {
                r = r.timestamp(t);
            }
            futures.push(producer.send(r, Duration::from_secs(30)));
        }
        for r in join_all(futures).await {
            r.map_err(|(e, _)| e)?;
        }
        let mut next: std::collections::BTreeMap<i32, i64> = Default::default();
        for c in &batch {
            let o = next.entry(c.partition).or_default();
            *o = (*o).max(c.offset + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in next {
            tpl.add_partition_offset(&a.from, p, Offset::Offset(o))?;
        }
        let metadata = consumer
            .group_metadata()
            .context("the consumer has group metadata")?;
        let p = producer.clone();
        tokio::task::spawn_blocking(move || {
            p.send_offsets_to_transaction(&tpl, &metadata, Duration::from_secs(30))?;
            p.commit_transaction(Duration::from_secs(30))
        })
        .await??;
    }
}

/// `influx-direct`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct InfluxDirectArgs {
    #[arg(long)]
    url: String,
    #[arg(long)]
    bucket: String,
    #[arg(long)]
    org: String,
    #[arg(long, default_value = "")]
    token: String,
    /// The stream ids the points spread over (round robin), as in the sink's run.
    #[arg(long, value_delimiter = ',')]
    streams: Vec<u64>,
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    #[arg(long)]
    seconds: f64,
}

/// Baseline 4: the sink's points for the same envelopes, as the same line protocol, gzipped the
/// same way in batches of 5,000 and posted to the same `/api/v2/write` one at a time, as the
/// sink does; without Kafka, JSON or the registry.
pub(crate) async fn influx_direct(a: InfluxDirectArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let url = format!("{}/api/v2/write", a.url.trim_end_matches('/'));
    let base = Utc::now() - chrono::Duration::hours(1);
    let run = u64::from(std::process::id());
    let mut seq = 0u64;
    let mut points = 0u64;
    let mut body = String::new();
    let started = Instant::now();
    let mut h = stats::histogram();
    while started.elapsed().as_secs_f64() < a.seconds {
        body.clear();
        for _ in 0..a.batch {
            seq += 1;
            let stream = a.streams[(seq % a.streams.len() as u64) as usize];
            let ts = workload::entry_time(base, seq);
            workload::line(&mut body, stream, seq, &workload::entry_id(run, seq), ts);
        }
        let t = Instant::now();
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 4),
            flate2::Compression::fast(),
        );
        gz.write_all(body.as_bytes())?;
        let gz = gz.finish()?;
        let mut req = http
            .post(&url)
            .query(&[
                ("org", a.org.as_str()),
                ("bucket", a.bucket.as_str()),
                ("precision", "ns"),
            ])
            .header("content-encoding", "gzip")
            .header("content-type", "text/plain; charset=utf-8")
            .body(gz);
        if !a.token.is_empty() {
            req = req.header("authorization", format!("Token {}", a.token));
        }
        let r = req.send().await?;
        let status = r.status();
        if !status.is_success() {
            anyhow::bail!("InfluxDB answered {status}: {}", r.text().await?);
        }
        stats::record(&mut h, t.elapsed());
        points += a.batch as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"points": points, "seconds": seconds, "write_latency": Latency::of(&h),
               "peak_rss_kib": crate::env::peak_rss_kib("self")})
    );
    Ok(())
}

/// `arrow-writer`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ArrowWriterArgs {
    /// Where the files go (each is removed once written).
    #[arg(long)]
    dir: PathBuf,
    /// Rows per file: the sink's file size.
    #[arg(long, default_value_t = 250_000)]
    rows: usize,
    #[arg(long)]
    seconds: f64,
}

/// Baseline 5: arrow-rs's `ArrowWriter` alone, with the archive's writer properties (zstd, row
/// groups of up to 256 Ki rows, the same key-value metadata), writing record batches of the
/// archive's columns for the same rows, built before the clock starts.
pub(crate) fn arrow_writer(a: ArrowWriterArgs) -> anyhow::Result<()> {
    use arrow::array::{
        ArrayRef, Float64Array, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use arrow::record_batch::RecordBatch;
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::metadata::KeyValue;
    use parquet::file::properties::WriterProperties;

    let utc = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let schema = Arc::new(Schema::new(vec![
        Field::new("entry_id", DataType::Utf8, false),
        Field::new("seq", DataType::Int64, false),
        Field::new("ts", utc(), false),
        Field::new("received_at", utc(), false),
        Field::new("stream_version", DataType::Int32, false),
        Field::new("temperature", DataType::Float64, true),
        Field::new("humidity", DataType::Int64, true),
        Field::new("pressure", DataType::Float64, true),
        Field::new("battery", DataType::Float64, true),
        Field::new("status", DataType::Utf8, true),
    ]));
    let base = Utc::now() - chrono::Duration::hours(1);
    let seqs: Vec<u64> = (1..=a.rows as u64).collect();
    let data: Vec<serde_json::Value> = seqs
        .iter()
        .map(|s| workload::five_field_data(s - 1))
        .collect();
    let ts: Vec<i64> = seqs
        .iter()
        .map(|s| workload::entry_time(base, *s).timestamp_micros())
        .collect();
    let f = |k: &str| -> Float64Array { data.iter().map(|d| d[k].as_f64()).collect() };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            seqs.iter()
                .map(|s| Some(workload::entry_id(1, *s)))
                .collect::<StringArray>(),
        ),
        Arc::new(seqs.iter().map(|s| *s as i64).collect::<Int64Array>()),
        Arc::new(TimestampMicrosecondArray::from(ts.clone()).with_timezone("UTC")),
        Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
        Arc::new(Int32Array::from(vec![1; a.rows])),
        Arc::new(f("temperature")),
        Arc::new(
            data.iter()
                .map(|d| d["humidity"].as_i64())
                .collect::<Int64Array>(),
        ),
        Arc::new(f("pressure")),
        Arc::new(f("battery")),
        Arc::new(
            data.iter()
                .map(|d| d["status"].as_str())
                .collect::<StringArray>(),
        ),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    drop(data);
    std::fs::create_dir_all(&a.dir)?;
    let schema_json = workload::five_field_schema(false).to_string();
    let cpu0 = crate::env::cpu_seconds("self").unwrap_or(f64::NAN);
    let started = Instant::now();
    let mut rows = 0u64;
    let mut files = 0u64;
    while started.elapsed().as_secs_f64() < a.seconds {
        let path = a.dir.join(format!("baseline-{files}.parquet"));
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(256 * 1024))
            .set_key_value_metadata(Some(vec![
                KeyValue::new("thingtotal.first_offset".into(), rows.to_string()),
                KeyValue::new(
                    "thingtotal.last_offset".into(),
                    (rows + a.rows as u64).to_string(),
                ),
                KeyValue::new("thingtotal.schema".into(), schema_json.clone()),
            ]))
            .build();
        let file = std::fs::File::create(&path)?;
        let mut w = ArrowWriter::try_new(file, schema.clone(), Some(props))?;
        w.write(&batch)?;
        w.close()?;
        std::fs::remove_file(&path)?;
        rows += a.rows as u64;
        files += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = crate::env::cpu_seconds("self").unwrap_or(f64::NAN) - cpu0;
    println!(
        "{}",
        json!({"rows": rows, "files": files, "seconds": seconds, "cpu_seconds": cpu,
               "peak_rss_kib": crate::env::peak_rss_kib("self")})
    );
    Ok(())
}
