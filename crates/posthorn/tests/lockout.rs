//! AUTH lockouts over real SMTP: counted per (client address, user) and
//! per address, the same wrong password counted once, kept in the store so
//! that `posthorn lockout list|clear` (another process) sees and lifts them.

use base64::Engine;
use posthorn_testkit::*;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_posthorn");

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn start(limits: &str) -> TestServer {
    TestServer::start(
        BIN.as_ref(),
        &format!("allow_plaintext_auth_on_loopback = true\n[limits]\n{limits}"),
    )
}

/// A fresh connection's answer to AUTH PLAIN.
fn login(server: &TestServer, user: &str, pass: &str) -> String {
    RawClient::login(server.submission_port, user, pass).1
}

/// What smtplib does with a wrong password: AUTH PLAIN, then AUTH LOGIN
/// with the same password, on one connection.
fn plain_then_login(server: &TestServer, user: &str, pass: &str) {
    let (mut c, r) = RawClient::login(server.submission_port, user, pass);
    assert!(r.starts_with("535 5.7.8"), "{r}");
    assert!(c.cmd("AUTH LOGIN").starts_with("334 "));
    assert!(c.cmd(&b64(user)).starts_with("334 "));
    let r = c.cmd(&b64(pass));
    assert!(r.starts_with("535 5.7.8"), "{r}");
}

fn refused(reply: &str) {
    assert_eq!(
        reply.trim_end(),
        "454 4.7.0 Error: too many failed logins from your address, try again later"
    );
}

#[test]
fn wrong_passwords_lock_one_user_until_cleared() {
    let server = start(
        "auth_failures_per_user = 5\nauth_user_window_secs = 600\nauth_user_lockout_secs = 300\n",
    );
    // The same wrong password with PLAIN and LOGIN, and again: one failure.
    plain_then_login(&server, SENDER, "wrong-0");
    plain_then_login(&server, SENDER, "wrong-0");
    for i in 1..4 {
        assert!(login(&server, SENDER, &format!("wrong-{i}")).starts_with("535 5.7.8"));
    }
    // Four distinct so far: not locked (counted twice it would be).
    assert!(login(&server, SENDER, SENDER_PASSWORD).starts_with("235"));
    assert!(server.cli_ok(&["lockout", "list"]).is_empty());

    // The fifth distinct one locks this user from this address.
    assert!(login(&server, SENDER, "wrong-4").starts_with("535 5.7.8"));
    // Even the right password is not checked now, and the answer does not
    // say whether it was right.
    refused(&login(&server, SENDER, SENDER_PASSWORD));
    refused(&login(&server, SENDER, "wrong-again"));
    // Another user from the same address still logs in.
    assert!(login(&server, API_USER, API_KEY).starts_with("235"));

    // The admin command line, another process on the same database, sees it.
    let list = server.cli_ok(&["lockout", "list"]);
    let fields: Vec<&str> = list.trim_end().split('\t').collect();
    assert_eq!(list.lines().count(), 1, "{list}");
    assert_eq!(fields[0], "127.0.0.1", "{list}");
    assert_eq!(fields[1], SENDER, "{list}");
    assert!(
        fields[2].ends_with('Z') && fields[2].contains('T'),
        "{list}"
    );
    assert_eq!(fields[3], "5", "{list}");
    let json: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["lockout", "list", "--json"])).unwrap();
    assert_eq!(json[0]["address"], "127.0.0.1");
    assert_eq!(json[0]["user"], SENDER);
    assert_eq!(json[0]["failures"], 5);

    // Not an address: one line saying so.
    let out = server.cli(&["lockout", "clear", "localhost"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("not an IP address"), "{err}");

    // Cleared, the right password works at once.
    let out = server.cli_ok(&["lockout", "clear", "127.0.0.1"]);
    assert_eq!(out.trim_end(), "cleared 1 lockout of 127.0.0.1");
    assert!(login(&server, SENDER, SENDER_PASSWORD).starts_with("235"));
    assert!(server.cli_ok(&["lockout", "list"]).is_empty());
    // And its failures are forgotten: one more wrong password is one.
    assert!(login(&server, SENDER, "wrong-5").starts_with("535 5.7.8"));
    assert!(login(&server, SENDER, SENDER_PASSWORD).starts_with("235"));
}

#[test]
fn many_users_from_one_address_lock_the_address() {
    let server = start("auth_failures_per_user = 0\nauth_failures_per_address = 3\n");
    for user in ["a@example.com", "b@example.com", "c@example.com"] {
        assert!(login(&server, user, "guess").starts_with("535 5.7.8"));
    }
    refused(&login(&server, API_USER, API_KEY));
    let list = server.cli_ok(&["lockout", "list"]);
    assert!(list.starts_with("127.0.0.1\t*\t"), "{list}");
    // A user's clear does not lift the address's lockout; the address's does.
    let out = server.cli_ok(&["lockout", "clear", "127.0.0.1", "--user", SENDER]);
    assert_eq!(
        out.trim_end(),
        format!("cleared 0 lockouts of 127.0.0.1 for {SENDER}")
    );
    refused(&login(&server, SENDER, SENDER_PASSWORD));
    server.cli_ok(&["lockout", "clear", "127.0.0.1"]);
    assert!(login(&server, API_USER, API_KEY).starts_with("235"));
}

#[test]
fn a_lockout_ends_by_itself() {
    let server = start("auth_failures_per_user = 2\nauth_user_lockout_secs = 2\n");
    for pass in ["wrong-1", "wrong-2"] {
        assert!(login(&server, SENDER, pass).starts_with("535 5.7.8"));
    }
    refused(&login(&server, SENDER, SENDER_PASSWORD));
    // Two seconds, counted in whole seconds: within five at most.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = login(&server, SENDER, SENDER_PASSWORD);
        if r.starts_with("235") {
            break;
        }
        refused(&r);
        assert!(Instant::now() < deadline, "the lockout did not end");
        std::thread::sleep(Duration::from_millis(200));
    }
}
