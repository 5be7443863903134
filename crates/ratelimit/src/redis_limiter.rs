//! Limits kept in Redis, shared by every node.
//!
//! Each check is one `EVALSHA` of a Lua script that does what
//! [`gcra::step`](crate::gcra::step) does, atomically, with the Redis
//! server's clock (`TIME`) as `now`, so every node agrees on the time. The
//! TAT is stored under `prefix + key` as a decimal string of microseconds,
//! with a `PX` expiry of the time until it is in the past (plus 1 ms), so
//! idle keys go away on their own. Lockouts are plain keys with a `PX`
//! expiry.
//!
//! Every call has a short deadline ([`CALL_TIMEOUT`] by default): a Redis
//! that is slow or gone gives [`LimiterError::Unavailable`] quickly, and
//! [`FallbackLimiter`](crate::FallbackLimiter) answers from local limits.
//!
//! Lua numbers are doubles: times and costs are exact up to 2^53 µs (the
//! year 2255 on the Unix clock), and the script saturates there where
//! [`gcra::step`](crate::gcra::step) saturates at `u64::MAX`. Only absurd
//! quotas or counts (a booking centuries ahead) tell the two apart, and
//! then both deny.

use crate::gcra::{Decision, Mode, Quota};
use crate::{Check, Limiter, LimiterError};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::future::Future;
use std::time::Duration;

/// Default deadline of one call (check, lock, is_locked).
pub const CALL_TIMEOUT: Duration = Duration::from_millis(250);
/// Deadline of [`RedisLimiter::connect`], retries included.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Deadline of one TCP (+ handshake) connection attempt, also on reconnects.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(500);
/// Pause between connection attempts in [`RedisLimiter::connect`].
const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The largest integer a Lua number (a double) holds exactly.
const LUA_MAX: u64 = 1 << 53;

/// A gated batch of checks: KEYS[i] with ARGV[3i-2..3i] = cost, period,
/// mode, as in [`CHECK_LUA`]. When a `consume` is denied nothing is stored.
/// Returns `{allowed_1, retry_1, allowed_2, retry_2, ...}`.
const CHECK_ALL_LUA: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local MAX = 9007199254740992
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out, writes, gate = {}, {}, true
for i = 1, #KEYS do
  local cost = tonumber(ARGV[3 * i - 2])
  local period = tonumber(ARGV[3 * i - 1])
  local mode = ARGV[3 * i]
  local stored = redis.call('GET', KEYS[i])
  local tat = stored and tonumber(stored) or 0
  if tat < now then tat = now end
  if mode == 'refund' then
    local v = tat - cost
    if v < now then v = now end
    writes[#writes + 1] = {KEYS[i], v}
    out[#out + 1] = 1
    out[#out + 1] = 0
  else
    local new_tat = tat + cost
    if new_tat > MAX then new_tat = MAX end
    local allow_at = new_tat - period
    local allowed, retry = 1, 0
    if allow_at > now then
      allowed = 0
      retry = allow_at - now
      if mode == 'consume' then gate = false end
    end
    if mode == 'force' or (mode == 'consume' and allowed == 1) then
      writes[#writes + 1] = {KEYS[i], new_tat}
    end
    out[#out + 1] = allowed
    out[#out + 1] = retry
  end
end
if gate then
  for _, w in ipairs(writes) do
    local ttl = math.floor((w[2] - now) / 1000) + 1
    redis.call('SET', w[1], string.format('%.0f', w[2]), 'PX', string.format('%.0f', ttl))
  end
end
return out
"#;

/// Leases: KEYS[1] is a sorted set of holders scored by expiry (ms of the
/// Redis clock). ARGV[1]: holder, ARGV[2]: ttl (ms), ARGV[3]: limit (0 for a
/// renewal, which only extends a lease still held). Returns 1 when held.
const LEASE_LUA: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
if held or (limit > 0 and redis.call('ZCARD', KEYS[1]) < limit) then
  redis.call('ZADD', KEYS[1], string.format('%.0f', now + ttl), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl)
  return 1
end
return 0
"#;

/// KEYS[1]: the key. ARGV[1]: cost (µs, `interval * n`), ARGV[2]: period
/// (µs), ARGV[3]: mode (`consume`, `peek`, `force`, `refund`).
/// Returns `{allowed (0/1), retry_after_us}`.
const CHECK_LUA: &str = r#"
-- Redis < 7 replicates scripts verbatim unless told otherwise, and refuses
-- writes after a non-deterministic command such as TIME. Redis 7 always
-- replicates effects (and keeps this call as a no-op).
if redis.replicate_commands then redis.replicate_commands() end

local MAX = 9007199254740992 -- 2^53: above it doubles skip integers
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cost = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local mode = ARGV[3]

local stored = redis.call('GET', KEYS[1])
local tat = stored and tonumber(stored) or 0
if tat < now then tat = now end

-- '%.0f' prints every integer below 2^53 exactly; tostring() and Redis's
-- own number conversion may use exponent notation.
local function store(v)
  local ttl = math.floor((v - now) / 1000) + 1
  redis.call('SET', KEYS[1], string.format('%.0f', v), 'PX', string.format('%.0f', ttl))
end

if mode == 'refund' then
  local v = tat - cost
  if v < now then v = now end
  store(v)
  return {1, 0}
end

local new_tat = tat + cost
if new_tat > MAX then new_tat = MAX end
local allow_at = new_tat - period
local allowed = 1
local retry = 0
if allow_at > now then
  allowed = 0
  retry = allow_at - now
end
if mode == 'force' or (mode == 'consume' and allowed == 1) then
  store(new_tat)
end
return {allowed, retry}
"#;

/// See the module documentation.
pub struct RedisLimiter {
    conn: ConnectionManager,
    prefix: String,
    check_script: redis::Script,
    lease_script: redis::Script,
    check_all_script: redis::Script,
    call_timeout: Duration,
}

fn unavailable(e: impl std::fmt::Display) -> LimiterError {
    LimiterError::Unavailable(e.to_string())
}

impl RedisLimiter {
    /// Connect to `url` (`redis://host:port/db`); keys get `prefix`.
    ///
    /// Gives up with [`LimiterError::Unavailable`] after [`CONNECT_TIMEOUT`].
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, LimiterError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        // Each (re)connection is one attempt with its own deadline. The
        // manager's own backoff starts at 1 s and grows by `factor` (100 by
        // default) per retry, so a reconnect after an outage could sit in a
        // sleep for a minute after Redis is back; with no retries, the next
        // call after a failed attempt starts a fresh one instead.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(ATTEMPT_TIMEOUT)
            .set_response_timeout(CALL_TIMEOUT);
        let attempts = async {
            loop {
                match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
                    Ok(conn) => return Ok(conn),
                    Err(e) if e.is_io_error() => {
                        tracing::debug!(error = %e, "Redis not reachable yet; retrying");
                        tokio::time::sleep(CONNECT_RETRY_PAUSE).await;
                    }
                    // Bad credentials, wrong protocol and such: retrying won't help.
                    Err(e) => return Err(unavailable(e)),
                }
            }
        };
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, attempts)
            .await
            .map_err(|_| {
                unavailable(format!("no connection to Redis within {CONNECT_TIMEOUT:?}"))
            })??;
        Ok(Self {
            conn,
            prefix: prefix.to_string(),
            check_script: redis::Script::new(CHECK_LUA),
            lease_script: redis::Script::new(LEASE_LUA),
            check_all_script: redis::Script::new(CHECK_ALL_LUA),
            call_timeout: CALL_TIMEOUT,
        })
    }

    /// Use `timeout` instead of [`CALL_TIMEOUT`] as the deadline of a call.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    fn key(&self, key: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + key.len());
        k.push_str(&self.prefix);
        k.push_str(key);
        k
    }

    /// Take or extend a lease (limit 0: extend only).
    async fn lease(
        &self,
        key: &str,
        holder: &str,
        limit: u64,
        ttl: Duration,
    ) -> Result<bool, LimiterError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.lease_script.prepare_invoke();
        invocation
            .key(self.key(key))
            .arg(holder)
            .arg(ttl.as_millis().max(1) as u64)
            .arg(limit);
        let held: i64 = self.call(invocation.invoke_async(&mut conn)).await?;
        Ok(held == 1)
    }

    /// Run one Redis call under the deadline; every failure is `Unavailable`.
    async fn call<T>(
        &self,
        op: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, LimiterError> {
        match tokio::time::timeout(self.call_timeout, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable(format!(
                "no answer from Redis within {:?}",
                self.call_timeout
            ))),
        }
    }
}

#[async_trait]
impl Limiter for RedisLimiter {
    async fn check(
        &self,
        key: &str,
        quota: Quota,
        n: u64,
        mode: Mode,
    ) -> Result<Decision, LimiterError> {
        if quota.is_unlimited() {
            return Ok(Decision::Allowed);
        }
        let cost = quota.emission_interval_us().saturating_mul(n).min(LUA_MAX);
        let period = quota.period_us.min(LUA_MAX);
        let mode = mode_name(mode);
        let mut conn = self.conn.clone();
        let mut invocation = self.check_script.prepare_invoke();
        invocation
            .key(self.key(key))
            .arg(cost)
            .arg(period)
            .arg(mode);
        let (allowed, retry_after_us): (i64, i64) =
            self.call(invocation.invoke_async(&mut conn)).await?;
        Ok(if allowed == 1 {
            Decision::Allowed
        } else {
            Decision::Denied {
                retry_after_us: retry_after_us.max(0) as u64,
            }
        })
    }

    async fn lock(&self, key: &str, ttl: Duration) -> Result<(), LimiterError> {
        // As in LocalLimiter, a lock of no time locks nothing (and Redis
        // refuses PX 0). Round up to whole milliseconds; cap far in the
        // future so Redis does not refuse an absurd expiry.
        let ms = ttl.as_micros().div_ceil(1000).min(LUA_MAX as u128) as u64;
        if ms == 0 {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("SET")
            .arg(self.key(key))
            .arg(1)
            .arg("PX")
            .arg(ms)
            .to_owned();
        self.call(cmd.query_async::<()>(&mut conn)).await
    }

    async fn check_all(&self, checks: &[Check]) -> Result<Vec<Decision>, LimiterError> {
        // Unlimited quotas are answered here and never sent.
        let sent: Vec<usize> = (0..checks.len())
            .filter(|&i| !checks[i].quota.is_unlimited())
            .collect();
        let mut decisions = vec![Decision::Allowed; checks.len()];
        if sent.is_empty() {
            return Ok(decisions);
        }
        let mut conn = self.conn.clone();
        let mut invocation = self.check_all_script.prepare_invoke();
        for &i in &sent {
            let c = &checks[i];
            invocation
                .key(self.key(&c.key))
                .arg(
                    c.quota
                        .emission_interval_us()
                        .saturating_mul(c.n)
                        .min(LUA_MAX),
                )
                .arg(c.quota.period_us.min(LUA_MAX))
                .arg(mode_name(c.mode));
        }
        let flat: Vec<i64> = self.call(invocation.invoke_async(&mut conn)).await?;
        for (j, &i) in sent.iter().enumerate() {
            if flat.get(2 * j) != Some(&1) {
                decisions[i] = Decision::Denied {
                    retry_after_us: flat.get(2 * j + 1).copied().unwrap_or(0).max(0) as u64,
                };
            }
        }
        Ok(decisions)
    }

    async fn is_locked(&self, key: &str) -> Result<bool, LimiterError> {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("EXISTS").arg(self.key(key)).to_owned();
        self.call(cmd.query_async::<bool>(&mut conn)).await
    }

    async fn acquire_lease(
        &self,
        key: &str,
        holder: &str,
        limit: u64,
        ttl: Duration,
    ) -> Result<bool, LimiterError> {
        if limit == 0 {
            return Ok(true);
        }
        self.lease(key, holder, limit, ttl).await
    }

    async fn renew_lease(
        &self,
        key: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<(), LimiterError> {
        self.lease(key, holder, 0, ttl).await.map(|_| ())
    }

    async fn release_lease(&self, key: &str, holder: &str) -> Result<(), LimiterError> {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("ZREM").arg(self.key(key)).arg(holder).to_owned();
        self.call(cmd.query_async::<i64>(&mut conn))
            .await
            .map(|_| ())
    }

    fn backend(&self) -> String {
        "redis".into()
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Consume => "consume",
        Mode::Peek => "peek",
        Mode::Force => "force",
        Mode::Refund => "refund",
    }
}
