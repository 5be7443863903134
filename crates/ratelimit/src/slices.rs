//! Room in large limits, known on this node, so most checks of a key whose
//! limit is large need no Redis round trip.
//!
//! A quota is *large* when a hundredth of its limit (its slice) is at least
//! [`MIN_SLICE`] events. For a large key the node:
//!
//! - answers a `consume` itself while it knows of room: the first check,
//!   and any check once the known room is used up or older than
//!   [`ROOM_TTL`], goes to Redis carrying the events still pending here,
//!   with a peek of one slice more behind it, and the peek's answer is the
//!   room known for the next [`ROOM_TTL`];
//! - counts `force` bookings, and the `consume` bookings it answered
//!   itself, as *pending*; [`Slices::drain`] hands them to a task that books
//!   them in Redis every [`FLUSH_EVERY`];
//! - gives a `refund` back from pending when it can, and sends it otherwise.
//!
//! Redis so counts every event, a little late. Room is only learned with
//! this node's pending events booked, so a node runs at most one slice
//! ahead of what Redis knows, plus the slice it was told of: a cluster can
//! exceed a large limit by about two slices (2 % of the limit) per node,
//! e.g. 20,000 calls a minute may admit 20,800 on two nodes. Small limits
//! (under a hundred times [`MIN_SLICE`], like 20 messages per second or 10
//! per hour) are checked exactly, every time.
//!
//! The logic here is synchronous and takes the time as an argument, so its
//! tests drive a clock of their own.

use crate::gcra::{Mode, Quota};
use crate::Check;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The smallest slice worth keeping: smaller limits are checked exactly.
pub const MIN_SLICE: u64 = 10;
/// The share of a limit one slice is (1 / SLICE_DIVISOR).
pub const SLICE_DIVISOR: u64 = 100;
/// How long room learned from Redis is trusted.
pub const ROOM_TTL: Duration = Duration::from_millis(100);
/// How often pending bookings are sent to Redis.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// The slice of `quota`, when it is large enough to keep room for.
pub fn slice_of(quota: Quota) -> Option<u64> {
    // Whole microseconds per event: past a million a second, the limit in
    // effect is what the emission interval allows.
    let limit = quota
        .limit
        .min(quota.period_us / quota.emission_interval_us());
    let slice = limit / SLICE_DIVISOR;
    (slice >= MIN_SLICE).then_some(slice)
}

/// How one check of a batch is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// No limit: allowed, nothing booked anywhere.
    Free,
    /// Here, from known room or into pending; already reserved.
    Local,
    /// Sent to Redis as this many events in the check's own mode.
    Exact { n: u64 },
    /// Sent to Redis with the key's pending events carried along (as
    /// `n + carried` events) and a peek of `slice` more behind it in the
    /// same group, to learn the room.
    Learn { slice: u64, carried: u64 },
}

#[derive(Debug)]
struct Entry {
    quota: Quota,
    /// Events known to fit, until `fresh_until`.
    room: u64,
    fresh_until: Instant,
    /// Events booked here and not yet in Redis.
    pending: u64,
    /// A [`Route::Learn`] is out until then (or until it is answered):
    /// meanwhile checks that find no room are sent exactly, so concurrent
    /// checks do not each learn a slice of their own.
    learning_until: Instant,
}

impl Entry {
    fn new(quota: Quota, now: Instant) -> Self {
        Self {
            quota,
            room: 0,
            fresh_until: now,
            pending: 0,
            learning_until: now,
        }
    }
}

/// See the module documentation. Keys are the full Redis keys.
#[derive(Default)]
pub struct Slices {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Slices {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Route every check of a batch (`keys[i]` is the Redis key of
    /// `checks[i]`), reserving what is answered here. When the batch is not
    /// booked after all (Redis refused one of its `consume` checks, or
    /// could not be asked), call [`Slices::undo`] with the same routes.
    pub fn route(&self, keys: &[String], checks: &[Check], now: Instant) -> Vec<Route> {
        let mut entries = self.entries();
        keys.iter()
            .zip(checks)
            .map(|(key, c)| {
                if c.quota.is_unlimited() {
                    return Route::Free;
                }
                let Some(slice) = slice_of(c.quota) else {
                    return Route::Exact { n: c.n };
                };
                let entry = entries.get_mut(key);
                let fresh = |e: &Entry| e.quota == c.quota && now < e.fresh_until;
                match (c.mode, entry) {
                    (Mode::Force, Some(e)) => {
                        e.quota = c.quota;
                        e.pending = e.pending.saturating_add(c.n);
                        e.room = e.room.saturating_sub(c.n);
                        Route::Local
                    }
                    (Mode::Force, None) => {
                        let mut e = Entry::new(c.quota, now);
                        e.pending = c.n;
                        entries.insert(key.clone(), e);
                        Route::Local
                    }
                    (Mode::Consume, Some(e)) if fresh(e) && e.room >= c.n => {
                        e.room -= c.n;
                        e.pending = e.pending.saturating_add(c.n);
                        Route::Local
                    }
                    (Mode::Consume, Some(e)) if now < e.learning_until => Route::Exact { n: c.n },
                    (Mode::Consume, Some(e)) => {
                        e.learning_until = now + ROOM_TTL;
                        Route::Learn {
                            slice,
                            carried: std::mem::take(&mut e.pending),
                        }
                    }
                    (Mode::Consume, None) => {
                        let mut e = Entry::new(c.quota, now);
                        e.learning_until = now + ROOM_TTL;
                        entries.insert(key.clone(), e);
                        Route::Learn { slice, carried: 0 }
                    }
                    (Mode::Peek, Some(e)) if fresh(e) && e.room >= c.n => Route::Local,
                    // Redis has not seen what is pending here yet.
                    (Mode::Peek, Some(e)) => Route::Exact {
                        n: c.n.saturating_add(e.pending),
                    },
                    (Mode::Refund, Some(e)) if e.pending >= c.n => {
                        e.pending -= c.n;
                        e.room = e.room.saturating_add(c.n);
                        Route::Local
                    }
                    (_, _) => Route::Exact { n: c.n },
                }
            })
            .collect()
    }

    /// Take back what [`Slices::route`] reserved (at `now`) for a batch that
    /// was not booked.
    pub fn undo(&self, keys: &[String], checks: &[Check], routes: &[Route], now: Instant) {
        let mut entries = self.entries();
        for ((key, c), route) in keys.iter().zip(checks).zip(routes) {
            let Some(e) = entries.get_mut(key) else {
                continue;
            };
            if let Route::Learn { carried, .. } = *route {
                e.pending = e.pending.saturating_add(carried);
                e.learning_until = now;
                continue;
            }
            if *route != Route::Local {
                continue;
            }
            match c.mode {
                Mode::Force => e.pending = e.pending.saturating_sub(c.n),
                Mode::Consume => {
                    e.pending = e.pending.saturating_sub(c.n);
                    e.room = e.room.saturating_add(c.n);
                }
                Mode::Refund => {
                    e.pending = e.pending.saturating_add(c.n);
                    e.room = e.room.saturating_sub(c.n);
                }
                Mode::Peek => {}
            }
        }
    }

    /// What a [`Route::Learn`] check taught: `room` events fit for the next
    /// [`ROOM_TTL`] (0 when the peek was refused).
    pub fn learn(&self, key: &str, quota: Quota, room: u64, now: Instant) {
        let mut entries = self.entries();
        let fresh_until = now + ROOM_TTL;
        match entries.get_mut(key) {
            Some(e) => {
                e.quota = quota;
                e.room = room;
                e.fresh_until = fresh_until;
                e.learning_until = now;
            }
            None => {
                let mut e = Entry::new(quota, now);
                e.room = room;
                e.fresh_until = fresh_until;
                entries.insert(key.to_string(), e);
            }
        }
    }

    /// Take every pending booking, as `force` checks for Redis (keyed by the
    /// full Redis key), and forget keys with nothing pending whose room is
    /// stale. When they cannot be sent, give them back with
    /// [`Slices::restore`].
    pub fn drain(&self, now: Instant) -> Vec<Check> {
        let mut entries = self.entries();
        let mut out = Vec::new();
        entries.retain(|key, e| {
            if e.pending > 0 {
                out.push(Check {
                    key: key.clone(),
                    quota: e.quota,
                    n: std::mem::take(&mut e.pending),
                    mode: Mode::Force,
                });
                true
            } else {
                now < e.fresh_until || now < e.learning_until
            }
        });
        out
    }

    /// Put back bookings [`Slices::drain`] took that Redis did not get.
    pub fn restore(&self, drained: Vec<Check>, now: Instant) {
        let mut entries = self.entries();
        for c in drained {
            let e = entries
                .entry(c.key)
                .or_insert_with(|| Entry::new(c.quota, now));
            e.pending = e.pending.saturating_add(c.n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: Quota = Quota::per_second(10_000); // slice 100
    const SMALL: Quota = Quota::per_second(20);

    fn check(key: &str, quota: Quota, n: u64, mode: Mode) -> Check {
        Check {
            key: key.into(),
            quota,
            n,
            mode,
        }
    }

    fn route(s: &Slices, c: &Check, now: Instant) -> Route {
        s.route(std::slice::from_ref(&c.key), std::slice::from_ref(c), now)[0]
    }

    #[test]
    fn small_limits_are_always_exact() {
        let s = Slices::default();
        let now = Instant::now();
        for mode in [Mode::Consume, Mode::Force, Mode::Peek, Mode::Refund] {
            assert_eq!(
                route(&s, &check("k", SMALL, 3, mode), now),
                Route::Exact { n: 3 }
            );
        }
        assert!(s.drain(now).is_empty());
        assert_eq!(
            route(&s, &check("k", Quota::per_second(0), 1, Mode::Consume), now),
            Route::Free
        );
        assert_eq!(slice_of(Quota::per_minute(999)), None);
        assert_eq!(slice_of(Quota::per_minute(20_000)), Some(200));
        assert_eq!(slice_of(Quota::per_second(100_000_000)), Some(10_000));
    }

    #[test]
    fn learned_room_answers_consumes_until_used_up_or_stale() {
        let s = Slices::default();
        let t0 = Instant::now();
        let c = check("k", BIG, 1, Mode::Consume);
        let learn = |carried| Route::Learn {
            slice: 100,
            carried,
        };
        assert_eq!(route(&s, &c, t0), learn(0));
        // One learns at a time: meanwhile checks are sent exactly.
        assert_eq!(route(&s, &c, t0), Route::Exact { n: 1 });
        s.learn("k", BIG, 100, t0);
        for _ in 0..100 {
            assert_eq!(route(&s, &c, t0), Route::Local);
        }
        // Used up: ask again, carrying the 100 answered here.
        assert_eq!(route(&s, &c, t0), learn(100));
        s.learn("k", BIG, 100, t0);
        for _ in 0..30 {
            assert_eq!(route(&s, &c, t0), Route::Local);
        }
        // Every local one not carried is pending, to be booked in Redis.
        let drained = s.drain(t0);
        assert_eq!(drained.len(), 1);
        assert_eq!(drained[0].n, 30);
        assert_eq!(drained[0].mode, Mode::Force);
        assert!(s.drain(t0).is_empty(), "drained once");
        // Stale room is not used.
        s.learn("k", BIG, 100, t0);
        let later = t0 + ROOM_TTL;
        assert_eq!(route(&s, &c, later), learn(0));
        // A refused peek teaches no room: every check is asked.
        s.learn("k", BIG, 0, later);
        assert_eq!(route(&s, &c, later), learn(0));
        // A changed quota does not use the old room.
        s.learn("k", BIG, 100, later);
        let other = check("k", Quota::per_second(20_000), 1, Mode::Consume);
        assert_eq!(
            route(&s, &other, later),
            Route::Learn {
                slice: 200,
                carried: 0
            }
        );
    }

    #[test]
    fn forces_are_pending_and_refunds_come_out_of_pending() {
        let s = Slices::default();
        let now = Instant::now();
        assert_eq!(
            route(&s, &check("p", BIG, 2, Mode::Force), now),
            Route::Local
        );
        assert_eq!(
            route(&s, &check("p", BIG, 1, Mode::Force), now),
            Route::Local
        );
        // A peek counts what Redis has not seen yet.
        assert_eq!(
            route(&s, &check("p", BIG, 1, Mode::Peek), now),
            Route::Exact { n: 4 }
        );
        assert_eq!(
            route(&s, &check("p", BIG, 1, Mode::Refund), now),
            Route::Local
        );
        // More than is pending goes to Redis.
        assert_eq!(
            route(&s, &check("p", BIG, 5, Mode::Refund), now),
            Route::Exact { n: 5 }
        );
        let drained = s.drain(now);
        assert_eq!(drained[0].n, 2);
        // Not sent: given back, and drained again next time.
        s.restore(drained, now);
        assert_eq!(s.drain(now)[0].n, 2);
        // Nothing pending and no fresh room: forgotten.
        assert!(s.drain(now).is_empty());
        assert!(s.entries().is_empty());
    }

    #[test]
    fn undo_gives_back_a_batch_that_was_not_booked() {
        let s = Slices::default();
        let now = Instant::now();
        s.learn("m", BIG, 10, now);
        let batch = [
            check("m", BIG, 4, Mode::Consume),
            check("p", BIG, 1, Mode::Force),
            check("x", SMALL, 1, Mode::Consume),
        ];
        let keys: Vec<String> = batch.iter().map(|c| c.key.clone()).collect();
        let routes = s.route(&keys, &batch, now);
        assert_eq!(routes, [Route::Local, Route::Local, Route::Exact { n: 1 }]);
        // Redis refused the small one: nothing of the batch is booked.
        s.undo(&keys, &batch, &routes, now);
        assert!(s.drain(now).is_empty(), "nothing pending after undo");
        // The room is whole again: ten fit.
        for _ in 0..10 {
            assert_eq!(
                route(&s, &check("m", BIG, 1, Mode::Consume), now),
                Route::Local
            );
        }
        // A learning check not booked gives its carried events back.
        let batch = [check("m", BIG, 1, Mode::Consume)];
        let routes = s.route(&keys[..1], &batch, now);
        assert_eq!(
            routes,
            [Route::Learn {
                slice: 100,
                carried: 10
            }]
        );
        s.undo(&keys[..1], &batch, &routes, now);
        assert_eq!(s.drain(now)[0].n, 10);
    }
}
