//! Reads a tenant's stored telemetry back as rows.

use std::path::PathBuf;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use sextant_model::{LogRow, MetricRow, Signal, SpanRow, TenantId, otlp};

use crate::wal::{WalRecord, read_records};
use crate::{Error, Result};

/// The folder of the write-ahead log inside a data directory.
pub fn wal_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("wal")
}

/// The metadata database inside a data directory.
pub fn metadata_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("meta.db")
}

/// Reads rows of one tenant from a data directory. Opening it changes nothing on disk, so it is
/// safe next to a running server.
#[derive(Clone, Debug)]
pub struct TelemetryReader {
    data_dir: PathBuf,
}

impl TelemetryReader {
    pub fn new(data_dir: impl Into<PathBuf>) -> TelemetryReader {
        TelemetryReader {
            data_dir: data_dir.into(),
        }
    }

    fn for_each(
        &self,
        tenant: &TenantId,
        signal: Signal,
        visit: &mut dyn FnMut(WalRecord) -> Result<()>,
    ) -> Result<()> {
        read_records(&wal_dir(&self.data_dir), &mut |record| {
            if record.tenant == *tenant && record.signal == signal {
                visit(record)?;
            }
            Ok(())
        })?;
        Ok(())
    }

    pub fn log_rows(&self, tenant: &TenantId) -> Result<Vec<LogRow>> {
        let mut rows = Vec::new();
        self.for_each(tenant, Signal::Logs, &mut |record| {
            let request = ExportLogsServiceRequest::decode(record.payload)
                .map_err(|e| Error::Decode(e.to_string()))?;
            rows.extend(otlp::log_rows(tenant, &request));
            Ok(())
        })?;
        Ok(rows)
    }

    pub fn span_rows(&self, tenant: &TenantId) -> Result<Vec<SpanRow>> {
        let mut rows = Vec::new();
        self.for_each(tenant, Signal::Traces, &mut |record| {
            let request = ExportTraceServiceRequest::decode(record.payload)
                .map_err(|e| Error::Decode(e.to_string()))?;
            rows.extend(otlp::span_rows(tenant, &request));
            Ok(())
        })?;
        Ok(rows)
    }

    pub fn metric_rows(&self, tenant: &TenantId) -> Result<Vec<MetricRow>> {
        let mut rows = Vec::new();
        self.for_each(tenant, Signal::Metrics, &mut |record| {
            let request = ExportMetricsServiceRequest::decode(record.payload)
                .map_err(|e| Error::Decode(e.to_string()))?;
            rows.extend(otlp::metric_rows(tenant, &request));
            Ok(())
        })?;
        Ok(rows)
    }
}
