//! `RedisLimiter` against a real Redis at `REDIS_URL` (each test is skipped
//! when it is not set), and `FallbackLimiter` against a throwaway
//! `redis-server` this test starts, stops and restarts.

use posthorn_ratelimit::{
    slices, Decision, FallbackLimiter, Limiter, LocalLimiter, Mode, Quota, RedisLimiter,
};
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn redis_url() -> Option<String> {
    match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            println!("skipped: REDIS_URL is not set (e.g. REDIS_URL=redis://127.0.0.1:6379)");
            None
        }
    }
}

/// A random number (no `rand` among the dev-dependencies).
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    RandomState::new().hash_one((
        nanos,
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
    ))
}

/// A key prefix no other test (or run) uses.
fn unique_prefix(test: &str) -> String {
    format!("posthorn-test:{test}:{:016x}:", random_u64())
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn pttl(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(conn).await.unwrap()
}

async fn exists(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap()
}

/// Redis's clock in microseconds.
async fn server_time_us(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME").query_async(conn).await.unwrap();
    s * 1_000_000 + us
}

fn retry_after(d: Decision) -> u64 {
    match d {
        Decision::Denied { retry_after_us } => retry_after_us,
        Decision::Allowed => panic!("expected a denial"),
    }
}

#[tokio::test]
async fn a_burst_of_the_limit_then_denied_for_about_an_interval() {
    let Some(url) = redis_url() else { return };
    let l = RedisLimiter::connect(&url, &unique_prefix("burst"))
        .await
        .unwrap();
    assert_eq!(l.backend(), "redis");
    // 20 per minute: one every 3 s, so the test's own run time hardly matters.
    let q = Quota::per_minute(20);
    let start = Instant::now();
    for i in 0..20 {
        assert!(
            l.check("acct", q, 1, Mode::Consume)
                .await
                .unwrap()
                .is_allowed(),
            "event {i}"
        );
    }
    let d = l.check("acct", q, 1, Mode::Consume).await.unwrap();
    let elapsed = start.elapsed().as_micros() as u64;
    let retry = retry_after(d);
    assert!(
        retry <= 3_000_000 && retry + elapsed + 1_000 >= 3_000_000,
        "retry after {retry} µs"
    );
    // A refused check books nothing: still one interval, not two.
    let again = retry_after(l.check("acct", q, 1, Mode::Consume).await.unwrap());
    assert!(again <= retry, "{again} > {retry}");
    // Keys are independent; more than the burst at once is never allowed.
    assert!(l
        .check("other", q, 20, Mode::Consume)
        .await
        .unwrap()
        .is_allowed());
    assert!(!l
        .check("third", q, 21, Mode::Consume)
        .await
        .unwrap()
        .is_allowed());
}

#[tokio::test]
async fn peek_books_nothing() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("peek");
    let l = RedisLimiter::connect(&url, &prefix).await.unwrap();
    let mut conn = raw(&url).await;
    let q = Quota::per_hour(2);
    for _ in 0..5 {
        assert!(l.check("k", q, 2, Mode::Peek).await.unwrap().is_allowed());
    }
    assert!(!l.check("k", q, 3, Mode::Peek).await.unwrap().is_allowed());
    assert!(
        !exists(&mut conn, &format!("{prefix}k")).await,
        "peek wrote the key"
    );
    assert!(l
        .check("k", q, 1, Mode::Consume)
        .await
        .unwrap()
        .is_allowed());
    assert!(l.check("k", q, 1, Mode::Peek).await.unwrap().is_allowed());
    assert!(l
        .check("k", q, 1, Mode::Consume)
        .await
        .unwrap()
        .is_allowed());
    assert!(!l.check("k", q, 1, Mode::Peek).await.unwrap().is_allowed());
    assert!(!l
        .check("k", q, 1, Mode::Consume)
        .await
        .unwrap()
        .is_allowed());
}

#[tokio::test]
async fn force_books_past_the_limit() {
    let Some(url) = redis_url() else { return };
    let l = RedisLimiter::connect(&url, &unique_prefix("force"))
        .await
        .unwrap();
    // 2 per hour: one every 30 minutes.
    let q = Quota::per_hour(2);
    let half_hour = 1_800_000_000u64;
    assert!(l.check("k", q, 1, Mode::Force).await.unwrap().is_allowed());
    assert!(l.check("k", q, 1, Mode::Force).await.unwrap().is_allowed());
    // Past the limit Force says no, and books anyway.
    let r = retry_after(l.check("k", q, 1, Mode::Force).await.unwrap());
    assert!(r <= half_hour && r > half_hour - 1_000_000, "{r}");
    // Three booked, so one more fits only after an hour.
    let r = retry_after(l.check("k", q, 1, Mode::Peek).await.unwrap());
    assert!(r <= 2 * half_hour && r > 2 * half_hour - 1_000_000, "{r}");
}

#[tokio::test]
async fn refund_gives_back_but_not_more_than_a_full_bucket() {
    let Some(url) = redis_url() else { return };
    let l = RedisLimiter::connect(&url, &unique_prefix("refund"))
        .await
        .unwrap();
    let q = Quota::per_hour(2);
    assert!(l
        .check("k", q, 2, Mode::Consume)
        .await
        .unwrap()
        .is_allowed());
    assert!(!l
        .check("k", q, 1, Mode::Consume)
        .await
        .unwrap()
        .is_allowed());
    assert!(l.check("k", q, 1, Mode::Refund).await.unwrap().is_allowed());
    assert!(l
        .check("k", q, 1, Mode::Consume)
        .await
        .unwrap()
        .is_allowed());
    assert!(!l
        .check("k", q, 1, Mode::Consume)
        .await
        .unwrap()
        .is_allowed());
    // Refunding more than was booked empties the bucket, no more.
    l.check("k", q, 10, Mode::Refund).await.unwrap();
    assert!(l
        .check("k", q, 2, Mode::Consume)
        .await
        .unwrap()
        .is_allowed());
    assert!(!l
        .check("k", q, 1, Mode::Consume)
        .await
        .unwrap()
        .is_allowed());
}

#[tokio::test]
async fn no_limit_touches_nothing() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("unlimited");
    let l = RedisLimiter::connect(&url, &prefix).await.unwrap();
    let mut conn = raw(&url).await;
    for mode in [Mode::Consume, Mode::Force, Mode::Peek, Mode::Refund] {
        for _ in 0..50 {
            assert!(l
                .check("k", Quota::per_second(0), 1_000, mode)
                .await
                .unwrap()
                .is_allowed());
        }
    }
    assert!(!exists(&mut conn, &format!("{prefix}k")).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_are_held_together_to_the_limit() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("nodes");
    let a = Arc::new(RedisLimiter::connect(&url, &prefix).await.unwrap());
    let b = Arc::new(RedisLimiter::connect(&url, &prefix).await.unwrap());
    let q = Quota::per_second(20);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move {
            node.check("shared", q, 1, Mode::Consume)
                .await
                .unwrap()
                .is_allowed()
        });
    }
    let mut allowed = 0u64;
    while let Some(r) = tasks.join_next().await {
        allowed += u64::from(r.unwrap());
    }
    let elapsed = start.elapsed();
    // A burst of 20, plus one per 50 ms that passed while the calls ran.
    let slack = elapsed.as_micros() as u64 / q.emission_interval_us() + 1;
    println!("{allowed} of 50 allowed in {elapsed:?} (slack {slack})");
    assert!(
        (20..=20 + slack).contains(&allowed),
        "{allowed} allowed in {elapsed:?}"
    );
    // Two LocalLimiters, one per node, would have let through 40.
}

/// A small deterministic generator for the differential test.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[tokio::test]
async fn the_same_operations_give_the_same_decisions_as_local() {
    let Some(url) = redis_url() else { return };
    let redis = RedisLimiter::connect(&url, &unique_prefix("differential"))
        .await
        .unwrap();
    let local = LocalLimiter::new();
    // One event per 6 minutes: the test's run time (well below one
    // interval) cannot move a decision, since every TAT is a whole number
    // of intervals after a "now" within the run.
    let q = Quota::per_hour(10);
    let local_now = 10_000_000_000_000u64;
    let seed = random_u64() | 1;
    println!("seed {seed:#x}");
    let mut rng = XorShift(seed);
    let keys = ["a", "b", "c"];
    let start = Instant::now();
    let (mut allowed, mut denied) = (0, 0);
    for i in 0..400 {
        let mode = match rng.below(10) {
            0..=4 => Mode::Consume,
            5 | 6 => Mode::Peek,
            7 => Mode::Force,
            _ => Mode::Refund,
        };
        let n = rng.below(5);
        let key = keys[rng.below(keys.len() as u64) as usize];
        let expected = local.check_at(key, q, n, mode, local_now);
        let got = redis.check(key, q, n, mode).await.unwrap();
        let elapsed = start.elapsed().as_micros() as u64;
        let what = format!("op {i}: {mode:?} {n} on {key} (seed {seed:#x})");
        match (expected, got) {
            (Decision::Allowed, Decision::Allowed) => allowed += 1,
            (Decision::Denied { retry_after_us: l }, Decision::Denied { retry_after_us: r }) => {
                // Redis's clock moved on since the bookings; the local one did not.
                assert!(
                    r <= l && l - r <= elapsed + 1_000,
                    "{what}: local {l}, redis {r}"
                );
                denied += 1;
            }
            _ => panic!("{what}: local {expected:?}, redis {got:?}"),
        }
    }
    assert!(start.elapsed() < Duration::from_secs(60));
    println!("{allowed} allowed, {denied} denied alike");
    assert!(
        allowed > 50 && denied > 50,
        "{allowed} allowed, {denied} denied"
    );
}

#[tokio::test]
async fn keys_expire_on_their_own() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("expiry");
    let l = RedisLimiter::connect(&url, &prefix).await.unwrap();
    let mut conn = raw(&url).await;
    let key = format!("{prefix}k");
    // 10 per second: one event books 100 ms.
    let q = Quota::per_second(10);
    let before = server_time_us(&mut conn).await;
    assert!(l
        .check("k", q, 1, Mode::Consume)
        .await
        .unwrap()
        .is_allowed());
    let ttl = pttl(&mut conn, &key).await;
    assert!(ttl > 0 && ttl <= 101, "PTTL {ttl}");
    // The TAT is stored as a plain integer of microseconds.
    let stored: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let tat: u64 = stored
        .parse()
        .unwrap_or_else(|_| panic!("stored {stored:?}"));
    assert!(
        tat > before + 100_000 - 1 && tat < before + 100_000 + 1_000_000,
        "{tat} vs {before}"
    );
    assert!(l.check("k", q, 5, Mode::Force).await.unwrap().is_allowed());
    let ttl = pttl(&mut conn, &key).await;
    assert!(ttl > 500 && ttl <= 601, "PTTL {ttl}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!exists(&mut conn, &key).await, "the key outlived its TAT");
}

#[tokio::test]
async fn absurd_counts_are_denied_not_errors() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("absurd");
    let l = RedisLimiter::connect(&url, &prefix).await.unwrap();
    let local = LocalLimiter::new();
    let q = Quota::per_second(10);
    let century = 100 * 365 * 24 * 3_600_000_000u64;
    for mode in [Mode::Consume, Mode::Peek, Mode::Force] {
        let r = retry_after(l.check("k", q, u64::MAX, mode).await.unwrap());
        let lr = retry_after(local.check("k", q, u64::MAX, mode).await.unwrap());
        assert!(r > century && lr > century, "{mode:?}: {r}, {lr}");
    }
    let mut conn = raw(&url).await;
    let key = format!("{prefix}k");
    let stored: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored, (1u64 << 53).to_string(), "saturated TAT");
    // A refund of everything empties the bucket again.
    assert!(l
        .check("k", q, u64::MAX, Mode::Refund)
        .await
        .unwrap()
        .is_allowed());
    assert!(l
        .check("k", q, 10, Mode::Consume)
        .await
        .unwrap()
        .is_allowed());
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn locks_hold_then_expire() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("lock");
    let l = RedisLimiter::connect(&url, &prefix).await.unwrap();
    let mut conn = raw(&url).await;
    l.lock("ip:1", Duration::from_millis(300)).await.unwrap();
    assert!(l.is_locked("ip:1").await.unwrap());
    assert!(!l.is_locked("ip:2").await.unwrap());
    let ttl = pttl(&mut conn, &format!("{prefix}ip:1")).await;
    assert!(ttl > 0 && ttl <= 300, "PTTL {ttl}");
    // A lock of no time locks nothing (as in LocalLimiter).
    l.lock("ip:3", Duration::ZERO).await.unwrap();
    assert!(!l.is_locked("ip:3").await.unwrap());
    // Another node sees the lock.
    let other = RedisLimiter::connect(&url, &prefix).await.unwrap();
    assert!(other.is_locked("ip:1").await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!l.is_locked("ip:1").await.unwrap());
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn connect_gives_up_when_nothing_listens() {
    if redis_url().is_none() {
        return;
    }
    let start = Instant::now();
    let r = RedisLimiter::connect(&format!("redis://127.0.0.1:{}", free_port()), "x:").await;
    assert!(r.is_err());
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

/// A `redis-server` of our own on `port`, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// `None` (with a note) when `redis-server` cannot be run here.
    fn start(port: u16) -> Option<Server> {
        let bin = if std::path::Path::new("/usr/bin/redis-server").exists() {
            "/usr/bin/redis-server"
        } else {
            "redis-server"
        };
        let spawned = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(c) => c,
            Err(e) => {
                println!("skipped: cannot run redis-server ({e})");
                return None;
            }
        };
        let server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not come up on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Send a signal to this server (by its process id).
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    fn stop(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Checks through `f` until it reports `backend`, for at most `within`.
async fn wait_for_backend(f: &FallbackLimiter, backend: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        f.check("probe", Quota::per_second(1000), 1, Mode::Consume)
            .await
            .unwrap();
        if f.backend() == backend {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "still {:?} after {within:?}",
            f.backend()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn fallback_answers_locally_while_redis_is_gone_and_recovers() {
    if redis_url().is_none() {
        return;
    }
    let port = free_port();
    let Some(server) = Server::start(port) else {
        return;
    };
    let url = server.url();
    let f = FallbackLimiter::new(RedisLimiter::connect(&url, "fallback:").await.unwrap());
    let q = Quota::per_hour(3);
    assert!(f
        .check("k", q, 1, Mode::Consume)
        .await
        .unwrap()
        .is_allowed());
    assert_eq!(f.backend(), "redis");

    server.stop();
    // Local limits now, with every answer within the call deadline.
    let mut slowest = Duration::ZERO;
    for i in 0..4 {
        let t = Instant::now();
        let d = f.check("k", q, 1, Mode::Consume).await.unwrap();
        assert_eq!(d.is_allowed(), i < 3, "event {i}: {d:?}");
        slowest = slowest.max(t.elapsed());
    }
    // A longer outage: the manager's own backoff (1 s, then 100 s, ...)
    // would still be asleep when Redis returns; ours must not be.
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_millis(1500) {
        let t = Instant::now();
        assert!(!f.check("k", q, 1, Mode::Peek).await.unwrap().is_allowed());
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("slowest check with Redis gone: {slowest:?}");
    assert!(slowest < Duration::from_millis(600), "{slowest:?}");
    assert!(f.backend().contains("degraded"), "{}", f.backend());
    // Locks are kept locally too.
    f.lock("ip:1", Duration::from_secs(10)).await.unwrap();
    assert!(f.is_locked("ip:1").await.unwrap());
    assert!(f.backend().contains("degraded"));

    // Back on the same port: cluster-wide limits again, promptly.
    let server = Server::start(port).unwrap();
    let took = wait_for_backend(&f, "redis", Duration::from_secs(3)).await;
    println!("back on Redis {took:?} after it restarted");
    let direct = RedisLimiter::connect(&server.url(), "fallback:")
        .await
        .unwrap();
    // The restarted server is empty: the first event of a fresh burst.
    assert!(f
        .check("k", q, 1, Mode::Consume)
        .await
        .unwrap()
        .is_allowed());
    assert!(direct
        .check("k", q, 2, Mode::Consume)
        .await
        .unwrap()
        .is_allowed());
    assert!(!f
        .check("k", q, 1, Mode::Consume)
        .await
        .unwrap()
        .is_allowed());
}

#[tokio::test]
async fn a_hung_redis_degrades_within_the_deadline() {
    if redis_url().is_none() {
        return;
    }
    let Some(server) = Server::start(free_port()) else {
        return;
    };
    let f = FallbackLimiter::new(RedisLimiter::connect(&server.url(), "hung:").await.unwrap());
    let q = Quota::per_hour(2);
    assert!(f
        .check("k", q, 1, Mode::Consume)
        .await
        .unwrap()
        .is_allowed());
    assert_eq!(f.backend(), "redis");

    // Stopped, not dead: the connection stays open and nothing answers.
    server.signal("-STOP");
    let mut slowest = Duration::ZERO;
    for _ in 0..2 {
        let t = Instant::now();
        assert!(f
            .check("k", q, 1, Mode::Consume)
            .await
            .unwrap()
            .is_allowed());
        slowest = slowest.max(t.elapsed());
    }
    assert!(!f
        .check("k", q, 1, Mode::Consume)
        .await
        .unwrap()
        .is_allowed());
    println!("slowest check against a hung Redis: {slowest:?}");
    assert!(slowest < Duration::from_millis(600), "{slowest:?}");
    assert!(f.backend().contains("degraded"), "{}", f.backend());

    server.signal("-CONT");
    let took = wait_for_backend(&f, "redis", Duration::from_secs(3)).await;
    println!("back on Redis {took:?} after it resumed");
    // The booking made before the hang is still there. The checks that
    // timed out had been written to the socket already: Redis may have run
    // them when it resumed, so "k" is full or has room for one more, but
    // never more than the quota.
    let d = f.check("k", q, 1, Mode::Peek).await.unwrap();
    println!("after the hang, peek on k: {d:?}");
    assert!(!f.check("k", q, 2, Mode::Peek).await.unwrap().is_allowed());
}

#[tokio::test]
async fn leases_cap_holders_cluster_wide_and_expire() {
    let Ok(url) = std::env::var("REDIS_URL") else {
        eprintln!("skipped: REDIS_URL is not set (e.g. REDIS_URL=redis://127.0.0.1:6379)");
        return;
    };
    let prefix = format!("posthorn-test-lease-{}:", std::process::id());
    let node_a = posthorn_ratelimit::RedisLimiter::connect(&url, &prefix)
        .await
        .unwrap();
    let node_b = posthorn_ratelimit::RedisLimiter::connect(&url, &prefix)
        .await
        .unwrap();
    use posthorn_ratelimit::Limiter;
    let ttl = std::time::Duration::from_millis(300);
    assert!(node_a.acquire_lease("u", "a1", 2, ttl).await.unwrap());
    assert!(node_b.acquire_lease("u", "b1", 2, ttl).await.unwrap());
    assert!(!node_b.acquire_lease("u", "b2", 2, ttl).await.unwrap());
    // A holder asking again keeps its slot.
    assert!(node_a.acquire_lease("u", "a1", 2, ttl).await.unwrap());
    node_b.release_lease("u", "b1").await.unwrap();
    assert!(node_b.acquire_lease("u", "b2", 2, ttl).await.unwrap());
    // Node a "crashes": it stops renewing; b keeps renewing.
    for _ in 0..4 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        node_b.renew_lease("u", "b2", ttl).await.unwrap();
    }
    assert!(
        node_b.acquire_lease("u", "b3", 2, ttl).await.unwrap(),
        "a's expired slot is free"
    );
    assert!(!node_b.acquire_lease("u", "b4", 2, ttl).await.unwrap());
}

#[tokio::test]
async fn a_batch_is_one_gated_step_like_the_local_one() {
    let Ok(url) = std::env::var("REDIS_URL") else {
        eprintln!("skipped: REDIS_URL is not set (e.g. REDIS_URL=redis://127.0.0.1:6379)");
        return;
    };
    use posthorn_ratelimit::{Check, Decision, Limiter, LocalLimiter, Mode, Quota};
    let prefix = format!(
        "posthorn-test-batch-{}-{:?}:",
        std::process::id(),
        std::time::Instant::now()
    );
    let redis = posthorn_ratelimit::RedisLimiter::connect(&url, &prefix)
        .await
        .unwrap();
    let local = LocalLimiter::new();
    let one = Quota::per_hour(1);
    let c = |key: &str, mode| Check {
        key: key.into(),
        quota: one,
        n: 1,
        mode,
    };
    let steps = [
        vec![c("a", Mode::Consume), c("b", Mode::Force)],
        vec![c("a", Mode::Consume), c("c", Mode::Force)],
        vec![c("c", Mode::Peek), c("unlimited", Mode::Consume)],
        vec![c("a", Mode::Refund), c("b", Mode::Refund)],
        vec![c("a", Mode::Consume), c("b", Mode::Consume)],
    ];
    for (i, step) in steps.iter().enumerate() {
        let mut step = step.clone();
        if i == 2 {
            step[1].quota = Quota::per_hour(0);
        }
        let r = redis.check_all(&step).await.unwrap();
        let l = local.check_all(&step).await.unwrap();
        let allowed = |d: &[Decision]| d.iter().map(Decision::is_allowed).collect::<Vec<_>>();
        assert_eq!(allowed(&r), allowed(&l), "step {i}");
    }
    // The denied consume of step 2 kept "c" unbooked.
    assert!(redis
        .check("c", one, 1, Mode::Peek)
        .await
        .unwrap()
        .is_allowed());
}

/// Quota with a slice of 100 (see `posthorn_ratelimit::slices`), one event
/// per 6 ms.
const LARGE: Quota = Quota::per_minute(10_000);

#[tokio::test]
async fn large_limits_are_answered_here_and_booked_in_redis_soon() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("slices");
    let a = RedisLimiter::connect(&url, &prefix).await.unwrap();
    let start = Instant::now();
    for i in 0..1_000 {
        let d = a.check("big", LARGE, 1, Mode::Consume).await.unwrap();
        assert!(d.is_allowed(), "check {i}");
    }
    // Past a flush, another node sees all 1,000: 9,000 more fit, and not
    // 100 more than that plus what drained while the test ran.
    tokio::time::sleep(slices::FLUSH_EVERY * 4).await;
    let b = RedisLimiter::connect(&url, &prefix).await.unwrap();
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_millis(600), "{elapsed:?}");
    let fits = |n| b.check("big", LARGE, n, Mode::Peek);
    assert!(fits(9_000).await.unwrap().is_allowed());
    assert!(!fits(9_100).await.unwrap().is_allowed(), "bookings lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_share_a_large_limit_within_two_slices_each() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("slices2");
    let a = Arc::new(RedisLimiter::connect(&url, &prefix).await.unwrap());
    let b = Arc::new(RedisLimiter::connect(&url, &prefix).await.unwrap());
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move {
            let mut allowed = 0u64;
            for _ in 0..300 {
                let d = node.check("shared", LARGE, 1, Mode::Consume).await;
                allowed += u64::from(d.unwrap().is_allowed());
            }
            allowed
        });
    }
    let mut allowed = 0u64;
    while let Some(r) = tasks.join_next().await {
        allowed += r.unwrap();
    }
    let elapsed = start.elapsed();
    let drained = elapsed.as_micros() as u64 / LARGE.emission_interval_us() + 1;
    let slice = slices::slice_of(LARGE).unwrap();
    println!("{allowed} of 12,000 allowed in {elapsed:?}");
    assert!(
        (LARGE.limit..=LARGE.limit + 2 * 2 * slice + drained).contains(&allowed),
        "{allowed} allowed in {elapsed:?}"
    );
}
