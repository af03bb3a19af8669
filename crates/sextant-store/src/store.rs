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
//!
//! The flusher also keeps the segments tidy. Compaction merges an hour partition's small files
//! into one; retention drops hour partitions older than the tenant's retention; erasure drops
//! all of a tenant's rows. Each changes the catalog in one transaction (the commit point) and
//! then the in-memory file lists, under the same lock as a flush, so a query sees every row
//! exactly once. Files dropped from the catalog are deleted only after `delete_grace`, so a
//! query still reading them is not cut short; a crash before that leaves them as leftovers for
//! the next start.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};
use sextant_analytics::anomaly::Feedback;
use sextant_analytics::patterns::{MinerConfig, MinerState};
use sextant_model::{Event, Signal, Table, TenantId};
use sextant_tables::schema::{self, batch_from_payload};

use crate::crypto::{Keyring, open_value, seal_value};
use crate::detectors::{DetectorSettings, Findings, SavedStates, SeriesDetectors};
use crate::maintenance::{expired_files, plan_compactions};
use crate::meta::{CatalogEntry, EventFilter, FeedbackRecord, MetadataStore};
use crate::segments::SegmentStore;
use crate::templates::{TemplateMiners, encode_state};
use crate::wal::{CommitHook, PendingAppend, ReplayReport, Wal, WalConfig, WalRecord};
use crate::{ErasureReport, Error, EventSource, Result, SegmentFile, TableSnapshot, TableSource};

/// The `events` table a query sees holds at most this many of the tenant's newest events.
pub const MAX_EVENTS_IN_QUERIES: usize = 100_000;

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
    /// Compact an hour partition once it has at least this many small files. Default 8.
    pub compaction_min_files: usize,
    /// A segment file under this size is small; compaction merges small files into one of
    /// about this size. Default 128 MiB.
    pub compaction_target_bytes: u64,
    /// Look for partitions to compact this often (checked after each flush). Default 60 s.
    pub compaction_interval: Duration,
    /// Keep rows this long (by their `time`) unless the tenant has its own. Default 30 days.
    pub retention: Duration,
    /// Per-tenant retention, replacing `retention`.
    pub tenant_retention: HashMap<TenantId, Duration>,
    /// Look for expired partitions this often (checked after each flush; the first check is one
    /// interval after start). Default 1 h.
    pub retention_interval: Duration,
    /// Files dropped from the catalog (compaction, retention, erasure) are deleted this long
    /// afterwards, so queries still reading them finish. Default 5 min.
    pub delete_grace: Duration,
    /// The log template miner of every tenant; a tenant's saved miner carries on under it.
    pub patterns: MinerConfig,
    /// The anomaly detectors watching every metric series and log pattern rate.
    pub detectors: DetectorSettings,
    /// Encryption at rest, when on: the tenants' data keys. Default none.
    pub keyring: Option<Arc<Keyring>>,
    /// Appends are refused ([`Error::DiskFull`]) while the data directory's file system has
    /// less free space than this, kept for flushing, compaction and the metadata. Default
    /// 256 MiB.
    pub min_free_bytes: u64,
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
            compaction_min_files: 8,
            compaction_target_bytes: 128 * 1024 * 1024,
            compaction_interval: Duration::from_secs(60),
            retention: Duration::from_secs(30 * 24 * 3600),
            tenant_retention: HashMap::new(),
            retention_interval: Duration::from_secs(3600),
            delete_grace: Duration::from_secs(300),
            patterns: MinerConfig::default(),
            detectors: DetectorSettings::default(),
            keyring: None,
            min_free_bytes: 256 * 1024 * 1024,
        }
    }

    /// How long `tenant`'s rows are kept.
    pub fn retention_of(&self, tenant: &TenantId) -> Duration {
        self.tenant_retention
            .get(tenant)
            .copied()
            .unwrap_or(self.retention)
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
    /// Log template miners. Taken before `visible`, never while holding it, so that what a
    /// flush saves of them matches its checkpoint.
    templates: Mutex<TemplateMiners>,
    /// Anomaly detectors. Taken after `templates` and before `visible`, never while holding
    /// `visible`.
    detectors: Mutex<SeriesDetectors>,
    visible: RwLock<Visible>,
    control: Mutex<FlushControl>,
    wake: Condvar,
    /// Held by whatever changes the catalog (flush, compaction, retention, erasure), from
    /// reading the file lists until the in-memory state matches the committed catalog. Taken
    /// before `visible`, never while holding it.
    catalog_writer: Mutex<()>,
    /// Files no longer in the catalog, with the moment they may be deleted.
    doomed: Mutex<Vec<(String, Instant)>>,
    /// Set by `close`: the last flush saves every detector state.
    closing: std::sync::atomic::AtomicBool,
}

/// The embedded store. Share it behind an `Arc`.
pub struct TelemetryStore {
    wal: Wal,
    shared: Arc<Shared>,
    free_space: crate::free_space::FreeSpace,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for TelemetryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryStore")
            .field("data_dir", &self.shared.config.data_dir)
            .finish()
    }
}

/// What a write-ahead log payload of `signal` is called where it is sealed.
fn wal_what(signal: Signal) -> &'static str {
    match signal {
        Signal::Logs => "wal logs",
        Signal::Metrics => "wal metrics",
        Signal::Traces => "wal traces",
    }
}

/// Saved detector states name their series; sealed, the name rides inside the state.
fn seal_detector_states(
    keyring: Option<&Keyring>,
    states: &SavedStates,
) -> Result<Vec<(TenantId, String, Vec<u8>)>> {
    let Some(keyring) = keyring else {
        return Ok(Vec::new());
    };
    states
        .views()
        .into_iter()
        .map(|(tenant, key, state)| {
            // A deletion stays one: empty, under the series' hidden name.
            if state.is_empty() {
                return Ok((
                    tenant.clone(),
                    keyring.hidden_name(tenant, key)?,
                    Vec::new(),
                ));
            }
            let mut plain = Vec::with_capacity(4 + key.len() + state.len());
            plain.extend_from_slice(&(key.len() as u32).to_le_bytes());
            plain.extend_from_slice(key.as_bytes());
            plain.extend_from_slice(state);
            Ok((
                tenant.clone(),
                keyring.hidden_name(tenant, key)?,
                seal_value(Some(keyring), tenant, "detector state", &plain)?,
            ))
        })
        .collect()
}

fn open_detector_states(
    keyring: Option<&Keyring>,
    saved: Vec<(TenantId, String, Vec<u8>)>,
) -> Result<Vec<(TenantId, String, Vec<u8>)>> {
    saved
        .into_iter()
        .map(|(tenant, key, state)| {
            if !key.starts_with("sealed:") {
                return Ok((tenant, key, state));
            }
            let plain = open_value(keyring, &tenant, "detector state", &state)?;
            let bad = || Error::Crypto(format!("a detector state of `{tenant}` is malformed"));
            let len = plain
                .get(..4)
                .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
                .ok_or_else(bad)?;
            let name = plain
                .get(4..4 + len)
                .and_then(|b| std::str::from_utf8(b).ok())
                .ok_or_else(bad)?
                .to_owned();
            Ok((tenant, name, plain[4 + len..].to_vec()))
        })
        .collect()
}

fn rows_of(keyring: Option<&Keyring>, record: &WalRecord) -> Option<RecordBatch> {
    let payload = match open_value(
        keyring,
        &record.tenant,
        wal_what(record.signal),
        &record.payload,
    ) {
        Ok(payload) => payload,
        Err(err) => {
            // A record that does not open is not skipped quietly: it is data, and the key or
            // the file is wrong. The store refuses to start (see `open`).
            tracing::error!(seq = record.seq, error = %err, "write-ahead log record does not decrypt");
            return None;
        }
    };
    match batch_from_payload(&record.tenant, record.signal, &payload) {
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
        let segments = SegmentStore::local(&segments_dir(&config.data_dir))?
            .with_keyring(config.keyring.clone());
        let keyring = config.keyring.clone();
        let checkpoint = meta.checkpoint()?;
        let mut visible = Visible {
            applied_seq: checkpoint,
            ..Visible::default()
        };
        let catalog = meta.segments()?;
        let erasures = meta.erasures()?;
        let miner_states = meta
            .miner_states()?
            .into_iter()
            .map(|(tenant, state)| {
                let state =
                    open_value(keyring.as_deref(), &tenant, "template miner", &state)?.into_owned();
                Ok((tenant, state))
            })
            .collect::<Result<Vec<_>>>()?;
        let templates = TemplateMiners::restore(config.patterns.clone(), miner_states)?;
        let detectors = SeriesDetectors::restore(
            config.detectors.clone(),
            open_detector_states(keyring.as_deref(), meta.detector_states()?)?,
            meta.sensitivities()?,
        )?;
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
            templates: Mutex::new(templates),
            detectors: Mutex::new(detectors),
            visible: RwLock::new(visible),
            control: Mutex::new(FlushControl::default()),
            wake: Condvar::new(),
            catalog_writer: Mutex::new(()),
            doomed: Mutex::new(Vec::new()),
            closing: std::sync::atomic::AtomicBool::new(false),
        });
        let hook_shared = shared.clone();
        let hook_keyring = keyring.clone();
        let hook: CommitHook = Box::new(move |record, rows| {
            let rows = rows.or_else(|| rows_of(hook_keyring.as_deref(), record));
            let (over, findings) = {
                let mut templates = hook_shared.templates.lock();
                let rows = rows.map(|rows| templates.label(&record.tenant, rows));
                let findings = rows.as_ref().map(|rows| {
                    hook_shared.detect(&templates, &record.tenant, record.signal, rows)
                });
                let mut visible = hook_shared.visible.write();
                if let Some(rows) = rows {
                    visible.add(&record.tenant, Table::of(record.signal), rows, record.seq);
                } else {
                    visible.applied_seq = record.seq;
                }
                (
                    visible.buffered_bytes >= hook_shared.config.flush_bytes,
                    findings,
                )
            };
            if let Some(findings) = findings {
                hook_shared.save_findings(findings);
            }
            if over {
                hook_shared.request_flush();
            }
        });
        let replay_shared = shared.clone();
        let (wal, report) = Wal::open_with_hook(
            config.wal.clone(),
            &mut |record| {
                // An erased tenant's records up to its marker stay erased.
                let erased = erasures
                    .get(&record.tenant)
                    .is_some_and(|&up_to| record.seq <= up_to);
                if record.seq <= checkpoint || erased {
                    return Ok(());
                }
                // A record that does not decrypt stops the start: the key is wrong or the log
                // was changed, and going on would lose it silently.
                let payload = open_value(
                    keyring.as_deref(),
                    &record.tenant,
                    wal_what(record.signal),
                    &record.payload,
                )?;
                let record = match payload {
                    std::borrow::Cow::Borrowed(_) => record,
                    std::borrow::Cow::Owned(plain) => WalRecord {
                        payload: Bytes::from(plain),
                        ..record
                    },
                };
                // Opened already: decoded as plaintext.
                if let Some(rows) = rows_of(None, &record) {
                    let findings = {
                        let mut templates = replay_shared.templates.lock();
                        let rows = templates.label(&record.tenant, rows);
                        let findings =
                            replay_shared.detect(&templates, &record.tenant, record.signal, &rows);
                        let mut visible = replay_shared.visible.write();
                        visible.add(&record.tenant, Table::of(record.signal), rows, record.seq);
                        findings
                    };
                    replay_shared.save_findings(findings);
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
            free_space: crate::free_space::FreeSpace::new(shared.config.data_dir.clone()),
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
        self.free_space.check(self.shared.config.min_free_bytes)?;
        let payload = match &self.shared.config.keyring {
            Some(keyring) => Bytes::from(seal_value(
                Some(keyring),
                &tenant,
                wal_what(signal),
                &payload,
            )?),
            None => payload,
        };
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

    /// Compacts every partition that has enough small files, now. Returns how many partitions
    /// were compacted. The flusher does this on its own every `compaction_interval`.
    pub fn compact_now(&self) -> Result<usize> {
        self.shared.compact(&io_runtime()?)
    }

    /// Drops the partitions expired at `now` (the flusher does this every
    /// `retention_interval` with the clock's time). Returns how many files were dropped.
    pub fn enforce_retention_at(&self, now: SystemTime) -> Result<usize> {
        self.shared.enforce_retention(now)
    }

    /// The live detectors' settings.
    pub fn detector_settings(&self) -> DetectorSettings {
        self.shared.detectors.lock().settings().clone()
    }

    /// Series the detectors watch for `tenant`.
    pub fn watched_series(&self, tenant: &TenantId) -> usize {
        self.shared.detectors.lock().series_count(tenant)
    }

    /// Commits what is queued, flushes every buffer to segments, and stops. Safe to call twice.
    pub fn close(&self) {
        self.wal.close();
        let Some(flusher) = self.flusher.lock().take() else {
            return;
        };
        self.shared
            .closing
            .store(true, std::sync::atomic::Ordering::Release);
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
        if table == Table::Events {
            // The newest events only, so a query cannot pull an unbounded history into memory.
            let newest = EventFilter {
                limit: MAX_EVENTS_IN_QUERIES,
                ..EventFilter::default()
            };
            let events = self
                .shared
                .meta
                .events(tenant, &newest)
                .unwrap_or_else(|err| {
                    tracing::error!(%tenant, error = %err, "events could not be read for a query");
                    Vec::new()
                });
            return TableSnapshot {
                table,
                schema: schema::schema(table),
                files: Vec::new(),
                buffered: vec![schema::event_batch(&events)],
            };
        }
        if table == Table::Incidents {
            let newest = crate::meta::IncidentFilter {
                limit: MAX_EVENTS_IN_QUERIES,
                ..Default::default()
            };
            let rows = self
                .shared
                .meta
                .incidents(tenant, &newest)
                .unwrap_or_else(|err| {
                    tracing::error!(%tenant, error = %err, "incidents could not be read for a query");
                    Vec::new()
                });
            return TableSnapshot {
                table,
                schema: schema::schema(table),
                files: Vec::new(),
                buffered: vec![crate::incident_table::incident_batch(&rows)],
            };
        }
        if table == Table::Templates {
            let rows = self.shared.templates.lock().table(tenant);
            return TableSnapshot {
                table,
                schema: schema::schema(table),
                files: Vec::new(),
                buffered: rows.into_iter().collect(),
            };
        }
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

    fn erase_tenant(&self, tenant: &TenantId) -> Result<ErasureReport> {
        self.shared.erase_tenant(tenant)
    }
}

impl EventSource for TelemetryStore {
    /// A tenant's events (anomalies, capacity warnings, alerts), newest first, each with the
    /// feedback it got.
    fn events(
        &self,
        tenant: &TenantId,
        filter: &EventFilter,
    ) -> Result<Vec<(Event, Option<String>)>> {
        self.shared.meta.events(tenant, filter)
    }

    /// One event of a tenant, with the feedback it got.
    fn event(&self, tenant: &TenantId, id: &str) -> Result<Option<(Event, Option<String>)>> {
        self.shared.meta.event(tenant, id)
    }

    /// Stores events made outside the store (capacity warnings, alerts); returns how many were
    /// new (an id already stored is kept as it was).
    fn insert_events(&self, events: &[Event]) -> Result<usize> {
        self.shared.meta.insert_events(events)
    }

    /// Applies an engineer's feedback on anomaly `event_id` to its series' sensitivity and
    /// records it (who, why, the sensitivity before and after).
    fn anomaly_feedback(
        &self,
        tenant: &TenantId,
        event_id: &str,
        feedback: Feedback,
        comment: &str,
        actor: &str,
    ) -> Result<FeedbackRecord> {
        let (event, _) = self
            .shared
            .meta
            .event(tenant, event_id)?
            .ok_or_else(|| Error::NotFound(format!("no anomaly with id `{event_id}`")))?;
        if event.kind != sextant_model::EventKind::Anomaly {
            return Err(Error::NotFound(format!(
                "event `{event_id}` is not an anomaly"
            )));
        }
        let (before, after) = self
            .shared
            .detectors
            .lock()
            .feedback(tenant, &event.fingerprint, feedback)
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "the series of anomaly `{event_id}` is no longer watched"
                ))
            })?;
        let record = FeedbackRecord {
            tenant: tenant.clone(),
            event_id: event_id.to_owned(),
            series: event.fingerprint,
            verdict: match feedback {
                Feedback::FalsePositive => "false_positive",
                Feedback::Confirmed => "confirmed",
            }
            .to_owned(),
            comment: comment.to_owned(),
            actor: actor.to_owned(),
            before,
            after,
            at: unix_nanos(SystemTime::now()) / 1_000_000_000,
        };
        self.shared.meta.record_feedback(&record)?;
        Ok(record)
    }

    /// The feedback given on an event, oldest first.
    fn feedback(&self, tenant: &TenantId, event_id: &str) -> Result<Vec<FeedbackRecord>> {
        self.shared.meta.feedback(tenant, event_id)
    }

    fn detector_config(&self) -> sextant_analytics::anomaly::DetectorConfig {
        self.shared.config.detectors.detector.clone()
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

/// One tenant's templates, as the detectors see them.
struct TenantTemplates<'a>(&'a TemplateMiners, &'a TenantId);

impl crate::detectors::Templates for TenantTemplates<'_> {
    fn resolve(&self, id: u64) -> u64 {
        self.0.resolve(self.1, id).unwrap_or(id)
    }

    fn text(&self, id: u64) -> Option<String> {
        self.0.template_text(self.1, id)
    }
}

impl Shared {
    /// Feeds committed rows to the detectors (logs after their templates are set).
    fn detect(
        &self,
        templates: &TemplateMiners,
        tenant: &TenantId,
        signal: Signal,
        rows: &RecordBatch,
    ) -> Findings {
        let mut detectors = self.detectors.lock();
        match signal {
            Signal::Metrics => detectors.observe_metrics(tenant, rows),
            Signal::Logs => {
                detectors.observe_logs(tenant, rows, &TenantTemplates(templates, tenant))
            }
            Signal::Traces => Findings::default(),
        }
    }

    /// Stores what the detectors found. A failure is logged, not raised: the rows are durable
    /// already, and a replay finds the same anomalies (same ids) again.
    fn save_findings(&self, findings: Findings) {
        if findings.is_empty() {
            return;
        }
        if let Err(err) = self.meta.insert_events(&findings.events) {
            tracing::error!(error = %err, events = findings.events.len(), "anomaly events not stored");
        }
        if let Err(err) = self.meta.resolve_events(&findings.resolved) {
            tracing::error!(error = %err, "resolved anomalies not marked");
        }
    }

    fn request_flush(&self) {
        self.control.lock().requested += 1;
        self.wake.notify_all();
    }

    fn run_flusher(&self, runtime: tokio::runtime::Runtime) {
        let mut last_compaction = Instant::now();
        let mut last_retention = Instant::now();
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
            if last_compaction.elapsed() >= self.config.compaction_interval {
                last_compaction = Instant::now();
                if let Err(err) = self.compact(&runtime) {
                    tracing::error!(error = %err, "compaction failed; the small files stay");
                }
            }
            if last_retention.elapsed() >= self.config.retention_interval {
                last_retention = Instant::now();
                if let Err(err) = self.enforce_retention(SystemTime::now()) {
                    tracing::error!(error = %err, "retention failed; expired files stay for now");
                }
            }
            self.delete_doomed(&runtime);
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
        let _catalog = self.catalog_writer.lock();
        // Take the buffers, the checkpoint they reach and the template miners as of it,
        // atomically with respect to commits.
        let (work, checkpoint, miners, detectors) = {
            let mut templates = self.templates.lock();
            let mut detectors = self.detectors.lock();
            let mut visible = self.visible.write();
            let mut work = Vec::new();
            for ((tenant, table), state) in &mut visible.tables {
                state.flushing.append(&mut state.buffered);
                if !state.flushing.is_empty() {
                    work.push((tenant.clone(), *table, state.flushing.clone()));
                }
            }
            (
                work,
                visible.applied_seq,
                templates.take_changed(),
                detectors.take_changed(self.closing.load(std::sync::atomic::Ordering::Acquire)),
            )
        };
        let result = self.write_and_commit(runtime, &work, checkpoint, &miners, &detectors);
        if !matches!(result, Ok(Some(_))) {
            // Nothing was committed: a later flush saves these states.
            self.templates
                .lock()
                .mark_changed(miners.into_iter().map(|(tenant, _)| tenant));
            self.detectors.lock().mark_changed(&detectors);
        }
        let Some(added) = result? else {
            return Ok(());
        };
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

    /// Writes the taken buffers as segment files and commits them with the checkpoint and the
    /// miner states; `None` when there was nothing to commit.
    fn write_and_commit(
        &self,
        runtime: &tokio::runtime::Runtime,
        work: &[(TenantId, Table, Vec<RecordBatch>)],
        checkpoint: u64,
        miners: &[(TenantId, MinerState)],
        detectors: &SavedStates,
    ) -> Result<Option<Vec<CatalogEntry>>> {
        let mut added = Vec::new();
        for (tenant, table, batches) in work {
            let name = format!("{checkpoint:020}-{}", added.len());
            let files = runtime.block_on(self.segments.write(tenant, *table, batches, &name))?;
            added.extend(files.into_iter().map(|file| CatalogEntry {
                tenant: tenant.clone(),
                table: *table,
                file,
            }));
        }
        if added.is_empty() && detectors.is_empty() && checkpoint <= self.meta.checkpoint()? {
            return Ok(None);
        }
        let keyring = self.config.keyring.as_deref();
        let states: Vec<(TenantId, Vec<u8>)> = miners
            .iter()
            .map(|(tenant, state)| {
                let sealed = seal_value(keyring, tenant, "template miner", &encode_state(state))?;
                Ok((tenant.clone(), sealed))
            })
            .collect::<Result<_>>()?;
        let sealed_detectors = seal_detector_states(keyring, detectors)?;
        let detector_views = if keyring.is_some() {
            sealed_detectors
                .iter()
                .map(|(tenant, key, state)| (tenant, key.as_str(), state.as_slice()))
                .collect()
        } else {
            detectors.views()
        };
        self.meta
            .commit_flush(&added, checkpoint, &states, &detector_views)?;
        Ok(Some(added))
    }

    /// Merges the small files of every partition that has enough of them.
    fn compact(&self, runtime: &tokio::runtime::Runtime) -> Result<usize> {
        let plans: Vec<_> = {
            let visible = self.visible.read();
            visible
                .tables
                .iter()
                .flat_map(|((tenant, table), state)| {
                    plan_compactions(
                        &state.files,
                        self.config.compaction_min_files,
                        self.config.compaction_target_bytes,
                    )
                    .into_iter()
                    .map(move |group| (tenant.clone(), *table, group))
                })
                .collect()
        };
        let mut compacted = 0;
        for (tenant, table, group) in plans {
            if self.compact_group(runtime, &tenant, table, &group)? {
                compacted += 1;
            }
        }
        Ok(compacted)
    }

    /// Merges `group` (files of one partition) into one file and swaps it in. False when the
    /// files changed meanwhile (an erasure or retention got there first).
    fn compact_group(
        &self,
        runtime: &tokio::runtime::Runtime,
        tenant: &TenantId,
        table: Table,
        group: &[SegmentFile],
    ) -> Result<bool> {
        let _catalog = self.catalog_writer.lock();
        let still_listed = {
            let visible = self.visible.read();
            visible
                .tables
                .get(&(tenant.clone(), table))
                .is_some_and(|state| group.iter().all(|f| state.files.contains(f)))
        };
        if !still_listed {
            return Ok(false);
        }
        let mut batches = Vec::new();
        for file in group {
            batches.extend(runtime.block_on(self.segments.read(&file.path))?);
        }
        let name = format!("compacted-{:020}", unix_nanos(SystemTime::now()));
        // All rows are in one hour, so this writes one file, sorted by service then time.
        let written = runtime.block_on(self.segments.write(tenant, table, &batches, &name))?;
        let rows_in: u64 = group.iter().map(|f| f.rows).sum();
        let rows_out: u64 = written.iter().map(|f| f.rows).sum();
        let removed: Vec<String> = group.iter().map(|f| f.path.clone()).collect();
        let added: Vec<CatalogEntry> = written
            .iter()
            .map(|file| CatalogEntry {
                tenant: tenant.clone(),
                table,
                file: file.clone(),
            })
            .collect();
        let committed = if rows_in == rows_out {
            self.meta.replace_segments(&removed, &added)
        } else {
            Err(Error::Decode(format!(
                "compaction read {rows_out} rows from files the catalog says hold {rows_in}"
            )))
        };
        if let Err(err) = committed {
            let new: Vec<String> = written.into_iter().map(|f| f.path).collect();
            let _ = runtime.block_on(self.segments.delete(&new));
            return Err(err);
        }
        {
            let mut visible = self.visible.write();
            if let Some(state) = visible.tables.get_mut(&(tenant.clone(), table)) {
                state.files.retain(|f| !removed.contains(&f.path));
                state.files.extend(written);
            }
        }
        self.doom(removed);
        metrics::counter!("sextant_store_compactions_total").increment(1);
        tracing::debug!(%tenant, %table, files = group.len(), rows = rows_in, "compacted");
        Ok(true)
    }

    /// Drops every hour partition whose newest row is older than its tenant's retention.
    fn enforce_retention(&self, now: SystemTime) -> Result<usize> {
        let _catalog = self.catalog_writer.lock();
        let now = unix_nanos(now);
        let removed: Vec<(TenantId, Table, Vec<String>)> = {
            let visible = self.visible.read();
            visible
                .tables
                .iter()
                .filter_map(|((tenant, table), state)| {
                    let retention = self.config.retention_of(tenant).as_nanos();
                    let cutoff = now.saturating_sub(i64::try_from(retention).unwrap_or(i64::MAX));
                    let expired = expired_files(&state.files, cutoff);
                    (!expired.is_empty()).then(|| (tenant.clone(), *table, expired))
                })
                .collect()
        };
        let paths: Vec<String> = removed.iter().flat_map(|(_, _, p)| p.clone()).collect();
        if paths.is_empty() {
            return Ok(0);
        }
        self.meta.replace_segments(&paths, &[])?;
        {
            let mut visible = self.visible.write();
            for (tenant, table, expired) in &removed {
                if let Some(state) = visible.tables.get_mut(&(tenant.clone(), *table)) {
                    state.files.retain(|f| !expired.contains(&f.path));
                }
            }
        }
        let dropped = paths.len();
        self.doom(paths);
        metrics::counter!("sextant_store_retention_files_dropped_total").increment(dropped as u64);
        tracing::info!(
            files = dropped,
            "dropped segment files past their retention"
        );
        Ok(dropped)
    }

    /// Erases a tenant's rows: catalog entries and the erasure marker in one transaction, then
    /// the in-memory files and buffers. The visible state stays locked from reading the
    /// sequence number to the end, so every row up to the marker is gone from both and no
    /// later row is touched.
    fn erase_tenant(&self, tenant: &TenantId) -> Result<ErasureReport> {
        let _catalog = self.catalog_writer.lock();
        let mut templates = self.templates.lock();
        let mut detectors = self.detectors.lock();
        let mut visible = self.visible.write();
        let up_to_seq = visible.applied_seq;
        let removed = self.meta.erase_tenant(tenant, up_to_seq)?;
        let mut report = ErasureReport {
            files: removed.len() as u64,
            rows: removed.iter().map(|e| e.file.rows).sum(),
            up_to_seq,
        };
        let mut freed = 0;
        for table in Table::STORED {
            if let Some(state) = visible.tables.remove(&(tenant.clone(), table)) {
                for batch in state.flushing.iter().chain(&state.buffered) {
                    report.rows += batch.num_rows() as u64;
                    freed += batch.get_array_memory_size();
                }
            }
        }
        visible.buffered_bytes = visible.buffered_bytes.saturating_sub(freed);
        templates.forget(tenant);
        detectors.forget(tenant);
        drop(visible);
        drop(detectors);
        drop(templates);
        self.doom(removed.into_iter().map(|e| e.file.path).collect());
        tracing::info!(%tenant, files = report.files, rows = report.rows, up_to_seq, "erased tenant telemetry");
        Ok(report)
    }

    /// Schedules files dropped from the catalog for deletion after the grace period.
    fn doom(&self, paths: Vec<String>) {
        let at = Instant::now() + self.config.delete_grace;
        self.doomed
            .lock()
            .extend(paths.into_iter().map(|p| (p, at)));
    }

    /// Deletes the dropped files whose grace period is over. A failure is logged; the next
    /// start deletes whatever the catalog does not list anyway.
    fn delete_doomed(&self, runtime: &tokio::runtime::Runtime) {
        let now = Instant::now();
        let due: Vec<String> = {
            let mut doomed = self.doomed.lock();
            let (due, keep) = std::mem::take(&mut *doomed)
                .into_iter()
                .partition(|(_, at)| *at <= now);
            *doomed = keep;
            due.into_iter().map(|(path, _)| path).collect()
        };
        if !due.is_empty()
            && let Err(err) = runtime.block_on(self.segments.delete(&due))
        {
            tracing::warn!(error = %err, files = due.len(), "could not delete dropped segment files; the next start will");
        }
    }
}

/// Nanoseconds since the Unix epoch (0 before it).
fn unix_nanos(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
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

    fn open_with(dir: &std::path::Path, adjust: impl FnOnce(&mut StoreConfig)) -> TelemetryStore {
        let meta = Arc::new(SqliteMetadata::open(&crate::metadata_path(dir)).unwrap());
        let mut config = StoreConfig::new(dir);
        config.wal.segment_bytes = 1;
        adjust(&mut config);
        TelemetryStore::open(config, meta).unwrap().0
    }

    fn append_for(store: &TelemetryStore, tenant: &str, bodies: &[&str]) {
        store
            .append(
                TenantId::new(tenant).unwrap(),
                Signal::Logs,
                payload(bodies),
                None,
            )
            .unwrap()
            .wait()
            .unwrap();
    }

    /// Bodies a tenant's log rows hold (files and buffers), sorted.
    fn bodies(store: &TelemetryStore, tenant: &str) -> Vec<String> {
        let snapshot = store.snapshot(&TenantId::new(tenant).unwrap(), Table::Logs);
        let segments = SegmentStore::local(&segments_dir(&store.shared.config.data_dir)).unwrap();
        let runtime = io_runtime().unwrap();
        let mut batches = snapshot.buffered.clone();
        for file in &snapshot.files {
            batches.extend(runtime.block_on(segments.read(&file.path)).unwrap());
        }
        let mut bodies: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                let column = b.column_by_name("body").unwrap();
                let strings = column
                    .as_any()
                    .downcast_ref::<arrow::array::StringArray>()
                    .unwrap();
                strings
                    .iter()
                    .map(|s| s.unwrap().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        bodies.sort();
        bodies
    }

    /// Each row's body and template id, by body.
    fn body_templates(store: &TelemetryStore) -> Vec<(String, u64)> {
        use arrow::array::Array;
        let snapshot = store.snapshot(&tenant(), Table::Logs);
        let segments = SegmentStore::local(&segments_dir(&store.shared.config.data_dir)).unwrap();
        let runtime = io_runtime().unwrap();
        let mut batches = snapshot.buffered.clone();
        for file in &snapshot.files {
            batches.extend(runtime.block_on(segments.read(&file.path)).unwrap());
        }
        let mut rows = Vec::new();
        for batch in &batches {
            let bodies = batch.column_by_name("body").unwrap();
            let bodies = bodies
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            let ids = batch.column_by_name(schema::TEMPLATE_ID_COLUMN).unwrap();
            let ids = ids
                .as_any()
                .downcast_ref::<arrow::array::UInt64Array>()
                .unwrap();
            for row in 0..batch.num_rows() {
                assert!(ids.is_valid(row), "a row without a template id");
                rows.push((bodies.value(row).to_owned(), ids.value(row)));
            }
        }
        rows.sort();
        rows
    }

    #[test]
    fn template_ids_survive_flush_restart_and_crash() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        append(
            &store,
            &["user ann logged in from 10.0.0.1", "disk /dev/sda1 is full"],
        );
        store.flush().unwrap();
        append(&store, &["user bob logged in from 10.0.0.2"]);
        let before = body_templates(&store);
        assert_eq!(before.len(), 3);
        // A crash: the last row is replayed from the log, mined by the miner saved at the
        // flush, and gets the id it had.
        std::mem::forget(store);
        let store = open(dir.path());
        assert_eq!(body_templates(&store), before);
        // After a clean restart new lines of known patterns get the known ids.
        append(&store, &["disk /dev/sdb2 is full"]);
        store.close();
        drop(store);
        let store = open(dir.path());
        let after = body_templates(&store);
        let id_of =
            |rows: &[(String, u64)], body: &str| rows.iter().find(|(b, _)| b == body).unwrap().1;
        assert_eq!(
            id_of(&after, "disk /dev/sdb2 is full"),
            id_of(&before, "disk /dev/sda1 is full")
        );
        assert_ne!(
            id_of(&after, "disk /dev/sda1 is full"),
            id_of(&after, "user ann logged in from 10.0.0.1")
        );
    }

    fn files_on_disk(dir: &std::path::Path) -> usize {
        let runtime = io_runtime().unwrap();
        let segments = SegmentStore::local(&segments_dir(dir)).unwrap();
        runtime.block_on(segments.list()).unwrap().len()
    }

    #[test]
    fn compaction_merges_an_hours_small_files_and_keeps_every_row_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_with(dir.path(), |c| {
            c.compaction_min_files = 3;
            c.compaction_interval = Duration::from_secs(3600);
        });
        for body in ["a", "b", "c"] {
            append(&store, &[body]);
            store.flush().unwrap();
        }
        append(&store, &["buffered"]);
        assert_eq!(store.snapshot(&tenant(), Table::Logs).files.len(), 3);
        assert_eq!(store.compact_now().unwrap(), 1);
        let files = store.snapshot(&tenant(), Table::Logs).files;
        assert_eq!(files.len(), 1);
        assert!(files[0].path.contains("compacted-"), "{}", files[0].path);
        assert_eq!(visible_rows(&store), (3, 1));
        assert_eq!(bodies(&store, "acme"), ["a", "b", "buffered", "c"]);
        // The old files stay for running queries until the grace period is over.
        assert_eq!(files_on_disk(dir.path()), 4);
        assert_eq!(store.compact_now().unwrap(), 0, "nothing left to compact");

        // A crash now: the catalog commit decided; the old files are leftovers on start.
        std::mem::forget(store);
        let store = open(dir.path());
        assert_eq!(visible_rows(&store), (3, 1));
        assert_eq!(bodies(&store, "acme"), ["a", "b", "buffered", "c"]);
        store.close();
        assert_eq!(
            files_on_disk(dir.path()),
            2,
            "the compacted file and the last flush"
        );
    }

    #[test]
    fn dropped_files_are_deleted_after_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_with(dir.path(), |c| {
            c.compaction_min_files = 2;
            c.delete_grace = Duration::ZERO;
        });
        append(&store, &["a"]);
        store.flush().unwrap();
        append(&store, &["b"]);
        store.flush().unwrap();
        assert_eq!(store.compact_now().unwrap(), 1);
        store.flush().unwrap(); // the flusher deletes what is due after each round
        assert_eq!(files_on_disk(dir.path()), 1);
        assert_eq!(bodies(&store, "acme"), ["a", "b"]);
    }

    #[test]
    fn retention_drops_expired_partitions_per_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let short = TenantId::new("short").unwrap();
        let store = open_with(dir.path(), |c| {
            c.tenant_retention
                .insert(short.clone(), Duration::from_secs(24 * 3600));
        });
        append_for(&store, "short", &["gone"]);
        append_for(&store, "acme", &["kept"]);
        store.flush().unwrap();
        append_for(&store, "short", &["buffered"]);
        // Rows are at 2023-11-14T22:13Z; two days later only the one-day tenant expires.
        let rows_time = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let now = rows_time + Duration::from_secs(2 * 24 * 3600);
        assert_eq!(store.enforce_retention_at(rows_time).unwrap(), 0);
        assert_eq!(store.enforce_retention_at(now).unwrap(), 1);
        assert_eq!(
            bodies(&store, "short"),
            ["buffered"],
            "buffers wait for their flush"
        );
        assert_eq!(bodies(&store, "acme"), ["kept"]);
        store.close();
        let store = open(dir.path());
        assert_eq!(bodies(&store, "short"), ["buffered"]);
        assert_eq!(bodies(&store, "acme"), ["kept"]);
    }

    #[test]
    fn erased_rows_do_not_come_back_on_replay() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        append(&store, &["in-a-file"]);
        append_for(&store, "globex", &["other-tenant"]);
        store.flush().unwrap();
        append(&store, &["in-the-log-1", "in-the-log-2"]);
        let report = store.erase_tenant(&tenant()).unwrap();
        assert_eq!((report.files, report.rows), (1, 3));
        assert_eq!(visible_rows(&store), (0, 0));
        append(&store, &["after-erasure"]);
        // A crash: the erased records are still in the log, past the checkpoint.
        std::mem::forget(store);
        let store = open(dir.path());
        assert_eq!(bodies(&store, "acme"), ["after-erasure"]);
        assert_eq!(bodies(&store, "globex"), ["other-tenant"]);
        store.close();
        let store = open(dir.path());
        assert_eq!(bodies(&store, "acme"), ["after-erasure"]);
        store.close();
        let read = crate::TelemetryReader::new(dir.path())
            .log_rows(&tenant())
            .unwrap();
        assert_eq!(read.len(), 1, "the reader skips erased records too");
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
