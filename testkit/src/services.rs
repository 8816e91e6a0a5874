//! Where Kafka, InfluxDB and an S3-compatible store are.

use std::sync::OnceLock;

use anyhow::Context;

/// How to reach the services the tests and benchmarks run against.
#[derive(Debug, Clone)]
pub struct Services {
    /// `THINGTOTAL_KAFKA_BROKERS`.
    pub kafka_brokers: String,
    /// `THINGTOTAL_INFLUX_URL`.
    pub influx_url: String,
    /// `THINGTOTAL_INFLUX_ORG`, `thingtotal` if unset.
    pub influx_org: String,
    /// `THINGTOTAL_INFLUX_TOKEN`, empty if unset.
    pub influx_token: String,
    /// An S3-compatible store's endpoint and bucket (`THINGTOTAL_S3_ENDPOINT`,
    /// `THINGTOTAL_S3_BUCKET`), for the archive's object-store tests.
    pub s3: Option<(String, String)>,
}

impl Services {
    /// From the variables `scripts/services env` exports; names the first required one that is
    /// not set.
    pub fn from_env() -> anyhow::Result<Self> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let required = |k: &'static str| env(k).with_context(|| format!("{k} is not set"));
        Ok(Self {
            kafka_brokers: required("THINGTOTAL_KAFKA_BROKERS")?,
            influx_url: required("THINGTOTAL_INFLUX_URL")?,
            influx_org: env("THINGTOTAL_INFLUX_ORG").unwrap_or_else(|| "thingtotal".into()),
            influx_token: env("THINGTOTAL_INFLUX_TOKEN").unwrap_or_default(),
            s3: env("THINGTOTAL_S3_ENDPOINT").map(|e| {
                (
                    e,
                    env("THINGTOTAL_S3_BUCKET").unwrap_or_else(|| "thingtotal".into()),
                )
            }),
        })
    }
}

const HOW_TO_START: &str = "the integration tests need a real Kafka and InfluxDB. Start them with \
     `scripts/services up && eval \"$(scripts/services env)\"`, or run everything with \
     `scripts/test`. (With a Docker engine and no THINGTOTAL_KAFKA_BROKERS set, the tests start \
     them with testcontainers instead.)";

/// The services of a test process, found once: from the environment or, failing that and with
/// the `containers` feature, in containers started for this process if a Docker engine answers.
///
/// # Panics
/// If neither is possible, saying how to start the services: a test never passes without the
/// services it checks.
pub fn services() -> &'static Services {
    static SERVICES: OnceLock<Services> = OnceLock::new();
    SERVICES.get_or_init(|| match Services::from_env() {
        Ok(services) => services,
        // testcontainers' blocking runner makes its own runtime, so not on a test's runtime.
        #[cfg(feature = "containers")]
        Err(_) if containers::docker_available() => std::thread::spawn(containers::start)
            .join()
            .expect("start the service containers"),
        Err(e) => panic!("{e}: {HOW_TO_START}"),
    })
}

#[cfg(feature = "containers")]
mod containers {
    //! Kafka and InfluxDB in containers, for machines with Docker and no services of their own.

    use super::Services;
    use crate::free_port;
    use testcontainers::core::{IntoContainerPort, WaitFor};
    use testcontainers::runners::SyncRunner;
    use testcontainers::{Container, GenericImage, ImageExt};

    pub(super) fn docker_available() -> bool {
        std::path::Path::new("/var/run/docker.sock").exists()
            && std::process::Command::new("docker")
                .arg("info")
                .output()
                .is_ok_and(|o| o.status.success())
    }

    pub(super) fn start() -> Services {
        // Kafka advertises the address clients must use, so its host port is chosen up front.
        let kafka_port = free_port().expect("a free port for Kafka");
        let kafka = GenericImage::new("apache/kafka", "4.1.2")
            .with_wait_for(WaitFor::message_on_stdout("Kafka Server started"))
            .with_mapped_port(kafka_port, 9092.tcp())
            .with_env_var("KAFKA_NODE_ID", "1")
            .with_env_var("KAFKA_PROCESS_ROLES", "broker,controller")
            .with_env_var("KAFKA_LISTENERS", "PLAINTEXT://:9092,CONTROLLER://:9093")
            .with_env_var(
                "KAFKA_ADVERTISED_LISTENERS",
                format!("PLAINTEXT://127.0.0.1:{kafka_port}"),
            )
            .with_env_var("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
            .with_env_var(
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            )
            .with_env_var("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
            .with_env_var("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
            .with_env_var("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
            .with_env_var("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
            .with_env_var("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
            .with_env_var("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
            .start()
            .expect("start the apache/kafka container");
        let influx = GenericImage::new("influxdb", "1.8")
            .with_exposed_port(8086.tcp())
            .with_wait_for(WaitFor::message_on_stderr("Listening on HTTP"))
            .start()
            .expect("start the influxdb container");
        let influx_port = influx
            .get_host_port_ipv4(8086.tcp())
            .expect("InfluxDB's mapped port");
        // The containers live as long as the test process.
        let keep: &'static mut Vec<Container<GenericImage>> =
            Box::leak(Box::new(vec![kafka, influx]));
        let _ = keep;
        Services {
            kafka_brokers: format!("127.0.0.1:{kafka_port}"),
            influx_url: format!("http://127.0.0.1:{influx_port}"),
            influx_org: "thingtotal".into(),
            influx_token: String::new(),
            s3: None,
        }
    }
}
