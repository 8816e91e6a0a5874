//! Integration tests against a real Kafka broker and a real InfluxDB. `scripts/test` starts both
//! and exports their addresses; see `harness` for how the tests find them.

mod api_streams;
mod arduino;
mod embedded_crash;
mod evolution;
mod fuzz;
mod harness;
mod influx;
mod ingest;
mod log_conformance;
mod object_store;
mod reads;
mod reads_up;
mod registry;
mod sink;
mod topics;
mod up;
mod validator;
