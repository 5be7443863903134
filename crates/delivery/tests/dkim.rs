//! DKIM signatures made by `posthorn_delivery::dkim`, verified by
//! mail-auth's verifier against the public key published in a real DNS
//! server on loopback (`posthorn_testkit::dns::DnsServer`).

use base64::Engine;
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::hickory_resolver::config::{
    NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};
use posthorn_delivery::dkim::{DkimError, DkimKey, OVERSIGNED_HEADERS, SIGNED_HEADERS};
use posthorn_testkit::dns::DnsServer;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// An RSA-2048 key pair made as `posthorn domain add` makes it
/// (crates/posthorn/src/dkim.rs): (PKCS#8 PEM, base64 SubjectPublicKeyInfo
/// for `p=`). Generated once per test binary.
fn rsa_key() -> &'static (String, String) {
    static KEY: OnceLock<(String, String)> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut rng = rand::thread_rng();
        let private = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("generate");
        let pem = private
            .to_pkcs8_pem(LineEnding::LF)
            .expect("pkcs8 pem")
            .to_string();
        let public = private
            .to_public_key()
            .to_public_key_der()
            .expect("public der");
        (pem, B64.encode(public.as_bytes()))
    })
}

fn message() -> Vec<u8> {
    let mut m = String::new();
    m.push_str("Received: from app.example.net ([192.0.2.10]) by mail.example.com\r\n");
    m.push_str("\twith ESMTPSA id 01J9Z8K3M4N5P6Q7R8S9T0V1W2; Mon, 3 Mar 2025 10:00:00 +0000\r\n");
    m.push_str("From: \"Example Shop\" <orders@example.com>\r\n");
    m.push_str("To: Alice Liddell <alice@example.org>,\r\n bob@example.org\r\n");
    m.push_str("Subject: =?UTF-8?B?WW91ciBvcmRlciDinJQ=?=\r\n");
    m.push_str("Date: Mon, 03 Mar 2025 10:00:00 +0000\r\n");
    m.push_str("Message-ID: <01J9Z8K3M4N5P6Q7R8S9T0V1W2@example.com>\r\n");
    m.push_str("Reply-To: support@example.com\r\n");
    m.push_str("List-Unsubscribe: <mailto:unsubscribe@example.com?subject=alice>\r\n");
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str("Content-Type: multipart/alternative; boundary=\"b1\"\r\n");
    m.push_str("\r\n");
    m.push_str("--b1\r\n");
    m.push_str("Content-Type: text/plain; charset=UTF-8\r\n");
    m.push_str("Content-Transfer-Encoding: quoted-printable\r\n\r\n");
    m.push_str("Hello Alice,\r\n\r\nyour order #1234 has shipped. =E2=9C=94\r\n\r\n");
    m.push_str("--b1\r\n");
    m.push_str("Content-Type: text/html; charset=UTF-8\r\n");
    m.push_str("Content-Transfer-Encoding: quoted-printable\r\n\r\n");
    m.push_str("<p>Hello Alice,</p>\r\n<p>your order #1234 has shipped.</p>\r\n\r\n");
    m.push_str("--b1--\r\n");
    m.into_bytes()
}

/// A resolver asking only the loopback server, as crates/testkit/tests/dns.rs
/// configures one (UDP with TCP fallback, no cache, no hosts file).
fn authenticator(dns: &DnsServer) -> MessageAuthenticator {
    let addr = dns.addr();
    let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
    for c in &mut ns.connections {
        c.port = addr.port();
    }
    let config = ResolverConfig::from_parts(None, vec![], vec![ns]);
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 1;
    opts.cache_size = 0;
    opts.use_hosts_file = ResolveHosts::Never;
    MessageAuthenticator::new(config, opts).expect("resolver")
}

fn dns_with_rsa_key() -> DnsServer {
    let dns = DnsServer::start();
    let record = format!("v=DKIM1; k=rsa; p={}", rsa_key().1);
    dns.set_txt("posthorn._domainkey.example.com", &[&record]);
    dns
}

fn signed(key: &DkimKey, message: &[u8]) -> Vec<u8> {
    let header = key.sign(message).expect("sign");
    let mut out = header.into_bytes();
    out.extend_from_slice(message);
    out
}

async fn verify(auth: &MessageAuthenticator, message: &[u8]) -> DkimResult {
    let parsed = AuthenticatedMessage::parse(message).expect("parse");
    let results = auth.verify_dkim(&parsed).await;
    assert_eq!(results.len(), 1, "one signature: {results:?}");
    results[0].result().clone()
}

fn rsa_dkim_key() -> DkimKey {
    DkimKey::from_pem("example.com", "posthorn", &rsa_key().0).expect("key")
}

#[tokio::test]
async fn rsa_signature_verifies_against_published_key() {
    let dns = dns_with_rsa_key();
    let auth = authenticator(&dns);
    let key = rsa_dkim_key();
    let signed = signed(&key, &message());

    assert_eq!(verify(&auth, &signed).await, DkimResult::Pass);
    assert!(
        dns.queries()
            .iter()
            .any(|(n, t)| n == "posthorn._domainkey.example.com" && t == "TXT"),
        "{:?}",
        dns.queries()
    );
}

#[tokio::test]
async fn header_field_shape() {
    let key = rsa_dkim_key();
    let header = key.sign(&message()).unwrap();
    assert!(
        header.starts_with(
            "DKIM-Signature: v=1; a=rsa-sha256; s=posthorn; d=example.com; c=relaxed/relaxed;"
        ),
        "{header}"
    );
    assert!(header.ends_with(";\r\n"), "{header:?}");
    // Folded: lines of at most 78 characters, continuations start with a tab,
    // no bare CR or LF.
    let lines: Vec<&str> = header.trim_end_matches("\r\n").split("\r\n").collect();
    assert!(lines.len() > 3, "{header}");
    // mail-auth keeps v, a, s, d and c on the first line (80 characters
    // here, longer with a longer domain: within RFC 5322's 998).
    assert!(lines[0].len() < 200, "{:?}", lines[0]);
    for (i, line) in lines.iter().enumerate() {
        assert!(i == 0 || line.len() <= 78, "line too long: {line:?}");
        assert!(!line.contains(['\r', '\n']));
        if i > 0 {
            assert!(line.starts_with('\t'), "{line:?}");
        }
    }
    // h= names the listed fields the message has (Received not), and the
    // oversigned ones once more (Cc, absent, once).
    let unfolded = header.replace("\r\n\t", " ");
    let h = unfolded
        .split(';')
        .map(str::trim)
        .find_map(|t| t.strip_prefix("h="))
        .expect("h= tag")
        .replace(' ', "");
    let mut names: Vec<String> = h.split(':').map(str::to_ascii_lowercase).collect();
    names.sort();
    let mut want: Vec<String> = [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "reply-to",
        "list-unsubscribe",
        "mime-version",
        "content-type",
        "from",
        "to",
        "cc",
        "subject",
        "reply-to",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    want.sort();
    assert_eq!(names, want, "{header}");
    for name in &names {
        assert!(SIGNED_HEADERS.iter().any(|s| s.eq_ignore_ascii_case(name)));
    }
    for name in OVERSIGNED_HEADERS {
        assert!(SIGNED_HEADERS.contains(name), "{name}");
    }
    assert!(unfolded.contains(" t="), "{header}");
    assert!(
        !unfolded.contains(" x=") && !unfolded.contains(" l="),
        "{header}"
    );
}

#[tokio::test]
async fn tampering_breaks_the_signature() {
    let dns = dns_with_rsa_key();
    let auth = authenticator(&dns);
    let key = rsa_dkim_key();
    let good = signed(&key, &message());
    let text = String::from_utf8(good.clone()).unwrap();

    // Body changed: body hash mismatch (mail-auth reports it as neutral).
    let body = text.replace("order #1234", "order #9999").into_bytes();
    assert_ne!(body, good);
    let result = verify(&auth, &body).await;
    assert!(
        matches!(
            result,
            DkimResult::Neutral(mail_auth::Error::Dkim(
                mail_auth::dkim::DkimError::FailedBodyHashMatch
            ))
        ),
        "{result:?}"
    );

    // A signed header changed: signature fails.
    let subject = text
        .replace("WW91ciBvcmRlciDinJQ=", "RnJlZSBtb25leQ==")
        .into_bytes();
    let result = verify(&auth, &subject).await;
    assert!(matches!(result, DkimResult::Fail(_)), "{result:?}");

    // A second From, Subject or Cc added (were each named in h= only as
    // often as it occurs, the verifier would take the bottom ones and pass,
    // while a reader may be shown the added one): fails.
    for extra in [
        "From: attacker@example.net\r\n",
        "Subject: Free money\r\n",
        "Cc: eve@example.net\r\n",
    ] {
        // Just above the From field (h= in the signature holds "From:" too).
        let pos = text.find("\r\nFrom:").unwrap() + 2;
        let mut added = good[..pos].to_vec();
        added.extend_from_slice(extra.as_bytes());
        added.extend_from_slice(&good[pos..]);
        let result = verify(&auth, &added).await;
        assert!(matches!(result, DkimResult::Fail(_)), "{extra}: {result:?}");
    }
    // A field not signed may be added (a Received on the way): still passes.
    let mut added = b"Received: from relay.example.org by mx.example.org\r\n".to_vec();
    added.extend_from_slice(&good);
    assert_eq!(verify(&auth, &added).await, DkimResult::Pass);
}

#[tokio::test]
async fn relaxed_canonicalization_survives_whitespace_changes() {
    let dns = dns_with_rsa_key();
    let auth = authenticator(&dns);
    let key = rsa_dkim_key();
    let text = String::from_utf8(signed(&key, &message())).unwrap();
    // Refolded header, changed inner whitespace, trailing spaces on body
    // lines, extra empty lines at the end: all the same under relaxed/relaxed.
    let changed = text
        .replace(
            "To: Alice Liddell <alice@example.org>,\r\n bob@example.org",
            "to:   Alice Liddell <alice@example.org>, bob@example.org",
        )
        .replace("Hello Alice,\r\n", "Hello   Alice,  \r\n")
        + "\r\n\r\n";
    assert_eq!(verify(&auth, changed.as_bytes()).await, DkimResult::Pass);
}

#[tokio::test]
async fn ed25519_key_signs_and_verifies() {
    let der = Ed25519Key::generate_pkcs8().unwrap();
    let public = Ed25519Key::from_pkcs8_der(&der).unwrap().public_key();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        B64.encode(&der)
    );
    let key = DkimKey::from_pem("example.com", "ed", &pem).expect("ed25519 key");
    let dns = DnsServer::start();
    let record = format!("v=DKIM1; k=ed25519; p={}", B64.encode(public));
    dns.set_txt("ed._domainkey.example.com", &[&record]);
    let auth = authenticator(&dns);
    let signed = signed(&key, &message());
    assert!(String::from_utf8_lossy(&signed).starts_with("DKIM-Signature: v=1; a=ed25519-sha256;"));
    assert_eq!(verify(&auth, &signed).await, DkimResult::Pass);
}

#[tokio::test]
async fn pkcs1_pem_is_accepted() {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    let private = rsa::RsaPrivateKey::from_pkcs8_pem(&rsa_key().0).unwrap();
    let pkcs1 = private.to_pkcs1_pem(LineEnding::CRLF).unwrap();
    assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let key = DkimKey::from_pem("example.com", "posthorn", &pkcs1).expect("pkcs1 key");
    let dns = dns_with_rsa_key();
    let auth = authenticator(&dns);
    assert_eq!(
        verify(&auth, &signed(&key, &message())).await,
        DkimResult::Pass
    );
}

#[test]
fn message_without_from_is_refused() {
    let key = rsa_dkim_key();
    let text = String::from_utf8(message()).unwrap();
    let no_from = text.replace("From: \"Example Shop\" <orders@example.com>\r\n", "");
    assert!(matches!(
        key.sign(no_from.as_bytes()),
        Err(DkimError::NoFrom)
    ));
    // A From only in the body is not a From field.
    let in_body = no_from.replace("Hello Alice,", "From: x@example.com");
    assert!(matches!(
        key.sign(in_body.as_bytes()),
        Err(DkimError::NoFrom)
    ));
    assert!(matches!(key.sign(b""), Err(DkimError::NoFrom)));
    // Lower-case field name is still From.
    let lower = text.replace("From: ", "from: ");
    assert!(key.sign(lower.as_bytes()).is_ok());
}

#[test]
fn garbage_keys_are_errors() {
    for pem in [
        "",
        "not a key",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
        "-----BEGIN RSA PRIVATE KEY-----\nMAA=\n-----END RSA PRIVATE KEY-----\n",
        "-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n",
    ] {
        let err = DkimKey::from_pem("example.com", "posthorn", pem).unwrap_err();
        assert!(matches!(err, DkimError::Key { .. }), "{pem:?}: {err:?}");
        assert!(err.to_string().contains("example.com"), "{err}");
    }
    // The public half is not a private key.
    let public_pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        rsa_key().1
    );
    assert!(matches!(
        DkimKey::from_pem("example.com", "posthorn", &public_pem),
        Err(DkimError::Key { .. })
    ));
}

#[test]
fn names_that_would_break_the_field_are_errors() {
    let pem = &rsa_key().0;
    for (domain, selector) in [
        ("example.com; d=evil.com", "posthorn"),
        ("example.com", "posthorn; s=x"),
        ("", "posthorn"),
        ("example.com", ""),
        ("exa mple.com", "posthorn"),
        ("example..com", "posthorn"),
        ("example.com", "a\r\nb"),
    ] {
        assert!(
            matches!(
                DkimKey::from_pem(domain, selector, pem),
                Err(DkimError::Name { .. })
            ),
            "{domain:?} {selector:?}"
        );
    }
    // A trailing dot is dropped; upper case is kept as given for the selector.
    let key = DkimKey::from_pem("Example.COM.", "posthorn", pem).unwrap();
    assert_eq!(key.domain(), "example.com");
    assert_eq!(key.selector(), "posthorn");
    // Non-ASCII domains become A-labels.
    let key = DkimKey::from_pem("bücher.example", "posthorn", pem).unwrap();
    assert_eq!(key.domain(), "xn--bcher-kva.example");
}

#[test]
fn key_is_shareable_and_debug_hides_the_key() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<DkimKey>();
    let key = rsa_dkim_key();
    let debug = format!("{key:?}");
    assert!(
        debug.contains("example.com") && debug.contains("rsa-sha256"),
        "{debug}"
    );
    assert!(!debug.contains("MII"), "{debug}");
}

/// Time of one signature of a ~5 KB message (run with `--nocapture` to see
/// it).
#[test]
fn signing_time_for_5kb_message() {
    let key = rsa_dkim_key();
    let mut text = String::from_utf8(message()).unwrap();
    text.truncate(text.len() - "--b1--\r\n".len());
    text.push_str("--b1\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n");
    while text.len() < 5 * 1024 {
        text.push_str(
            "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n",
        );
    }
    text.push_str("--b1--\r\n");
    let message = text.into_bytes();
    key.sign(&message).unwrap();
    let n = 200;
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(key.sign(std::hint::black_box(&message)).unwrap());
    }
    let per = start.elapsed() / n;
    eprintln!(
        "DKIM rsa-2048 signature of a {} byte message: {:?} each ({} runs)",
        message.len(),
        per,
        n
    );
}
