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
        message,
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
fn message_checks(account_id: i64, from: &str, to: &[String], rate: &RateLimits) -> Vec<Check> {
    let mut checks = Vec::with_capacity(1 + to.len());
    checks.push(Check {
        key: mps_key(account_id),
        quota: Quota::per_second(rate.messages_per_second),
        n: 1,
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

/// Book one message before it is committed, in one limiter step. Refused
/// when the account is over its per-second rate; then nothing is booked.
pub(crate) async fn take_message(
    limiter: &dyn Limiter,
    account_id: i64,
    from: &str,
    to: &[String],
    rate: &RateLimits,
) -> Result<Booking, SubmitError> {
    let checks = message_checks(account_id, from, to, rate);
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

/// Whether one more message from `from` to `to` fits in the hour.
pub(crate) async fn pair_allowed(
    limiter: &dyn Limiter,
    account_id: i64,
    from: &str,
    to: &str,
    per_hour: u64,
) -> Result<(), SubmitError> {
    let d = ask(
        limiter,
        &pair_key(account_id, from, to),
        Quota::per_hour(per_hour),
        Mode::Peek,
    )
    .await;
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
