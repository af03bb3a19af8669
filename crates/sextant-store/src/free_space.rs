//! [`FreeSpace`]: the data directory's free space, looked up at most once a second, and the
//! reserve appends keep: below it they are refused with [`Error::DiskFull`] (a clear answer
//! instead of a failed write-ahead log), and taken again as soon as space returns.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::{Error, Result};

/// How long a looked-up figure is used before the file system is asked again, in ms.
const FRESH_FOR_MS: u64 = 1_000;

/// Free bytes of the file system holding a directory, for unprivileged writers. Every append
/// asks; one caller a second looks it up, the others read the figure (no lock on the path).
pub struct FreeSpace {
    dir: PathBuf,
    started: Instant,
    /// When the figure is next due, in ms after `started` (0: at once).
    due_ms: AtomicU64,
    free: AtomicU64,
}

impl FreeSpace {
    pub fn new(dir: PathBuf) -> FreeSpace {
        FreeSpace {
            dir,
            started: Instant::now(),
            due_ms: AtomicU64::new(0),
            free: AtomicU64::new(u64::MAX),
        }
    }

    /// The free bytes as last looked up (`u64::MAX` when the file system does not say).
    pub fn free(&self) -> u64 {
        let now = self.started.elapsed().as_millis() as u64;
        let due = self.due_ms.load(Ordering::Relaxed);
        if now >= due
            && self
                .due_ms
                .compare_exchange(
                    due,
                    now + FRESH_FOR_MS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            let free = match rustix::fs::statvfs(&self.dir) {
                Ok(stat) => stat.f_bavail.saturating_mul(stat.f_frsize),
                Err(err) => {
                    tracing::warn!(dir = %self.dir.display(), error = %err, "free space unknown");
                    u64::MAX
                }
            };
            self.free.store(free, Ordering::Relaxed);
            if free != u64::MAX {
                metrics::gauge!("sextant_storage_free_bytes").set(free as f64);
            }
        }
        self.free.load(Ordering::Relaxed)
    }

    /// Refuses an append while fewer than `reserve` bytes are free.
    pub fn check(&self, reserve: u64) -> Result<()> {
        let free = self.free();
        if free < reserve {
            metrics::counter!("sextant_ingest_refused_disk_full_total").increment(1);
            return Err(Error::DiskFull { free, reserve });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_past_the_free_space_refuses_and_names_both() {
        let dir = tempfile::tempdir().unwrap();
        let space = FreeSpace::new(dir.path().to_owned());
        let free = space.free();
        assert!(free > 0 && free < u64::MAX, "{free}");
        space.check(0).unwrap();
        let refused = space.check(u64::MAX).unwrap_err();
        assert_eq!(refused.code(), "disk_full");
        assert!(
            refused.to_string().contains("storage.min_free_bytes"),
            "{refused}"
        );
    }
}
