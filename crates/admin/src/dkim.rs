//! DKIM key generation and the DNS records a domain owner publishes, for
//! both `posthorn domain add` and `POST /v1/admin/accounts/{account}/domains`.

use base64::Engine;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

/// The selector of every generated key.
pub const SELECTOR: &str = "posthorn";

/// Generating a key failed (the system's random source, or an encoding).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// A new RSA-2048 key pair: (PKCS#8 PEM private key, base64 public key for `p=`).
/// Takes a good fraction of a second: call it off the async threads.
pub fn generate_rsa() -> Result<(String, String), KeyError> {
    let mut rng = rand::thread_rng();
    let private = rsa::RsaPrivateKey::new(&mut rng, 2048)
        .map_err(|e| KeyError(format!("generating the DKIM key: {e}")))?;
    let pem = private
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError(format!("encoding the DKIM key: {e}")))?
        .to_string();
    let public = private
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| KeyError(format!("encoding the DKIM public key: {e}")))?;
    let p = base64::engine::general_purpose::STANDARD.encode(public.as_bytes());
    Ok((pem, p))
}

/// A new Ed25519 key pair (RFC 8463): (PKCS#8 PEM private key, base64 of
/// the 32-byte public key for `p=`). Signing costs a tenth of RSA's; not
/// every receiver verifies it yet.
pub fn generate_ed25519() -> Result<(String, String), KeyError> {
    use aws_lc_rs::signature::KeyPair;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| KeyError("generating the DKIM key failed".into()))?;
    let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|_| KeyError("the generated DKIM key does not load".into()))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = b64.encode(pkcs8.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok((pem, b64.encode(pair.public_key().as_ref())))
}

/// `ed25519` for a 32-byte public key, else `rsa`: the `k=` tag.
pub fn key_type(public_b64: &str) -> &'static str {
    match base64::engine::general_purpose::STANDARD.decode(public_b64) {
        Ok(bytes) if bytes.len() == 32 => "ed25519",
        _ => "rsa",
    }
}

/// What a record is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The DKIM public key: needed, or receivers cannot verify signatures.
    Dkim,
    /// A suggested SPF record naming this server.
    Spf,
    /// A suggested DMARC policy (monitoring only).
    Dmarc,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Dkim => "dkim",
            Purpose::Spf => "spf",
            Purpose::Dmarc => "dmarc",
        }
    }
}

/// One TXT record to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxtRecord {
    pub purpose: Purpose,
    /// Without the trailing dot.
    pub name: String,
    /// The whole value (a resolver joins the record's strings to this).
    pub value: String,
}

/// The records to publish for `domain`: the DKIM key at
/// `<selector>._domainkey.<domain>`, and suggested SPF and DMARC records.
/// `hostname` is the name this server sends as (the SPF `a:` mechanism).
pub fn records(domain: &str, selector: &str, public_b64: &str, hostname: &str) -> Vec<TxtRecord> {
    vec![
        TxtRecord {
            purpose: Purpose::Dkim,
            name: format!("{selector}._domainkey.{domain}"),
            value: format!("v=DKIM1; k={}; p={public_b64}", key_type(public_b64)),
        },
        TxtRecord {
            purpose: Purpose::Spf,
            name: domain.to_string(),
            value: format!("v=spf1 a:{hostname} ~all"),
        },
        TxtRecord {
            purpose: Purpose::Dmarc,
            name: format!("_dmarc.{domain}"),
            value: format!("v=DMARC1; p=none; rua=mailto:dmarc@{domain}"),
        },
    ]
}

/// One record as a zone-file line. TXT strings are limited to 255 bytes,
/// so a long value is split into quoted pieces.
pub fn zone_line(record: &TxtRecord) -> String {
    let pieces: Vec<String> = record
        .value
        .as_bytes()
        .chunks(250)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    format!("{}. IN TXT {}", record.name, pieces.join(" "))
}

/// The records to publish for `domain`, one per line, zone-file style.
pub fn dns_records(domain: &str, selector: &str, public_b64: &str, hostname: &str) -> String {
    records(domain, selector, public_b64, hostname)
        .iter()
        .map(|r| zone_line(r) + "\n")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_text_splits_long_values_and_names_the_key_type() {
        let (_, rsa_p) = generate_rsa().unwrap();
        let text = dns_records("example.com", SELECTOR, &rsa_p, "mx.example.net");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].starts_with("posthorn._domainkey.example.com. IN TXT \"v=DKIM1; k=rsa; p=")
        );
        assert!(
            lines[0].contains("\" \""),
            "a 2048-bit key needs two strings"
        );
        assert_eq!(
            lines[1],
            "example.com. IN TXT \"v=spf1 a:mx.example.net ~all\""
        );
        assert_eq!(
            lines[2],
            "_dmarc.example.com. IN TXT \"v=DMARC1; p=none; rua=mailto:dmarc@example.com\""
        );
        let (pem, ed_p) = generate_ed25519().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(key_type(&ed_p), "ed25519");
        assert!(dns_records("example.com", SELECTOR, &ed_p, "h").contains("k=ed25519; p="));
    }
}
