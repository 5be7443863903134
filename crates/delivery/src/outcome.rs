//! What an attempt's result means for a recipient: delivered, deferred
//! until when, bounced (and whether the address is suppressed), or
//! expired. Pure functions of the result, the attempt count and the clock.

use posthorn_types::RecipientStatus;
use std::time::Duration;

/// The result of one attempt for one recipient, as the remote said it (or
/// as Posthorn describes a failure that had no reply).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptResult {
    /// The SMTP code (2xx, 4xx, 5xx); failures without a reply (refused
    /// connection, timeout, DNS) are described with a 4xx or 5xx of
    /// Posthorn's own.
    pub code: u16,
    /// The enhanced status code when known (`5.1.1`).
    pub enhanced: Option<String>,
    /// The reply as recorded: `550 5.1.1 user unknown`.
    pub reply: String,
    /// The server that answered, `name[address]`, when one did.
    pub remote_host: Option<String>,
}

/// The new state of the recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub status: RecipientStatus,
    /// Attempts made, this one included.
    pub attempts: u32,
    /// When to try again (deferred only), Unix seconds.
    pub next_try: Option<i64>,
    /// Whether the address goes on the account's suppression list.
    pub suppress: bool,
}

/// The retry policy.
#[derive(Clone, Debug)]
pub struct RetryPolicy<'a> {
    pub schedule: &'a [Duration],
    pub max_age: Duration,
}

/// Decide what becomes of a recipient accepted at `received_at` after
/// `attempts_before` earlier attempts, given this attempt's result at `now`.
pub fn decide(
    result: &AttemptResult,
    attempts_before: u32,
    received_at: i64,
    now: i64,
    policy: &RetryPolicy,
) -> Decision {
    let attempts = attempts_before.saturating_add(1);
    let done = |status, suppress| Decision {
        status,
        attempts,
        next_try: None,
        suppress,
    };
    match result.code {
        200..=299 => done(RecipientStatus::Delivered, false),
        500..=599 => done(RecipientStatus::Bounced, is_hard_bounce(result)),
        _ => {
            let expires = received_at.saturating_add(policy.max_age.as_secs() as i64);
            if now >= expires {
                return done(RecipientStatus::Expired, false);
            }
            let wait = retry_delay(policy.schedule, attempts);
            // The last try falls at the expiry time, not after it.
            let next = now
                .saturating_add(wait.as_secs().max(1) as i64)
                .min(expires);
            Decision {
                status: RecipientStatus::Deferred,
                attempts,
                next_try: Some(next),
                suppress: false,
            }
        }
    }
}

/// Whether a bounce puts the address on the account's suppression list.
/// Only when a receiving server said the mailbox does not exist (a hard
/// bounce with a reply, `remote_host` set), never for Posthorn's own
/// findings (no such domain in DNS: a typo fixed, a DNS outage or a domain
/// not yet registered undoes it, and the next message gets the same
/// bounce anyway without burning the address), and never for a bounce
/// notice (its recipient is the account's own sender address: suppressing
/// it would refuse the sender's own mail to itself). The operator can
/// always add an address by hand.
pub fn suppresses(decision: &Decision, result: &AttemptResult, is_dsn: bool) -> bool {
    decision.suppress && result.remote_host.is_some() && !is_dsn
}

/// The wait after the `attempts`-th failed attempt (1-based): the
/// schedule's entry, its last entry once past the end, a minute when the
/// schedule is empty.
pub fn retry_delay(schedule: &[Duration], attempts: u32) -> Duration {
    let i = (attempts.max(1) - 1) as usize;
    schedule
        .get(i)
        .or(schedule.last())
        .copied()
        .unwrap_or(Duration::from_secs(60))
}

/// A permanent failure that says the address itself is bad (RFC 3463 class
/// 5.1.x: no such mailbox, no such domain, bad syntax; or a plain 550 whose
/// text says so), as opposed to a refusal of this message (content, size,
/// policy) that says nothing about the next one.
pub fn is_hard_bounce(result: &AttemptResult) -> bool {
    if result.code < 500 {
        return false;
    }
    if let Some(e) = &result.enhanced {
        return e.starts_with("5.1.");
    }
    let text = result.reply.to_ascii_lowercase();
    matches!(result.code, 550 | 551 | 553)
        && [
            "user unknown",
            "unknown user",
            "no such user",
            "no such mailbox",
            "mailbox unavailable",
            "does not exist",
            "recipient rejected",
            "invalid recipient",
        ]
        .iter()
        .any(|phrase| text.contains(phrase))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_remote_mailbox_refusal_suppresses() {
        let policy = RetryPolicy {
            schedule: &[Duration::from_secs(60)],
            max_age: Duration::from_secs(3600),
        };
        let mut remote = result(550, Some("5.1.1"), "user unknown");
        remote.remote_host = Some("mx.example.net[192.0.2.1]".into());
        let d = decide(&remote, 0, 0, 1, &policy);
        assert!(suppresses(&d, &remote, false));
        assert!(
            !suppresses(&d, &remote, true),
            "a bounce notice's recipient"
        );
        // Posthorn's own NXDOMAIN finding: bounced, not suppressed.
        let nxdomain = result(550, Some("5.1.2"), "example.invalid: domain does not exist");
        let d = decide(&nxdomain, 0, 0, 1, &policy);
        assert_eq!(d.status, RecipientStatus::Bounced);
        assert!(!suppresses(&d, &nxdomain, false));
        let mut content = result(554, Some("5.7.1"), "spam");
        content.remote_host = remote.remote_host.clone();
        let d = decide(&content, 0, 0, 1, &policy);
        assert!(!suppresses(&d, &content, false));
    }

    fn result(code: u16, enhanced: Option<&str>, text: &str) -> AttemptResult {
        AttemptResult {
            code,
            enhanced: enhanced.map(str::to_string),
            reply: format!("{code} {text}"),
            remote_host: None,
        }
    }

    const MIN: Duration = Duration::from_secs(60);

    fn policy(schedule: &[Duration]) -> RetryPolicy<'_> {
        RetryPolicy {
            schedule,
            max_age: Duration::from_secs(3600),
        }
    }

    #[test]
    fn delivered_and_bounced_are_final() {
        let s = [MIN];
        let d = decide(&result(250, Some("2.0.0"), "ok"), 0, 0, 10, &policy(&s));
        assert_eq!(d.status, RecipientStatus::Delivered);
        assert_eq!(d.attempts, 1);
        assert_eq!(d.next_try, None);
        let d = decide(
            &result(550, Some("5.1.1"), "user unknown"),
            2,
            0,
            10,
            &policy(&s),
        );
        assert_eq!(d.status, RecipientStatus::Bounced);
        assert_eq!(d.attempts, 3);
        assert!(d.suppress);
        let d = decide(
            &result(552, Some("5.3.4"), "too big"),
            0,
            0,
            10,
            &policy(&s),
        );
        assert_eq!(d.status, RecipientStatus::Bounced);
        assert!(!d.suppress, "a refusal of the message is not a bad address");
    }

    #[test]
    fn temporary_failures_follow_the_schedule_then_expire() {
        let s = [MIN, 5 * MIN, 15 * MIN];
        let p = policy(&s);
        let r = result(451, Some("4.3.0"), "try later");
        let d = decide(&r, 0, 0, 100, &p);
        assert_eq!(
            (d.status, d.next_try),
            (RecipientStatus::Deferred, Some(160))
        );
        assert_eq!(decide(&r, 1, 0, 100, &p).next_try, Some(400));
        assert_eq!(decide(&r, 2, 0, 100, &p).next_try, Some(1000));
        // Past the end the last entry repeats, but never past the expiry.
        assert_eq!(decide(&r, 7, 0, 100, &p).next_try, Some(1000));
        assert_eq!(decide(&r, 7, 0, 3000, &p).next_try, Some(3600));
        let d = decide(&r, 8, 0, 3600, &p);
        assert_eq!(d.status, RecipientStatus::Expired);
        assert_eq!(d.attempts, 9);
    }

    #[test]
    fn sub_second_schedules_still_wait_a_second() {
        let s = [Duration::from_millis(10)];
        let d = decide(&result(421, None, "busy"), 0, 0, 5, &policy(&s));
        assert_eq!(d.next_try, Some(6));
    }

    #[test]
    fn hard_bounces() {
        assert!(is_hard_bounce(&result(550, Some("5.1.1"), "x")));
        assert!(is_hard_bounce(&result(550, Some("5.1.10"), "null MX")));
        assert!(!is_hard_bounce(&result(550, Some("5.7.1"), "spam")));
        assert!(is_hard_bounce(&result(
            550,
            None,
            "User unknown in virtual table"
        )));
        assert!(!is_hard_bounce(&result(
            550,
            None,
            "message rejected as spam"
        )));
        assert!(!is_hard_bounce(&result(450, Some("4.1.1"), "later")));
        assert_eq!(retry_delay(&[], 3), MIN);
    }
}
