//! DKIM signing of outgoing messages (RFC 6376), with the key of the
//! message's From domain.
//!
//! A [`DkimKey`] is parsed once from the stored PEM (callers cache it per
//! domain); [`DkimKey::sign`] only hashes and signs. The signature uses
//! relaxed/relaxed canonicalization, no body length (`l=`), no expiry
//! (`x=`), a timestamp (`t=`), and signs the fields of [`SIGNED_HEADERS`] that
//! the message has, every instance of each; the fields of
//! [`OVERSIGNED_HEADERS`] are named once more in `h=` than they occur
//! (RFC 6376 §5.4.2, §8.15), so none can be added in transit without
//! breaking the signature (a second From or Subject put above the signed
//! ones would otherwise still pass).
//! The algorithm follows the key: `rsa-sha256` for RSA keys (what `posthorn
//! domain add` makes), `ed25519-sha256` (RFC 8463) for Ed25519 keys.
//!
//! The signing itself is mail-auth's, on aws-lc-rs (the build's one crypto
//! library; its RSA-2048 signature costs about 0.45 ms of CPU here, ring's
//! 0.67-0.79 ms).

use mail_auth::common::crypto::{
    Algorithm, DkimKey as AnyKey, Ed25519Key, RsaKey, Sha256, SigningKey,
};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::{Canonicalization, DkimSigner};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use std::fmt;

/// The header fields signed, those of them the message has (each with all
/// its instances): the ones a reader sees or that decide how the body is
/// read, plus the threading and unsubscribe fields.
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Reply-To",
    "In-Reply-To",
    "References",
    "List-Unsubscribe",
    // RFC 8058 3.1: a one-click unsubscribe is honoured only when the
    // signature covers both fields.
    "List-Unsubscribe-Post",
];

/// The fields named once more in `h=` than the message has them (one null
/// instance; for an absent field, its only mention), so that adding one
/// breaks the signature: the fields a reader is shown as who sent the mail,
/// to whom, and what it is about.
pub const OVERSIGNED_HEADERS: &[&str] = &["From", "To", "Cc", "Subject", "Reply-To"];

/// Why a key could not be read or a message could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    /// The stored private key is not a PEM RSA or Ed25519 private key that
    /// can sign.
    #[error("DKIM key for {domain}: {reason}")]
    Key { domain: String, reason: String },
    /// The domain or selector cannot appear in a DKIM-Signature field.
    #[error("DKIM {what} {value:?} is not a valid DNS name")]
    Name { what: &'static str, value: String },
    /// The message has no From field, which DKIM requires to be signed.
    #[error("message has no From header field; DKIM cannot sign it")]
    NoFrom,
    /// Signing failed inside the crypto layer.
    #[error("DKIM signing failed: {0}")]
    Sign(String),
}

/// A parsed signing key for one domain and selector. Parse it once per
/// domain and keep it (it is `Send + Sync`; share it behind an `Arc`).
pub struct DkimKey {
    domain: String,
    selector: String,
    key: AnyKey,
}

impl fmt::Debug for DkimKey {
    // Never the key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DkimKey")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &algorithm_name(self.key.algorithm()))
            .finish_non_exhaustive()
    }
}

impl DkimKey {
    /// From the stored PEM: a PKCS#8 RSA key (`BEGIN PRIVATE KEY`, as
    /// `posthorn domain add` makes), a PKCS#1 RSA key (`BEGIN RSA PRIVATE
    /// KEY`), or a PKCS#8 Ed25519 key. RSA keys must be 2048 to 8192 bits
    /// (the crypto library's limits). A non-ASCII domain is converted to its A-label.
    pub fn from_pem(domain: &str, selector: &str, pem: &str) -> Result<DkimKey, DkimError> {
        let domain = mail_auth::common::to_a_label(domain.trim_end_matches('.')).into_owned();
        check_name("domain", &domain)?;
        check_name("selector", selector)?;
        let key_error = |reason: String| DkimError::Key {
            domain: domain.clone(),
            reason,
        };
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| key_error(format!("no PEM private key found ({e})")))?;
        let key = match der {
            PrivateKeyDer::Pkcs1(_) => RsaKey::<Sha256>::from_key_der(der)
                .map(AnyKey::Rsa)
                .map_err(|e| key_error(format!("unusable RSA key: {e}")))?,
            PrivateKeyDer::Pkcs8(ref pkcs8) => {
                let bytes = pkcs8.secret_pkcs8_der().to_vec();
                match RsaKey::<Sha256>::from_key_der(der) {
                    Ok(rsa) => AnyKey::Rsa(rsa),
                    // Accepts both PKCS#8 v1 (OpenSSL's) and v2 Ed25519 keys.
                    Err(rsa_err) => match Ed25519Key::from_pkcs8_maybe_unchecked_der(&bytes) {
                        Ok(ed) => AnyKey::Ed25519(ed),
                        Err(ed_err) => {
                            return Err(key_error(format!(
                                "neither a usable RSA key ({rsa_err}) nor an Ed25519 key ({ed_err})"
                            )))
                        }
                    },
                }
            }
            _ => {
                return Err(key_error(
                    "unsupported key type (not RSA or Ed25519)".into(),
                ))
            }
        };
        Ok(DkimKey {
            domain,
            selector: selector.to_owned(),
            key,
        })
    }

    /// The signing domain (`d=`), as an A-label.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The selector (`s=`).
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// The DKIM-Signature header field (folded, ending in CRLF) for
    /// `message` (the canonical stored bytes, CRLF line endings), to be
    /// prepended to it unchanged.
    pub fn sign(&self, message: &[u8]) -> Result<String, DkimError> {
        let mut present = [false; SIGNED_HEADERS.len()];
        for name in field_names(message) {
            if let Some(i) = SIGNED_HEADERS
                .iter()
                .position(|h| name.eq_ignore_ascii_case(h.as_bytes()))
            {
                present[i] = true;
            }
        }
        if !present[0] {
            return Err(DkimError::NoFrom);
        }
        // mail-auth signs every instance of each name in its list (matching
        // a field to the first equal name) and then names once more each
        // list entry no field matched: the second mention of an oversigned
        // name is never matched, so it is added once, after the instances.
        let headers = SIGNED_HEADERS
            .iter()
            .zip(present)
            .filter_map(|(h, p)| p.then_some(*h))
            .chain(OVERSIGNED_HEADERS.iter().copied());
        let signature = DkimSigner::from_key(KeyRef(&self.key))
            .domain(self.domain.as_str())
            .selector(self.selector.as_str())
            .headers(headers)
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed)
            .sign(message)
            .map_err(|e| DkimError::Sign(e.to_string()))?;
        Ok(signature.to_header())
    }
}

/// Lends the parsed key to a signer built per message, so the header list
/// can follow the message without parsing or copying the key.
struct KeyRef<'a>(&'a AnyKey);

impl SigningKey for KeyRef<'_> {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
}

/// The name of each header field of `message`, in order, as mail-auth's
/// signer reads them: a field starts on a line that does not begin with
/// SP or HT, its name is everything before the first colon (not trimmed,
/// so `From :` is not `From`, for the signer either), and the header
/// section ends at the first empty line.
fn field_names(message: &[u8]) -> impl Iterator<Item = &[u8]> {
    message
        .split(|&b| b == b'\n')
        .take_while(|line| !matches!(line, [] | [b'\r']))
        .filter(|line| !matches!(line.first(), Some(b' ' | b'\t')))
        .filter_map(|line| line.iter().position(|&b| b == b':').map(|i| &line[..i]))
}

fn algorithm_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::RsaSha256 => "rsa-sha256",
        Algorithm::RsaSha1 => "rsa-sha1",
        Algorithm::Ed25519Sha256 => "ed25519-sha256",
    }
}

/// Dot-separated labels of letters, digits, `-` and `_` (selectors may hold
/// dots; `_` appears in real selectors), so nothing can break out of the
/// tag list of the signature field.
fn check_name(what: &'static str, value: &str) -> Result<(), DkimError> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(DkimError::Name {
            what,
            value: value.to_owned(),
        })
    }
}
