//! What a query sees of one tenant's table at one moment: its Parquet files (from the catalog)
//! and the rows acknowledged but not yet flushed.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use sextant_model::{Table, TenantId};

/// Name of the timestamp column every table has (Arrow `Timestamp(Nanosecond, UTC)`); the
/// catalog's time ranges refer to it.
pub use sextant_tables::TIME_COLUMN;

/// One Parquet file of a table, as the catalog records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentFile {
    /// Location inside the segment object store, `TENANT/TABLE/YYYY-MM-DD/HH/ID.parquet`.
    pub path: String,
    /// Smallest and largest `time` in the file, ns since the Unix epoch.
    pub min_time: i64,
    pub max_time: i64,
    pub rows: u64,
    pub bytes: u64,
}

/// One tenant's table at one moment: every row is in exactly one of `files` and `buffered`.
#[derive(Clone, Debug)]
pub struct TableSnapshot {
    pub table: Table,
    pub schema: SchemaRef,
    pub files: Vec<SegmentFile>,
    pub buffered: Vec<RecordBatch>,
}

/// Where queries get their snapshots: the seam between the query engine and storage. Embedded:
/// the telemetry store's catalog and buffers.
pub trait TableSource: Send + Sync {
    fn snapshot(&self, tenant: &TenantId, table: Table) -> TableSnapshot;
    /// The object store that holds the segment files the snapshots name.
    fn segment_store(&self) -> std::sync::Arc<dyn object_store::ObjectStore>;
    /// Erases every row of `tenant` acknowledged so far: catalog, files, buffers, and the
    /// write-ahead log (its records are never replayed). Blocks; call it off async workers.
    fn erase_tenant(&self, tenant: &TenantId) -> crate::Result<ErasureReport> {
        let _ = tenant;
        Err(crate::Error::Unsupported("erasure"))
    }
}

/// What an erasure removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErasureReport {
    /// Segment files dropped from the catalog (deleted from disk after the grace period).
    pub files: u64,
    /// Rows in those files plus rows that were still buffered.
    pub rows: u64,
    /// Write-ahead log records of the tenant up to this sequence number are never replayed.
    pub up_to_seq: u64,
}
