//! Connections a listener may hold at once: its own cap, within the
//! process's budget of file descriptors.
//!
//! Every accepted connection is a file descriptor, and so is everything
//! else the process opens (the store's files and connections, delivery's
//! outbound connections, DNS sockets, webhooks). When one listener's
//! connections take them all, `accept` fails with `EMFILE` everywhere and
//! the store cannot open a file. So the process counts the descriptors its
//! listeners hold against one [`FdBudget`] (the open-file limit less a
//! reserve for the rest), and each listener family (SMTP, HTTP) takes them
//! through a [`ConnectionCap`] of its own, smaller than the budget, so that
//! none can take what the others need. A listener that gets no slot
//! refuses the connection at once (SMTP `421 4.3.2`, HTTP 503) while
//! `accept` still works.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A count with a ceiling.
#[derive(Debug)]
struct Pool {
    used: AtomicU64,
    limit: u64,
}

impl Pool {
    fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicU64::new(0),
            limit,
        })
    }

    fn try_take(&self) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok()
    }

    fn give_back(&self) {
        self.used.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The file descriptors every listener of the process shares (see the
/// module documentation).
#[derive(Clone, Debug)]
pub struct FdBudget {
    pool: Arc<Pool>,
}

impl FdBudget {
    /// A budget of `total` descriptors for connections.
    pub fn new(total: u64) -> Self {
        Self {
            pool: Pool::new(total),
        }
    }

    /// The descriptors connections may hold in all.
    pub fn total(&self) -> u64 {
        self.pool.limit
    }

    /// The descriptors connections hold now.
    pub fn in_use(&self) -> u64 {
        self.pool.used.load(Ordering::Acquire)
    }

    /// A cap of `limit` connections drawn from this budget: a slot needs
    /// room under both.
    pub fn cap(&self, limit: u64) -> ConnectionCap {
        ConnectionCap {
            own: Pool::new(limit),
            budget: Some(self.pool.clone()),
        }
    }
}

/// The connections one listener family may hold at once (see the module
/// documentation).
#[derive(Clone)]
pub struct ConnectionCap {
    own: Arc<Pool>,
    budget: Option<Arc<Pool>>,
}

impl fmt::Debug for ConnectionCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionCap")
            .field("limit", &self.own.limit)
            .field("in_use", &self.in_use())
            .field("budget", &self.budget.as_ref().map(|b| b.limit))
            .finish()
    }
}

/// Why a [`ConnectionCap`] gave no slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapFull {
    /// The listener family's own cap.
    Cap,
    /// The process's file-descriptor budget.
    Budget,
}

/// One connection's slot, given back when dropped.
pub struct CapSlot {
    own: Arc<Pool>,
    budget: Option<Arc<Pool>>,
}

impl ConnectionCap {
    /// A cap of `limit` connections with no shared budget (`0`: no limit).
    pub fn new(limit: u64) -> Self {
        Self {
            own: Pool::new(if limit == 0 { u64::MAX } else { limit }),
            budget: None,
        }
    }

    /// Take a slot if the cap and the budget both have room.
    pub fn try_acquire(&self) -> Result<CapSlot, CapFull> {
        if !self.own.try_take() {
            return Err(CapFull::Cap);
        }
        if let Some(budget) = &self.budget {
            if !budget.try_take() {
                self.own.give_back();
                return Err(CapFull::Budget);
            }
        }
        Ok(CapSlot {
            own: self.own.clone(),
            budget: self.budget.clone(),
        })
    }

    /// The most slots this cap gives.
    pub fn limit(&self) -> u64 {
        self.own.limit
    }

    /// Slots taken now.
    pub fn in_use(&self) -> u64 {
        self.own.used.load(Ordering::Acquire)
    }
}

impl Drop for CapSlot {
    fn drop(&mut self) {
        self.own.give_back();
        if let Some(budget) = &self.budget {
            budget.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_without_budget_counts_alone() {
        let cap = ConnectionCap::new(2);
        let a = cap.try_acquire().unwrap();
        let _b = cap.try_acquire().unwrap();
        assert_eq!(cap.try_acquire().err(), Some(CapFull::Cap));
        drop(a);
        assert_eq!(cap.in_use(), 1);
        assert!(cap.try_acquire().is_ok());
        let unlimited = ConnectionCap::new(0);
        let held: Vec<_> = (0..1000)
            .map(|_| unlimited.try_acquire().unwrap())
            .collect();
        assert_eq!(unlimited.in_use(), 1000);
        drop(held);
        assert_eq!(unlimited.in_use(), 0);
    }

    #[test]
    fn one_family_cannot_take_the_whole_budget() {
        let budget = FdBudget::new(10);
        let smtp = budget.cap(7);
        let http = budget.cap(7);
        // HTTP takes all it may: its own cap stops it, 3 are left.
        let held: Vec<_> = (0..7).map(|_| http.try_acquire().unwrap()).collect();
        assert_eq!(http.try_acquire().err(), Some(CapFull::Cap));
        assert_eq!(budget.in_use(), 7);
        // SMTP still gets the rest, then the budget stops it.
        let smtp_held: Vec<_> = (0..3).map(|_| smtp.try_acquire().unwrap()).collect();
        assert_eq!(smtp.try_acquire().err(), Some(CapFull::Budget));
        // A refused slot took nothing.
        assert_eq!(smtp.in_use(), 3);
        assert_eq!(budget.in_use(), 10);
        drop(held);
        assert_eq!(budget.in_use(), 3);
        assert!(smtp.try_acquire().is_ok());
        drop(smtp_held);
        assert_eq!(budget.in_use(), 0);
    }
}

/// What an accept loop does after `accept` fails (out of descriptors and
/// the like; the connection waits in the backlog): wait from 5 ms,
/// doubling up to 200 ms, back to 5 ms after an accept succeeds; and say
/// so in the log at most once every 10 s.
#[derive(Debug)]
pub struct AcceptBackoff {
    next: std::time::Duration,
    log: LogThrottle,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self::new()
    }
}

impl AcceptBackoff {
    const FIRST: std::time::Duration = std::time::Duration::from_millis(5);
    const LONGEST: std::time::Duration = std::time::Duration::from_millis(200);

    pub const fn new() -> Self {
        Self {
            next: Self::FIRST,
            log: LogThrottle::new(),
        }
    }

    /// An accept succeeded.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// An accept failed: how long to wait before the next, and whether to
    /// log this one.
    pub fn failed(&mut self) -> (std::time::Duration, bool) {
        let wait = self.next;
        self.next = (self.next * 2).min(Self::LONGEST);
        (wait, self.log.ready())
    }
}

/// At most one log line every 10 s, for events that can come in floods
/// (refused connections, failing accepts).
#[derive(Debug)]
pub struct LogThrottle(AtomicU64);

impl Default for LogThrottle {
    fn default() -> Self {
        Self::new()
    }
}

impl LogThrottle {
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// Whether to log now.
    pub fn ready(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let before = self.0.load(Ordering::Relaxed);
        now >= before + 10
            && self
                .0
                .compare_exchange(before, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod backoff_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_wait_doubles_to_its_cap_and_resets_and_the_log_is_throttled() {
        let mut b = AcceptBackoff::new();
        let waits: Vec<u64> = (0..8).map(|_| b.failed().0.as_millis() as u64).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 200, 200]);
        b.reset();
        let (wait, _) = b.failed();
        assert_eq!(wait, Duration::from_millis(5));
        let log = LogThrottle::new();
        assert!(log.ready());
        assert!(!log.ready(), "not twice within 10 s");
    }
}
