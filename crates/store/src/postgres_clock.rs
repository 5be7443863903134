//! The database's clock for [`crate::Store::now`] on PostgreSQL: every node
//! of a cluster stamps and compares times by it, not by its own clock.

use crate::Result;
use sqlx::postgres::PgPool;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often [`Store::now`] measures the database's clock again.
const CLOCK_REFRESH: Duration = Duration::from_secs(5);

/// The database's clock, read without a query: the offset between it and
/// this machine's clock, measured at open and again at most every
/// [`CLOCK_REFRESH`] (in a task started by a `now()` that finds it old).
/// Never runs backwards.
pub(crate) struct Clock {
    /// Database minus local, milliseconds.
    offset_ms: AtomicI64,
    /// The largest second handed out.
    last: AtomicI64,
    measured: Mutex<Instant>,
    refreshing: AtomicBool,
}

fn local_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Clock {
    /// Measure the database's clock once and start from there.
    pub(crate) async fn open(pool: &PgPool) -> Result<Arc<Self>> {
        let offset = Self::measure(pool).await?;
        Ok(Arc::new(Clock {
            offset_ms: AtomicI64::new(offset),
            last: AtomicI64::new(0),
            measured: Mutex::new(Instant::now()),
            refreshing: AtomicBool::new(false),
        }))
    }

    /// Database minus local clock, in milliseconds, measured once.
    async fn measure(pool: &PgPool) -> Result<i64> {
        let before = local_ms();
        let db: i64 =
            sqlx::query_scalar("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint")
                .fetch_one(pool)
                .await?;
        let after = local_ms();
        Ok(db - (before + after) / 2)
    }

    pub(crate) fn now(self: &Arc<Self>, pool: &PgPool) -> i64 {
        let due = self
            .measured
            .lock()
            .map(|m| m.elapsed() >= CLOCK_REFRESH)
            .unwrap_or(false);
        if due && !self.refreshing.swap(true, Ordering::AcqRel) {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    let (clock, pool) = (self.clone(), pool.clone());
                    rt.spawn(async move {
                        if let Ok(offset) = Self::measure(&pool).await {
                            clock.offset_ms.store(offset, Ordering::Relaxed);
                            if let Ok(mut m) = clock.measured.lock() {
                                *m = Instant::now();
                            }
                        }
                        clock.refreshing.store(false, Ordering::Release);
                    });
                }
                Err(_) => self.refreshing.store(false, Ordering::Release),
            }
        }
        let t = (local_ms() + self.offset_ms.load(Ordering::Relaxed)).div_euclid(1000);
        let last = self.last.fetch_max(t, Ordering::AcqRel);
        t.max(last)
    }
}
