//! The ingest bus seam: where accepted batches become durable.

use std::future::Future;
use std::pin::Pin;

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use sextant_model::{Signal, TenantId};

/// Why a bus did not take a batch, or did not make it durable.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Its queue is full: retry later. The reason names the queue.
    #[error("{0}")]
    Overloaded(&'static str),
    /// It no longer takes batches (closed, or stopped by a failure it cannot recover from).
    #[error("{0}")]
    Closed(&'static str),
    /// The disk under it has no room for the batch (the message says how much is free).
    #[error("{0}")]
    NoSpace(String),
    /// Anything else, with its cause.
    #[error("{0}")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Resolves to the batch's position on the bus once it is durable.
pub type AckFuture = Pin<Box<dyn Future<Output = Result<u64, BusError>> + Send>>;

/// Takes checked batches and makes them durable. Embedded: the telemetry store's write-ahead
/// log. Cluster mode: a JetStream stream partitioned by tenant. Nothing outside this seam knows
/// which is in use.
pub trait IngestBus: Send + Sync + 'static {
    /// Queues a batch (an OTLP protobuf export request, and the same records as table rows).
    /// Fails at once when the bus is full; otherwise the returned future resolves when the
    /// batch is durable.
    fn publish(
        &self,
        tenant: TenantId,
        signal: Signal,
        payload: Bytes,
        rows: RecordBatch,
    ) -> Result<AckFuture, BusError>;
    /// Batches waiting to become durable.
    fn queue_depth(&self) -> usize;
    /// False when the bus can no longer make batches durable.
    fn is_healthy(&self) -> bool;
    /// Makes everything queued durable and stops taking batches.
    fn close(&self);
}
