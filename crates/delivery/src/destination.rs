//! One destination's ready queue and health, as a state machine of the
//! time (no I/O, no clock of its own): the scheduler asks it which job may
//! start now and tells it how each attempt went.
//!
//! A destination is where a job's connection goes: the mail servers of the
//! recipients' domain (the set of MX hosts, so domains hosted together
//! share one), or the relay. Claimed jobs wait in its ready queue and take
//! a slot only when the destination may open or reuse a connection, so a
//! slow, throttling or dead destination holds nothing the others need.
//!
//! - **Concurrency**: at most `max_connections` attempts at once, lowered
//!   to half of what was running when the destination says "too many
//!   connections / slow down" (`421`, or a `4.7.x` temporary reply) and
//!   raised again by one every [`RECOVER_EVERY`].
//! - **Rate**: at most `messages_per_minute` attempts start per minute
//!   (GCRA, a burst of a tenth of the minute's worth).
//! - **Backoff**: an attempt that could connect to none of the
//!   destination's hosts (refused, timed out, TLS failed, `421` banner)
//!   suspends it for the shaping's backoff, growing with each failed
//!   probe; while suspended its jobs are deferred without a connection,
//!   with that error as their last reply; when the interval ends, one
//!   probe runs alone and decides.

use crate::shaping::Shape;
use posthorn_ratelimit::gcra::{self, Mode, Quota};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How often a lowered concurrency rises again by one.
pub const RECOVER_EVERY: Duration = Duration::from_secs(60);

/// How an attempt went, as far as the destination's health goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// A connection was made (whatever the recipients' answers).
    Connected,
    /// A connection was made and the server asked to slow down (`421` or a
    /// `4.7.x` temporary reply) during the transaction.
    SlowDown(String),
    /// No host of the destination could be connected to; `busy` when one
    /// greeted with `421` (too many connections).
    Unreachable { error: String, busy: bool },
    /// Nothing was tried on the network (content unreadable, capture).
    NotTried,
}

/// What [`Destination::take`] gives.
#[derive(Debug, PartialEq, Eq)]
pub enum Take<J> {
    /// Start this job now.
    Start(J),
    /// Nothing may start before this time (the rate limit); ask again then.
    At(Instant),
    /// Nothing may start until an attempt finishes (at the concurrency cap,
    /// or nothing is waiting).
    Idle,
    /// The destination is suspended: defer these with its last error until
    /// the given time.
    Defer(Vec<J>, String, Instant),
}

/// See the module documentation.
#[derive(Debug)]
pub struct Destination<J> {
    shape: Shape,
    ready: VecDeque<J>,
    in_flight: usize,
    /// GCRA's theoretical arrival time, in microseconds since `epoch`.
    tat_us: u64,
    epoch: Instant,
    /// A lowered concurrency and when it was lowered.
    reduced: Option<(usize, Instant)>,
    /// Failed connection rounds in a row (each suspension counts one).
    failures: u32,
    suspended_until: Option<Instant>,
    /// A probe after a suspension is running; others wait for its result.
    probing: bool,
    last_error: Option<String>,
}

/// What the scheduler shows of a destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationStatus {
    pub queued: usize,
    pub in_flight: usize,
    /// The concurrency allowed now (lowered after a "slow down").
    pub concurrency: usize,
    pub suspended_for: Option<Duration>,
    pub last_error: Option<String>,
}

impl<J> Destination<J> {
    pub fn new(shape: Shape, now: Instant) -> Self {
        Self {
            shape,
            ready: VecDeque::new(),
            in_flight: 0,
            tat_us: 0,
            epoch: now,
            reduced: None,
            failures: 0,
            suspended_until: None,
            probing: false,
            last_error: None,
        }
    }

    /// Jobs waiting.
    pub fn queued(&self) -> usize {
        self.ready.len()
    }

    /// Whether nothing is waiting, running or remembered: the scheduler may
    /// forget the destination.
    pub fn is_forgettable(&self, now: Instant) -> bool {
        self.ready.is_empty()
            && self.in_flight == 0
            && self.suspended_until.is_none_or(|t| t <= now)
            && self.failures == 0
            && self.reduced.is_none()
    }

    /// How many jobs may wait here before claims leave the destination's
    /// domains out: enough to keep its connections busy for a while.
    pub fn ready_cap(&self) -> usize {
        let by_connections = self.shape.connection_cap().saturating_mul(4).clamp(8, 400);
        match self.shape.messages_per_minute {
            0 => by_connections,
            // About fifteen seconds' worth at its rate.
            m => by_connections.min(((m / 4) as usize).max(2)),
        }
    }

    pub fn is_full(&self) -> bool {
        self.ready.len() >= self.ready_cap()
    }

    /// Add a claimed job. While the destination is suspended it comes back
    /// as `Err` with the error and the end of the suspension: defer it.
    pub fn push(&mut self, job: J, now: Instant) -> Result<(), (J, String, Instant)> {
        if let Some(until) = self.suspended_until.filter(|&t| t > now) {
            let error = self.last_error.clone().unwrap_or_default();
            return Err((job, error, until));
        }
        self.ready.push_back(job);
        Ok(())
    }

    /// Every waiting job (shutdown).
    pub fn drain(&mut self) -> Vec<J> {
        self.ready.drain(..).collect()
    }

    /// Waiting jobs at the front of the queue for which `stale` holds (they
    /// have waited too long for their lease): taken out to be given back.
    /// Jobs wait in the order they were claimed, so only the front is
    /// looked at (this runs before every start).
    pub fn take_stale(&mut self, stale: impl Fn(&J) -> bool) -> Vec<J> {
        let mut old = Vec::new();
        while self.ready.front().is_some_and(&stale) {
            old.extend(self.ready.pop_front());
        }
        old
    }

    /// The concurrency allowed at `now`.
    pub fn concurrency(&mut self, now: Instant) -> usize {
        let cap = self.shape.connection_cap();
        if let Some((lowered, since)) = self.reduced {
            let steps =
                (now.saturating_duration_since(since).as_secs() / RECOVER_EVERY.as_secs()) as usize;
            let allowed = lowered.saturating_add(steps);
            if allowed < cap {
                return allowed;
            }
            self.reduced = None;
        }
        cap
    }

    /// The next thing to do at `now`.
    pub fn take(&mut self, now: Instant) -> Take<J> {
        if let Some(until) = self.suspended_until {
            if until > now {
                if self.ready.is_empty() {
                    return Take::Idle;
                }
                let error = self.last_error.clone().unwrap_or_default();
                return Take::Defer(self.ready.drain(..).collect(), error, until);
            }
            // The interval is over: one probe decides.
            self.suspended_until = None;
            self.probing = true;
        }
        if self.ready.is_empty() {
            return Take::Idle;
        }
        let limit = if self.probing {
            1
        } else {
            self.concurrency(now)
        };
        if self.in_flight >= limit {
            return Take::Idle;
        }
        if let Some(quota) = self.quota() {
            let now_us = now.saturating_duration_since(self.epoch).as_micros() as u64;
            let (decision, tat) = gcra::step(quota, self.tat_us, now_us, 1, Mode::Consume);
            if let Some(t) = tat {
                self.tat_us = t;
            }
            if let gcra::Decision::Denied { retry_after_us } = decision {
                return Take::At(now + Duration::from_micros(retry_after_us));
            }
        }
        let job = self.ready.pop_front().expect("checked not empty");
        self.in_flight += 1;
        Take::Start(job)
    }

    /// `messages_per_minute` as a GCRA quota whose burst is a tenth of it.
    fn quota(&self) -> Option<Quota> {
        let per_minute = self.shape.messages_per_minute;
        if per_minute == 0 {
            return None;
        }
        let burst = (per_minute / 10).max(1);
        let interval_us = 60_000_000 / per_minute;
        Some(Quota {
            limit: burst,
            period_us: interval_us.saturating_mul(burst).max(1),
        })
    }

    /// An attempt started by [`Destination::take`] ended. When it makes the
    /// destination suspended, the waiting jobs come back to be deferred
    /// (as with [`Take::Defer`]) and `backoff(n)` gives the interval for
    /// the `n`th failed round in a row.
    pub fn finish(
        &mut self,
        health: Health,
        now: Instant,
        backoff: impl Fn(u32) -> Duration,
    ) -> Option<(Vec<J>, String, Instant)> {
        self.in_flight = self.in_flight.saturating_sub(1);
        match health {
            Health::NotTried => {
                self.probing = false;
                None
            }
            Health::Connected => {
                self.failures = 0;
                self.probing = false;
                None
            }
            Health::SlowDown(error) => {
                self.failures = 0;
                self.probing = false;
                self.slow_down(now);
                self.last_error = Some(error);
                None
            }
            Health::Unreachable { error, busy } => {
                if busy {
                    self.slow_down(now);
                }
                self.last_error = Some(error.clone());
                if self.suspended_until.is_some_and(|t| t > now) {
                    // Attempts that were running when it was suspended.
                    return None;
                }
                self.failures += 1;
                self.probing = false;
                let until = now + backoff(self.failures);
                self.suspended_until = Some(until);
                Some((self.ready.drain(..).collect(), error, until))
            }
        }
    }

    /// Half of what runs now (at least one), for [`RECOVER_EVERY`] per
    /// step back up.
    fn slow_down(&mut self, now: Instant) {
        let running = (self.in_flight + 1).min(self.concurrency(now));
        self.reduced = Some(((running / 2).max(1), now));
    }

    pub fn status(&mut self, now: Instant) -> DestinationStatus {
        DestinationStatus {
            queued: self.ready.len(),
            in_flight: self.in_flight,
            concurrency: if self.probing {
                1
            } else {
                self.concurrency(now)
            },
            suspended_for: self.suspended_until.filter(|&t| t > now).map(|t| t - now),
            last_error: self.last_error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(conns: usize, per_minute: u64) -> Shape {
        Shape {
            max_connections: conns,
            messages_per_minute: per_minute,
            max_messages_per_connection: 100,
        }
    }

    fn minutes(n: u32) -> Duration {
        Duration::from_secs(60 * u64::from(n))
    }

    #[test]
    fn no_more_than_the_cap_run_at_once() {
        let t = Instant::now();
        let mut d = Destination::new(shape(2, 0), t);
        for j in 0..5 {
            d.push(j, t).unwrap();
        }
        assert_eq!(d.take(t), Take::Start(0));
        assert_eq!(d.take(t), Take::Start(1));
        assert_eq!(d.take(t), Take::Idle);
        assert_eq!(d.finish(Health::Connected, t, minutes), None);
        assert_eq!(d.take(t), Take::Start(2));
        assert_eq!(d.queued(), 2);
    }

    #[test]
    fn the_rate_spaces_starts_after_the_burst() {
        let t = Instant::now();
        // 600 a minute: one every 100 ms, a burst of 60.
        let mut d = Destination::new(shape(0, 600), t);
        for j in 0..100 {
            d.push(j, t).unwrap();
        }
        let mut started = 0;
        while let Take::Start(_) = d.take(t) {
            started += 1;
        }
        assert_eq!(started, 60);
        match d.take(t) {
            Take::At(at) => assert!(at > t && at <= t + Duration::from_millis(100)),
            other => panic!("{other:?}"),
        }
        // Over a minute, no more than the limit plus the burst start.
        let mut now = t;
        let end = t + Duration::from_secs(60);
        for j in 100..2000 {
            d.push(j, t).unwrap();
        }
        while now < end {
            match d.take(now) {
                Take::Start(_) => started += 1,
                Take::At(at) => now = at,
                other => panic!("{other:?}"),
            }
        }
        assert!((600..=660).contains(&started), "{started}");
    }

    #[test]
    fn an_unreachable_destination_is_suspended_and_defers_without_trying() {
        let t = Instant::now();
        let mut d = Destination::new(shape(4, 0), t);
        for j in 0..6 {
            d.push(j, t).unwrap();
        }
        assert_eq!(d.take(t), Take::Start(0));
        assert_eq!(d.take(t), Take::Start(1));
        let refused = Health::Unreachable {
            error: "451 4.4.1 connection refused".into(),
            busy: false,
        };
        let (deferred, error, until) = d.finish(refused.clone(), t, minutes).unwrap();
        assert_eq!(deferred, vec![2, 3, 4, 5]);
        assert_eq!(error, "451 4.4.1 connection refused");
        assert_eq!(until, t + minutes(1));
        // The other attempt that was running ends without another round.
        assert_eq!(d.finish(refused.clone(), t, minutes), None);
        // New work is deferred at once.
        let later = t + Duration::from_secs(30);
        let (job, _, until2) = d.push(9, later).unwrap_err();
        assert_eq!((job, until2), (9, until));
        // After the interval: one probe alone; it fails: twice as long.
        let after = t + minutes(1);
        for j in 10..13 {
            d.push(j, after).unwrap();
        }
        assert_eq!(d.take(after), Take::Start(10));
        assert_eq!(d.take(after), Take::Idle);
        let (deferred, _, until) = d.finish(refused, after, minutes).unwrap();
        assert_eq!(deferred, vec![11, 12]);
        assert_eq!(until, after + minutes(2));
        // The next probe succeeds: back to full concurrency.
        let back = until;
        for j in 20..25 {
            d.push(j, back).unwrap();
        }
        assert_eq!(d.take(back), Take::Start(20));
        assert_eq!(d.take(back), Take::Idle);
        assert_eq!(d.finish(Health::Connected, back, minutes), None);
        let mut n = 0;
        while let Take::Start(_) = d.take(back) {
            n += 1;
        }
        assert_eq!(n, 4);
    }

    #[test]
    fn slow_down_halves_the_concurrency_and_it_recovers_step_by_step() {
        let t = Instant::now();
        let mut d = Destination::new(shape(8, 0), t);
        for j in 0..20 {
            d.push(j, t).unwrap();
        }
        for _ in 0..8 {
            assert!(matches!(d.take(t), Take::Start(_)));
        }
        d.finish(
            Health::SlowDown("421 4.7.0 too many connections".into()),
            t,
            minutes,
        );
        assert_eq!(d.concurrency(t), 4);
        // 7 still run: nothing starts until fewer than 4 do.
        for _ in 0..4 {
            assert_eq!(d.take(t), Take::Idle);
            d.finish(Health::Connected, t, minutes);
        }
        assert!(matches!(d.take(t), Take::Start(_)));
        assert_eq!(d.concurrency(t + RECOVER_EVERY), 5);
        assert_eq!(d.concurrency(t + RECOVER_EVERY * 4), 8);
        assert!(d.status(t + RECOVER_EVERY * 4).concurrency == 8);
    }

    #[test]
    fn a_busy_banner_counts_as_unreachable_and_lowers_concurrency() {
        let t = Instant::now();
        let mut d = Destination::new(shape(10, 0), t);
        d.push(1, t).unwrap();
        assert_eq!(d.take(t), Take::Start(1));
        let busy = Health::Unreachable {
            error: "421 4.7.0 too many connections".into(),
            busy: true,
        };
        assert!(d.finish(busy, t, minutes).is_some());
        assert_eq!(d.concurrency(t), 1);
        assert!(!d.is_forgettable(t));
    }

    #[test]
    fn the_ready_cap_follows_connections_and_rate() {
        let t = Instant::now();
        assert_eq!(Destination::<u8>::new(shape(2, 0), t).ready_cap(), 8);
        assert_eq!(Destination::<u8>::new(shape(20, 0), t).ready_cap(), 80);
        assert_eq!(Destination::<u8>::new(shape(0, 0), t).ready_cap(), 400);
        assert_eq!(Destination::<u8>::new(shape(20, 60), t).ready_cap(), 15);
        assert_eq!(Destination::<u8>::new(shape(20, 1), t).ready_cap(), 2);
    }
}
