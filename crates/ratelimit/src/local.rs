//! Limits kept in this process.

use crate::gcra::{self, Decision, Mode, Quota};
use crate::{Check, Limiter, LimiterError};
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

impl LocalLimiter {
    /// [`Limiter::check_all`] at an explicit time. Keys live in different
    /// shards, so the batch is gated but not atomic against concurrent
    /// batches on the same keys: at worst a limit is passed by the few
    /// events that raced.
    pub fn check_all_at(&self, checks: &[Check], now: u64) -> Vec<Decision> {
        let peeked: Vec<Decision> = checks
            .iter()
            .map(|c| {
                let mode = if c.mode == Mode::Consume {
                    Mode::Peek
                } else {
                    c.mode
                };
                if mode == Mode::Peek || mode == Mode::Force {
                    self.check_at(&c.key, c.quota, c.n, Mode::Peek, now)
                } else {
                    Decision::Allowed
                }
            })
            .collect();
        let gate_closed = checks
            .iter()
            .zip(&peeked)
            .any(|(c, d)| c.mode == Mode::Consume && !d.is_allowed());
        if gate_closed {
            return peeked;
        }
        checks
            .iter()
            .map(|c| self.check_at(&c.key, c.quota, c.n, c.mode, now))
            .collect()
    }
}

#[async_trait]
impl Limiter for LocalLimiter {
    async fn check_all(&self, checks: &[Check]) -> Result<Vec<Decision>, LimiterError> {
        Ok(self.check_all_at(checks, self.now_us()))
    }

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

    #[test]
    fn a_denied_consume_closes_the_gate_for_the_whole_batch() {
        let l = LocalLimiter::new();
        let now = 1_000_000;
        let one = Quota::per_hour(1);
        let batch = |mode_b| {
            vec![
                Check {
                    key: "a".into(),
                    quota: one,
                    n: 1,
                    mode: Mode::Consume,
                },
                Check {
                    key: "b".into(),
                    quota: one,
                    n: 1,
                    mode: mode_b,
                },
            ]
        };
        let d = l.check_all_at(&batch(Mode::Force), now);
        assert!(d.iter().all(Decision::is_allowed));
        // "a" is now full: the consume is denied and "c" is not booked.
        let d = l.check_all_at(
            &[
                Check {
                    key: "a".into(),
                    quota: one,
                    n: 1,
                    mode: Mode::Consume,
                },
                Check {
                    key: "c".into(),
                    quota: one,
                    n: 1,
                    mode: Mode::Force,
                },
            ],
            now,
        );
        assert!(!d[0].is_allowed());
        assert!(l.check_at("c", one, 1, Mode::Peek, now).is_allowed());
        // Refunds in a batch give both back.
        l.check_all_at(
            &[
                Check {
                    key: "a".into(),
                    quota: one,
                    n: 1,
                    mode: Mode::Refund,
                },
                Check {
                    key: "b".into(),
                    quota: one,
                    n: 1,
                    mode: Mode::Refund,
                },
            ],
            now,
        );
        assert!(l
            .check_all_at(&batch(Mode::Consume), now)
            .iter()
            .all(Decision::is_allowed));
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
