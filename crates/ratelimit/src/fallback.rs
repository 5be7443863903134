//! Redis first, local limits while Redis is unreachable.

use crate::gcra::{Decision, Mode, Quota};
use crate::{Check, Limiter, LimiterError, LocalLimiter, RedisLimiter};
use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// See the module documentation. Degradation is logged once per change and
/// shown as the gauge `posthorn_ratelimit_degraded` (1 while on local).
pub struct FallbackLimiter {
    /// Set once a connection to Redis was made; until then, local limits.
    redis: Arc<OnceLock<RedisLimiter>>,
    local: LocalLimiter,
    degraded: AtomicBool,
}

impl FallbackLimiter {
    pub fn new(redis: RedisLimiter) -> Self {
        let cell = OnceLock::new();
        let _ = cell.set(redis);
        Self {
            redis: Arc::new(cell),
            local: LocalLimiter::new(),
            degraded: AtomicBool::new(false),
        }
    }

    /// Start on local limits and connect to Redis in the background,
    /// retrying every few seconds until it answers: a node whose Redis is
    /// down at start still starts.
    pub async fn connecting(url: String, prefix: String) -> Self {
        match RedisLimiter::connect(&url, &prefix).await {
            Ok(redis) => Self::new(redis),
            Err(e) => {
                tracing::warn!(error = %e, %url, "Redis unreachable at start: rate limits are per node until it answers");
                metrics::gauge!("posthorn_ratelimit_degraded").set(1.0);
                let cell: Arc<OnceLock<RedisLimiter>> = Arc::new(OnceLock::new());
                let slot = cell.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        if let Ok(redis) = RedisLimiter::connect(&url, &prefix).await {
                            tracing::info!("Redis reachable: rate limits are cluster-wide");
                            metrics::gauge!("posthorn_ratelimit_degraded").set(0.0);
                            let _ = slot.set(redis);
                            return;
                        }
                    }
                });
                Self {
                    redis: cell,
                    local: LocalLimiter::new(),
                    degraded: AtomicBool::new(true),
                }
            }
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

    fn redis(&self) -> Result<&RedisLimiter, LimiterError> {
        self.redis
            .get()
            .ok_or_else(|| LimiterError::Unavailable("not connected to Redis yet".into()))
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
        let r = match self.redis() {
            Ok(redis) => redis.check(key, quota, n, mode).await,
            Err(e) => Err(e),
        };
        self.note(&r);
        match r {
            Ok(d) => Ok(d),
            Err(_) => self.local.check(key, quota, n, mode).await,
        }
    }

    async fn check_all(&self, checks: &[Check]) -> Result<Vec<Decision>, LimiterError> {
        let r = match self.redis() {
            Ok(redis) => redis.check_all(checks).await,
            Err(e) => Err(e),
        };
        self.note(&r);
        match r {
            Ok(d) => Ok(d),
            Err(_) => self.local.check_all(checks).await,
        }
    }

    async fn lock(&self, key: &str, ttl: Duration) -> Result<(), LimiterError> {
        let r = match self.redis() {
            Ok(redis) => redis.lock(key, ttl).await,
            Err(e) => Err(e),
        };
        self.note(&r);
        // Keep a local copy too, so a lock holds while Redis is away.
        self.local.lock(key, ttl).await?;
        Ok(())
    }

    async fn is_locked(&self, key: &str) -> Result<bool, LimiterError> {
        let r = match self.redis() {
            Ok(redis) => redis.is_locked(key).await,
            Err(e) => Err(e),
        };
        self.note(&r);
        let local = self.local.is_locked(key).await?;
        Ok(local || r.unwrap_or(false))
    }

    /// While Redis is away every lease is granted: the node's own caps
    /// still hold.
    async fn acquire_lease(
        &self,
        key: &str,
        holder: &str,
        limit: u64,
        ttl: Duration,
    ) -> Result<bool, LimiterError> {
        let r = match self.redis() {
            Ok(redis) => redis.acquire_lease(key, holder, limit, ttl).await,
            Err(e) => Err(e),
        };
        self.note(&r);
        Ok(r.unwrap_or(true))
    }

    async fn renew_lease(
        &self,
        key: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<(), LimiterError> {
        match self.redis() {
            Ok(redis) => redis.renew_lease(key, holder, ttl).await,
            Err(e) => Err(e),
        }
    }

    async fn release_lease(&self, key: &str, holder: &str) -> Result<(), LimiterError> {
        match self.redis() {
            Ok(redis) => redis.release_lease(key, holder).await,
            Err(e) => Err(e),
        }
    }

    fn backend(&self) -> String {
        if self.degraded.load(Ordering::Relaxed) {
            "redis (degraded: local)".into()
        } else {
            "redis".into()
        }
    }
}
