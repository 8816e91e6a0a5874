//! `thingtotal up`: every part in one process, on the embedded log unless Kafka is given.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use thingtotal_common::config::{AdminArgs, ArchiveArgs, InfluxArgs, LogPortArgs};
use thingtotal_common::consumer::Drain;
use thingtotal_common::part::Part;
use thingtotal_common::{http, keys};
use tokio_util::sync::CancellationToken;
use tracing::info;
use warp::Filter;

/// `up`'s configuration: the union of the parts', with one HTTP address.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Where the topics live: Kafka if --kafka-brokers is given, else the embedded log.
    #[command(flatten)]
    pub log: LogPortArgs,
    /// The admin token; generated and kept in `<data-dir>/admin-token` if not given.
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Ingest request limits.
    #[command(flatten)]
    pub limits: thingtotal_ingest::LimitArgs,
    /// How the validator consumes.
    #[command(flatten)]
    pub validator: thingtotal_validator::ValidatorArgs,
    /// How the sink consumes.
    #[command(flatten)]
    pub sink: thingtotal_sink::SinkArgs,
    /// InfluxDB, if configured.
    #[command(flatten)]
    pub influx: InfluxArgs,
    /// The Parquet archive.
    #[command(flatten)]
    pub archive: ArchiveArgs,
    /// What one read may cost.
    #[command(flatten)]
    pub reads: thingtotal_api::ReadArgs,
    /// Address of the one HTTP server (ingest and api routes, `/health`, `/metrics`).
    #[arg(long, env = "THINGTOTAL_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
}

/// The admin token: the one given, or the one kept in the data directory, or a new one saved
/// there with permissions 0600.
fn admin_token(given: Option<&str>, data_dir: &Path) -> anyhow::Result<String> {
    if let Some(t) = given.filter(|t| !t.is_empty()) {
        return Ok(t.to_owned());
    }
    let path = data_dir.join("admin-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        if !t.trim().is_empty() {
            return Ok(t.trim().to_owned());
        }
    }
    std::fs::create_dir_all(data_dir)?;
    let token = keys::generate();
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("saving the admin token to {}", path.display()))?;
    writeln!(f, "{token}")?;
    f.sync_all()?;
    Ok(token)
}

/// How long `up` keeps processing after Ctrl-C so that everything acknowledged is archived.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// Runs `up` until `shutdown` is cancelled, then drains: the HTTP server stops accepting, the
/// validator processes every acknowledged entry, and the sink writes and archives everything
/// validated, before the process exits.
pub async fn run(mut config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    // On one machine an entry should be readable from the archive within about 5 seconds.
    config.sink.archive_max_age_secs = config.sink.archive_max_age_secs.min(5.0);
    // Which makes many small files: merge them every five minutes unless told otherwise.
    config.sink.archive_compact_every_secs.get_or_insert(300.0);
    let token = admin_token(config.admin.admin_token.as_deref(), &config.log.data_dir)?;
    let log = config.log.open()?;
    match config.log.kafka_brokers.as_deref() {
        Some(brokers) => info!(brokers, "running on Kafka"),
        None => info!(
            dir = %config.log.data_dir.display(),
            "running on the embedded log: one machine, durable on its disk, no replication; \
             add --kafka-brokers to run on Kafka"
        ),
    }
    let archive = config.archive.open(&config.log.data_dir)?;
    let archive_at = archive.describe();
    // The registry outlives the parts: it stops last.
    let registry_stop = CancellationToken::new();
    let part = Part::start(&config.log, log, registry_stop.clone()).await?;
    let document = crate::openapi::document();
    let methods = http::Methods::of_document(&document);
    let routes =
        thingtotal_ingest::routes(thingtotal_ingest::Ingest::new(part.clone(), &config.limits))
            .or(thingtotal_api::routes(
                thingtotal_api::Api::new(part.clone(), Some(token.clone()))
                    .reading(&config.influx, Some(archive), &config.reads)
                    .documented(document),
            ))
            .unify()
            .boxed();
    let routes = http::part_routes("up", part.log.clone(), Some(routes), methods);
    let (http_stop, validator_stop, sink_stop) = (
        CancellationToken::new(),
        CancellationToken::new(),
        CancellationToken::new(),
    );
    let (addr, server) =
        http::spawn_server("up", config.http_addr, routes, http_stop.clone()).await?;
    let validator = tokio::spawn(thingtotal_validator::consume(
        part.clone(),
        config.validator.settings(&part.topics),
        Drain::new(DRAIN_LIMIT),
        validator_stop.clone(),
    ));
    let sink = thingtotal_sink::Settings::new(
        &config.sink,
        &config.influx,
        &config.archive,
        &config.log.data_dir,
        &part.topics,
    )?;
    let mut sinks = thingtotal_sink::spawn(&part, sink, DRAIN_LIMIT, &sink_stop);
    println!("{}", banner(&config, addr, &token, &archive_at));
    shutdown.cancelled().await;
    info!("draining: no new requests; archiving everything acknowledged");
    http_stop.cancel();
    server.await?;
    validator_stop.cancel();
    validator.await??;
    sink_stop.cancel();
    while let Some(done) = sinks.join_next().await {
        done??;
    }
    registry_stop.cancel();
    info!("stopped");
    Ok(())
}

/// What `up` prints when it is ready: where everything is, and a walkthrough to paste.
fn banner(config: &Config, addr: SocketAddr, token: &str, archive: &str) -> String {
    let data = config.log.data_dir.display();
    let log = match &config.log.kafka_brokers {
        Some(b) => format!("Kafka at {b}"),
        None => format!(
            "the embedded log in {data}/log: one machine, durable on its disk, no replication"
        ),
    };
    let influx = match &config.influx.influx_url {
        Some(u) => format!("{u} (bucket {})", config.influx.influx_bucket),
        None => "not configured (add --influx-url for dashboards)".into(),
    };
    format!(
        r#"
ThingTotal is running on {log}.

  API and ingest  http://{addr}
  OpenAPI         http://{addr}/api/openapi.json
  Health          http://{addr}/health   Metrics: http://{addr}/metrics
  Admin token     {token}  (kept in {data}/admin-token)
  Archive         {archive}  (Parquet, Hive-partitioned)
  InfluxDB        {influx}

Try it:
  export TT=http://{addr} TOKEN={token}
  curl -s -X POST $TT/api/streams -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d '{{"name":"greenhouse","schema":{{"type":"object","properties":{{"temperature":{{"type":"number"}},"humidity":{{"type":"integer"}}}},"required":["temperature"]}}}}'
  # then, with the "id", "write_key" and "read_key" of the answer:
  curl -s -X POST $TT/api/streams/<id>/entries -H "X-Api-Key: <write_key>" -H 'content-type: application/json' \
    -d '[{{"temperature": 21.5, "humidity": 40}}, {{"temperature": 22.0}}, {{"humidity": 3}}]'
  curl -s "$TT/update?api_key=<write_key>&field1=23.5&field2=41"
  # a few seconds later, read them back (the one without a temperature was rejected):
  curl -s "$TT/api/streams/<id>/entries" -H "X-Api-Key: <read_key>"
  curl -s "$TT/api/streams/<id>/entries?window=1m&agg=mean&start=-1h" -H "X-Api-Key: <read_key>"
  curl -s "$TT/api/streams/<id>/rejected" -H "X-Api-Key: <read_key>"
  curl -s "$TT/channels/<id>/feeds.json?api_key=<read_key>&results=10"
  duckdb -c "select * from read_parquet('{archive}/**/*.parquet', hive_partitioning = true)"

Ctrl-C stops once everything acknowledged is archived.
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_admin_token_is_generated_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = admin_token(None, dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join("admin-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            admin_token(None, dir.path()).unwrap(),
            first,
            "reused on the next start"
        );
        assert_eq!(admin_token(Some("given"), dir.path()).unwrap(), "given");
    }
}
