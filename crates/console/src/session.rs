//! Sign-in sessions and CSRF tokens, without I/O (the store keeps the
//! sessions; this module makes and checks the strings).
//!
//! - A session token is 32 random bytes, hex, in the `ph_session` cookie
//!   (HttpOnly, SameSite=Strict, Secure behind TLS). The store keeps only
//!   its SHA-256 ([`token_hash`]), so a copy of the database signs nobody
//!   in.
//! - The CSRF token of a session is derived from its token
//!   ([`csrf_for`]): a page can show it, a form must send it back, and a
//!   site that cannot read the cookie cannot compute it.
//! - Before sign-in there is no session: the sign-in form is protected by
//!   a double-submit cookie (`ph_pre`, random, compared with the form's
//!   field).

use rand::RngCore;
use sha2::{Digest, Sha256};

/// The session cookie.
pub const SESSION_COOKIE: &str = "ph_session";
/// The pre-sign-in CSRF cookie.
pub const PRE_COOKIE: &str = "ph_pre";
/// The language cookie.
pub const LANG_COOKIE: &str = "ph_lang";
/// A session unused this long ends (seconds).
pub const IDLE_SECS: i64 = 12 * 3600;
/// A session ends this long after sign-in whatever its use (seconds).
pub const MAX_SECS: i64 = 7 * 24 * 3600;
/// A session's expiry is moved at most this often (seconds), so a page
/// view is one read, not a write too.
pub const TOUCH_EVERY: i64 = 60;

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// A new random token (64 hex digits).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex(&bytes)
}

/// Whether `s` has the shape of a token (before any store lookup).
pub fn is_token(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What the store keeps of a token.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// The CSRF token of the session with `token`.
pub fn csrf_for(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"posthorn console csrf\0");
    h.update(token.as_bytes());
    hex(&h.finalize())
}

/// Compare without an early exit.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether a form's `csrf` field is the session's.
pub fn csrf_ok(token: &str, given: &str) -> bool {
    !given.is_empty() && same(&csrf_for(token), given)
}

/// Whether the pre-sign-in cookie and the form's field agree.
pub fn pre_ok(cookie: Option<&str>, given: &str) -> bool {
    matches!(cookie, Some(c) if is_token(c) && same(c, given))
}

/// The new expiry of a session used at `now`, when it should be written:
/// `None` while the stored one is recent enough. Never past `created_at +
/// MAX_SECS`.
pub fn touched_expiry(created_at: i64, expires_at: i64, now: i64) -> Option<i64> {
    let wanted = (now + IDLE_SECS).min(created_at + MAX_SECS);
    (wanted - expires_at >= TOUCH_EVERY).then_some(wanted)
}

/// Whether a session is valid at `now`.
pub fn alive(created_at: i64, expires_at: i64, now: i64) -> bool {
    now < expires_at && now < created_at + MAX_SECS
}

/// A `Set-Cookie` value. `max_age` 0 deletes the cookie.
pub fn cookie(name: &str, value: &str, max_age: i64, secure: bool, http_only: bool) -> String {
    let mut c = format!("{name}={value}; Path=/; Max-Age={max_age}; SameSite=Strict");
    if http_only {
        c.push_str("; HttpOnly");
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex_and_only_their_hash_is_kept() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert!(is_token(&a));
        assert!(!is_token("abc"));
        assert!(!is_token(&"g".repeat(64)));
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_ne!(token_hash(&a), a);
        assert_eq!(token_hash(&a).len(), 64);
    }

    #[test]
    fn csrf_is_per_session_and_checked_exactly() {
        let t = new_token();
        let c = csrf_for(&t);
        assert!(csrf_ok(&t, &c));
        assert!(!csrf_ok(&t, ""));
        assert!(!csrf_ok(&t, &c[..63]));
        assert!(!csrf_ok(&new_token(), &c));
        // Not the token, nor its stored hash.
        assert_ne!(c, t);
        assert_ne!(c, token_hash(&t));
    }

    #[test]
    fn the_pre_sign_in_cookie_must_match_the_form() {
        let p = new_token();
        assert!(pre_ok(Some(&p), &p));
        assert!(!pre_ok(None, &p));
        assert!(!pre_ok(Some(&p), ""));
        assert!(!pre_ok(Some("x"), "x"));
        assert!(!pre_ok(Some(&p), &new_token()));
    }

    #[test]
    fn sessions_idle_out_and_have_a_ceiling() {
        let created = 1_000_000;
        let exp = created + IDLE_SECS;
        assert!(alive(created, exp, created + 10));
        assert!(!alive(created, exp, exp));
        // Used soon after a write: no new write.
        assert_eq!(touched_expiry(created, exp, created + 30), None);
        // Used later: moved to now + idle.
        assert_eq!(
            touched_expiry(created, exp, created + 600),
            Some(created + 600 + IDLE_SECS)
        );
        // Never past the ceiling.
        let late = created + MAX_SECS - 100;
        assert_eq!(
            touched_expiry(created, late - 10, late),
            Some(created + MAX_SECS)
        );
        assert!(!alive(created, created + MAX_SECS + 50, created + MAX_SECS));
    }

    #[test]
    fn cookies_are_strict_http_only_and_parse_back() {
        let c = cookie(SESSION_COOKIE, "abc", IDLE_SECS, false, true);
        assert!(c.contains("HttpOnly"));
        assert!(c.contains("SameSite=Strict"));
        assert!(!c.contains("Secure"));
        assert!(cookie(SESSION_COOKIE, "abc", 0, true, true).contains("; Secure"));
        let header = "ph_lang=zh; ph_session=abc; other=1";
        assert_eq!(cookie_value(header, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie_value(header, LANG_COOKIE), Some("zh"));
        assert_eq!(cookie_value(header, "none"), None);
        assert_eq!(cookie_value("garbage", SESSION_COOKIE), None);
    }
}
