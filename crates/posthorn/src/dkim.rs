//! DKIM key generation and the DNS records a domain owner publishes.

use anyhow::Context;
use base64::Engine;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

pub const SELECTOR: &str = "posthorn";

/// A new RSA-2048 key pair: (PKCS#8 PEM private key, base64 public key for `p=`).
pub fn generate_rsa() -> anyhow::Result<(String, String)> {
    let mut rng = rand::thread_rng();
    let private = rsa::RsaPrivateKey::new(&mut rng, 2048).context("generating the DKIM key")?;
    let pem = private
        .to_pkcs8_pem(LineEnding::LF)
        .context("encoding the DKIM key")?
        .to_string();
    let public = private
        .to_public_key()
        .to_public_key_der()
        .context("encoding the DKIM public key")?;
    let p = base64::engine::general_purpose::STANDARD.encode(public.as_bytes());
    Ok((pem, p))
}

/// The records to publish for `domain`, one per line, zone-file style.
pub fn dns_records(domain: &str, selector: &str, public_b64: &str, hostname: &str) -> String {
    // TXT strings are limited to 255 bytes; split the key into quoted pieces.
    let value = format!("v=DKIM1; k=rsa; p={public_b64}");
    let pieces: Vec<String> = value
        .as_bytes()
        .chunks(250)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    format!(
        "{selector}._domainkey.{domain}. IN TXT {}\n{domain}. IN TXT \"v=spf1 a:{hostname} ~all\"\n_dmarc.{domain}. IN TXT \"v=DMARC1; p=none; rua=mailto:dmarc@{domain}\"\n",
        pieces.join(" ")
    )
}
