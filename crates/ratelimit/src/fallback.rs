//! Redis first, local limits while Redis is unreachable.

use crate::gcra::{Decision, Mode, Quota};
use crate::{Limiter, LimiterError, LocalLimiter, RedisLimiter};
use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// See the module documentation. Degradation is logged once per change and
/// shown as the gauge `posthorn_ratelimit_degraded` (1 while on local).
pub struct FallbackLimiter {
    redis: RedisLimiter,
    local: LocalLimiter,
    degraded: AtomicBool,
}

impl FallbackLimiter {
    pub fn new(redis: RedisLimiter) -> Self {
        Self {
            redis,
            local: LocalLimiter::new(),
            degraded: AtomicBool::new(false),
        }
    }

    fn note<T>(&self, result: &Result<T, LimiterError>) {
        let failed = result.is_err();
        if self.degraded.swap(failed, Ordering::Relaxed) != failed {
            metrics::gauge!("posthorn_ratelimit_degraded").set(if failed { 1.0 } else { 0.0 });
            match result {
                Err(e) => {
                    tracing::warn!(error = %e, "Redis unreachable: rate limits are per node until it is back")
                }
                Ok(_) => tracing::info!("Redis reachable again: rate limits are cluster-wide"),
            }
        }
    }
}

#[async_trait]
impl Limiter for FallbackLimiter {
    async fn check(
        &self,
        key: &str,
        quota: Quota,
        n: u64,
        mode: Mode,
    ) -> Result<Decision, LimiterError> {
        let r = self.redis.check(key, quota, n, mode).await;
        self.note(&r);
        match r {
            Ok(d) => Ok(d),
            Err(_) => self.local.check(key, quota, n, mode).await,
        }
    }

    async fn lock(&self, key: &str, ttl: Duration) -> Result<(), LimiterError> {
        let r = self.redis.lock(key, ttl).await;
        self.note(&r);
        // Keep a local copy too, so a lock holds while Redis is away.
        self.local.lock(key, ttl).await?;
        Ok(())
    }

    async fn is_locked(&self, key: &str) -> Result<bool, LimiterError> {
        let r = self.redis.is_locked(key).await;
        self.note(&r);
        let local = self.local.is_locked(key).await?;
        Ok(local || r.unwrap_or(false))
    }

    fn backend(&self) -> String {
        if self.degraded.load(Ordering::Relaxed) {
            "redis (degraded: local)".into()
        } else {
            "redis".into()
        }
    }
}
