//! The telemetry store as the embedded ingest bus: a batch is durable once its write-ahead log
//! group is fsynced.

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use sextant_model::{Signal, TenantId};
use sextant_tables::{AckFuture, BusError, IngestBus};

use crate::{Error, TelemetryStore};

impl From<Error> for BusError {
    fn from(err: Error) -> BusError {
        match err {
            Error::Overloaded => BusError::Overloaded("write-ahead log queue full"),
            Error::Closed => BusError::Closed("write-ahead log closed"),
            full @ (Error::DiskFull { .. } | Error::NoSpace(_)) => {
                BusError::NoSpace(full.to_string())
            }
            other => BusError::Failed(Box::new(other)),
        }
    }
}

impl IngestBus for TelemetryStore {
    fn publish(
        &self,
        tenant: TenantId,
        signal: Signal,
        payload: Bytes,
        rows: RecordBatch,
    ) -> Result<AckFuture, BusError> {
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
