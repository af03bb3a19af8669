//! The telemetry tables as they pass from ingest to storage: their Arrow schemas, the
//! conversion of rows (and of logged OTLP requests) into record batches of them, and the bus
//! through which checked batches become durable. The receivers build batches with it and the
//! store keeps them, so neither needs the other.

pub mod bus;
pub mod schema;

pub use bus::{AckFuture, BusError, IngestBus};
pub use schema::TIME_COLUMN;
