//! Integration tests: they start the real `sextant` binary and talk to it over real sockets.
//! One test binary (modules below) so the suite links once.

mod actions;
mod anomalies;
mod conventions;
mod crash;
mod demo;
mod disk;
mod errors;
mod hostile;
mod import;
mod incidents;
mod isolation;
mod ndjson;
mod offline;
mod otlp_sdk;
mod patterns;
mod prometheus;
mod query;
mod read_api;
mod retention;
mod runbooks;
mod security;
mod support;
mod syslog;
