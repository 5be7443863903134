//! The generic cell rate algorithm, as a pure function of the time.
//!
//! A quota of `limit` events per `period` admits one event every
//! `period / limit` (the emission interval) with bursts of up to `limit`.
//! The only state per key is the theoretical arrival time (TAT): when the
//! bucket would be empty again. An event at `now` is allowed when
//! `TAT - period <= now`, i.e. fewer than `limit` events' worth of time is
//! booked ahead. Times are in microseconds of any monotonic clock.

/// `limit` events per `period_us` microseconds. A limit of 0 means no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quota {
    pub limit: u64,
    pub period_us: u64,
}

impl Quota {
    pub const fn per_second(limit: u64) -> Self {
        Self {
            limit,
            period_us: 1_000_000,
        }
    }
    pub const fn per_minute(limit: u64) -> Self {
        Self {
            limit,
            period_us: 60_000_000,
        }
    }
    pub const fn per_hour(limit: u64) -> Self {
        Self {
            limit,
            period_us: 3_600_000_000,
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.limit == 0
    }

    /// Microseconds one event books.
    pub fn emission_interval_us(&self) -> u64 {
        (self.period_us / self.limit.max(1)).max(1)
    }
}

/// What a check does to the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Book `n` events if they are allowed; book nothing if not.
    Consume,
    /// Only say whether `n` events would be allowed.
    Peek,
    /// Book `n` events whatever the answer (for counting work that has
    /// already been done).
    Force,
    /// Give back `n` events booked before (work that was not done after all).
    Refund,
}

/// The answer to a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Not allowed; the caller may try again after this many microseconds.
    Denied {
        retry_after_us: u64,
    },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed)
    }
}

/// One GCRA step: given the stored TAT (0 when the key is new), return the
/// decision and the TAT to store (`None`: leave it as it is).
pub fn step(quota: Quota, tat: u64, now: u64, n: u64, mode: Mode) -> (Decision, Option<u64>) {
    if quota.is_unlimited() {
        return (Decision::Allowed, None);
    }
    let interval = quota.emission_interval_us();
    let tat = tat.max(now);
    let cost = interval.saturating_mul(n);
    if mode == Mode::Refund {
        return (Decision::Allowed, Some(tat.saturating_sub(cost).max(now)));
    }
    let new_tat = tat.saturating_add(cost);
    // Allowed when the booking stays within one period ahead of now.
    let allow_at = new_tat.saturating_sub(quota.period_us);
    let decision = if allow_at <= now {
        Decision::Allowed
    } else {
        Decision::Denied {
            retry_after_us: allow_at - now,
        }
    };
    let store = match (mode, decision) {
        (Mode::Consume, Decision::Allowed) | (Mode::Force, _) => Some(new_tat),
        _ => None,
    };
    (decision, store)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drive one key through a series of checks at given times.
    struct Clock {
        tat: u64,
        quota: Quota,
    }

    impl Clock {
        fn check(&mut self, now: u64, mode: Mode) -> Decision {
            let (d, store) = step(self.quota, self.tat, now, 1, mode);
            if let Some(t) = store {
                self.tat = t;
            }
            d
        }
    }

    #[test]
    fn a_burst_of_the_limit_then_one_per_interval() {
        let mut c = Clock {
            tat: 0,
            quota: Quota::per_second(20),
        };
        let now = 10_000_000;
        for i in 0..20 {
            assert!(c.check(now, Mode::Consume).is_allowed(), "event {i}");
        }
        assert_eq!(
            c.check(now, Mode::Consume),
            Decision::Denied {
                retry_after_us: 50_000
            }
        );
        // A refused check books nothing: 50 ms later one more fits.
        assert!(!c.check(now + 49_999, Mode::Consume).is_allowed());
        assert!(c.check(now + 50_000, Mode::Consume).is_allowed());
        assert!(!c.check(now + 50_000, Mode::Consume).is_allowed());
        // After a whole idle period the full burst is back.
        let later = now + 2_000_000;
        for _ in 0..20 {
            assert!(c.check(later, Mode::Consume).is_allowed());
        }
        assert!(!c.check(later, Mode::Consume).is_allowed());
    }

    #[test]
    fn a_sustained_rate_over_a_window_matches_the_limit() {
        let mut c = Clock {
            tat: 0,
            quota: Quota::per_second(20),
        };
        // 1,000 attempts per second for 10 seconds: 20 burst + 20 per second.
        let mut allowed = 0;
        for ms in 0..10_000u64 {
            if c.check(1_000_000 + ms * 1_000, Mode::Consume).is_allowed() {
                allowed += 1;
            }
        }
        assert!((219..=221).contains(&allowed), "{allowed}");
    }

    #[test]
    fn peek_force_and_refund() {
        let mut c = Clock {
            tat: 0,
            quota: Quota::per_hour(2),
        };
        let now = 5_000_000;
        assert!(c.check(now, Mode::Peek).is_allowed());
        assert!(c.check(now, Mode::Peek).is_allowed());
        assert_eq!(c.tat, 0, "peek books nothing");
        c.check(now, Mode::Force);
        c.check(now, Mode::Force);
        assert!(!c.check(now, Mode::Peek).is_allowed());
        // Force books even past the limit.
        assert!(!c.check(now, Mode::Force).is_allowed());
        c.check(now, Mode::Refund);
        c.check(now, Mode::Refund);
        assert!(c.check(now, Mode::Peek).is_allowed());
    }

    #[test]
    fn zero_means_no_limit() {
        let mut c = Clock {
            tat: 0,
            quota: Quota::per_second(0),
        };
        for _ in 0..1000 {
            assert!(c.check(1, Mode::Consume).is_allowed());
        }
    }
}
