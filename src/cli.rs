//! The command line: `thingtotal <up|ingest|validator|sink|api>`.

use clap::{Parser, Subcommand};
use thingtotal_common::config::LogFormat;

/// ThingTotal: collect IoT sensor readings over HTTP, validate them against each stream's JSON
/// Schema, and store them exactly once in InfluxDB and a Parquet archive, on Kafka.
#[derive(Debug, Parser)]
#[command(name = "thingtotal", version, propagate_version = true)]
pub struct Cli {
    /// Log output format.
    #[arg(
        long,
        global = true,
        env = "THINGTOTAL_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands: `up` runs everything in one process, the others one part each.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole pipeline in one process: ingest, validator, sink and api on one HTTP port.
    ///
    /// Without --kafka-brokers it runs on the embedded log in --data-dir: one machine, durable on
    /// its disk (every acknowledged entry is fsynced), no replication. Move to Kafka when you need
    /// more than one machine, replication, or to scale a part out: add --kafka-brokers (and
    /// --influx-url for dashboards) and nothing else changes.
    Up(crate::up::Config),
    /// Run the HTTP ingest edge on Kafka.
    Ingest(thingtotal_ingest::Config),
    /// Run the validator consumer group on Kafka.
    Validator(thingtotal_validator::Config),
    /// Run the InfluxDB and Parquet sink consumer groups on Kafka.
    Sink(thingtotal_sink::Config),
    /// Run the REST API on Kafka.
    Api(thingtotal_api::Config),
    /// Merge the archive's small Parquet files into files of the target size. Safe to run
    /// beside a running sink, and safe to interrupt: the next run finishes an interrupted merge.
    Compact(crate::CompactConfig),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_has_an_environment_variable() {
        let cli = Cli::command();
        for sub in cli.get_subcommands() {
            for arg in sub.get_arguments() {
                if arg.get_id() == "help" || arg.get_id() == "version" {
                    continue;
                }
                let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
                assert!(
                    env.as_deref().is_some_and(|e| e.starts_with("THINGTOTAL_")),
                    "{} --{} has no THINGTOTAL_* variable",
                    sub.get_name(),
                    arg.get_id()
                );
            }
        }
    }
}
