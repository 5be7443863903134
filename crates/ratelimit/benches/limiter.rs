//! Per-call cost of a rate-limit check: `LocalLimiter` in process, and
//! `RedisLimiter` when `REDIS_URL` is set: exact (one script round trip,
//! shared by concurrent checks) and large (mostly answered in process).
//!
//! `cargo bench -p posthorn-ratelimit` (with e.g.
//! `REDIS_URL=redis://127.0.0.1:6379` for the Redis figures).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use posthorn_ratelimit::{Limiter, LocalLimiter, Mode, Quota, RedisLimiter};
use std::hint::black_box;
use std::sync::Arc;
use tokio::runtime::Runtime;

/// Generous enough that most checks are allowed (and so write).
const QUOTA: Quota = Quota::per_second(1_000_000);
/// Under a thousand per period, so checked exactly (see
/// `posthorn_ratelimit::slices`), and still never refused at these rates:
/// 999 per millisecond.
const EXACT: Quota = Quota {
    limit: 999,
    period_us: 1_000,
};
const KEYS: usize = 10_000;

fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("mps:{i}")).collect()
}

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn local(c: &mut Criterion) {
    let rt = current_thread();
    let l = LocalLimiter::new();
    let keys = keys();
    let mut g = c.benchmark_group("local");
    g.bench_function("block_on(ready) baseline", |b| {
        b.iter(|| rt.block_on(async { black_box(1) }))
    });
    g.bench_function("check hot key", |b| {
        b.iter(|| {
            rt.block_on(l.check("mps:hot", QUOTA, 1, Mode::Consume))
                .unwrap()
        })
    });
    let mut i = 0;
    g.bench_function("check 10k keys", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            rt.block_on(l.check(&keys[i], QUOTA, 1, Mode::Consume))
                .unwrap()
        })
    });
    // The same without a runtime: the limiter's own cost.
    let mut now = 100_000_000_000u64;
    g.bench_function("check_at hot key (no runtime)", |b| {
        b.iter(|| {
            now += 1;
            l.check_at("mps:hot2", QUOTA, 1, Mode::Consume, now)
        })
    });
    g.bench_function("check_at 10k keys (no runtime)", |b| {
        b.iter(|| {
            now += 1;
            i = (i + 1) % KEYS;
            l.check_at(&keys[i], QUOTA, 1, Mode::Consume, now)
        })
    });
    g.finish();
}

fn redis(c: &mut Criterion) {
    let url = match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            println!("redis benchmarks skipped: REDIS_URL is not set (e.g. REDIS_URL=redis://127.0.0.1:6379)");
            return;
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let prefix = format!("posthorn-bench:{}:", std::process::id());
    let l = match rt.block_on(RedisLimiter::connect(&url, &prefix)) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            println!("redis benchmarks skipped: {e}");
            return;
        }
    };
    // Load the script once so no iteration pays for NOSCRIPT.
    rt.block_on(l.check("warm", QUOTA, 1, Mode::Peek)).unwrap();
    let keys = keys();
    let mut g = c.benchmark_group("redis");
    // A large limit is mostly answered from room known on this node (see
    // posthorn_ratelimit::slices); a small one goes to Redis every time.
    for (name, quota) in [("exact", EXACT), ("large", QUOTA)] {
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("{name}: check hot key"), |b| {
            b.iter(|| {
                rt.block_on(l.check("mps:hot", quota, 1, Mode::Consume))
                    .unwrap()
            })
        });
        let mut i = 0;
        g.bench_function(format!("{name}: check 10k keys"), |b| {
            b.iter(|| {
                i = (i + 1) % KEYS;
                rt.block_on(l.check(&keys[i], quota, 1, Mode::Consume))
                    .unwrap()
            })
        });
        // Many checks in flight at once share one script run; the figure
        // per element is the throughput cost.
        const IN_FLIGHT: usize = 64;
        g.throughput(Throughput::Elements(IN_FLIGHT as u64));
        g.bench_function(format!("{name}: 64 concurrent checks, 10k keys"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut set = tokio::task::JoinSet::new();
                    for _ in 0..IN_FLIGHT {
                        i = (i + 1) % KEYS;
                        let (l, key) = (l.clone(), keys[i].clone());
                        set.spawn(
                            async move { l.check(&key, quota, 1, Mode::Consume).await.unwrap() },
                        );
                    }
                    while let Some(r) = set.join_next().await {
                        r.unwrap();
                    }
                })
            })
        });
    }
    g.throughput(Throughput::Elements(1));
    g.bench_function("is_locked", |b| {
        b.iter(|| rt.block_on(l.is_locked("ip:1")).unwrap())
    });
    g.finish();
}

criterion_group!(benches, local, redis);
criterion_main!(benches);
