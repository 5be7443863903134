//! SMTP passwords and API user keys: a given one must be hard to guess, or
//! one is generated.
//!
//! Strength is judged by zxcvbn (Dropbox's estimator: common passwords,
//! words, names, keyboard patterns, dates, repeats, l33t), which also
//! knows the login's own address, its parts and the account name, so
//! `password`, `12345678` and `app@example.com` are refused with its
//! reason. The bar is score 3 of 4 (about 10^8 guesses or more): against
//! the AUTH lockout (a few guesses per address and user every few
//! minutes) that is centuries online, and it still takes a four-word
//! phrase or 12 random characters.

use crate::{AdminError, AdminResult};

/// The lowest zxcvbn score accepted (0 to 4).
pub const MIN_SCORE: u8 = 3;
/// Fewer characters are refused before zxcvbn is asked.
pub const MIN_CHARS: usize = 8;
/// More bytes are refused (argon2 takes any length; a line does not).
pub const MAX_BYTES: usize = 1024;

/// The secret given, checked, or a generated one; `true` when generated
/// (and so to be shown once). `what` names it in messages ("password",
/// "key"); `context` is what the login is made of (address, account,
/// user name), which a secret must not be built from.
pub fn secret_or_generated(
    what: &str,
    given: Option<String>,
    context: &[&str],
) -> AdminResult<(String, bool)> {
    match given {
        Some(secret) => {
            check_strength(what, &secret, context)?;
            Ok((secret, false))
        }
        None => Ok((posthorn_submit::generate_secret(), true)),
    }
}

/// Refuse a secret that is too short, too long, has control characters or
/// is easy to guess, saying why and what would do.
pub fn check_strength(what: &str, secret: &str, context: &[&str]) -> AdminResult<()> {
    if secret.chars().count() < MIN_CHARS {
        return Err(AdminError::Invalid(format!(
            "the {what} must be at least {MIN_CHARS} characters"
        )));
    }
    if secret.len() > MAX_BYTES || secret.chars().any(char::is_control) {
        return Err(AdminError::Invalid(format!(
            "the {what} must be at most {MAX_BYTES} bytes without control characters"
        )));
    }
    // The parts of each input too (the local part of an address, the
    // labels of its domain), lower-cased, since zxcvbn matches whole words.
    let mut words: Vec<String> = Vec::new();
    for c in context {
        let c = c.to_lowercase();
        words.extend(
            c.split(['@', '.', '#', '-', '_', '+'])
                .filter(|w| w.len() >= 3)
                .map(str::to_string),
        );
        words.push(c);
    }
    let inputs: Vec<&str> = words.iter().map(String::as_str).collect();
    let estimate = zxcvbn::zxcvbn(secret, &inputs);
    let score = u8::from(estimate.score());
    if score >= MIN_SCORE {
        return Ok(());
    }
    let mut why = match estimate.feedback().and_then(|f| f.warning()) {
        Some(w) => format!("the {what} is too easy to guess: {w}"),
        None => format!("the {what} is too easy to guess"),
    };
    let why_ends = why.ends_with('.');
    if !why_ends {
        why.push('.');
    }
    why.push_str(
        " Use four or more uncommon words, or 12 random characters, or leave it out to have one generated",
    );
    Err(AdminError::Invalid(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(secret: &str, context: &[&str]) -> String {
        match check_strength("password", secret, context) {
            Err(AdminError::Invalid(m)) => m,
            other => panic!("{secret:?} should be refused, got {other:?}"),
        }
    }

    #[test]
    fn weak_secrets_are_refused_with_a_reason() {
        let ctx = ["app@example.com", "shop"];
        assert!(refused("short", &ctx).contains("at least 8 characters"));
        for weak in [
            "12345678",
            "password",
            "Password1",
            "qwertyuiop",
            "app@example.com",
            "example.com",
            "shopshop",
            "aaaaaaaaaaaa",
        ] {
            let why = refused(weak, &ctx);
            assert!(why.contains("too easy to guess"), "{weak}: {why}");
        }
        assert!(refused("bad\npassword-xyz", &ctx).contains("control characters"));
    }

    #[test]
    fn strong_secrets_pass_and_generated_ones_are_strong() {
        let ctx = ["app@example.com", "shop"];
        for strong in [
            "correct horse battery staple",
            "change-me-please-7Rq",
            "Xk9#mQ2vLp4w",
        ] {
            assert!(check_strength("password", strong, &ctx).is_ok(), "{strong}");
        }
        let (generated, was) = secret_or_generated("password", None, &ctx).unwrap();
        assert!(was);
        assert!(check_strength("password", &generated, &ctx).is_ok());
        let (given, was) =
            secret_or_generated("key", Some("correct horse battery staple".into()), &ctx).unwrap();
        assert!(!was && given == "correct horse battery staple");
    }
}
