//! Concurrent connections per key on this node, released when the guard
//! is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// See the module documentation.
#[derive(Clone, Default)]
pub struct ConnectionCounter {
    counts: Arc<Mutex<HashMap<String, u64>>>,
}

/// Holds one slot until dropped.
pub struct ConnectionGuard {
    counts: Arc<Mutex<HashMap<String, u64>>>,
    key: String,
}

impl ConnectionCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Take a slot under `key` if fewer than `limit` are taken (`0`: no
    /// limit).
    pub fn try_acquire(&self, key: &str, limit: u64) -> Option<ConnectionGuard> {
        let mut counts = self.counts.lock().expect("connection counts");
        let n = counts.entry(key.to_string()).or_insert(0);
        if limit != 0 && *n >= limit {
            return None;
        }
        *n += 1;
        Some(ConnectionGuard {
            counts: self.counts.clone(),
            key: key.to_string(),
        })
    }

    /// Slots taken under `key`.
    pub fn count(&self, key: &str) -> u64 {
        self.counts
            .lock()
            .expect("connection counts")
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().expect("connection counts");
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_and_released() {
        let c = ConnectionCounter::new();
        let a = c.try_acquire("u", 2).unwrap();
        let _b = c.try_acquire("u", 2).unwrap();
        assert!(c.try_acquire("u", 2).is_none());
        assert!(c.try_acquire("v", 2).is_some());
        drop(a);
        assert_eq!(c.count("u"), 1);
        assert!(c.try_acquire("u", 2).is_some());
        assert!(c.try_acquire("w", 0).is_some());
    }
}
