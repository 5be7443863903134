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
    // One line of error (a warning that the store was just created may
    // come before it).
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("warning: no store at"))
        .collect();
    assert_eq!(errors.len(), 1, "one line for {args:?}: {err}");
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
    fails_with(
        d,
        &[
            "sender",
            "set-password",
            "a@example.com",
            "--password",
            "long-enough",
        ],
        "too easy to guess",
    );
    ok(
        d,
        &[
            "sender",
            "set-password",
            "a@example.com",
            "--password",
            "mossy-harbor-tulip-58",
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

#[test]
fn suppression_list_add_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["account", "create", "shop"]);
    for bad in [
        "no-at-sign",
        "a@",
        "@example.net",
        "a b@example.net",
        "<a@example.net>",
        "a@b@c",
    ] {
        fails_with(
            d,
            &["suppression", "add", bad, "--account", "shop"],
            "not an email address",
        );
    }
    fails_with(
        d,
        &["suppression", "add", "a@example.net", "--account", "nope"],
        "no account named \"nope\"",
    );
    fails_with(
        d,
        &["suppression", "list", "--account", "nope"],
        "no account named \"nope\"",
    );
    assert_eq!(
        ok(d, &["suppression", "list", "--account", "shop", "--json"]).trim(),
        "[]"
    );

    ok(
        d,
        &["suppression", "add", "a@example.net", "--account", "shop"],
    );
    ok(
        d,
        &[
            "suppression",
            "add",
            "b@example.net",
            "--account",
            "shop",
            "--reason",
            "asked to stop",
        ],
    );
    let text = ok(d, &["suppression", "list", "--account", "shop"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let first: Vec<&str> = lines[0].split('\t').collect();
    assert_eq!(first[0], "a@example.net", "{text}");
    assert_eq!(first[1], "added by operator", "{text}");
    assert!(first[2].ends_with('Z') && first[2].contains('T'), "{text}");
    assert_eq!(first[3], "-", "{text}");
    assert!(
        lines[1].starts_with("b@example.net\tasked to stop\t"),
        "{text}"
    );

    let json: serde_json::Value = serde_json::from_str(&ok(
        d,
        &["suppression", "list", "--account", "shop", "--json"],
    ))
    .unwrap();
    let all = json.as_array().expect("an array");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["address"], "a@example.net");
    assert_eq!(all[0]["reason"], "added by operator");
    assert!(all[0]["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(all[0]["message_id"].is_null());
    assert_eq!(all[1]["reason"], "asked to stop");

    ok(
        d,
        &[
            "suppression",
            "remove",
            "a@example.net",
            "--account",
            "shop",
        ],
    );
    fails_with(
        d,
        &[
            "suppression",
            "remove",
            "a@example.net",
            "--account",
            "shop",
        ],
        "a@example.net is not on the suppression list of account shop",
    );
    fails_with(
        d,
        &[
            "suppression",
            "remove",
            "b@example.net",
            "--account",
            "nope",
        ],
        "no account named \"nope\"",
    );
    let left = ok(d, &["suppression", "list", "--account", "shop"]);
    assert_eq!(left.lines().count(), 1, "{left}");
    assert!(left.starts_with("b@example.net\t"), "{left}");
}

#[test]
fn queue_retry_and_bounce_need_a_known_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["account", "create", "shop"]);
    for cmd in ["retry", "bounce"] {
        fails_with(d, &["queue", cmd, "nonsense"], "not a message id");
        fails_with(
            d,
            &["queue", cmd, "01M8492SJGNWBZTDS92W000000"],
            "no message",
        );
    }
    for status in [
        "queued",
        "sending",
        "delivered",
        "deferred",
        "bounced",
        "expired",
        "suppressed",
    ] {
        assert_eq!(ok(d, &["queue", "list", "--status", status]), "");
    }
}

fn send(c: &mut RawClient, rcpts: &[&str], subject: &str) -> String {
    assert!(c.cmd(&format!("MAIL FROM:<{SENDER}>")).starts_with("250"));
    for r in rcpts {
        let reply = c.cmd(&format!("RCPT TO:<{r}>"));
        assert!(reply.starts_with("250"), "{reply}");
    }
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(
        format!(
            "From: <{SENDER}>\r\nTo: {}\r\nSubject: {subject}\r\n\r\nHello.\r\n.\r\n",
            rcpts.join(", ")
        )
        .as_bytes(),
    );
    queued_id(&c.read_reply())
}

/// The first line of stdout of a command that must succeed.
fn first_line(server: &TestServer, args: &[&str]) -> String {
    server
        .cli_ok(args)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn an_operator_retries_and_bounces_a_queued_message() {
    // Delivery is off in the test server: the message stays queued.
    let server = TestServer::start(BIN.as_ref(), "allow_plaintext_auth_on_loopback = true");
    let mut c = server.logged_in();
    let id = send(&mut c, &["one@example.net", "two@example.net"], "Order");

    let line = first_line(&server, &["queue", "list", "--status", "queued"]);
    assert!(
        line.starts_with(&id) && line.ends_with("queued=2"),
        "{line}"
    );

    let retried = server.cli_ok(&["queue", "retry", &id]);
    assert!(retried.contains("2 recipients due now"), "{retried}");

    let bounced = server.cli_ok(&["queue", "bounce", &id]);
    assert!(bounced.contains("bounced 2 recipients"), "{bounced}");
    let notice_id = bounced
        .lines()
        .find_map(|l| l.strip_prefix("queued bounce notice "))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("a bounce notice is queued: {bounced}"))
        .to_string();

    let m = server.message(&id);
    assert_eq!(m["is_dsn"], false);
    assert_eq!(m["content_purged"], false);
    assert!(m["completed_at"].as_str().is_some(), "{m:#}");
    for r in m["recipients"].as_array().unwrap() {
        assert_eq!(r["status"], "bounced", "{m:#}");
        assert_eq!(r["attempts"], 0, "{m:#}");
        assert_eq!(
            r["last_reply"], "550 5.0.0 bounced by the operator",
            "{m:#}"
        );
        assert!(r["remote_host"].is_null(), "{m:#}");
        assert!(r["next_try"].is_null(), "{m:#}");
        assert!(r["updated_at"].as_str().unwrap().ends_with('Z'), "{m:#}");
    }
    let shown = server.cli_ok(&["message", "show", &id]);
    assert!(shown.contains("bounced by the operator"), "{shown}");
    assert!(shown.contains("completed:   20"), "{shown}");

    let listed = server.cli_ok(&["queue", "list", "--status", "bounced"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(
        listed.starts_with(&id) && listed.trim_end().ends_with("bounced=2"),
        "{listed}"
    );
    assert_eq!(
        server
            .cli_ok(&["queue", "list", "--status", "queued"])
            .lines()
            .filter(|l| l.starts_with(&id))
            .count(),
        0
    );

    // The notice goes to the sender with the null reverse-path.
    let notice = server
        .messages()
        .into_iter()
        .find(|m| m["is_dsn"] == true)
        .expect("a bounce notice in the queue");
    assert_eq!(notice["id"], notice_id.as_str());
    assert_eq!(notice["mail_from"], "");
    assert_eq!(notice["recipients"][0]["address"], SENDER);
    assert_eq!(notice["recipients"][0]["status"], "queued");
    let content = String::from_utf8(server.content(&notice_id)).unwrap();
    assert!(content.contains("report-type=delivery-status"), "{content}");
    assert!(content.contains("one@example.net"), "{content}");
    assert!(content.contains("bounced by the operator"), "{content}");

    // Nothing is left to retry or to bounce; neither is an error.
    let again = server.cli_ok(&["queue", "bounce", &id]);
    assert!(again.contains("no recipient left to bounce"), "{again}");
    let retry = server.cli_ok(&["queue", "retry", &id]);
    assert!(retry.contains("nothing to retry"), "{retry}");
    assert_eq!(
        server
            .messages()
            .iter()
            .filter(|m| m["is_dsn"] == true)
            .count(),
        1
    );

    // The notice itself is bounced without a notice about it.
    let quiet = server.cli_ok(&["queue", "bounce", &notice_id]);
    assert!(
        quiet.contains("bounced 1 recipient") && quiet.contains("no bounce notice"),
        "{quiet}"
    );
    let shown = server.cli_ok(&["message", "show", &notice_id]);
    assert!(shown.contains("bounce notice"), "{shown}");
    assert!(shown.contains("mail from:   <>"), "{shown}");

    // With notices off for the account, bouncing queues none.
    server.cli_ok(&["account", "set", ACCOUNT, "bounce_notices", "0"]);
    let second = send(&mut c, &["three@example.net"], "Another");
    let out = server.cli_ok(&["queue", "bounce", &second]);
    assert!(
        out.contains("bounced 1 recipient") && out.contains("no bounce notice"),
        "{out}"
    );
    assert_eq!(
        server
            .messages()
            .iter()
            .filter(|m| m["is_dsn"] == true)
            .count(),
        1
    );
}

#[test]
fn a_suppressed_address_is_refused_by_the_running_server() {
    let server = TestServer::start(BIN.as_ref(), "allow_plaintext_auth_on_loopback = true");
    server.cli_ok(&[
        "suppression",
        "add",
        "gone@example.net",
        "--account",
        ACCOUNT,
    ]);
    let mut c = server.logged_in();
    assert!(c.cmd(&format!("MAIL FROM:<{SENDER}>")).starts_with("250"));
    let reply = c.cmd("RCPT TO:<gone@example.net>");
    assert!(reply.starts_with("550"), "{reply}");
    server.cli_ok(&[
        "suppression",
        "remove",
        "gone@example.net",
        "--account",
        ACCOUNT,
    ]);
    // Removed while the server runs: the next transaction may send to it.
    c.cmd("RSET");
    assert!(c.cmd(&format!("MAIL FROM:<{SENDER}>")).starts_with("250"));
    let reply = c.cmd("RCPT TO:<gone@example.net>");
    assert!(reply.starts_with("250"), "{reply}");
}
