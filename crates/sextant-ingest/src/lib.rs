//! Sextant's ingest path: protocol receivers decode requests, tenant limits and back-pressure
//! decide whether to take them, and the ingest bus makes them durable.
//!
//! The main types:
//! - [`otlp::decode`]: an OTLP/HTTP or OTLP/gRPC body (protobuf or JSON, gzip or not) to a
//!   checked batch whose payload is canonical OTLP protobuf.
//! - [`IngestPipeline`]: takes a tenant's batch, applies the limits of [`IngestConfig`], and
//!   answers only once the batch is durable on the [`IngestBus`].
//! - [`IngestBus`] (from `sextant-tables`): the seam between receivers and storage. The
//!   embedded implementation is the telemetry store (`sextant_store::TelemetryStore`); cluster
//!   mode puts NATS JetStream here. This crate does not know which one it is given.
//!
//! ```no_run
//! use std::sync::Arc;
//! use sextant_ingest::{IngestBus, IngestConfig, IngestPipeline, otlp::Encoding};
//! use sextant_model::{Signal, TenantId};
//!
//! # async fn example(bus: Arc<dyn IngestBus>, body: bytes::Bytes) -> Result<(), sextant_ingest::Error> {
//! let pipeline = IngestPipeline::new(IngestConfig::default(), bus);
//! let tenant = TenantId::new("acme").unwrap();
//! let outcome = pipeline
//!     .ingest(&tenant, Signal::Logs, Encoding::protobuf(), body)
//!     .await?;
//! println!("{} records durable", outcome.accepted);
//! # Ok(()) }
//! ```

mod config;
pub mod convert;
mod error;
mod limits;
pub mod loki;
pub mod otlp;
mod pipeline;
pub mod remote_write;
pub mod syslog;

pub use config::{IngestConfig, RateLimit, TenantLimits};
pub use error::{Error, Result};
pub use limits::TenantRateLimiter;
pub use pipeline::{
    IngestOutcome, IngestPipeline, MAX_CLOCK_SKEW_NANOS, Watermark, Watermarks, wall_clock_ns,
};
pub use sextant_tables::{AckFuture, BusError, IngestBus};
