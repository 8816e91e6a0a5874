//! Configuration blocks shared by the parts. Every flag has a `THINGTOTAL_*` environment variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::limits::{SizeLimits, DEFAULT_MAX_ENTRY_BYTES};
use crate::log::{EmbeddedLog, EmbeddedOptions, KafkaLog, KafkaOptions, Log};
use crate::topics::Topics;
use crate::{Error, Result};

/// Where the topics live: Kafka, or the embedded log in the data directory.
#[derive(Debug, Clone, Args)]
pub struct LogPortArgs {
    /// Kafka bootstrap servers (host:port,…). Without them, only `up` runs, on the embedded log.
    #[arg(long, env = "THINGTOTAL_KAFKA_BROKERS", value_name = "HOST:PORT,…")]
    pub kafka_brokers: Option<String>,
    /// A librdkafka setting passed through to every Kafka client, as key=value (TLS, SASL,
    /// tuning). Repeat the flag, or separate with commas in the variable.
    #[arg(
        long = "kafka-option",
        env = "THINGTOTAL_KAFKA_OPTIONS",
        value_name = "KEY=VALUE",
        value_parser = parse_key_value,
        value_delimiter = ','
    )]
    pub kafka_options: Vec<(String, String)>,
    /// Prefix of every topic name.
    #[arg(long, env = "THINGTOTAL_TOPIC_PREFIX", default_value = "thingtotal")]
    pub topic_prefix: String,
    /// Partitions of the entry topics when they are created.
    #[arg(long, env = "THINGTOTAL_PARTITIONS", default_value_t = 6)]
    pub partitions: i32,
    /// Replication factor of the topics when they are created [default: 3, or the number of
    /// brokers if fewer]. With 3 or more, the topics also get `min.insync.replicas=2`.
    #[arg(long, env = "THINGTOTAL_REPLICATION_FACTOR", value_parser = clap::value_parser!(i32).range(1..))]
    pub replication_factor: Option<i32>,
    /// How long Kafka keeps the records of the entry topics (raw, valid and dead letters), set
    /// when they are created: long enough that a part down for weeks, or a replay of dead
    /// letters, finds them still there.
    #[arg(long, env = "THINGTOTAL_KAFKA_RETENTION_HOURS", default_value_t = 720,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub kafka_retention_hours: u64,
    /// The embedded log and local state.
    #[arg(long, env = "THINGTOTAL_DATA_DIR", default_value = "thingtotal-data")]
    pub data_dir: PathBuf,
    /// How long the embedded log keeps records after every group consumed them.
    #[arg(long, env = "THINGTOTAL_RETENTION_HOURS", default_value_t = 168)]
    pub retention_hours: u64,
    /// Largest entry, in bytes: its value, key and headers as the log counts them. Ingest
    /// answers 413 for a larger one; the producers and the entry topics (at creation) take this
    /// plus 32 KiB, for the validator's envelope and the dead letters' headers.
    #[arg(
        long,
        env = "THINGTOTAL_MAX_ENTRY_BYTES",
        default_value_t = DEFAULT_MAX_ENTRY_BYTES,
        value_parser = clap::value_parser!(u64).range(1024..=MAX_MAX_ENTRY_BYTES)
    )]
    pub max_entry_bytes: u64,
}

/// The highest `--max-entry-bytes`: Kafka's limits are 32-bit, and an entry is held in memory
/// several times over on its way.
const MAX_MAX_ENTRY_BYTES: u64 = 256 * 1024 * 1024;

impl LogPortArgs {
    /// The topic names under the configured prefix.
    pub fn topics(&self) -> Topics {
        Topics::new(&self.topic_prefix)
    }

    /// The size limits that `--max-entry-bytes` gives.
    pub fn limits(&self) -> SizeLimits {
        SizeLimits::new(self.max_entry_bytes)
    }

    /// The Kafka options, if brokers were given.
    pub fn kafka(&self) -> Option<KafkaOptions> {
        self.kafka_brokers.as_ref().map(|b| KafkaOptions {
            options: self.kafka_options.clone(),
            limits: self.limits(),
            ..KafkaOptions::new(b)
        })
    }

    /// Opens Kafka for a part that runs on its own. The embedded log belongs to `thingtotal up`
    /// alone, so without brokers this is an error that says so.
    pub fn open_kafka(&self, part: &str) -> Result<Log> {
        match self.kafka() {
            Some(k) => Ok(Log::Kafka(KafkaLog::connect(k)?)),
            None => Err(Error::Config(format!(
                "`thingtotal {part}` runs on Kafka: set --kafka-brokers (THINGTOTAL_KAFKA_BROKERS). \
                 The embedded log belongs to one process, `thingtotal up`, which runs every part."
            ))),
        }
    }

    /// Opens Kafka if brokers were given, and the embedded log in the data directory otherwise.
    pub fn open(&self) -> Result<Log> {
        match self.kafka() {
            Some(k) => Ok(Log::Kafka(KafkaLog::connect(k)?)),
            None => Ok(Log::Embedded(EmbeddedLog::open(EmbeddedOptions {
                dir: self.data_dir.join("log"),
                retention: Duration::from_secs(self.retention_hours * 3600),
            })?)),
        }
    }

    /// Creates the four topics if they are missing; existing ones weaker than they would be
    /// created are named in warnings.
    pub async fn ensure_topics(&self, log: &Log) -> Result<()> {
        let replication = match self.replication_factor {
            Some(r) => r,
            None => log.broker_count().await?.clamp(1, 3) as i32,
        };
        let retention_ms = (self.kafka_retention_hours as i64).saturating_mul(3_600_000);
        log.ensure_topics(&self.topics().specs(
            self.partitions,
            replication,
            self.limits(),
            Some(retention_ms),
        ))
        .await
    }
}

/// InfluxDB, for the parts that write or read points.
#[derive(Debug, Clone, Args)]
pub struct InfluxArgs {
    /// InfluxDB base URL (1.8+, 2.x or 3.x). Without it, the sink writes only the archive.
    #[arg(long, env = "THINGTOTAL_INFLUX_URL", value_name = "URL")]
    pub influx_url: Option<String>,
    /// InfluxDB API token (`user:password` for 1.8 with authentication).
    #[arg(
        long,
        env = "THINGTOTAL_INFLUX_TOKEN",
        hide_env_values = true,
        default_value = ""
    )]
    pub influx_token: String,
    /// InfluxDB organisation (ignored by 1.8).
    #[arg(long, env = "THINGTOTAL_INFLUX_ORG", default_value = "thingtotal")]
    pub influx_org: String,
    /// InfluxDB bucket (`database/retention-policy` on 1.8).
    #[arg(long, env = "THINGTOTAL_INFLUX_BUCKET", default_value = "thingtotal")]
    pub influx_bucket: String,
}

/// The admin token, for managing streams.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// Token that manages streams, sent as `Authorization: Bearer`.
    #[arg(long, env = "THINGTOTAL_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

/// The Parquet archive's location.
#[derive(Debug, Clone, Args)]
pub struct ArchiveArgs {
    /// Archive directory or object-store URL (`s3://bucket/prefix`); default `<data-dir>/archive`.
    #[arg(long, env = "THINGTOTAL_ARCHIVE", value_name = "DIR|URL")]
    pub archive: Option<String>,
}

impl ArchiveArgs {
    /// The archive: `--archive` (a directory or `s3://bucket/prefix`), or `<data-dir>/archive`.
    pub fn open(&self, data_dir: &std::path::Path) -> Result<crate::archive::Archive> {
        match &self.archive {
            Some(location) => crate::archive::Archive::open(location),
            None => Ok(crate::archive::Archive::Local(data_dir.join("archive"))),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_options_are_key_value_pairs() {
        assert_eq!(
            parse_key_value("security.protocol=SASL_SSL").unwrap(),
            ("security.protocol".into(), "SASL_SSL".into())
        );
        assert_eq!(
            parse_key_value("sasl.password=a=b").unwrap(),
            ("sasl.password".into(), "a=b".into())
        );
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }
}
