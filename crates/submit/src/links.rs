//! Signed per-recipient links (issue 22): the one-click unsubscribe URL
//! (RFC 8058) that the submitter writes into each recipient's copy and
//! the HTTP listener's `/u/{token}` route checks.
//!
//! The same tokens (under another purpose, so one kind never passes for
//! the other) make the open pixel `{base_url}/t/o/{token}.gif` and the
//! tracked links `{base_url}/t/c/{token}?u={url}&s={sig}` (docs/tracking.md),
//! where `sig` is a tag over the token and the URL: only URLs that were in
//! the message redirect, so the route is no open redirect.
//!
//! A token names the account, the message and the recipient, and carries
//! an HMAC-SHA-256 tag over them (truncated to 128 bits) under the
//! `[tracking] secret` key, so a link cannot be made for another address
//! or message. Pure: no I/O, no clock.
//!
//! `{account_id}.{message_id}.{base64url(recipient)}.{base64url(tag)}`

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use posthorn_types::MessageId;
use sha2::Sha256;

/// Bytes of the tag kept in a token.
const TAG_LEN: usize = 16;
/// The longest token accepted (an address is at most 254 bytes).
pub const MAX_TOKEN: usize = 512;

const UNSUBSCRIBE: &[u8] = b"posthorn-unsubscribe\0";
const TRACK: &[u8] = b"posthorn-track\0";

/// Every byte but unreserved ones (RFC 3986) as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What a valid unsubscribe (or tracking) token names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsubscribe {
    pub account_id: i64,
    pub message_id: MessageId,
    pub recipient: String,
}

/// The key and public base URL links are made with (`[tracking]`).
#[derive(Clone)]
pub struct Links {
    key: [u8; 32],
    base_url: String,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Links {
    /// `base_url` without a trailing `/` (one is taken off).
    pub fn new(key: [u8; 32], base_url: &str) -> Self {
        Self {
            key,
            base_url: base_url.trim_end_matches('/').to_string(),
        }
    }

    /// A key from a configured secret of any length (its SHA-256).
    pub fn key_from_secret(secret: &str) -> [u8; 32] {
        use sha2::Digest;
        Sha256::digest(secret.as_bytes()).into()
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn tag_for(&self, purpose: &[u8], account_id: i64, id: &str, recipient: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        // The purpose first, so a tag for one kind of link is never
        // valid for another.
        mac.update(purpose);
        mac.update(account_id.to_string().as_bytes());
        mac.update(b"\0");
        mac.update(id.as_bytes());
        mac.update(b"\0");
        mac.update(recipient.as_bytes());
        mac
    }

    /// The token for one recipient of one message.
    pub fn unsubscribe_token(&self, account_id: i64, id: MessageId, recipient: &str) -> String {
        self.token(UNSUBSCRIBE, account_id, id, recipient)
    }

    fn token(&self, purpose: &[u8], account_id: i64, id: MessageId, recipient: &str) -> String {
        let id = id.to_string();
        let tag = self
            .tag_for(purpose, account_id, &id, recipient)
            .finalize()
            .into_bytes();
        format!(
            "{account_id}.{id}.{}.{}",
            URL_SAFE_NO_PAD.encode(recipient.as_bytes()),
            URL_SAFE_NO_PAD.encode(&tag[..TAG_LEN])
        )
    }

    /// `{base_url}/u/{token}`.
    pub fn unsubscribe_url(&self, account_id: i64, id: MessageId, recipient: &str) -> String {
        format!(
            "{}/u/{}",
            self.base_url,
            self.unsubscribe_token(account_id, id, recipient)
        )
    }

    /// What `token` names, if its tag is right (compared in constant
    /// time); `None` for anything else, with no reason given.
    pub fn verify_unsubscribe(&self, token: &str) -> Option<Unsubscribe> {
        self.verify(UNSUBSCRIBE, token)
    }

    /// The tracking token of one recipient of one message (the open pixel
    /// and the click links).
    pub fn track_token(&self, account_id: i64, id: MessageId, recipient: &str) -> String {
        self.token(TRACK, account_id, id, recipient)
    }

    /// What a tracking token names, if its tag is right.
    pub fn verify_track(&self, token: &str) -> Option<Unsubscribe> {
        self.verify(TRACK, token)
    }

    /// `{base_url}/t/o/{token}.gif`.
    pub fn open_url(&self, token: &str) -> String {
        format!("{}/t/o/{token}.gif", self.base_url)
    }

    fn click_tag(&self, token: &str, url: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(b"posthorn-click\0");
        mac.update(token.as_bytes());
        mac.update(b"\0");
        mac.update(url.as_bytes());
        mac
    }

    /// `{base_url}/t/c/{token}?u={url, percent-encoded}&s={tag}`.
    pub fn click_url(&self, token: &str, url: &str) -> String {
        let tag = self.click_tag(token, url).finalize().into_bytes();
        format!(
            "{}/t/c/{token}?u={}&s={}",
            self.base_url,
            percent_encode(url),
            URL_SAFE_NO_PAD.encode(&tag[..TAG_LEN])
        )
    }

    /// Whether `sig` is the tag of `url` in a click link of `token`
    /// (compared in constant time).
    pub fn verify_click(&self, token: &str, url: &str, sig: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(sig) else {
            return false;
        };
        tag.len() == TAG_LEN
            && self
                .click_tag(token, url)
                .verify_truncated_left(&tag)
                .is_ok()
    }

    fn verify(&self, purpose: &[u8], token: &str) -> Option<Unsubscribe> {
        if token.len() > MAX_TOKEN {
            return None;
        }
        let mut parts = token.split('.');
        let (account, id, rcpt, tag) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let account_id: i64 = account.parse().ok()?;
        if account_id.to_string() != account {
            return None;
        }
        let message_id: MessageId = id.parse().ok()?;
        let recipient = String::from_utf8(URL_SAFE_NO_PAD.decode(rcpt).ok()?).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if tag.len() != TAG_LEN {
            return None;
        }
        self.tag_for(purpose, account_id, id, &recipient)
            .verify_truncated_left(&tag)
            .ok()?;
        Some(Unsubscribe {
            account_id,
            message_id,
            recipient,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_forgeries_do_not() {
        let links = Links::new([7; 32], "https://mail.example.com/");
        let id = MessageId::generate();
        let url = links.unsubscribe_url(3, id, "Ann@example.com");
        assert!(url.starts_with("https://mail.example.com/u/3."), "{url}");
        let token = url.rsplit('/').next().unwrap();
        assert_eq!(
            links.verify_unsubscribe(token),
            Some(Unsubscribe {
                account_id: 3,
                message_id: id,
                recipient: "Ann@example.com".into()
            })
        );
        // Another key, account, recipient or a changed tag: refused.
        assert_eq!(Links::new([8; 32], "x").verify_unsubscribe(token), None);
        let other = links.unsubscribe_token(3, id, "bob@example.com");
        let (_, other_tag) = other.rsplit_once('.').unwrap();
        let (head, _) = token.rsplit_once('.').unwrap();
        assert_eq!(
            links.verify_unsubscribe(&format!("{head}.{other_tag}")),
            None
        );
        assert_eq!(
            links.verify_unsubscribe(&token.replacen("3.", "4.", 1)),
            None
        );
        assert_eq!(
            links.verify_unsubscribe(&token.replacen("3.", "03.", 1)),
            None
        );
        assert_eq!(links.verify_unsubscribe(&format!("{token}.x")), None);
        assert_eq!(links.verify_unsubscribe(""), None);
        assert_eq!(links.verify_unsubscribe(&"a".repeat(600)), None);
        let mut bad = token.to_string();
        let last = bad.pop().unwrap();
        bad.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(links.verify_unsubscribe(&bad), None);
        // A tracking token is no unsubscribe token, nor the reverse.
        let track = links.track_token(3, id, "Ann@example.com");
        assert!(links.verify_track(&track).is_some());
        assert_eq!(links.verify_unsubscribe(&track), None);
        assert_eq!(links.verify_track(token), None);
        // Click links: only the signed URL.
        let url = "https://shop.example.com/a?b=1&c=%20";
        let click = links.click_url(&track, url);
        let sig = click.rsplit_once("&s=").unwrap().1;
        assert!(
            click.contains("?u=https%3A%2F%2Fshop.example.com%2Fa%3Fb%3D1%26c%3D%2520&s="),
            "{click}"
        );
        assert!(links.verify_click(&track, url, sig));
        assert!(!links.verify_click(&track, "https://evil.example/", sig));
        assert!(!links.verify_click(&links.track_token(3, id, "bob@example.com"), url, sig));
        assert!(!links.verify_click(&track, url, "AAAA"));
        assert_eq!(
            links.open_url(&track),
            format!("https://mail.example.com/t/o/{track}.gif")
        );
        assert_eq!(Links::key_from_secret("s"), Links::key_from_secret("s"));
    }
}
