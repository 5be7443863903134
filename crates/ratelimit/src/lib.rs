//! Rate limits and abuse protection.
//!
//! [`Limiter`] is the one interface: GCRA checks by key ([`gcra`] holds the
//! arithmetic, a pure function of the time) and lockouts. [`LocalLimiter`]
//! keeps the state in this process; [`RedisLimiter`] keeps it in Redis so a
//! cluster shares it (atomic in a Lua script; concurrent checks share one
//! script run; large limits are mostly answered from room this node
//! learned, see [`slices`]);
//! [`FallbackLimiter`] uses Redis and falls back to local limits while Redis
//! is unreachable. [`ConnectionCounter`] caps concurrent connections per key
//! on this node; [`ConnectionCap`] a listener's connections in all, within
//! the process's [`FdBudget`] of file descriptors.

mod conns;
mod fallback;
mod fds;
pub mod gcra;
mod local;
mod redis_limiter;
pub mod slices;

pub use conns::{ConnectionCounter, ConnectionGuard};
pub use fallback::FallbackLimiter;
pub use fds::{AcceptBackoff, CapFull, CapSlot, ConnectionCap, FdBudget, LogThrottle};
pub use gcra::{Decision, Mode, Quota};
pub use local::LocalLimiter;
pub use redis_limiter::RedisLimiter;

use async_trait::async_trait;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error("rate-limit backend unavailable: {0}")]
    Unavailable(String),
}

/// See the crate documentation. Keys are plain strings; callers build them
/// from the thing limited (`mps:<account id>`, `pair:<account>:<from>:<to>`).
#[async_trait]
pub trait Limiter: Send + Sync + 'static {
    /// One GCRA check of `n` events against `quota` under `key`.
    async fn check(
        &self,
        key: &str,
        quota: Quota,
        n: u64,
        mode: Mode,
    ) -> Result<Decision, LimiterError>;
    /// Several checks in one step (one script run for Redis). Gated: when a
    /// [`Mode::Consume`] check is denied, nothing in the batch is booked,
    /// not even its [`Mode::Force`] checks. Returns one decision per check.
    async fn check_all(&self, checks: &[Check]) -> Result<Vec<Decision>, LimiterError>;
    /// Lock `key` for `ttl` (e.g. an address after too many failed logins).
    async fn lock(&self, key: &str, ttl: Duration) -> Result<(), LimiterError>;
    /// Whether `key` is locked now.
    async fn is_locked(&self, key: &str) -> Result<bool, LimiterError>;
    /// Take one of `limit` slots under `key` shared by every node, for
    /// `holder` until `ttl` passes without a renewal: a crashed node's
    /// slots free themselves. `Ok(false)` when every slot is taken. A
    /// backend without shared state grants every request (the node's own
    /// [`ConnectionCounter`] still applies).
    async fn acquire_lease(
        &self,
        key: &str,
        holder: &str,
        limit: u64,
        ttl: Duration,
    ) -> Result<bool, LimiterError> {
        let _ = (key, holder, limit, ttl);
        Ok(true)
    }
    /// Keep `holder`'s slot for another `ttl`.
    async fn renew_lease(
        &self,
        key: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<(), LimiterError> {
        let _ = (key, holder, ttl);
        Ok(())
    }
    /// Give `holder`'s slot back.
    async fn release_lease(&self, key: &str, holder: &str) -> Result<(), LimiterError> {
        let _ = (key, holder);
        Ok(())
    }
    /// `local`, `redis`, or `redis (degraded: local)`.
    fn backend(&self) -> String;
}

/// One check of a batch for [`Limiter::check_all`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub key: String,
    pub quota: Quota,
    pub n: u64,
    pub mode: Mode,
}

/// Count one refusal by limit name (Prometheus counter
/// `posthorn_limit_refusals_total{limit=...}`).
pub fn count_refusal(limit: &'static str) {
    metrics::counter!("posthorn_limit_refusals_total", "limit" => limit).increment(1);
}
