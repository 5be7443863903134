//! The account rate limits on the submission path, as limiter keys and the
//! business errors their refusals are answered with. A limiter that cannot
//! be asked lets the work through: limits protect, they never lose mail.

use crate::RateLimits;
use crate::SubmitError;
use posthorn_policy::codes::{API_CALL_LIMIT, RECIPIENT_RATE_LIMIT, SMTP_RATE_LIMIT};
use posthorn_ratelimit::{count_refusal, Check, Decision, Limiter, Mode, Quota};
use posthorn_types::BusinessError;

fn limited(code: u16, status: &'static str, id: &'static str, message: String) -> SubmitError {
    SubmitError::Business(BusinessError {
        smtp_code: code,
        smtp_status: status,
        code: id,
        message: posthorn_policy::codes::message(id, message),
    })
}

async fn ask(limiter: &dyn Limiter, key: &str, quota: Quota, mode: Mode) -> Decision {
    match limiter.check(key, quota, 1, mode).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, key, "rate limiter unavailable; letting the work through");
            Decision::Allowed
        }
    }
}

fn retry_secs(d: Decision) -> f64 {
    match d {
        Decision::Denied { retry_after_us } => retry_after_us as f64 / 1e6,
        Decision::Allowed => 0.0,
    }
}

fn mps_key(account_id: i64) -> String {
    format!("mps:{account_id}")
}

fn pair_key(account_id: i64, from: &str, to: &str) -> String {
    format!(
        "pair:{account_id}:{}:{}",
        from.to_ascii_lowercase(),
        to.to_ascii_lowercase()
    )
}

/// The checks that book one message: its share of the account's
/// per-second rate (which can refuse it) and one share of each
/// sender→recipient pair (counted whatever the pair's state: the recipient
/// was accepted at RCPT).
fn message_checks(
    account_id: i64,
    from: &str,
    to: &[String],
    rate: &RateLimits,
    messages: u64,
) -> Vec<Check> {
    let mut checks = Vec::with_capacity(1 + to.len());
    checks.push(Check {
        key: mps_key(account_id),
        quota: Quota::per_second(rate.messages_per_second),
        n: messages,
        mode: Mode::Consume,
    });
    checks.extend(to.iter().map(|rcpt| Check {
        key: pair_key(account_id, from, rcpt),
        quota: Quota::per_hour(rate.pair_per_hour),
        n: 1,
        mode: Mode::Force,
    }));
    checks
}

/// What [`take_message`] booked, to give back if the message is not stored.
pub(crate) struct Booking(Vec<Check>);

/// Book `messages` messages (one, or an X-SMTPAPI batch's copies) before
/// they are committed, in one limiter step. Refused when the account is
/// over its per-second rate; then nothing is booked.
pub(crate) async fn take_message(
    limiter: &dyn Limiter,
    account_id: i64,
    from: &str,
    to: &[String],
    rate: &RateLimits,
    messages: u64,
) -> Result<Booking, SubmitError> {
    let checks = message_checks(account_id, from, to, rate, messages);
    let d = match limiter.check_all(&checks).await {
        Ok(d) => d[0],
        Err(e) => {
            tracing::warn!(error = %e, "rate limiter unavailable; letting the message through");
            Decision::Allowed
        }
    };
    if d.is_allowed() {
        return Ok(Booking(checks));
    }
    count_refusal("messages_per_second");
    Err(limited(
        451,
        "4.7.1",
        SMTP_RATE_LIMIT,
        format!(
            "more than {} messages per second for this account; retry in {:.2} s",
            rate.messages_per_second,
            retry_secs(d)
        ),
    ))
}

/// Give back what [`take_message`] booked for a message that was not stored
/// after all.
pub(crate) async fn give_back(limiter: &dyn Limiter, booking: Booking) {
    let mut checks = booking.0;
    for c in &mut checks {
        c.mode = Mode::Refund;
    }
    if let Err(e) = limiter.check_all(&checks).await {
        tracing::warn!(error = %e, "rate limiter unavailable; a refused message keeps its share");
    }
}

/// Room known to be left in sender→recipient pairs, so most RCPTs need no
/// limiter round trip: when a pair's limit is large, one peek asks whether
/// a tenth of it is still free, and that many RCPTs are then allowed here
/// for [`HEADROOM_TTL`] before asking again. A pair near its limit is asked
/// about every time. Another node may use the same room meanwhile, so a
/// cluster can overshoot by at most a tenth of the limit per node per TTL;
/// the booking at commit still counts every message.
#[derive(Default)]
pub(crate) struct PairHeadroom {
    known: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, u64)>>,
}

/// How long known room is trusted.
const HEADROOM_TTL: std::time::Duration = std::time::Duration::from_secs(1);
/// Entries kept before expired ones are swept.
const HEADROOM_SWEEP: usize = 10_000;

impl PairHeadroom {
    /// Take one unit of known room for `key`, if there is any.
    fn take(&self, key: &str) -> bool {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        match known.get_mut(key) {
            Some((until, left)) if *left > 0 && std::time::Instant::now() < *until => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }

    fn learn(&self, key: String, room: u64) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        if known.len() >= HEADROOM_SWEEP {
            known.retain(|_, (until, _)| *until > now);
        }
        known.insert(key, (now + HEADROOM_TTL, room));
    }
}

/// Whether one more message from `from` to `to` fits in the hour.
pub(crate) async fn pair_allowed(
    limiter: &dyn Limiter,
    headroom: &PairHeadroom,
    account_id: i64,
    from: &str,
    to: &str,
    per_hour: u64,
) -> Result<(), SubmitError> {
    let key = pair_key(account_id, from, to);
    let quota = Quota::per_hour(per_hour);
    let probe = (per_hour / 10).min(1000);
    if per_hour > 0 && probe >= 2 {
        if headroom.take(&key) {
            return Ok(());
        }
        if let Ok(d) = limiter.check(&key, quota, probe, Mode::Peek).await {
            if d.is_allowed() {
                headroom.learn(key, probe - 1);
                return Ok(());
            }
        }
    }
    let d = ask(limiter, &key, quota, Mode::Peek).await;
    if d.is_allowed() {
        return Ok(());
    }
    count_refusal("pair_per_hour");
    Err(limited(
        450,
        "4.7.1",
        RECIPIENT_RATE_LIMIT,
        format!(
            "more than {per_hour} messages per hour from {from} to {to}; retry in {:.0} s",
            retry_secs(d)
        ),
    ))
}

/// Book one call of an API user.
pub(crate) async fn api_call(
    limiter: &dyn Limiter,
    api_user: &str,
    per_minute: u64,
) -> Result<(), SubmitError> {
    let d = ask(
        limiter,
        &format!("api:{api_user}"),
        Quota::per_minute(per_minute),
        Mode::Consume,
    )
    .await;
    if d.is_allowed() {
        return Ok(());
    }
    count_refusal("api_calls_per_minute");
    Err(limited(
        451,
        "4.7.1",
        API_CALL_LIMIT,
        format!(
            "more than {per_minute} calls per minute for API user {api_user}; retry in {:.1} s",
            retry_secs(d)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use posthorn_ratelimit::LocalLimiter;

    async fn book(limiter: &LocalLimiter, n: u64, per_hour: u64) {
        let key = pair_key(1, "a@x.test", "b@y.test");
        limiter
            .check(&key, Quota::per_hour(per_hour), n, Mode::Force)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn known_room_is_used_and_a_nearly_full_pair_is_asked_exactly() {
        let limiter = LocalLimiter::new();
        let room = PairHeadroom::default();
        let allowed = |r: &Result<(), SubmitError>| r.is_ok();
        // A tenth of 100 is free: learned, and nine more RCPTs need no ask.
        let r = pair_allowed(&limiter, &room, 1, "a@x.test", "b@y.test", 100).await;
        assert!(allowed(&r));
        let key = pair_key(1, "a@x.test", "b@y.test");
        for _ in 0..9 {
            assert!(room.take(&key));
        }
        assert!(!room.take(&key));
        // Nearly full: the probe fails, the exact peek decides.
        book(&limiter, 95, 100).await;
        room.known.lock().unwrap().clear();
        let r = pair_allowed(&limiter, &room, 1, "a@x.test", "b@y.test", 100).await;
        assert!(allowed(&r));
        assert!(!room.take(&key), "no room learned near the limit");
        book(&limiter, 5, 100).await;
        let r = pair_allowed(&limiter, &room, 1, "a@x.test", "b@y.test", 100).await;
        assert!(matches!(r, Err(SubmitError::Business(b)) if b.code == RECIPIENT_RATE_LIMIT));
        // Small limits are always asked exactly.
        let r = pair_allowed(&limiter, &room, 2, "a@x.test", "c@y.test", 10).await;
        assert!(allowed(&r));
        assert!(!room.take(&pair_key(2, "a@x.test", "c@y.test")));
    }
}
