//! Limits kept in this process.

use crate::gcra::{self, Decision, Mode, Quota};
use crate::{Limiter, LimiterError};
use async_trait::async_trait;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;
/// A shard is swept of expired keys after this many insertions.
const SWEEP_EVERY: u32 = 4096;

struct Shard {
    tats: HashMap<String, u64>,
    locks: HashMap<String, u64>,
    inserts: u32,
}

/// See the module documentation. Time is read from a monotonic clock, or
/// from the caller with [`LocalLimiter::check_at`] in tests.
pub struct LocalLimiter {
    start: Instant,
    hasher: RandomState,
    shards: Vec<Mutex<Shard>>,
}

impl Default for LocalLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalLimiter {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            hasher: RandomState::new(),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        tats: HashMap::new(),
                        locks: HashMap::new(),
                        inserts: 0,
                    })
                })
                .collect(),
        }
    }

    fn now_us(&self) -> u64 {
        // Offset so that a new key's TAT of 0 is always in the past.
        self.start.elapsed().as_micros() as u64 + 3_600_000_000 * 24
    }

    fn shard(&self, key: &str) -> &Mutex<Shard> {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    /// [`Limiter::check`] at an explicit time (microseconds).
    pub fn check_at(&self, key: &str, quota: Quota, n: u64, mode: Mode, now: u64) -> Decision {
        if quota.is_unlimited() {
            return Decision::Allowed;
        }
        let mut shard = self.shard(key).lock().expect("limiter shard");
        let tat = shard.tats.get(key).copied().unwrap_or(0);
        let (decision, store) = gcra::step(quota, tat, now, n, mode);
        if let Some(new_tat) = store {
            match shard.tats.get_mut(key) {
                Some(t) => *t = new_tat,
                None => {
                    shard.tats.insert(key.to_string(), new_tat);
                    shard.inserts += 1;
                    if shard.inserts >= SWEEP_EVERY {
                        shard.inserts = 0;
                        shard.tats.retain(|_, t| *t > now);
                        shard.locks.retain(|_, until| *until > now);
                    }
                }
            }
        }
        decision
    }
}

#[async_trait]
impl Limiter for LocalLimiter {
    async fn check(
        &self,
        key: &str,
        quota: Quota,
        n: u64,
        mode: Mode,
    ) -> Result<Decision, LimiterError> {
        Ok(self.check_at(key, quota, n, mode, self.now_us()))
    }

    async fn lock(&self, key: &str, ttl: Duration) -> Result<(), LimiterError> {
        let until = self.now_us() + ttl.as_micros() as u64;
        self.shard(key)
            .lock()
            .expect("limiter shard")
            .locks
            .insert(key.to_string(), until);
        Ok(())
    }

    async fn is_locked(&self, key: &str) -> Result<bool, LimiterError> {
        let now = self.now_us();
        Ok(self
            .shard(key)
            .lock()
            .expect("limiter shard")
            .locks
            .get(key)
            .is_some_and(|until| *until > now))
    }

    fn backend(&self) -> String {
        "local".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_independent_and_expired_keys_are_swept() {
        let l = LocalLimiter::new();
        let q = Quota::per_second(1);
        assert!(l.check_at("a", q, 1, Mode::Consume, 1_000_000).is_allowed());
        assert!(!l.check_at("a", q, 1, Mode::Consume, 1_000_000).is_allowed());
        assert!(l.check_at("b", q, 1, Mode::Consume, 1_000_000).is_allowed());
        for i in 0..(SWEEP_EVERY * SHARDS as u32) {
            l.check_at(&format!("k{i}"), q, 1, Mode::Consume, 1_000_000);
        }
        // Much later every key has expired; a sweep drops them.
        for i in 0..(SWEEP_EVERY * SHARDS as u32 * 2) {
            l.check_at(&format!("j{i}"), q, 1, Mode::Consume, 100_000_000);
        }
        let total: usize = l.shards.iter().map(|s| s.lock().unwrap().tats.len()).sum();
        assert!(total < (SWEEP_EVERY as usize * SHARDS) * 3, "{total}");
    }

    #[tokio::test]
    async fn locks_expire() {
        let l = LocalLimiter::new();
        l.lock("ip:1", Duration::from_millis(30)).await.unwrap();
        assert!(l.is_locked("ip:1").await.unwrap());
        assert!(!l.is_locked("ip:2").await.unwrap());
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(!l.is_locked("ip:1").await.unwrap());
    }
}
