//! How many submissions wait for the store to commit them: counted by the
//! submitter around each commit, read by delivery, which holds its claims
//! back while sessions crowd the store (acceptance first;
//! `posthorn_delivery::engine`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Submissions waiting at once from which the store counts as crowded:
/// several sessions' messages in each group commit.
pub const CROWDED_AT: usize = 4;

/// The count (see the module documentation).
#[derive(Debug)]
pub struct Committing {
    waiting: AtomicUsize,
    /// When [`CROWDED_AT`] last waited at once, in microseconds since
    /// `since`, plus one (0: never).
    crowded: AtomicU64,
    since: Instant,
}

impl Default for Committing {
    fn default() -> Self {
        Self {
            waiting: AtomicUsize::new(0),
            crowded: AtomicU64::new(0),
            since: Instant::now(),
        }
    }
}

impl Committing {
    /// Count one submission until the guard is dropped.
    pub fn enter(&self) -> CommittingGuard<'_> {
        let waiting = self.waiting.fetch_add(1, Ordering::Relaxed) + 1;
        if waiting >= CROWDED_AT {
            let at = self.since.elapsed().as_micros() as u64 + 1;
            self.crowded.fetch_max(at, Ordering::Relaxed);
        }
        CommittingGuard(self)
    }

    /// Submissions waiting for their commit now.
    pub fn now(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Whether [`CROWDED_AT`] submissions wait now, or waited at once
    /// within `window`. The count itself falls to nothing whenever a group
    /// commit answers its batch, even while sessions keep the store busy;
    /// the window is what stays true through those moments.
    pub fn crowded_within(&self, window: Duration) -> bool {
        if self.now() >= CROWDED_AT {
            return true;
        }
        match self.crowded.load(Ordering::Relaxed) {
            0 => false,
            at => self.since.elapsed().as_micros() as u64 + 1 - at <= window.as_micros() as u64,
        }
    }
}

/// One submission waiting for its commit; counted until dropped.
#[derive(Debug)]
pub struct CommittingGuard<'a>(&'a Committing);

impl Drop for CommittingGuard<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_counts_until_dropped() {
        let c = Committing::default();
        let a = c.enter();
        let b = c.enter();
        assert_eq!(c.now(), 2);
        drop(a);
        assert_eq!(c.now(), 1);
        drop(b);
        assert_eq!(c.now(), 0);
    }

    #[test]
    fn crowded_stays_true_for_the_window_after_the_crowd() {
        let c = Committing::default();
        let few: Vec<_> = (0..CROWDED_AT - 1).map(|_| c.enter()).collect();
        assert!(
            !c.crowded_within(Duration::from_secs(60)),
            "fewer than CROWDED_AT"
        );
        let crowd = c.enter();
        std::thread::sleep(Duration::from_millis(20));
        assert!(c.crowded_within(Duration::from_millis(5)), "still waiting");
        drop(few);
        drop(crowd);
        assert_eq!(c.now(), 0);
        assert!(c.crowded_within(Duration::from_secs(60)));
        assert!(!c.crowded_within(Duration::from_millis(5)));
    }
}
