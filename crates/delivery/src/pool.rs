//! Open outbound connections, kept for reuse, with the caps on how many
//! there may be: in all, and to one destination address. Connections are
//! kept per destination (the scheduler's), so each one's can be counted.
//!
//! A connection counts against both caps from the moment it is opened
//! until it is closed, whether it is busy or idle in the pool. A task that
//! needs a connection to a host takes an idle one, else opens one within
//! the caps (closing an idle connection to another host when the total cap
//! is what stops it), else waits until one is handed back.

use crate::client::Connection;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Where a pooled connection goes and how it was set up (a connection set
/// up for one TLS policy is not reused for another).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// The destination it serves (the scheduler's name for it): connections
    /// are not shared between destinations, so each one's can be counted.
    pub place: Arc<str>,
    pub addr: SocketAddr,
    /// Distinguishes policies and credentials: `opportunistic`, `required`,
    /// `relay`.
    pub profile: &'static str,
}

/// A connection checked out of (or opened for) the pool.
pub struct Pooled {
    pub conn: Connection,
    /// Messages sent on it so far.
    pub used: usize,
    /// Whether it came from the pool (a reused connection may have been
    /// closed by the server while it was idle).
    pub reused: bool,
    _host: OwnedSemaphorePermit,
    _total: OwnedSemaphorePermit,
}

struct Idle {
    conn: Pooled,
    since: Instant,
}

#[derive(Default)]
struct HostState {
    idle: Vec<Idle>,
    permits: Option<Arc<Semaphore>>,
    /// Woken when a connection to this host is handed back or closed.
    returned: Arc<Notify>,
}

/// See the module documentation.
pub struct Pool {
    total: Arc<Semaphore>,
    per_host: usize,
    hosts: Mutex<HashMap<PoolKey, HostState>>,
}

/// What [`Pool::checkout`] gives: a connection to use, or the permits to
/// open one.
pub enum Checkout {
    Reuse(Pooled),
    Open(Permits),
}

/// The right to open one connection within the caps.
pub struct Permits {
    host: OwnedSemaphorePermit,
    total: OwnedSemaphorePermit,
}

impl Permits {
    /// Wrap a connection opened with these permits.
    pub fn into_pooled(self, conn: Connection) -> Pooled {
        Pooled {
            conn,
            used: 0,
            reused: false,
            _host: self.host,
            _total: self.total,
        }
    }
}

impl Pool {
    pub fn new(max_total: usize, max_per_host: usize) -> Self {
        Self {
            total: Arc::new(Semaphore::new(max_total.max(1))),
            per_host: max_per_host.max(1),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PoolKey, HostState>> {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle connection to `key`, or the permits to open one; waits while
    /// the host is at its cap.
    pub async fn checkout(&self, key: &PoolKey) -> Checkout {
        loop {
            let (host_sem, returned) = {
                let mut hosts = self.lock();
                let state = hosts.entry(key.clone()).or_default();
                if let Some(idle) = state.idle.pop() {
                    let mut conn = idle.conn;
                    conn.reused = true;
                    return Checkout::Reuse(conn);
                }
                let sem = state
                    .permits
                    .get_or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
                    .clone();
                (sem, state.returned.clone())
            };
            let notified = returned.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let host = match host_sem.clone().try_acquire_owned() {
                Ok(p) => p,
                // At the host's cap: a permit frees up when a connection
                // closes; a connection handed back is taken from the idle
                // list on the next turn.
                Err(_) => tokio::select! {
                    permit = host_sem.clone().acquire_owned() => match permit {
                        Ok(p) => p,
                        Err(_) => continue,
                    },
                    _ = notified => continue,
                },
            };
            let total = match self.total.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    if self.close_one_idle(key) {
                        continue;
                    }
                    match self.total.clone().acquire_owned().await {
                        Ok(p) => p,
                        Err(_) => continue,
                    }
                }
            };
            return Checkout::Open(Permits { host, total });
        }
    }

    /// Hand a connection back for reuse.
    pub fn checkin(&self, key: &PoolKey, conn: Pooled) {
        let mut hosts = self.lock();
        let state = hosts.entry(key.clone()).or_default();
        state.idle.push(Idle {
            conn,
            since: Instant::now(),
        });
        state.returned.notify_one();
    }

    /// Close the idle connection unused longest among hosts other than
    /// `except`; whether there was one.
    fn close_one_idle(&self, except: &PoolKey) -> bool {
        let victim = {
            let mut hosts = self.lock();
            let oldest = hosts
                .iter()
                .filter(|(k, s)| *k != except && !s.idle.is_empty())
                .min_by_key(|(_, s)| s.idle.first().map(|i| i.since))
                .map(|(k, _)| k.clone());
            oldest.and_then(|k| {
                let state = hosts.get_mut(&k)?;
                let idle = state.idle.remove(0);
                state.returned.notify_one();
                Some(idle.conn)
            })
        };
        match victim {
            Some(p) => {
                tokio::spawn(p.conn.quit());
                true
            }
            None => false,
        }
    }

    /// Close connections idle longer than `max_idle`.
    pub fn close_idle(&self, max_idle: Duration) {
        let mut stale = Vec::new();
        {
            let mut hosts = self.lock();
            for state in hosts.values_mut() {
                let before = state.idle.len();
                let (old, keep): (Vec<_>, Vec<_>) = state
                    .idle
                    .drain(..)
                    .partition(|i| i.since.elapsed() >= max_idle);
                state.idle = keep;
                if state.idle.len() != before {
                    state.returned.notify_waiters();
                }
                stale.extend(old);
            }
            hosts.retain(|_, s| {
                !s.idle.is_empty()
                    || s.permits
                        .as_ref()
                        .is_some_and(|p| p.available_permits() < self.per_host)
            });
        }
        for idle in stale {
            tokio::spawn(idle.conn.conn.quit());
        }
    }

    /// Connections open for the destination `place` now, busy or idle.
    pub fn open_for(&self, place: &str) -> usize {
        self.lock()
            .iter()
            .filter(|(k, _)| &*k.place == place)
            .filter_map(|(_, s)| s.permits.as_ref())
            .map(|p| self.per_host.saturating_sub(p.available_permits()))
            .sum()
    }

    /// Close every idle connection (shutdown).
    pub async fn close_all(&self) {
        let all: Vec<Idle> = {
            let mut hosts = self.lock();
            hosts.values_mut().flat_map(|s| s.idle.drain(..)).collect()
        };
        for idle in all {
            idle.conn.conn.quit().await;
        }
    }
}
