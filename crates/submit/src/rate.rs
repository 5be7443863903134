//! The account rate limits on the submission path, as limiter keys and the
//! business errors their refusals are answered with. A limiter that cannot
//! be asked lets the work through: limits protect, they never lose mail.

use crate::SubmitError;
use posthorn_policy::codes::{API_CALL_LIMIT, RECIPIENT_RATE_LIMIT, SMTP_RATE_LIMIT};
use posthorn_ratelimit::{count_refusal, Decision, Limiter, Mode, Quota};
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

/// Book one accepted message against the account's per-second rate.
pub(crate) async fn take_message(
    limiter: &dyn Limiter,
    account_id: i64,
    per_second: u64,
) -> Result<(), SubmitError> {
    let d = ask(
        limiter,
        &mps_key(account_id),
        Quota::per_second(per_second),
        Mode::Consume,
    )
    .await;
    if d.is_allowed() {
        return Ok(());
    }
    count_refusal("messages_per_second");
    Err(limited(
        451,
        "4.7.1",
        SMTP_RATE_LIMIT,
        format!(
            "more than {per_second} messages per second for this account; retry in {:.2} s",
            retry_secs(d)
        ),
    ))
}

/// Give back the share of a message that was not stored after all.
pub(crate) async fn give_back_message(limiter: &dyn Limiter, account_id: i64, per_second: u64) {
    ask(
        limiter,
        &mps_key(account_id),
        Quota::per_second(per_second),
        Mode::Refund,
    )
    .await;
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

/// Count an accepted message against each of its sender→recipient pairs.
pub(crate) async fn count_pairs(
    limiter: &dyn Limiter,
    account_id: i64,
    from: &str,
    to: &[String],
    per_hour: u64,
) {
    for rcpt in to {
        ask(
            limiter,
            &pair_key(account_id, from, rcpt),
            Quota::per_hour(per_hour),
            Mode::Force,
        )
        .await;
    }
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
