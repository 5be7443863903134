//! Whether the store can write: the one fact readiness needs about space.
//! Each backend reports its writes' outcomes here ([`SpaceWatch::observe`]);
//! `Store::out_of_space` answers from it.

use crate::{Result, StoreError};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often, at most, the embedded store tries a write of its own while
/// out of space.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Bytes of that write: room for a message of some size, not a full WAL.
const PROBE_BYTES: usize = 1024 * 1024;
/// Without a probe (PostgreSQL, whose disk is the server's), how long
/// after the last failure for lack of space the store is said to be out
/// of space when no write succeeded since.
const HOLD_SECS: i64 = 30;

/// The outcome of the store's last writes, as far as space goes.
#[derive(Debug, Default)]
pub(crate) struct SpaceWatch {
    /// `now()` of the first write refused for lack of space since the last
    /// that succeeded; 0 while writes succeed.
    since: AtomicI64,
    /// `now()` of the last such refusal.
    last: AtomicI64,
    /// A directory on the store's file system, for the probe.
    probe_dir: Option<PathBuf>,
    last_probe: Mutex<Option<Instant>>,
}

impl SpaceWatch {
    /// A watch that probes with a write in `dir` (the embedded store's
    /// data directory).
    pub(crate) fn with_probe(dir: PathBuf) -> Self {
        Self {
            probe_dir: Some(dir),
            ..Self::default()
        }
    }

    /// A write failed for lack of space at `now`.
    pub(crate) fn failed(&self, now: i64) {
        let now = now.max(1);
        let _ = self
            .since
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        self.last.store(now, Ordering::Relaxed);
    }

    /// A write that needed space succeeded.
    pub(crate) fn succeeded(&self) {
        self.since.store(0, Ordering::Relaxed);
    }

    /// Note a write's result: a [`StoreError::NoSpace`] fails, a success
    /// succeeds, any other error says nothing about space.
    pub(crate) fn observe<T>(&self, result: &Result<T>, now: i64) {
        match result {
            Ok(_) => self.succeeded(),
            Err(StoreError::NoSpace(_)) => self.failed(now),
            Err(_) => {}
        }
    }

    /// `Store::out_of_space`, at `now`.
    pub(crate) async fn check(&self, now: i64) -> Option<i64> {
        let since = self.since.load(Ordering::Relaxed);
        if since == 0 {
            return None;
        }
        let Some(dir) = &self.probe_dir else {
            if now - self.last.load(Ordering::Relaxed) < HOLD_SECS {
                return Some(since);
            }
            // Let traffic try again; a new failure starts a new period.
            let _ = self
                .since
                .compare_exchange(since, 0, Ordering::Relaxed, Ordering::Relaxed);
            return None;
        };
        {
            let mut last = self.last_probe.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < PROBE_EVERY) {
                return Some(since);
            }
            *last = Some(Instant::now());
        }
        let path = dir.join(".posthorn-space-probe");
        let wrote = tokio::task::spawn_blocking(move || probe(&path))
            .await
            .unwrap_or(false);
        if wrote {
            // Only if no write failed again meanwhile.
            let _ = self
                .since
                .compare_exchange(since, 0, Ordering::Relaxed, Ordering::Relaxed);
            None
        } else {
            Some(since)
        }
    }
}

/// Write [`PROBE_BYTES`] to `path` and remove it: whether the file system
/// has that room now.
fn probe(path: &std::path::Path) -> bool {
    use std::io::Write;
    let result = std::fs::File::create(path).and_then(|mut f| {
        f.write_all(&vec![0u8; PROBE_BYTES])?;
        f.sync_all()
    });
    let _ = std::fs::remove_file(path);
    result.is_ok()
}

/// `e` again (an error is not `Clone`), keeping what kind it is for the
/// callers that tell them apart.
pub(crate) fn again(e: &StoreError) -> StoreError {
    match e {
        StoreError::NoSpace(m) => StoreError::NoSpace(m.clone()),
        e => StoreError::Backend(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failure_holds_until_a_success_or_the_probe() {
        let w = SpaceWatch::default();
        assert_eq!(w.check(100).await, None);
        w.failed(100);
        w.failed(105);
        assert_eq!(w.check(110).await, Some(100));
        // Without a probe, it holds HOLD_SECS after the last failure.
        assert_eq!(w.check(105 + HOLD_SECS).await, None);
        w.observe::<()>(&Err(StoreError::Backend("other".into())), 200);
        assert_eq!(w.check(200).await, None);
        w.observe::<()>(&Err(StoreError::NoSpace("full".into())), 200);
        assert_eq!(w.check(201).await, Some(200));
        w.observe(&Ok(()), 202);
        assert_eq!(w.check(202).await, None);

        let dir = tempfile::tempdir().unwrap();
        let w = SpaceWatch::with_probe(dir.path().to_path_buf());
        w.failed(100);
        // The directory has room: the probe clears it, and leaves nothing.
        assert_eq!(w.check(100).await, None);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let w = SpaceWatch::with_probe(dir.path().join("missing"));
        w.failed(100);
        assert_eq!(w.check(100).await, Some(100));
    }
}
