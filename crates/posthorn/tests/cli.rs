//! The admin command line and the server's configuration handling: bad
//! input gets a non-zero exit and one line saying what to fix; certificates
//! are reloaded on SIGHUP.

use posthorn_testkit::*;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_posthorn");

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run posthorn")
}

/// The command fails with exactly one line on stderr containing `needle`.
fn fails_with(dir: &Path, args: &[&str], needle: &str) {
    let out = run(dir, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line for {args:?}: {err}"
    );
    assert!(
        err.contains(needle),
        "{args:?}: {err:?} should mention {needle:?}"
    );
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn bad_input_is_refused_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fails_with(
        d,
        &["domain", "add", "example.com", "--account", "nope"],
        "no account named \"nope\"",
    );
    ok(d, &["account", "create", "shop"]);
    fails_with(d, &["account", "create", "shop"], "already exists");
    fails_with(d, &["account", "create", "two words"], "without spaces");
    fails_with(
        d,
        &["domain", "add", "not_a_domain", "--account", "shop"],
        "not a domain name",
    );
    let records = ok(d, &["domain", "add", "Example.COM", "--account", "shop"]);
    assert!(
        records.contains("posthorn._domainkey.example.com. IN TXT \"v=DKIM1; k=rsa; p="),
        "{records}"
    );
    assert!(records.contains("v=spf1"));
    assert!(records.contains("_dmarc.example.com."));
    fails_with(
        d,
        &["domain", "add", "example.com", "--account", "shop"],
        "already exists",
    );
    fails_with(
        d,
        &["sender", "add", "no-at-sign", "--account", "shop"],
        "not an email address",
    );
    fails_with(
        d,
        &["sender", "add", "a@other.org", "--account", "shop"],
        "posthorn domain add other.org",
    );
    fails_with(
        d,
        &[
            "sender",
            "add",
            "a@example.com",
            "--account",
            "shop",
            "--password",
            "short",
        ],
        "at least 8",
    );
    let added = ok(d, &["sender", "add", "a@example.com", "--account", "shop"]);
    let password = added
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("a generated password is printed once");
    assert!(password.len() >= 20);
    fails_with(
        d,
        &["sender", "add", "a@example.com", "--account", "shop"],
        "already exists",
    );
    fails_with(
        d,
        &[
            "sender",
            "set-password",
            "b@example.com",
            "--password",
            "long-enough",
        ],
        "no sender address",
    );
    ok(
        d,
        &[
            "sender",
            "set-password",
            "a@example.com",
            "--password",
            "long-enough",
        ],
    );
    fails_with(
        d,
        &["apiuser", "add", "bad#name", "--account", "shop"],
        "may not contain",
    );
    ok(
        d,
        &[
            "apiuser",
            "add",
            "api1",
            "--account",
            "shop",
            "--key",
            "a-long-key-1",
        ],
    );
    fails_with(
        d,
        &["apiuser", "add", "api1", "--account", "shop"],
        "already exists",
    );
    ok(d, &["label", "add", "42", "--account", "shop"]);
    fails_with(
        d,
        &["label", "add", "42", "--account", "shop"],
        "already exists",
    );
    fails_with(d, &["message", "show", "nonsense"], "not a message id");
    fails_with(
        d,
        &["message", "show", "01M8492SJGNWBZTDS92W000000"],
        "no message",
    );
    fails_with(d, &["queue", "list", "--status", "lost"], "unknown status");
    assert_eq!(ok(d, &["queue", "list", "--json"]).trim(), "[]");
}

#[test]
fn stored_secrets_are_argon2id_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["account", "create", "shop"]);
    ok(d, &["domain", "add", "example.com", "--account", "shop"]);
    ok(
        d,
        &[
            "sender",
            "add",
            "a@example.com",
            "--account",
            "shop",
            "--password",
            "plain-text-pw",
        ],
    );
    ok(
        d,
        &[
            "apiuser",
            "add",
            "api1",
            "--account",
            "shop",
            "--key",
            "plain-text-key",
        ],
    );
    let db = std::fs::read(d.join("posthorn.db")).unwrap();
    let wal = std::fs::read(d.join("posthorn.db-wal")).unwrap_or_default();
    for file in [&db, &wal] {
        let text = String::from_utf8_lossy(file);
        assert!(!text.contains("plain-text-pw") && !text.contains("plain-text-key"));
    }
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&db),
        String::from_utf8_lossy(&wal)
    );
    assert!(all.matches("$argon2id$").count() >= 2);
}

#[test]
fn config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[smtp]\nline_endings = \"maybe\"\nimplicit_tls = []\nstarttls = [\"127.0.0.1:0\"]\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--data-dir",
            dir.path().to_str().unwrap(),
            "serve",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("line_endings"), "{err}");
    std::fs::write(&cfg, "[smtp]\nmax_recipient = 3\n").unwrap();
    let out = Command::new(BIN)
        .args(["--config", cfg.to_str().unwrap(), "account", "list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("max_recipient"), "{err}");
}

/// The SHA-256 of the certificate the implicit-TLS port presents.
fn presented_cert(port: u16) -> String {
    let script = r#"
import socket, ssl, sys, hashlib
ctx = ssl._create_unverified_context()
with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as s:
    with ctx.wrap_socket(s) as t:
        print(hashlib.sha256(t.getpeercert(binary_form=True)).hexdigest())
"#;
    let out = Command::new("python3")
        .args(["-c", script, &port.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn make_cert(dir: &Path, name: &str) -> (String, String) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
        ])
        .args(["-subj", &format!("/CN={name}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert.display().to_string(), key.display().to_string())
}

#[test]
fn configured_certificates_are_reloaded_on_sighup() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("skipped: openssl not installed (apt-get install openssl)");
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(certs.path(), "first");
    let live_cert = certs.path().join("live.crt");
    let live_key = certs.path().join("live.key");
    std::fs::copy(&cert, &live_cert).unwrap();
    std::fs::copy(&key, &live_key).unwrap();
    // The testkit appends this after its [smtp] keys; a new table header
    // starts the [tls] section.
    let extra = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n",
        live_cert.display().to_string(),
        live_key.display().to_string()
    );
    let server = TestServer::start(BIN.as_ref(), &extra);
    let before = presented_cert(server.smtps_port);

    let (cert2, key2) = make_cert(certs.path(), "second");
    std::fs::copy(&cert2, &live_cert).unwrap();
    std::fs::copy(&key2, &live_key).unwrap();
    assert_eq!(
        presented_cert(server.smtps_port),
        before,
        "no reload without SIGHUP"
    );
    let pid = server.pid();
    Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    let mut after = before.clone();
    for _ in 0..100 {
        after = presented_cert(server.smtps_port);
        if after != before {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_ne!(after, before, "SIGHUP reloads the certificate");
}
