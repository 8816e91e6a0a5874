//! What ThingTotal's integration tests and its benchmarks share: finding the real services,
//! running `thingtotal` parts as child processes, and creating streams through the API.
//!
//! The services' addresses come from the environment, as `scripts/services env` exports them
//! ([`Services::from_env`]); the tests' [`services`] falls back to containers where the
//! `containers` feature is on and Docker answers. A part runs as [`part_command`] says, in a
//! [`Process`] that waits until it is healthy and is killed when dropped. The rest, from
//! [`random_prefix`] on, are the fixtures of the two integration-test binaries: they panic
//! rather than return errors, as a test's set-up should.

mod api;
mod fixtures;
mod process;
mod services;

pub use api::{create_stream, get_json, read_entries, CreatedStream, ADMIN_TOKEN};
pub use fixtures::{
    count, feed_valid, influx_database, influxql, kafka, parquet_files, pipeline, random_prefix,
    start_api, start_part, stream, walk, Pipeline,
};
pub use process::{free_port, part_command, tail, thingtotal_bin, Process};
pub use services::{services, Services};
