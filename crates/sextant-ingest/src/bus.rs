//! The ingest bus seam: where accepted batches become durable.

use std::future::Future;
use std::pin::Pin;

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use sextant_model::{Signal, TenantId};
use sextant_store::TelemetryStore;

use crate::Result;

/// Resolves to the batch's position on the bus once it is durable.
pub type AckFuture = Pin<Box<dyn Future<Output = Result<u64>> + Send>>;

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
    ) -> Result<AckFuture>;
    /// Batches waiting to become durable.
    fn queue_depth(&self) -> usize;
    /// False when the bus can no longer make batches durable.
    fn is_healthy(&self) -> bool;
    /// Makes everything queued durable and stops taking batches.
    fn close(&self);
}

impl IngestBus for TelemetryStore {
    fn publish(
        &self,
        tenant: TenantId,
        signal: Signal,
        payload: Bytes,
        rows: RecordBatch,
    ) -> Result<AckFuture> {
        let pending = self.append(tenant, signal, payload, Some(rows))?;
        Ok(Box::pin(async move { Ok(pending.await?) }))
    }

    fn queue_depth(&self) -> usize {
        TelemetryStore::queue_depth(self)
    }

    fn is_healthy(&self) -> bool {
        TelemetryStore::is_healthy(self)
    }

    fn close(&self) {
        TelemetryStore::close(self)
    }
}
