//! The embedded telemetry store: the write-ahead log in front, rows buffered in Arrow per tenant
//! and table, flushed to Parquet segments, and the catalog that says which files hold what.
//!
//! Life of a batch: [`TelemetryStore::append`] puts it in the write-ahead log; once it is
//! durable the log's commit hook adds its rows to the tenant's buffer (so queries see it from the
//! moment it is acknowledged). A flusher thread writes buffered rows to segment files when the
//! buffers pass `flush_bytes` or every `flush_interval`, records the files and the new
//! checkpoint in the catalog in one transaction, and only then deletes the log segments the
//! checkpoint covers. A crash at any point leaves either the rows in the log (replayed on start)
//! or the files in the catalog, never neither and never both: files the catalog does not list
//! are leftovers and are deleted on start.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};
use sextant_model::{Signal, Table, TenantId};

use crate::meta::{CatalogEntry, MetadataStore};
use crate::schema::{self, batch_from_payload};
use crate::segments::SegmentStore;
use crate::wal::{CommitHook, PendingAppend, ReplayReport, Wal, WalConfig, WalRecord};
use crate::{Error, Result, SegmentFile, TableSnapshot, TableSource};

/// Settings of the embedded store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub wal: WalConfig,
    /// Flush once buffered rows take this much memory. Default 64 MiB.
    pub flush_bytes: usize,
    /// Flush at least this often. Default 60 s.
    pub flush_interval: Duration,
    /// Refuse appends ([`Error::Overloaded`]) while buffered rows take more than this, until a
    /// flush catches up. Default 1 GiB.
    pub max_buffered_bytes: usize,
}

impl StoreConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> StoreConfig {
        let data_dir = data_dir.into();
        StoreConfig {
            wal: WalConfig::new(crate::wal_dir(&data_dir)),
            data_dir,
            flush_bytes: 64 * 1024 * 1024,
            flush_interval: Duration::from_secs(60),
            max_buffered_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// The segments folder inside a data directory.
pub fn segments_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("segments")
}

#[derive(Default)]
struct TableState {
    files: Vec<SegmentFile>,
    /// Rows being written by the running flush; still visible until the catalog has the files.
    flushing: Vec<RecordBatch>,
    buffered: Vec<RecordBatch>,
}

#[derive(Default)]
struct Visible {
    tables: HashMap<(TenantId, Table), TableState>,
    /// Every record up to this sequence number is in a buffer or a file.
    applied_seq: u64,
    /// Memory of `flushing` and `buffered` rows.
    buffered_bytes: usize,
}

impl Visible {
    fn add(&mut self, tenant: &TenantId, table: Table, rows: RecordBatch, seq: u64) {
        self.applied_seq = seq;
        if rows.num_rows() == 0 {
            return;
        }
        self.buffered_bytes += rows.get_array_memory_size();
        self.tables
            .entry((tenant.clone(), table))
            .or_default()
            .buffered
            .push(rows);
    }
}

#[derive(Default)]
struct FlushControl {
    requested: u64,
    completed: u64,
    last_error: Option<String>,
    stop: bool,
}

struct Shared {
    config: StoreConfig,
    meta: Arc<dyn MetadataStore>,
    segments: SegmentStore,
    visible: RwLock<Visible>,
    control: Mutex<FlushControl>,
    wake: Condvar,
}

/// The embedded store. Share it behind an `Arc`.
pub struct TelemetryStore {
    wal: Wal,
    shared: Arc<Shared>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for TelemetryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryStore")
            .field("data_dir", &self.shared.config.data_dir)
            .finish()
    }
}

fn rows_of(record: &WalRecord) -> Option<RecordBatch> {
    match batch_from_payload(&record.tenant, record.signal, &record.payload) {
        Ok(rows) => Some(rows),
        Err(err) => {
            // Only a payload that was checked at ingest gets here; failing now is a bug.
            tracing::error!(seq = record.seq, error = %err, "write-ahead log record does not decode; skipped");
            None
        }
    }
}

impl TelemetryStore {
    /// Opens the store: loads the catalog, deletes leftover files, replays the write-ahead log
    /// past the checkpoint into the buffers, and starts the flusher.
    pub fn open(
        config: StoreConfig,
        meta: Arc<dyn MetadataStore>,
    ) -> Result<(TelemetryStore, ReplayReport)> {
        let segments = SegmentStore::local(&segments_dir(&config.data_dir))?;
        let checkpoint = meta.checkpoint()?;
        let mut visible = Visible {
            applied_seq: checkpoint,
            ..Visible::default()
        };
        let catalog = meta.segments()?;
        let known: HashSet<&str> = catalog.iter().map(|e| e.file.path.as_str()).collect();
        let runtime = io_runtime()?;
        let leftovers: Vec<String> = runtime
            .block_on(segments.list())?
            .into_iter()
            .filter(|path| !known.contains(path.as_str()))
            .collect();
        if !leftovers.is_empty() {
            tracing::warn!(
                files = leftovers.len(),
                "deleting segment files the catalog does not list (an interrupted flush or compaction)"
            );
            runtime.block_on(segments.delete(&leftovers))?;
        }
        for entry in catalog {
            visible
                .tables
                .entry((entry.tenant, entry.table))
                .or_default()
                .files
                .push(entry.file);
        }

        let shared = Arc::new(Shared {
            config: config.clone(),
            meta,
            segments,
            visible: RwLock::new(visible),
            control: Mutex::new(FlushControl::default()),
            wake: Condvar::new(),
        });
        let hook_shared = shared.clone();
        let hook: CommitHook = Box::new(move |record, rows| {
            let rows = rows.or_else(|| rows_of(record));
            let over = {
                let mut visible = hook_shared.visible.write();
                if let Some(rows) = rows {
                    visible.add(&record.tenant, Table::of(record.signal), rows, record.seq);
                } else {
                    visible.applied_seq = record.seq;
                }
                visible.buffered_bytes >= hook_shared.config.flush_bytes
            };
            if over {
                hook_shared.request_flush();
            }
        });
        let replay_shared = shared.clone();
        let (wal, report) = Wal::open_with_hook(
            config.wal.clone(),
            &mut |record| {
                if record.seq > checkpoint
                    && let Some(rows) = rows_of(&record)
                {
                    let mut visible = replay_shared.visible.write();
                    visible.add(&record.tenant, Table::of(record.signal), rows, record.seq);
                }
                Ok(())
            },
            Some(hook),
        )?;
        {
            let mut visible = shared.visible.write();
            visible.applied_seq = visible.applied_seq.max(report.last_seq);
        }
        let flusher_shared = shared.clone();
        let flusher = std::thread::Builder::new()
            .name("segment-flusher".into())
            .spawn(move || flusher_shared.run_flusher(runtime))
            .map_err(|e| Error::io("segment-flusher thread", e))?;
        let store = TelemetryStore {
            wal,
            shared,
            flusher: Mutex::new(Some(flusher)),
        };
        Ok((store, report))
    }

    /// Queues a batch: durable once the returned future resolves, visible to queries from then
    /// on. `rows` is the batch as table rows when the caller has them (it saves decoding twice).
    pub fn append(
        &self,
        tenant: TenantId,
        signal: Signal,
        payload: Bytes,
        rows: Option<RecordBatch>,
    ) -> Result<PendingAppend> {
        if self.shared.visible.read().buffered_bytes > self.shared.config.max_buffered_bytes {
            self.shared.request_flush();
            return Err(Error::Overloaded);
        }
        self.wal.append_with_rows(tenant, signal, payload, rows)
    }

    /// Writes every buffered row to segments now and waits for it.
    pub fn flush(&self) -> Result<()> {
        let target = {
            let mut control = self.shared.control.lock();
            control.requested += 1;
            control.requested
        };
        self.shared.wake.notify_all();
        let mut control = self.shared.control.lock();
        while control.completed < target && !control.stop {
            self.shared.wake.wait(&mut control);
        }
        match control.last_error.take() {
            Some(err) => Err(Error::ObjectStore(err)),
            None => Ok(()),
        }
    }

    /// Batches waiting for the write-ahead log.
    pub fn queue_depth(&self) -> usize {
        self.wal.queue_depth()
    }

    /// Memory taken by rows not yet in segments.
    pub fn buffered_bytes(&self) -> usize {
        self.shared.visible.read().buffered_bytes
    }

    pub fn is_healthy(&self) -> bool {
        self.wal.is_healthy()
    }

    /// Commits what is queued, flushes every buffer to segments, and stops. Safe to call twice.
    pub fn close(&self) {
        self.wal.close();
        let Some(flusher) = self.flusher.lock().take() else {
            return;
        };
        if let Err(err) = self.flush() {
            tracing::error!(error = %err, "final flush failed; rows stay in the write-ahead log");
        }
        self.shared.control.lock().stop = true;
        self.shared.wake.notify_all();
        let _ = flusher.join();
    }
}

impl TableSource for TelemetryStore {
    /// What a query of `tenant`'s `table` sees right now.
    fn snapshot(&self, tenant: &TenantId, table: Table) -> TableSnapshot {
        let visible = self.shared.visible.read();
        let state = visible.tables.get(&(tenant.clone(), table));
        TableSnapshot {
            table,
            schema: schema::schema(table),
            files: state.map(|s| s.files.clone()).unwrap_or_default(),
            buffered: state
                .map(|s| s.flushing.iter().chain(&s.buffered).cloned().collect())
                .unwrap_or_default(),
        }
    }

    /// The object store holding segment files (for the query engine).
    fn segment_store(&self) -> Arc<dyn object_store::ObjectStore> {
        self.shared.segments.store.clone()
    }
}

impl Drop for TelemetryStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn io_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("segment i/o runtime", e))
}

impl Shared {
    fn request_flush(&self) {
        self.control.lock().requested += 1;
        self.wake.notify_all();
    }

    fn run_flusher(&self, runtime: tokio::runtime::Runtime) {
        loop {
            let target = {
                let mut control = self.control.lock();
                if control.requested == control.completed && !control.stop {
                    self.wake.wait_for(&mut control, self.config.flush_interval);
                }
                if control.stop {
                    return;
                }
                control.requested.max(control.completed + 1)
            };
            let outcome = self.flush_once(&runtime);
            let mut control = self.control.lock();
            control.completed = control.completed.max(target);
            control.requested = control.requested.max(target);
            control.last_error = outcome.err().map(|err| {
                tracing::error!(error = %err, "flush failed; rows stay buffered and in the log");
                err.to_string()
            });
            self.wake.notify_all();
        }
    }

    fn flush_once(&self, runtime: &tokio::runtime::Runtime) -> Result<()> {
        // Take the buffers and the checkpoint they reach, atomically with respect to commits.
        let (work, checkpoint) = {
            let mut visible = self.visible.write();
            let mut work = Vec::new();
            for ((tenant, table), state) in &mut visible.tables {
                state.flushing.append(&mut state.buffered);
                if !state.flushing.is_empty() {
                    work.push((tenant.clone(), *table, state.flushing.clone()));
                }
            }
            (work, visible.applied_seq)
        };
        let mut added = Vec::new();
        for (tenant, table, batches) in &work {
            let name = format!("{checkpoint:020}-{}", added.len());
            let files = runtime.block_on(self.segments.write(tenant, *table, batches, &name))?;
            added.extend(files.into_iter().map(|file| CatalogEntry {
                tenant: tenant.clone(),
                table: *table,
                file,
            }));
        }
        if added.is_empty() && checkpoint <= self.meta.checkpoint()? {
            return Ok(());
        }
        self.meta.commit_flush(&added, checkpoint)?;
        {
            let mut visible = self.visible.write();
            let mut freed = 0;
            for (tenant, table, _) in &work {
                if let Some(state) = visible.tables.get_mut(&(tenant.clone(), *table)) {
                    freed += state
                        .flushing
                        .drain(..)
                        .map(|b| b.get_array_memory_size())
                        .sum::<usize>();
                    state.files.extend(
                        added
                            .iter()
                            .filter(|e| e.tenant == *tenant && e.table == *table)
                            .map(|e| e.file.clone()),
                    );
                }
            }
            visible.buffered_bytes = visible.buffered_bytes.saturating_sub(freed);
        }
        let trimmed = crate::wal::trim_through(&self.config.wal.dir, checkpoint)?;
        tracing::debug!(
            files = added.len(),
            checkpoint,
            trimmed_segments = trimmed,
            "flushed buffers to segments"
        );
        metrics::counter!("sextant_store_flushes_total").increment(1);
        metrics::counter!("sextant_store_segment_files_written_total")
            .increment(added.len() as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use prost::Message;

    use super::*;
    use crate::meta::SqliteMetadata;

    fn payload(bodies: &[&str]) -> Bytes {
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: bodies
                        .iter()
                        .map(|b| LogRecord {
                            time_unix_nano: 1_700_000_000_000_000_000,
                            body: Some(AnyValue {
                                value: Some(any_value::Value::StringValue((*b).to_owned())),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        Bytes::from(request.encode_to_vec())
    }

    fn open(dir: &std::path::Path) -> TelemetryStore {
        let meta = Arc::new(SqliteMetadata::open(&crate::metadata_path(dir)).unwrap());
        let mut config = StoreConfig::new(dir);
        config.wal.segment_bytes = 1; // a segment per group, so trimming shows
        TelemetryStore::open(config, meta).unwrap().0
    }

    fn tenant() -> TenantId {
        TenantId::new("acme").unwrap()
    }

    fn append(store: &TelemetryStore, bodies: &[&str]) {
        store
            .append(tenant(), Signal::Logs, payload(bodies), None)
            .unwrap()
            .wait()
            .unwrap();
    }

    /// Rows visible in a snapshot: (rows in files, rows buffered).
    fn visible_rows(store: &TelemetryStore) -> (u64, usize) {
        let snapshot = store.snapshot(&tenant(), Table::Logs);
        (
            snapshot.files.iter().map(|f| f.rows).sum(),
            snapshot.buffered.iter().map(|b| b.num_rows()).sum(),
        )
    }

    fn wal_segments(dir: &std::path::Path) -> usize {
        std::fs::read_dir(crate::wal_dir(dir)).unwrap().count()
    }

    #[test]
    fn rows_move_from_buffer_to_segments_and_the_log_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        append(&store, &["a", "b"]);
        append(&store, &["c"]);
        assert_eq!(visible_rows(&store), (0, 3));
        assert_eq!(wal_segments(dir.path()), 2);

        store.flush().unwrap();
        assert_eq!(visible_rows(&store), (3, 0));
        assert_eq!(store.buffered_bytes(), 0);
        assert_eq!(
            wal_segments(dir.path()),
            1,
            "only the newest segment is kept"
        );

        append(&store, &["d"]);
        store.close();
        // Close flushed the last row too; a reopened store replays nothing twice.
        let store = open(dir.path());
        assert_eq!(visible_rows(&store), (4, 0));
    }

    #[test]
    fn replay_after_crash_restores_unflushed_rows_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        append(&store, &["flushed"]);
        store.flush().unwrap();
        append(&store, &["buffered-1", "buffered-2"]);
        // A crash: no close, no final flush (the flusher thread is left behind).
        std::mem::forget(store);
        let store = open(dir.path());
        assert_eq!(visible_rows(&store), (1, 2));
    }

    #[test]
    fn files_the_catalog_does_not_list_are_deleted_on_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        append(&store, &["kept"]);
        store.close();
        let leftover = segments_dir(dir.path()).join("acme/logs/2023-11-14/22/leftover.parquet");
        std::fs::create_dir_all(leftover.parent().unwrap()).unwrap();
        std::fs::write(&leftover, b"half a file").unwrap();
        let store = open(dir.path());
        assert!(!leftover.exists());
        assert_eq!(visible_rows(&store), (1, 0));
    }

    #[test]
    fn tenants_see_only_their_own_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        append(&store, &["mine"]);
        let other = TenantId::new("globex").unwrap();
        assert!(store.snapshot(&other, Table::Logs).buffered.is_empty());
        store.flush().unwrap();
        assert!(store.snapshot(&other, Table::Logs).files.is_empty());
        assert!(store.snapshot(&tenant(), Table::Spans).files.is_empty());
    }
}
