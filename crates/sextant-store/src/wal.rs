//! The write-ahead log: ingest batches made durable with group commit, replayed on start.
//!
//! On disk the log is a folder of segment files named `<first sequence number>.wal` (20
//! digits). A segment is a run of records, each framed as
//!
//! ```text
//! [body length: u32 LE][CRC-32 of body: u32 LE][body]
//! body = [format: u8 = 1][signal: u8][tenant length: u8][tenant][sequence: u64 LE][payload]
//! ```
//!
//! The payload is the batch exactly as ingest accepted it (an OTLP export request in protobuf).
//! One writer thread owns the files: it takes every append waiting in its queue, writes them
//! with one `write` and one `fdatasync`, and only then acknowledges each (group commit). After a
//! crash, the tail of the newest segment may hold a partly written group; [`Wal::open`] cuts it
//! at the last whole record and reports how much it dropped. None of the dropped records was
//! acknowledged, because acknowledgements wait for the fsync.

use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parking_lot::Mutex;
use sextant_model::{Signal, TenantId};
use tokio::sync::oneshot;

use crate::{Error, Result};

const FORMAT_VERSION: u8 = 1;
const FRAME_HEADER: usize = 8;
/// Largest record body accepted on replay; anything larger is framing garbage.
pub const MAX_RECORD_BYTES: usize = 256 * 1024 * 1024;
const SEGMENT_SUFFIX: &str = ".wal";

/// Settings of the write-ahead log.
#[derive(Clone, Debug)]
pub struct WalConfig {
    /// Folder of the segment files; created if missing.
    pub dir: PathBuf,
    /// A segment is closed and a new one started once it reaches this size. Default 64 MiB.
    pub segment_bytes: u64,
    /// Appends that may wait for the writer before [`Wal::append`] answers
    /// [`Error::Overloaded`]. Default 4096.
    pub queue_capacity: usize,
    /// Largest amount of payload written by one group commit. Default 16 MiB.
    pub max_group_bytes: usize,
    /// Fsync every group before acknowledging it. Default true; turning it off gives up
    /// durability on power loss (not on process crash) and exists for benchmarks.
    pub fsync: bool,
}

impl WalConfig {
    pub fn new(dir: impl Into<PathBuf>) -> WalConfig {
        WalConfig {
            dir: dir.into(),
            segment_bytes: 64 * 1024 * 1024,
            queue_capacity: 4096,
            max_group_bytes: 16 * 1024 * 1024,
            fsync: true,
        }
    }
}

/// One record of the log.
#[derive(Clone, Debug, PartialEq)]
pub struct WalRecord {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    pub tenant: TenantId,
    pub signal: Signal,
    pub payload: Bytes,
}

/// What [`Wal::open`] found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplayReport {
    pub segments: usize,
    pub records: u64,
    pub bytes: u64,
    /// Sequence number of the last whole record (0 for an empty log).
    pub last_seq: u64,
    /// Bytes cut from the tail of the newest segment (a torn write).
    pub torn_bytes: u64,
}

enum Command {
    Append {
        tenant: TenantId,
        signal: Signal,
        payload: Bytes,
        rows: Option<RecordBatch>,
        done: oneshot::Sender<Result<u64>>,
    },
    Close,
}

/// Called on the writer thread for every record once its group is durable, in sequence order,
/// before the record is acknowledged; `rows` is what the appender passed along with it.
pub type CommitHook = Box<dyn FnMut(&WalRecord, Option<RecordBatch>) + Send>;

/// The write-ahead log. Cheap to share behind an `Arc`; appends come from any thread.
pub struct Wal {
    sender: SyncSender<Command>,
    queued: Arc<AtomicUsize>,
    failed: Arc<AtomicBool>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .finish()
    }
}

/// An append waiting for its group commit; resolves to the record's sequence number once the
/// record is durable.
#[must_use = "an append is durable only once this resolves"]
pub struct PendingAppend(oneshot::Receiver<Result<u64>>);

impl Future for PendingAppend {
    type Output = Result<u64>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<u64>> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::Closed)))
    }
}

impl PendingAppend {
    /// Waits for the commit from a thread that is not running async code.
    pub fn wait(self) -> Result<u64> {
        self.0.blocking_recv().unwrap_or(Err(Error::Closed))
    }
}

impl Wal {
    /// Opens (or creates) the log, checks every record, cuts a torn tail, and starts the writer.
    pub fn open(config: WalConfig) -> Result<(Wal, ReplayReport)> {
        Wal::open_with_hook(config, &mut |_| Ok(()), None)
    }

    /// Like [`Wal::open`], handing every whole record to `replay` first (in order), and calling
    /// `hook` for every record committed from then on.
    pub fn open_with_hook(
        config: WalConfig,
        replay: &mut dyn FnMut(WalRecord) -> Result<()>,
        hook: Option<CommitHook>,
    ) -> Result<(Wal, ReplayReport)> {
        fs::create_dir_all(&config.dir).map_err(|e| Error::io(&config.dir, e))?;
        let segments = list_segments(&config.dir)?;
        let mut report = ReplayReport {
            segments: segments.len(),
            ..ReplayReport::default()
        };
        for (i, path) in segments.iter().enumerate() {
            let is_last = i + 1 == segments.len();
            let scan = scan_segment(path, &mut |record| {
                report.records += 1;
                report.last_seq = record.seq;
                replay(record)
            })?;
            report.bytes += scan.valid_len;
            if let Some(reason) = scan.bad_tail {
                if !is_last {
                    return Err(Error::Corrupt {
                        path: path.clone(),
                        offset: scan.valid_len,
                        reason,
                    });
                }
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| Error::io(path, e))?;
                file.set_len(scan.valid_len)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| Error::io(path, e))?;
                report.torn_bytes = scan.file_len - scan.valid_len;
                tracing::warn!(
                    segment = %path.display(),
                    offset = scan.valid_len,
                    dropped_bytes = report.torn_bytes,
                    %reason,
                    "write-ahead log: cut torn tail at last whole record"
                );
            }
        }
        // Sequence numbers never go back, even when every record was trimmed away: an empty
        // newest segment still names the next one.
        if let Some(first_seq) = segments.last().and_then(|p| segment_first_seq(p)) {
            report.last_seq = report.last_seq.max(first_seq.saturating_sub(1));
        }
        let (active, active_len) = match segments.last() {
            Some(path) => {
                let file = OpenOptions::new()
                    .append(true)
                    .open(path)
                    .map_err(|e| Error::io(path, e))?;
                let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
                (file, len)
            }
            None => (create_segment(&config.dir, report.last_seq + 1)?, 0),
        };
        let (sender, receiver) = mpsc::sync_channel(config.queue_capacity.max(1));
        let queued = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            config,
            file: active,
            file_len: active_len,
            next_seq: report.last_seq + 1,
            buffer: Vec::new(),
            queued: queued.clone(),
            failed: failed.clone(),
            hook,
        };
        let handle = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| Error::io("wal-writer thread", e))?;
        let wal = Wal {
            sender,
            queued,
            failed,
            writer: Mutex::new(Some(handle)),
        };
        Ok((wal, report))
    }

    /// Queues a batch for the next group commit. Answers [`Error::Overloaded`] at once when the
    /// queue is full, so callers can push back instead of piling up memory.
    pub fn append(
        &self,
        tenant: TenantId,
        signal: Signal,
        payload: Bytes,
    ) -> Result<PendingAppend> {
        self.append_with_rows(tenant, signal, payload, None)
    }

    /// Like [`Wal::append`], passing `rows` to the commit hook once the record is durable.
    pub fn append_with_rows(
        &self,
        tenant: TenantId,
        signal: Signal,
        payload: Bytes,
        rows: Option<RecordBatch>,
    ) -> Result<PendingAppend> {
        if self.failed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let (done, receiver) = oneshot::channel();
        self.queued.fetch_add(1, Ordering::Relaxed);
        match self.sender.try_send(Command::Append {
            tenant,
            signal,
            payload,
            rows,
            done,
        }) {
            Ok(()) => Ok(PendingAppend(receiver)),
            Err(err) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                Err(match err {
                    TrySendError::Full(_) => Error::Overloaded,
                    TrySendError::Disconnected(_) => Error::Closed,
                })
            }
        }
    }

    /// Appends waiting for the writer.
    pub fn queue_depth(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// False once a write failed (other than for want of space, which refuses only the batches
    /// it hit); the log then refuses appends until restarted.
    pub fn is_healthy(&self) -> bool {
        !self.failed.load(Ordering::Acquire)
    }

    /// Commits everything queued, syncs, and stops the writer. Later appends fail with
    /// [`Error::Closed`]. Safe to call more than once.
    pub fn close(&self) {
        let Some(handle) = self.writer.lock().take() else {
            return;
        };
        // A blocking send: everything queued before the close is committed first.
        let _ = self.sender.send(Command::Close);
        let _ = handle.join();
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

struct Writer {
    config: WalConfig,
    file: File,
    file_len: u64,
    next_seq: u64,
    buffer: Vec<u8>,
    queued: Arc<AtomicUsize>,
    failed: Arc<AtomicBool>,
    hook: Option<CommitHook>,
}

struct Waiter {
    done: oneshot::Sender<Result<u64>>,
    record: WalRecord,
    rows: Option<RecordBatch>,
}

impl Writer {
    fn run(mut self, receiver: Receiver<Command>) {
        let mut waiters: Vec<Waiter> = Vec::new();
        let mut closing = false;
        while !closing {
            let Ok(first) = receiver.recv() else { break };
            self.buffer.clear();
            let mut group_bytes = 0;
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Close => closing = true,
                    Command::Append {
                        tenant,
                        signal,
                        payload,
                        rows,
                        done,
                    } => {
                        group_bytes += payload.len();
                        let seq = self.next_seq;
                        self.next_seq += 1;
                        encode_record(&mut self.buffer, seq, &tenant, signal, &payload);
                        waiters.push(Waiter {
                            done,
                            record: WalRecord {
                                seq,
                                tenant,
                                signal,
                                payload,
                            },
                            rows,
                        });
                    }
                }
                if !closing && group_bytes < self.config.max_group_bytes {
                    next = receiver.try_recv().ok();
                }
            }
            self.queued.fetch_sub(waiters.len(), Ordering::Relaxed);
            let first_seq = waiters.first().map(|w| w.record.seq);
            let outcome = self.commit_group(first_seq);
            let fatal = match &outcome {
                Ok(()) => false,
                // Nothing of the group is in the log (it was cut back off): its records are
                // refused, their numbers go to the next group, and the log carries on.
                Err(GroupError::NoSpace(err)) => {
                    tracing::warn!(error = %err, "write-ahead log: no space for a group; it is refused, later groups are tried again");
                    metrics::counter!("sextant_wal_no_space_total").increment(1);
                    if let Some(first) = first_seq {
                        self.next_seq = first;
                    }
                    false
                }
                Err(GroupError::Failed(err)) => {
                    tracing::error!(error = %err, "write-ahead log: write failed; refusing appends");
                    self.failed.store(true, Ordering::Release);
                    true
                }
            };
            for waiter in waiters.drain(..) {
                let seq = waiter.record.seq;
                if outcome.is_ok()
                    && let Some(hook) = &mut self.hook
                {
                    hook(&waiter.record, waiter.rows);
                }
                let _ = waiter.done.send(match &outcome {
                    Ok(()) => Ok(seq),
                    Err(GroupError::NoSpace(err)) => Err(Error::NoSpace(err.to_string())),
                    Err(GroupError::Failed(err)) => Err(Error::WriteFailed(err.to_string())),
                });
            }
            if fatal {
                break;
            }
        }
        // Refuse whatever is still queued (only after a failure).
        while let Ok(command) = receiver.try_recv() {
            if let Command::Append { done, .. } = command {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                let _ = done.send(Err(Error::Closed));
            }
        }
        let _ = self.file.sync_all();
    }

    fn commit_group(&mut self, first_seq: Option<u64>) -> Result<(), GroupError> {
        let Some(first_seq) = first_seq else {
            return Ok(());
        };
        if self.file_len > 0 && self.file_len + self.buffer.len() as u64 > self.config.segment_bytes
        {
            self.file.sync_all().map_err(|e| Error::io("segment", e))?;
            self.file = create_segment(&self.config.dir, first_seq).map_err(GroupError::of)?;
            self.file_len = 0;
        }
        let started = Instant::now();
        if let Err(err) = self.file.write_all(&self.buffer) {
            // Do not leave half a group in front of later records; only once it is cut back
            // off can the log carry on.
            let cut = self.file.set_len(self.file_len).is_ok();
            let err = Error::io("segment", err);
            return Err(if cut {
                GroupError::of(err)
            } else {
                GroupError::Failed(err)
            });
        }
        // A failed fsync leaves unknown what reached the disk: never carried on from.
        if self.config.fsync {
            self.file.sync_data().map_err(|e| Error::io("segment", e))?;
        }
        metrics::histogram!("sextant_wal_fsync_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("sextant_wal_bytes_total").increment(self.buffer.len() as u64);
        metrics::counter!("sextant_wal_group_commits_total").increment(1);
        self.file_len += self.buffer.len() as u64;
        Ok(())
    }
}

/// Why a group was not committed.
enum GroupError {
    /// No space left on the device for it, and the log is as it was before it: later groups
    /// are tried again.
    NoSpace(Error),
    /// Anything else: the log stops taking appends.
    Failed(Error),
}

impl GroupError {
    /// [`GroupError::NoSpace`] when `err` is the file system being full, else a failure.
    fn of(err: Error) -> GroupError {
        match &err {
            Error::Io { source, .. }
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                ) =>
            {
                GroupError::NoSpace(err)
            }
            _ => GroupError::Failed(err),
        }
    }
}

impl From<Error> for GroupError {
    fn from(err: Error) -> GroupError {
        GroupError::Failed(err)
    }
}

fn encode_record(out: &mut Vec<u8>, seq: u64, tenant: &TenantId, signal: Signal, payload: &[u8]) {
    let tenant = tenant.as_str().as_bytes();
    let body_len = 3 + tenant.len() + 8 + payload.len();
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(FORMAT_VERSION);
    out.push(signal.as_u8());
    out.push(tenant.len() as u8);
    out.extend_from_slice(tenant);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start + FRAME_HEADER..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn decode_body(body: Bytes) -> Result<WalRecord, String> {
    if body.len() < 3 {
        return Err("record shorter than its header".into());
    }
    if body[0] != FORMAT_VERSION {
        return Err(format!("unknown record format {}", body[0]));
    }
    let signal =
        Signal::from_u8(body[1]).ok_or_else(|| format!("unknown signal tag {}", body[1]))?;
    let tenant_len = body[2] as usize;
    let seq_at = 3 + tenant_len;
    if body.len() < seq_at + 8 {
        return Err("record shorter than its header".into());
    }
    let tenant = std::str::from_utf8(&body[3..seq_at])
        .ok()
        .and_then(|name| TenantId::new(name).ok())
        .ok_or("invalid tenant name")?;
    let seq = u64::from_le_bytes(body[seq_at..seq_at + 8].try_into().expect("8 bytes"));
    Ok(WalRecord {
        seq,
        tenant,
        signal,
        payload: body.slice(seq_at + 8..),
    })
}

struct SegmentScan {
    file_len: u64,
    valid_len: u64,
    /// Why reading stopped before the end of the file, if it did.
    bad_tail: Option<String>,
}

fn scan_segment(
    path: &Path,
    visit: &mut dyn FnMut(WalRecord) -> Result<()>,
) -> Result<SegmentScan> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(|e| Error::io(path, e))?;
    let data = Bytes::from(data);
    let mut offset = 0usize;
    let bad_tail = loop {
        let rest = &data[offset..];
        if rest.is_empty() {
            break None;
        }
        if rest.len() < FRAME_HEADER {
            break Some(format!("{} bytes of a record header", rest.len()));
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        if len > MAX_RECORD_BYTES || rest.len() - FRAME_HEADER < len {
            break Some(format!(
                "record of {len} bytes runs past the end of the file"
            ));
        }
        let body = data.slice(offset + FRAME_HEADER..offset + FRAME_HEADER + len);
        if crc32fast::hash(&body) != crc {
            break Some("checksum mismatch".to_owned());
        }
        match decode_body(body) {
            Ok(record) => visit(record)?,
            Err(reason) => break Some(reason),
        }
        offset += FRAME_HEADER + len;
    };
    Ok(SegmentScan {
        file_len: data.len() as u64,
        valid_len: offset as u64,
        bad_tail,
    })
}

fn list_segments(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut segments: Vec<(u64, PathBuf)> = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if let Some(first_seq) = segment_first_seq(&path) {
            segments.push((first_seq, path));
        }
    }
    segments.sort();
    Ok(segments.into_iter().map(|(_, p)| p).collect())
}

fn segment_first_seq(path: &Path) -> Option<u64> {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
        .and_then(|n| n.parse::<u64>().ok())
}

/// Deletes the segments whose records all have sequence numbers up to `seq` (they are safely
/// elsewhere). The newest segment is never deleted. Returns how many were deleted.
pub fn trim_through(dir: &Path, seq: u64) -> Result<usize> {
    let segments = list_segments(dir)?;
    let mut deleted = 0;
    for pair in segments.windows(2) {
        let next_first = segment_first_seq(&pair[1]).unwrap_or(0);
        if next_first == 0 || next_first - 1 > seq {
            break;
        }
        fs::remove_file(&pair[0]).map_err(|e| Error::io(&pair[0], e))?;
        deleted += 1;
    }
    if deleted > 0 {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, e))?;
    }
    Ok(deleted)
}

fn create_segment(dir: &Path, first_seq: u64) -> Result<File> {
    let path = dir.join(format!("{first_seq:020}{SEGMENT_SUFFIX}"));
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    // Make the new file's name durable too.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))?;
    Ok(file)
}

/// Reads every whole record of the log in order, without changing any file. A torn tail of the
/// newest segment is skipped, as [`Wal::open`] would cut it.
pub fn read_records(dir: &Path, visit: &mut dyn FnMut(WalRecord) -> Result<()>) -> Result<u64> {
    let segments = list_segments(dir)?;
    let mut records = 0;
    for (i, path) in segments.iter().enumerate() {
        let scan = scan_segment(path, &mut |record| {
            records += 1;
            visit(record)
        })?;
        if let Some(reason) = scan.bad_tail
            && i + 1 != segments.len()
        {
            return Err(Error::Corrupt {
                path: path.clone(),
                offset: scan.valid_len,
                reason,
            });
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantId {
        TenantId::new("acme").unwrap()
    }

    fn collect(dir: &Path) -> Vec<WalRecord> {
        let mut out = Vec::new();
        read_records(dir, &mut |r| {
            out.push(r);
            Ok(())
        })
        .unwrap();
        out
    }

    fn append_all(wal: &Wal, payloads: &[&'static [u8]]) -> Vec<u64> {
        payloads
            .iter()
            .map(|p| {
                wal.append(tenant(), Signal::Logs, Bytes::from_static(p))
                    .unwrap()
                    .wait()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn records_survive_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, report) = Wal::open(WalConfig::new(dir.path())).unwrap();
        assert_eq!(report.last_seq, 0);
        assert_eq!(append_all(&wal, &[b"one", b"two"]), vec![1, 2]);
        wal.close();
        let (wal, report) = Wal::open(WalConfig::new(dir.path())).unwrap();
        assert_eq!(
            (report.records, report.last_seq, report.torn_bytes),
            (2, 2, 0)
        );
        assert_eq!(append_all(&wal, &[b"three"]), vec![3]);
        wal.close();
        let payloads: Vec<_> = collect(dir.path()).into_iter().map(|r| r.payload).collect();
        assert_eq!(payloads, vec!["one", "two", "three"]);
    }

    #[test]
    fn replay_after_torn_wal_write_cuts_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(WalConfig::new(dir.path())).unwrap();
        append_all(&wal, &[b"kept-1", b"kept-2"]);
        wal.close();
        let segment = list_segments(dir.path()).unwrap().pop().unwrap();
        let whole = fs::metadata(&segment).unwrap().len();
        // Half of a third record: a header that promises more bytes than follow.
        let mut torn = Vec::new();
        encode_record(&mut torn, 3, &tenant(), Signal::Logs, b"torn-record");
        torn.truncate(torn.len() - 4);
        OpenOptions::new()
            .append(true)
            .open(&segment)
            .unwrap()
            .write_all(&torn)
            .unwrap();
        assert_eq!(
            collect(dir.path()).len(),
            2,
            "read-only scan skips the torn tail"
        );
        let (wal, report) = Wal::open(WalConfig::new(dir.path())).unwrap();
        assert_eq!(report.torn_bytes, torn.len() as u64);
        assert_eq!(fs::metadata(&segment).unwrap().len(), whole);
        assert_eq!(append_all(&wal, &[b"after"]), vec![3]);
        wal.close();
        let payloads: Vec<_> = collect(dir.path()).into_iter().map(|r| r.payload).collect();
        assert_eq!(payloads, vec!["kept-1", "kept-2", "after"]);
    }

    #[test]
    fn replay_after_flipped_bit_in_tail_cuts_it() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(WalConfig::new(dir.path())).unwrap();
        append_all(&wal, &[b"kept", b"flipped"]);
        wal.close();
        let segment = list_segments(dir.path()).unwrap().pop().unwrap();
        let mut data = fs::read(&segment).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0x40;
        fs::write(&segment, &data).unwrap();
        let (_wal, report) = Wal::open(WalConfig::new(dir.path())).unwrap();
        assert_eq!((report.records, report.last_seq), (1, 1));
    }

    #[test]
    fn corruption_in_an_older_segment_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = WalConfig::new(dir.path());
        config.segment_bytes = 1; // every group starts a new segment
        let (wal, _) = Wal::open(config.clone()).unwrap();
        append_all(&wal, &[b"first", b"second"]);
        wal.close();
        let segments = list_segments(dir.path()).unwrap();
        assert_eq!(segments.len(), 2);
        let mut data = fs::read(&segments[0]).unwrap();
        data[10] ^= 1;
        fs::write(&segments[0], &data).unwrap();
        let err = Wal::open(config).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    }

    #[test]
    fn trimmed_log_keeps_counting_and_hooks_see_commits_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = WalConfig::new(dir.path());
        config.segment_bytes = 1; // every group starts a new segment
        let seen = Arc::new(Mutex::new(Vec::new()));
        let hook_seen = seen.clone();
        let hook: CommitHook = Box::new(move |record, rows| {
            hook_seen.lock().push((record.seq, rows.is_some()));
        });
        let (wal, _) = Wal::open_with_hook(config.clone(), &mut |_| Ok(()), Some(hook)).unwrap();
        append_all(&wal, &[b"1", b"2", b"3"]);
        wal.close();
        assert_eq!(*seen.lock(), vec![(1, false), (2, false), (3, false)]);
        assert_eq!(list_segments(dir.path()).unwrap().len(), 3);
        // Records 1 and 2 are safe elsewhere: their segments go, the newest stays.
        assert_eq!(trim_through(dir.path(), 2).unwrap(), 2);
        assert_eq!(trim_through(dir.path(), 100).unwrap(), 0);
        let mut replayed = Vec::new();
        let (wal, report) = Wal::open_with_hook(
            config,
            &mut |r| {
                replayed.push(r.seq);
                Ok(())
            },
            None,
        )
        .unwrap();
        assert_eq!((replayed, report.last_seq), (vec![3], 3));
        assert_eq!(append_all(&wal, &[b"4"]), vec![4]);
    }

    #[test]
    fn sequence_numbers_survive_an_empty_newest_segment() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(format!("{:020}{SEGMENT_SUFFIX}", 41)), b"").unwrap();
        let (wal, report) = Wal::open(WalConfig::new(dir.path())).unwrap();
        assert_eq!(report.last_seq, 40);
        assert_eq!(append_all(&wal, &[b"x"]), vec![41]);
    }

    #[test]
    fn appends_from_many_threads_share_group_commits() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(WalConfig::new(dir.path())).unwrap();
        let wal = Arc::new(wal);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let wal = wal.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        wal.append(tenant(), Signal::Traces, Bytes::from_static(b"x"))
                            .unwrap()
                            .wait()
                            .unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        wal.close();
        let seqs: Vec<u64> = collect(dir.path()).iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=400).collect::<Vec<_>>());
        assert!(wal.append(tenant(), Signal::Logs, Bytes::new()).is_err());
    }
}
