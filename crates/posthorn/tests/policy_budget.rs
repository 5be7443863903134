//! Issue 17: a message whose attachment header carries 80,000 RFC 2231
//! parameters (about 2 MB) took the policy check 10 s of CPU, two at once
//! held both cores, and a new session waited 22 s for its greeting. Now
//! the check refuses it with `FailedOperation.HeaderTooComplex` before
//! parsing it. Over real SMTP: two such submissions at once are each
//! answered `554` with that code, a session opened meanwhile is greeted
//! promptly, the refused messages are not stored and the session goes on;
//! over HTTP `POST /v1/messages/raw` answers 422 with the same code.
//!
//! The bounds are generous (the bug took 10-35 s per message); they bound
//! the test, they do not measure the machine. The work budget itself is
//! asserted in `crates/policy/tests/header_budget.rs`, in bytes examined.

use posthorn_testkit::http;
use posthorn_testkit::*;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_posthorn");
const HEADER_TOO_COMPLEX: &str = "FailedOperation.HeaderTooComplex";

/// The probe's message: a text part and an attachment whose
/// Content-Disposition has `n` parameters `p0*0*=utf-8''a; p1*1*=utf-8''a;
/// …`, folded so no line passes 2,000 bytes.
fn probe_message(n: usize) -> String {
    let mut params = String::new();
    // After "Content-Disposition: attachment;" on the first line.
    let mut line = 32;
    for i in 0..n {
        let p = format!("p{i}*{}*=utf-8''a;", i % 2);
        if line + p.len() + 1 > 1990 {
            params.push_str("\r\n ");
            line = 1;
        } else {
            params.push(' ');
            line += 1;
        }
        params.push_str(&p);
        line += p.len();
    }
    format!(
        "From: {SENDER}\r\nTo: to@example.net\r\nSubject: budget\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n--BB\r\nContent-Type: text/plain\r\n\r\nSee the file.\r\n--BB\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment;{params}\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQ=\r\n--BB--\r\n"
    )
}

#[test]
fn the_rfc2231_bomb_is_refused_at_once_and_other_sessions_are_greeted() {
    let server = TestServer::start(BIN.as_ref(), "allow_plaintext_auth_on_loopback = true");
    let message = probe_message(80_000);
    assert!(message.len() > 1_500_000, "{} bytes", message.len());

    // Two submissions at once, as in the probe (one per core).
    let (sent, sent_rx) = mpsc::channel();
    let submissions: Vec<_> = (0..2)
        .map(|_| {
            let mut c = server.logged_in();
            let message = message.clone();
            let sent = sent.clone();
            thread::spawn(move || {
                assert!(c.cmd(&format!("MAIL FROM:<{SENDER}>")).starts_with("250"));
                assert!(c.cmd("RCPT TO:<to@example.net>").starts_with("250"));
                assert!(c.cmd("DATA").starts_with("354"));
                c.send(message.as_bytes());
                c.send(b".\r\n");
                let at = Instant::now();
                sent.send(()).unwrap();
                let reply = c.read_reply();
                let took = at.elapsed();
                // The session goes on after the refusal.
                let next = c.cmd("NOOP");
                (reply, took, next)
            })
        })
        .collect();
    drop(sent);
    for _ in 0..2 {
        sent_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("both messages were sent");
    }

    // Meanwhile a new session is greeted promptly. The pause lets the
    // server finish reading both messages and start checking them: with
    // the bug both checks ran on the runtime's two workers for seconds
    // from here on; now they are long answered.
    thread::sleep(Duration::from_millis(500));
    let at = Instant::now();
    let mut other = RawClient::connect(server.submission_port);
    let greeted = at.elapsed();
    assert!(
        greeted < Duration::from_secs(2),
        "the greeting took {greeted:?}"
    );
    assert!(other.cmd("EHLO client.test").starts_with("250"));

    for s in submissions {
        let (reply, took, next) = s.join().unwrap();
        assert!(reply.starts_with("554 5.0.0 "), "{reply}");
        assert_eq!(business_code(&reply), HEADER_TOO_COMPLEX, "{reply}");
        assert!(took < Duration::from_secs(10), "the refusal took {took:?}");
        assert!(next.starts_with("250"), "{next}");
    }
    assert!(server.messages().is_empty(), "a refused message was stored");

    // The same session sends a well-formed message afterwards.
    let mut c = server.logged_in();
    assert!(c.cmd(&format!("MAIL FROM:<{SENDER}>")).starts_with("250"));
    assert!(c.cmd("RCPT TO:<to@example.net>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(probe_message(5).as_bytes());
    c.send(b".\r\n");
    queued_id(&c.read_reply());
}

#[test]
fn the_http_raw_door_refuses_it_with_422_and_the_same_code() {
    let server = TestServer::start(BIN.as_ref(), "allow_plaintext_auth_on_loopback = true");
    let key = server.http_key(ACCOUNT);
    let at = Instant::now();
    let r = http::request(
        server.http_port,
        "POST",
        "/v1/messages/raw",
        &[
            ("Authorization", &format!("Bearer {key}")),
            ("Content-Type", "message/rfc822"),
        ],
        probe_message(80_000).as_bytes(),
    );
    let took = at.elapsed();
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.error_code(), HEADER_TOO_COMPLEX);
    assert!(took < Duration::from_secs(10), "the refusal took {took:?}");
    assert!(server.messages().is_empty());
}
