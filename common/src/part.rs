//! What a part needs once it has a log: its topics, created if missing, and a live registry.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::LogPortArgs;
use crate::limits::SizeLimits;
use crate::log::Log;
use crate::registry::Registry;
use crate::topics::Topics;
use crate::Result;

/// How long a part waits at start-up for the registry to read the streams topic.
const REGISTRY_START: Duration = Duration::from_secs(30);

/// A started part: the log, its topic names and the live stream registry, shared by everything
/// the part runs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Part {
    /// The log port.
    pub log: Log,
    /// The topic names.
    pub topics: Topics,
    /// The live stream registry.
    pub registry: Arc<Registry>,
    /// How large entries and the records made of them may be.
    pub limits: SizeLimits,
}

impl Part {
    /// Creates missing topics and starts the registry on `log`.
    pub async fn start(args: &LogPortArgs, log: Log, shutdown: CancellationToken) -> Result<Self> {
        // Metrics recorded before the recorder is installed are lost.
        crate::telemetry::prometheus();
        args.ensure_topics(&log).await?;
        let topics = args.topics();
        let registry =
            Registry::start(log.clone(), &topics.streams, shutdown, REGISTRY_START).await?;
        Ok(Self {
            log,
            topics,
            registry,
            limits: args.limits(),
        })
    }
}
