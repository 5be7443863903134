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

/// A new Ed25519 key pair (RFC 8463): (PKCS#8 PEM private key, base64 of
/// the 32-byte public key for `p=`). Signing costs a tenth of RSA's; not
/// every receiver verifies it yet.
pub fn generate_ed25519() -> anyhow::Result<(String, String)> {
    use ring::signature::KeyPair;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| anyhow::anyhow!("generating the DKIM key failed"))?;
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|_| anyhow::anyhow!("the generated DKIM key does not load"))?;
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
fn key_type(public_b64: &str) -> &'static str {
    match base64::engine::general_purpose::STANDARD.decode(public_b64) {
        Ok(bytes) if bytes.len() == 32 => "ed25519",
        _ => "rsa",
    }
}

/// The records to publish for `domain`, one per line, zone-file style.
pub fn dns_records(domain: &str, selector: &str, public_b64: &str, hostname: &str) -> String {
    // TXT strings are limited to 255 bytes; split the key into quoted pieces.
    let value = format!("v=DKIM1; k={}; p={public_b64}", key_type(public_b64));
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
