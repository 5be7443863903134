//! Limits kept in Redis, shared by every node.
//!
//! Checks run in a Lua script that does what
//! [`gcra::step`](crate::gcra::step) does, atomically, with the Redis
//! server's clock (`TIME`) as `now`, so every node agrees on the time. One
//! task sends every batch of checks waiting at that moment in a single
//! `EVALSHA` (as the store group-commits), so concurrent sessions share
//! round trips and Redis runs one script for many checks. The
//! TAT is stored under `prefix + key` as a decimal string of microseconds,
//! with a `PX` expiry of the time until it is in the past (plus 1 ms), so
//! idle keys go away on their own. Lockouts are plain keys with a `PX`
//! expiry.
//!
//! Checks of large limits are mostly answered on this node from room it
//! learned from Redis, and booked in Redis in bulk a moment later (see
//! [`crate::slices`]); small limits are checked exactly every time.
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
use crate::slices::{Route, Slices, FLUSH_EVERY};
use crate::{Check, Limiter, LimiterError};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

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

/// Many callers' batches in one script run. ARGV[1]: the number of groups;
/// then per group its number of checks, then per check cost (µs), period
/// (µs) and mode; KEYS hold the checks' keys in the same order. Each group is
/// gated on its own: when one of its `consume` checks is denied, nothing of
/// that group is stored. Returns `{allowed, retry_after_us}` per check, flat.
const GROUPS_LUA: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local MAX = 9007199254740992
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
local a, k = 2, 1
for g = 1, tonumber(ARGV[1]) do
  local n = tonumber(ARGV[a])
  a = a + 1
  local writes, gate = {}, true
  for i = 1, n do
    local key = KEYS[k]
    local cost, period, mode = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), ARGV[a + 2]
    k, a = k + 1, a + 3
    local stored = redis.call('GET', key)
    local tat = stored and tonumber(stored) or 0
    if tat < now then tat = now end
    local allowed, retry = 1, 0
    if mode == 'refund' then
      local v = tat - cost
      if v < now then v = now end
      writes[#writes + 1] = {key, v}
    else
      local new_tat = tat + cost
      if new_tat > MAX then new_tat = MAX end
      local allow_at = new_tat - period
      if allow_at > now then
        allowed, retry = 0, allow_at - now
        if mode == 'consume' then gate = false end
      end
      if mode == 'force' or (mode == 'consume' and allowed == 1) then
        writes[#writes + 1] = {key, new_tat}
      end
    end
    out[#out + 1] = allowed
    out[#out + 1] = retry
  end
  if gate then
    for _, w in ipairs(writes) do
      local ttl = math.floor((w[2] - now) / 1000) + 1
      redis.call('SET', w[1], string.format('%.0f', w[2]), 'PX', string.format('%.0f', ttl))
    end
  end
end
return out
"#;

/// Most groups one script run carries.
const MAX_GROUPS: usize = 256;

/// One caller's gated group of checks, waiting for the batch task.
struct Job {
    /// (prefixed key, cost µs, period µs, mode)
    checks: Vec<(String, u64, u64, &'static str)>,
    reply: oneshot::Sender<Result<Vec<(i64, i64)>, LimiterError>>,
}

/// Sends every group waiting at that moment in one script run, as the
/// store's writer does with commits: concurrent checks share a round trip
/// and Redis runs one script instead of many.
async fn batch_loop(
    mut conn: ConnectionManager,
    script: redis::Script,
    timeout: Duration,
    mut rx: mpsc::Receiver<Job>,
) {
    let mut jobs = Vec::with_capacity(MAX_GROUPS);
    while rx.recv_many(&mut jobs, MAX_GROUPS).await > 0 {
        // Callers that gave up waiting have fallen back to local limits.
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let mut invocation = script.prepare_invoke();
        invocation.arg(jobs.len());
        for job in &jobs {
            invocation.arg(job.checks.len());
            for (key, cost, period, mode) in &job.checks {
                invocation.key(key).arg(*cost).arg(*period).arg(*mode);
            }
        }
        let result: Result<Vec<i64>, LimiterError> =
            match tokio::time::timeout(timeout, invocation.invoke_async(&mut conn)).await {
                Ok(Ok(flat)) => Ok(flat),
                Ok(Err(e)) => Err(unavailable(e)),
                Err(_) => Err(unavailable(format!(
                    "no answer from Redis within {timeout:?}"
                ))),
            };
        let mut at = 0;
        for job in jobs.drain(..) {
            let n = job.checks.len();
            let answer = match &result {
                Ok(flat) => Ok((0..n)
                    .map(|i| {
                        let j = 2 * (at + i);
                        (
                            flat.get(j).copied().unwrap_or(0),
                            flat.get(j + 1).copied().unwrap_or(0),
                        )
                    })
                    .collect()),
                Err(e) => Err(unavailable(e)),
            };
            at += n;
            let _ = job.reply.send(answer);
        }
    }
}

/// One check as the script takes it: key, cost (µs), period (µs), mode.
fn job_check(key: &str, quota: Quota, n: u64, mode: Mode) -> (String, u64, u64, &'static str) {
    (
        key.to_string(),
        quota.emission_interval_us().saturating_mul(n).min(LUA_MAX),
        quota.period_us.min(LUA_MAX),
        mode_name(mode),
    )
}

/// Send one gated group to the batch task and wait, at most `timeout`, for
/// its `(allowed, retry_after_us)` answers.
async fn send(
    batches: &mpsc::Sender<Job>,
    checks: Vec<(String, u64, u64, &'static str)>,
    timeout: Duration,
) -> Result<Vec<(i64, i64)>, LimiterError> {
    let (reply, answer) = oneshot::channel();
    let job = Job { checks, reply };
    tokio::time::timeout(timeout, async {
        batches
            .send(job)
            .await
            .map_err(|_| unavailable("the Redis batch task has stopped"))?;
        answer
            .await
            .map_err(|_| unavailable("the Redis batch task has stopped"))?
    })
    .await
    .map_err(|_| unavailable(format!("no answer from Redis within {timeout:?}")))?
}

/// Most checks one flush sends in one group.
const FLUSH_CHUNK: usize = 512;

/// Books the bookings [`Slices`] answered on this node in Redis, every
/// [`FLUSH_EVERY`], until the limiter is dropped. What Redis does not take
/// is kept for the next round.
async fn flush_loop(slices: Weak<Slices>, batches: mpsc::Sender<Job>, timeout: Duration) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(slices) = slices.upgrade() else {
            return;
        };
        let now = Instant::now();
        let mut drained = slices.drain(now);
        while !drained.is_empty() {
            let rest = drained.split_off(drained.len().min(FLUSH_CHUNK));
            let sent = drained
                .iter()
                .map(|c| job_check(&c.key, c.quota, c.n, c.mode))
                .collect();
            if let Err(e) = send(&batches, sent, timeout).await {
                tracing::debug!(error = %e, "pending rate-limit bookings kept for the next flush");
                slices.restore(drained, now);
                slices.restore(rest, now);
                break;
            }
            drained = rest;
        }
    }
}

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

/// See the module documentation.
pub struct RedisLimiter {
    conn: ConnectionManager,
    prefix: String,
    lease_script: redis::Script,
    batches: mpsc::Sender<Job>,
    call_timeout: Duration,
    /// Room in large limits known here (see [`crate::slices`]).
    slices: Arc<Slices>,
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
        let (batches, rx) = mpsc::channel(4096);
        tokio::spawn(batch_loop(
            conn.clone(),
            redis::Script::new(GROUPS_LUA),
            CALL_TIMEOUT,
            rx,
        ));
        let slices = Arc::new(Slices::default());
        tokio::spawn(flush_loop(
            Arc::downgrade(&slices),
            batches.clone(),
            CALL_TIMEOUT,
        ));
        Ok(Self {
            slices,
            conn,
            prefix: prefix.to_string(),
            lease_script: redis::Script::new(LEASE_LUA),
            batches,
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
        let check = Check {
            key: key.to_string(),
            quota,
            n,
            mode,
        };
        Ok(self.check_all(std::slice::from_ref(&check)).await?[0])
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
        let mut decisions = vec![Decision::Allowed; checks.len()];
        let keys: Vec<String> = checks.iter().map(|c| self.key(&c.key)).collect();
        let now = Instant::now();
        let routes = self.slices.route(&keys, checks, now);
        let mut sent = Vec::new();
        for ((key, c), route) in keys.iter().zip(checks).zip(&routes) {
            match *route {
                Route::Free | Route::Local => {}
                Route::Exact { n } => sent.push(job_check(key, c.quota, n, c.mode)),
                Route::Learn { slice, carried } => {
                    let n = c.n.saturating_add(carried);
                    sent.push(job_check(key, c.quota, n, c.mode));
                    let probe = n.saturating_add(slice);
                    sent.push(job_check(key, c.quota, probe, Mode::Peek));
                }
            }
        }
        if sent.is_empty() {
            return Ok(decisions);
        }
        let answers = match send(&self.batches, sent, self.call_timeout).await {
            Ok(a) => a,
            Err(e) => {
                self.slices.undo(&keys, checks, &routes, now);
                return Err(e);
            }
        };
        let denied = |(allowed, retry): (i64, i64)| {
            (allowed != 1).then_some(Decision::Denied {
                retry_after_us: retry.max(0) as u64,
            })
        };
        let mut answers = answers.into_iter();
        let mut booked = true;
        let mut learned = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            let answer = match *route {
                Route::Free | Route::Local => continue,
                Route::Exact { .. } => answers.next(),
                Route::Learn { slice, .. } => {
                    let answer = answers.next();
                    let peek = answers.next().and_then(denied);
                    learned.push((i, if peek.is_none() { slice } else { 0 }));
                    answer
                }
            };
            if let Some(d) = answer.and_then(denied) {
                decisions[i] = d;
                booked &= checks[i].mode != Mode::Consume;
            }
        }
        if booked {
            for (i, room) in learned {
                self.slices.learn(&keys[i], checks[i].quota, room, now);
            }
        } else {
            self.slices.undo(&keys, checks, &routes, now);
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
