//! Scripted sessions: bytes in, replies out, events answered by the harness
//! in `common`. Each test checks basic codes and enhanced status codes.

mod common;

use common::*;
use posthorn_smtp::{LineEndings, SessionConfig};
use posthorn_types::{BodyType, MessageId, Reply};

fn ehlo_lines(h: &mut Harness) -> Vec<String> {
    let reply = h.cmd("EHLO client.example");
    assert_eq!(reply.code, 250);
    reply.lines
}

// ---------------------------------------------------------------- greeting

#[test]
fn greeting_names_the_host() {
    let mut h = Harness::new(config());
    let replies = h.take();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].code, 220);
    assert_eq!(replies[0].text(), "mx.test ESMTP Posthorn");
    assert!(h.transcript.starts_with(b"220 mx.test ESMTP Posthorn\r\n"));
}

// -------------------------------------------------------------- EHLO / HELO

#[test]
fn ehlo_before_tls_offers_starttls_and_not_auth() {
    let mut h = Harness::started(config());
    let lines = ehlo_lines(&mut h);
    assert_eq!(lines[0], "mx.test");
    for cap in [
        "PIPELINING",
        "SIZE 16777216",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
        "STARTTLS",
    ] {
        assert!(
            lines.iter().any(|l| l == cap),
            "{cap} missing from {lines:?}"
        );
    }
    assert!(!lines.iter().any(|l| l.starts_with("AUTH")), "{lines:?}");
}

#[test]
fn ehlo_on_tls_offers_auth_and_not_starttls() {
    let mut h = Harness::started(tls_config());
    let lines = ehlo_lines(&mut h);
    assert!(lines.iter().any(|l| l == "AUTH PLAIN LOGIN"), "{lines:?}");
    assert!(!lines.iter().any(|l| l == "STARTTLS"), "{lines:?}");
    for cap in [
        "PIPELINING",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
    ] {
        assert!(
            lines.iter().any(|l| l == cap),
            "{cap} missing from {lines:?}"
        );
    }
}

#[test]
fn ehlo_offers_auth_in_plaintext_only_when_allowed() {
    let mut h = Harness::started(SessionConfig {
        auth_without_tls: true,
        ..config()
    });
    let lines = ehlo_lines(&mut h);
    assert!(lines.iter().any(|l| l == "AUTH PLAIN LOGIN"), "{lines:?}");
    assert!(lines.iter().any(|l| l == "STARTTLS"), "{lines:?}");
    h.expect(&format!("AUTH PLAIN {}", plain_ok()), "235 2.7.0");
}

#[test]
fn ehlo_advertises_the_configured_size() {
    let mut h = Harness::started(SessionConfig {
        max_message_size: 12345,
        ..tls_config()
    });
    let lines = ehlo_lines(&mut h);
    assert!(lines.iter().any(|l| l == "SIZE 12345"), "{lines:?}");
}

#[test]
fn ehlo_after_login_no_longer_offers_auth() {
    let mut h = Harness::logged_in(config());
    let lines = ehlo_lines(&mut h);
    assert!(!lines.iter().any(|l| l.starts_with("AUTH")), "{lines:?}");
    // A new EHLO does not log out.
    assert!(h.session.is_authenticated());
}

#[test]
fn no_starttls_without_a_certificate() {
    let mut h = Harness::started(SessionConfig {
        starttls_available: false,
        ..config()
    });
    let lines = ehlo_lines(&mut h);
    assert!(!lines.iter().any(|l| l == "STARTTLS"), "{lines:?}");
    h.expect("STARTTLS", "454 4.7.0");
    assert_eq!(h.tls_starts, 0);
}

#[test]
fn helo_greets_but_does_not_allow_auth() {
    let mut h = Harness::started(tls_config());
    // The domain first, no enhanced status code (RFC 2034 §3).
    let reply = h.expect("HELO client.example", "250");
    assert_eq!(reply.text(), "mx.test");
    // AUTH is an ESMTP extension: it needs EHLO.
    h.expect(&format!("AUTH PLAIN {}", plain_ok()), "503 5.5.1");
    h.expect("MAIL FROM:<sender@example.com>", "530 5.7.0");
    assert!(h.auth_attempts.is_empty());
}

#[test]
fn helo_and_ehlo_need_a_hostname() {
    let mut h = Harness::started(config());
    h.expect("EHLO", "501 5.5.4");
    h.expect("HELO", "501 5.5.4");
    h.expect("ehlo client.example", "250");
}

// ----------------------------------------------------------------- STARTTLS

#[test]
fn starttls_throws_away_pipelined_commands() {
    let mut h = Harness::started(config());
    ehlo_lines(&mut h);
    let replies = h.send(format!(
        "STARTTLS\r\nMAIL FROM:<x@example.com>\r\nRCPT TO:<victim@example.net>\r\nAUTH PLAIN {}\r\n",
        plain_ok()
    ));
    assert_eq!(heads(&replies), ["220 2.0.0"], "{replies:?}");
    assert_eq!(h.tls_starts, 1);
    assert!(h.session.is_tls());
    // None of the pipelined commands reached the driver or the state.
    assert!(h.mail_requests.is_empty());
    assert!(h.rcpt_requests.is_empty());
    assert!(h.auth_attempts.is_empty());
    assert!(!h.session.is_authenticated());
    assert!(h.session.is_idle());
    // There is no transaction, and the client must say EHLO again.
    h.expect("RCPT TO:<victim@example.net>", "503 5.5.1");
    h.expect("MAIL FROM:<x@example.com>", "503 5.5.1");
    h.expect(&format!("AUTH PLAIN {}", plain_ok()), "503 5.5.1");
    let lines = ehlo_lines(&mut h);
    assert!(lines.iter().any(|l| l == "AUTH PLAIN LOGIN"), "{lines:?}");
    assert!(!lines.iter().any(|l| l == "STARTTLS"), "{lines:?}");
    h.expect(&format!("AUTH PLAIN {}", plain_ok()), "235 2.7.0");
    h.send_message(USER, &["r@example.net"], b"Subject: t\r\n\r\nhi\r\n");
}

#[test]
fn starttls_forgets_a_plaintext_login() {
    let mut h = Harness::started(SessionConfig {
        auth_without_tls: true,
        ..config()
    });
    ehlo_lines(&mut h);
    h.expect(&format!("AUTH PLAIN {}", plain_ok()), "235 2.7.0");
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("STARTTLS", "220 2.0.0");
    assert!(!h.session.is_authenticated());
    ehlo_lines(&mut h);
    h.expect("MAIL FROM:<sender@example.com>", "530 5.7.0");
}

#[test]
fn starttls_twice_or_with_arguments_is_refused() {
    let mut h = Harness::started(config());
    ehlo_lines(&mut h);
    h.expect("STARTTLS now", "501 5.5.4");
    h.expect("STARTTLS", "220 2.0.0");
    ehlo_lines(&mut h);
    h.expect("STARTTLS", "503 5.5.1");
    assert_eq!(h.tls_starts, 1);
    let mut h = Harness::started(tls_config());
    h.expect("STARTTLS", "503 5.5.1");
    assert_eq!(h.tls_starts, 0);
}

// --------------------------------------------------------------------- AUTH

#[test]
fn auth_plain_with_initial_response() {
    let mut h = Harness::started(tls_config());
    ehlo_lines(&mut h);
    let reply = h.expect(&format!("AUTH PLAIN {}", plain_ok()), "235 2.7.0");
    assert_eq!(reply.code, 235);
    assert!(h.session.is_authenticated());
    assert_eq!(h.auth_attempts.len(), 1);
    assert_eq!(h.auth_attempts[0].authzid, "");
    assert_eq!(h.auth_attempts[0].username, USER);
    assert_eq!(h.auth_attempts[0].password, PASS);
}

#[test]
fn auth_plain_without_initial_response() {
    let mut h = Harness::started(tls_config());
    ehlo_lines(&mut h);
    let prompt = h.cmd("AUTH PLAIN");
    assert_eq!(prompt.code, 334);
    assert_eq!(prompt.text(), "");
    h.expect(&plain_ok(), "235 2.7.0");
    assert!(h.session.is_authenticated());
}

#[test]
fn auth_plain_carries_the_authorization_identity() {
    let mut h = Harness::started(tls_config());
    ehlo_lines(&mut h);
    let ir = b64(&format!("{USER}\0{USER}\0{PASS}"));
    h.expect(&format!("auth plain {ir}"), "235 2.7.0");
    assert_eq!(h.auth_attempts[0].authzid, USER);
}

#[test]
fn auth_login_without_initial_response() {
    let mut h = Harness::started(tls_config());
    ehlo_lines(&mut h);
    let user_prompt = h.cmd("AUTH LOGIN");
    assert_eq!(user_prompt.code, 334);
    assert_eq!(user_prompt.text(), b64("Username:"));
    let pass_prompt = h.cmd(&b64(USER));
    assert_eq!(pass_prompt.code, 334);
    assert_eq!(pass_prompt.text(), b64("Password:"));
    h.expect(&b64(PASS), "235 2.7.0");
    assert_eq!(h.auth_attempts[0].username, USER);
    assert!(h.session.is_authenticated());
}

#[test]
fn auth_login_with_initial_response() {
    let mut h = Harness::started(tls_config());
    ehlo_lines(&mut h);
    let pass_prompt = h.cmd(&format!("AUTH LOGIN {}", b64(USER)));
    assert_eq!(pass_prompt.code, 334);
    assert_eq!(pass_prompt.text(), b64("Password:"));
    h.expect(&b64(PASS), "235 2.7.0");
    assert!(h.session.is_authenticated());
}

#[test]
fn auth_can_be_cancelled_at_every_prompt() {
    let mut h = Harness::started(tls_config());
    ehlo_lines(&mut h);
    assert_eq!(h.cmd("AUTH PLAIN").code, 334);
    h.expect("*", "501 5.7.0");
    assert_eq!(h.cmd("AUTH LOGIN").code, 334);
    h.expect("*", "501 5.7.0");
    assert_eq!(h.cmd("AUTH LOGIN").code, 334);
    assert_eq!(h.cmd(&b64(USER)).code, 334);
    h.expect("*", "501 5.7.0");
    assert!(h.auth_attempts.is_empty());
    assert!(!h.session.is_authenticated());
    // The session is back to reading commands, and AUTH works afterwards.
    h.expect("NOOP", "250 2.0.0");
    h.expect(&format!("AUTH PLAIN {}", plain_ok()), "235 2.7.0");
}

#[test]
fn auth_with_bad_base64_is_refused() {
    let mut h = Harness::started(tls_config());
    ehlo_lines(&mut h);
    h.expect("AUTH PLAIN %%%notbase64", "501 5.5.2");
    assert_eq!(h.cmd("AUTH PLAIN").code, 334);
    h.expect("!!!", "501 5.5.2");
    assert_eq!(h.cmd("AUTH LOGIN").code, 334);
    h.expect("@@@", "501 5.5.2");
    h.expect("AUTH LOGIN ###", "501 5.5.2");
    // PLAIN that decodes but lacks the NUL-separated parts.
    h.expect(&format!("AUTH PLAIN {}", b64("justauser")), "501 5.5.2");
    // LOGIN credentials that are not UTF-8.
    let not_utf8 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [0xff]);
    h.expect(&format!("AUTH LOGIN {not_utf8}"), "501 5.5.2");
    assert!(h.auth_attempts.is_empty());
    h.expect(&format!("AUTH PLAIN {}", plain_ok()), "235 2.7.0");
}

#[test]
fn wrong_password_and_unknown_user_look_the_same() {
    let mut h = Harness::started(tls_config());
    ehlo_lines(&mut h);
    let wrong_pass = h.expect(
        &format!("AUTH PLAIN {}", b64(&format!("\0{USER}\0nope"))),
        "535 5.7.8",
    );
    let unknown_user = h.expect(
        &format!("AUTH PLAIN {}", b64("\0nobody@example.com\0secret")),
        "535 5.7.8",
    );
    assert_eq!(wrong_pass, unknown_user);
    assert!(!h.session.is_authenticated());
    assert_eq!(h.auth_attempts.len(), 2);
    // Still usable: the right password works.
    h.expect(&format!("AUTH PLAIN {}", plain_ok()), "235 2.7.0");
}

#[test]
fn auth_before_tls_is_refused() {
    let mut h = Harness::started(config());
    ehlo_lines(&mut h);
    h.expect(&format!("AUTH PLAIN {}", plain_ok()), "538 5.7.11");
    h.expect("AUTH LOGIN", "538 5.7.11");
    assert!(h.auth_attempts.is_empty());
    assert!(!h.session.is_authenticated());
}

#[test]
fn auth_twice_is_refused() {
    let mut h = Harness::logged_in(config());
    h.expect(&format!("AUTH PLAIN {}", plain_ok()), "503 5.5.1");
    h.expect("AUTH LOGIN", "503 5.5.1");
    assert_eq!(h.auth_attempts.len(), 1);
}

#[test]
fn auth_needs_ehlo_and_a_known_mechanism() {
    let mut h = Harness::started(tls_config());
    h.expect(&format!("AUTH PLAIN {}", plain_ok()), "503 5.5.1");
    ehlo_lines(&mut h);
    h.expect("AUTH CRAM-MD5", "504 5.5.4");
    h.expect("AUTH", "501 5.5.4");
    h.expect("AUTH PLAIN a b", "501 5.5.4");
    assert!(h.auth_attempts.is_empty());
}

// --------------------------------------------------------------------- MAIL

#[test]
fn mail_needs_auth() {
    let mut h = Harness::started(tls_config());
    ehlo_lines(&mut h);
    h.expect("MAIL FROM:<sender@example.com>", "530 5.7.0");
    assert!(h.mail_requests.is_empty());
}

#[test]
fn mail_needs_ehlo() {
    let mut h = Harness::started(tls_config());
    h.expect("MAIL FROM:<sender@example.com>", "503 5.5.1");
    // Even a trusted-network session must greet first.
    h.session.set_authenticated();
    h.expect("MAIL FROM:<sender@example.com>", "503 5.5.1");
    h.expect("HELO client.example", "250");
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
}

#[test]
fn nested_mail_is_refused() {
    let mut h = Harness::logged_in(config());
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("MAIL FROM:<sender@example.com>", "503 5.5.1");
    assert_eq!(h.mail_requests.len(), 1);
}

#[test]
fn mail_from_an_address_not_allowed_is_refused() {
    let mut h = Harness::logged_in(config());
    h.expect("MAIL FROM:<someone@elsewhere.net>", "553 5.7.1");
    h.expect("MAIL FROM:<>", "553 5.7.1");
    h.expect("RCPT TO:<r@example.net>", "503 5.5.1");
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
}

#[test]
fn mail_size_over_the_maximum_is_refused() {
    let mut h = Harness::logged_in(SessionConfig {
        max_message_size: 1000,
        ..config()
    });
    h.expect("MAIL FROM:<sender@example.com> SIZE=1001", "552 5.3.4");
    assert!(h.mail_requests.is_empty());
    h.expect("MAIL FROM:<sender@example.com> SIZE=abc", "501 5.5.4");
    h.expect(
        "MAIL FROM:<sender@example.com> SIZE=99999999999999999999999",
        "501 5.5.4",
    );
    h.expect("MAIL FROM:<sender@example.com> SIZE=1000", "250 2.1.0");
}

#[test]
fn mail_parameters_reach_the_envelope() {
    let mut h = Harness::logged_in(config());
    h.expect(
        "MAIL FROM:<sender@example.com> BODY=8BITMIME SIZE=40",
        "250 2.1.0",
    );
    h.expect("RCPT TO:<r@example.net>", "250 2.1.5");
    h.expect("DATA", "354");
    assert_eq!(h.send("caf\u{e9}\r\n.\r\n")[0].head(), "250 2.0.0");
    let (env, data) = &h.submitted[0];
    assert_eq!(env.body, BodyType::EightBitMime);
    assert_eq!(env.declared_size, Some(40));
    assert!(!env.smtputf8);
    assert_eq!(data, "caf\u{e9}\r\n".as_bytes());

    h.expect(
        "MAIL FROM:<j\u{f6}rg@example.com> SMTPUTF8 BODY=7BIT AUTH=<>",
        "250 2.1.0",
    );
    h.expect("RCPT TO:<\u{e9}l\u{e8}ve@example.net>", "250 2.1.5");
    h.expect("DATA", "354");
    assert_eq!(h.send("hi\r\n.\r\n")[0].head(), "250 2.0.0");
    let (env, _) = &h.submitted[1];
    assert!(env.smtputf8);
    assert_eq!(env.body, BodyType::SevenBit);
    assert_eq!(env.mail_from, "j\u{f6}rg@example.com");
    assert_eq!(env.rcpt_to, ["\u{e9}l\u{e8}ve@example.net"]);
}

#[test]
fn non_ascii_addresses_need_smtputf8() {
    let mut h = Harness::logged_in(config());
    h.expect("MAIL FROM:<j\u{f6}rg@example.com>", "553 5.6.7");
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("RCPT TO:<\u{e9}l\u{e8}ve@example.net>", "553 5.6.7");
    assert!(h.rcpt_requests.is_empty());
}

#[test]
fn mail_with_bad_parameters_or_syntax_is_refused() {
    let mut h = Harness::logged_in(config());
    h.expect("MAIL FROM:<sender@example.com> FOO=BAR", "555 5.5.4");
    h.expect(
        "MAIL FROM:<sender@example.com> BODY=BINARYMIME",
        "501 5.5.4",
    );
    h.expect("MAIL FROM:<sender@example.com> SMTPUTF8=yes", "555 5.5.4");
    h.expect("MAIL FROM sender@example.com", "501 5.5.4");
    h.expect("MAIL TO:<sender@example.com>", "501 5.5.4");
    h.expect("MAIL FROM:<sender@example.com", "501 5.5.4");
    h.expect("MAIL FROM:<nobody>", "501 5.1.7");
    assert!(h.mail_requests.is_empty());
    // Spellings deployed clients use are accepted.
    h.expect("mail from: <sender@example.com>", "250 2.1.0");
    h.expect("RSET", "250 2.0.0");
    h.expect("MAIL FROM:sender@example.com", "250 2.1.0");
}

#[test]
fn multibyte_text_in_the_command_keyword_does_not_panic() {
    // "FRO" followed by a three-byte character: the keyword comparison
    // must not slice through the character.
    let mut h = Harness::logged_in(config());
    h.expect("MAIL FRO\u{20ac}", "501 5.5.4");
    h.expect("MAIL FROM\u{e9}", "501 5.5.4");
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("RCPT T\u{20ac}", "501 5.5.4");
    h.expect("RCPT \u{20ac}", "501 5.5.4");
    h.expect("RCPT TO:<r@example.net>", "250 2.1.5");
}

// --------------------------------------------------------------------- RCPT

#[test]
fn rcpt_needs_mail() {
    let mut h = Harness::logged_in(config());
    h.expect("RCPT TO:<r@example.net>", "503 5.5.1");
    assert!(h.rcpt_requests.is_empty());
}

#[test]
fn rcpt_with_a_bad_address_is_refused() {
    let mut h = Harness::logged_in(config());
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("RCPT TO:<nobody>", "501 5.1.3");
    h.expect("RCPT TO:<a@-bad-.example>", "501 5.1.3");
    h.expect("RCPT TO:<>", "501 5.1.3");
    h.expect("RCPT TO:<r@example.net> NOTIFY=NEVER", "555 5.5.4");
    h.expect("RCPT FROM:<r@example.net>", "501 5.5.4");
    assert!(h.rcpt_requests.is_empty());
    h.expect("RCPT TO:<@relay.example:r@example.net>", "250 2.1.5");
    assert_eq!(h.rcpt_requests, ["r@example.net"]);
}

#[test]
fn fifty_recipients_then_452() {
    let mut h = Harness::logged_in(config());
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    for i in 0..50 {
        h.expect(&format!("RCPT TO:<r{i}@example.net>"), "250 2.1.5");
    }
    h.expect("RCPT TO:<r50@example.net>", "452 4.5.3");
    h.expect("RCPT TO:<r51@example.net>", "452 4.5.3");
    assert_eq!(h.rcpt_requests.len(), 50);
    h.expect("DATA", "354");
    assert_eq!(heads(&h.send("x\r\n.\r\n")), ["250 2.0.0"]);
    let (env, _) = &h.submitted[0];
    assert_eq!(env.rcpt_to.len(), 50);
    assert_eq!(env.rcpt_to[49], "r49@example.net");
    // The next transaction takes the rest.
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("RCPT TO:<r50@example.net>", "250 2.1.5");
    // 452 is not an error that counts towards closing the session.
    assert!(!h.closed);
}

#[test]
fn duplicate_recipients_are_kept_once() {
    let mut h = Harness::logged_in(config());
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("RCPT TO:<r@example.net>", "250 2.1.5");
    h.expect("RCPT TO:<R@Example.NET>", "250 2.1.5");
    h.expect("RCPT TO:<s@example.net>", "250 2.1.5");
    h.expect("DATA", "354");
    h.send(".\r\n");
    assert_eq!(h.submitted[0].0.rcpt_to, ["r@example.net", "s@example.net"]);
}

#[test]
fn data_needs_mail_and_recipients() {
    let mut h = Harness::logged_in(config());
    h.expect("DATA", "503 5.5.1");
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("DATA", "554 5.5.1");
    h.expect("DATA now", "501 5.5.4");
    h.expect("RCPT TO:<r@example.net>", "250 2.1.5");
    h.expect("DATA", "354");
    assert_eq!(heads(&h.send("x\r\n.\r\n")), ["250 2.0.0"]);
}

// --------------------------------------------------------------------- DATA

#[test]
fn data_is_dot_unstuffed() {
    let mut h = Harness::logged_in(config());
    let stored = h.send_message(
        USER,
        &["r@example.net"],
        b"Subject: dots\r\n\r\n..leading\r\n...\r\n..\r\nmid.dle .\r\n",
    );
    assert_eq!(
        stored,
        b"Subject: dots\r\n\r\n.leading\r\n..\r\n.\r\nmid.dle .\r\n"
    );
}

#[test]
fn queued_reply_names_the_stored_id() {
    let mut h = Harness::logged_in(config());
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("RCPT TO:<r@example.net>", "250 2.1.5");
    h.expect("DATA", "354");
    let reply = &h.send("hi\r\n.\r\n")[0];
    let id: MessageId = reply
        .text()
        .strip_prefix("2.0.0 Ok: queued as ")
        .expect("queued text")
        .parse()
        .expect("an id");
    assert_eq!(h.queued_ids, [id]);
}

#[test]
fn an_empty_message_is_submitted_as_empty() {
    let mut h = Harness::logged_in(config());
    let stored = h.send_message(USER, &["r@example.net"], b"");
    assert_eq!(stored, b"");
}

#[test]
fn smuggled_end_markers_are_content() {
    for fake in ["\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r", "\r.\r\n", "\n.\r"] {
        let mut h = Harness::logged_in(config());
        h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
        h.expect("RCPT TO:<r@example.net>", "250 2.1.5");
        h.expect("DATA", "354");
        let smuggled = format!(
            "Subject: a\r\n\r\nbefore{fake}MAIL FROM:<evil@example.com>\r\n\
             RCPT TO:<victim@example.net>\r\nDATA\r\nFrom: evil@example.com\r\n\r\nsmuggled\r\n.\r\n"
        );
        let replies = h.send(&smuggled);
        assert_eq!(heads(&replies), ["250 2.0.0"], "{fake:?}: {replies:?}");
        assert_eq!(h.submitted.len(), 1, "{fake:?}");
        assert_eq!(h.mail_requests, [USER], "{fake:?}");
        assert_eq!(h.rcpt_requests, ["r@example.net"], "{fake:?}");
        let (env, data) = &h.submitted[0];
        assert_eq!(env.rcpt_to, ["r@example.net"]);
        let text = String::from_utf8_lossy(data);
        assert!(
            text.contains("MAIL FROM:<evil@example.com>"),
            "{fake:?}: {text:?}"
        );
        assert!(text.contains("smuggled\r\n"), "{fake:?}: {text:?}");
        // The stored copy has CRLF line endings only.
        for (i, &b) in data.iter().enumerate() {
            if b == b'\n' {
                assert_eq!(data[i - 1], b'\r', "{fake:?}: {text:?}");
            }
            if b == b'\r' {
                assert_eq!(data.get(i + 1), Some(&b'\n'), "{fake:?}: {text:?}");
            }
        }
        // The session is back to commands, with no transaction.
        assert!(h.session.is_idle());
        h.expect("RCPT TO:<victim@example.net>", "503 5.5.1");
    }
}

#[test]
fn smuggling_split_across_feeds_is_still_content() {
    // The fake end arrives in pieces; nothing after it is a command.
    let mut h = Harness::logged_in(config());
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("RCPT TO:<r@example.net>", "250 2.1.5");
    h.expect("DATA", "354");
    for piece in [
        "before\n",
        ".",
        "\n",
        "QUIT\r\n",
        "MAIL FROM:<e@example.com>\r\n",
    ] {
        assert!(h.send(piece).is_empty(), "{piece:?}");
    }
    assert!(h.session.in_data());
    assert_eq!(heads(&h.send(".\r\n")), ["250 2.0.0"]);
    assert_eq!(h.submitted.len(), 1);
    assert!(!h.closed);
}

#[test]
fn bare_line_endings_are_fixed_by_default() {
    let mut h = Harness::logged_in(config());
    let stored = h.send_message(
        USER,
        &["r@example.net"],
        b"Subject: lf\n\nline one\nline two\rline three\r\n..dot\r\n",
    );
    assert_eq!(
        stored,
        b"Subject: lf\r\n\r\nline one\r\nline two\r\nline three\r\n.dot\r\n"
    );
}

#[test]
fn bare_line_endings_are_refused_when_configured() {
    let mut h = Harness::logged_in(SessionConfig {
        line_endings: LineEndings::Reject,
        ..config()
    });
    for content in ["Subject: lf\nbody\r\n", "Subject: cr\rbody\r\n"] {
        h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
        h.expect("RCPT TO:<r@example.net>", "250 2.1.5");
        h.expect("DATA", "354");
        let replies = h.send(format!("{content}.\r\n"));
        assert_eq!(heads(&replies), ["550 5.5.2"], "{content:?}");
        assert!(h.submitted.is_empty());
        assert!(h.session.is_idle());
    }
    // A clean message on the same session goes through.
    let stored = h.send_message(USER, &["r@example.net"], b"Subject: ok\r\n\r\nbody\r\n");
    assert_eq!(stored, b"Subject: ok\r\n\r\nbody\r\n");
}

#[test]
fn a_long_line_is_a_business_error_and_the_session_goes_on() {
    let mut h = Harness::logged_in(config());
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("RCPT TO:<r@example.net>", "250 2.1.5");
    h.expect("DATA", "354");
    let mut content = b"Subject: long\r\n\r\n".to_vec();
    content.extend(std::iter::repeat_n(b'x', 2100));
    content.extend_from_slice(b"\r\nafter\r\n.\r\n");
    let replies = h.send(&content);
    assert_eq!(heads(&replies), ["554 5.0.0"], "{replies:?}");
    let text = replies[0].text();
    assert!(text.contains("##SES-response-json: {"), "{text}");
    assert!(
        text.contains("\"Code\":\"FailedOperation.LineTooLong\""),
        "{text}"
    );
    assert!(h.submitted.is_empty());
    // A line of exactly the limit is fine, in the next transaction.
    let mut ok = b"Subject: edge\r\n\r\n".to_vec();
    ok.extend(std::iter::repeat_n(b'y', 2000));
    ok.extend_from_slice(b"\r\n");
    let stored = h.send_message(USER, &["r@example.net"], &ok);
    assert_eq!(stored, ok);
}

#[test]
fn a_long_line_fed_in_pieces_is_read_through() {
    let mut h = Harness::logged_in(config());
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("RCPT TO:<r@example.net>", "250 2.1.5");
    h.expect("DATA", "354");
    let line = vec![b'z'; 100_000];
    for piece in line.chunks(4096) {
        assert!(h.send(piece).is_empty());
    }
    // A lone dot after the long line but not after a CRLF is not the end.
    assert!(h.send("\n.\r\n").is_empty());
    assert_eq!(heads(&h.send("\r\n.\r\n")), ["554 5.0.0"]);
    h.send_message(USER, &["r@example.net"], b"ok\r\n");
}

#[test]
fn an_oversize_message_is_read_through_and_refused() {
    let mut h = Harness::logged_in(SessionConfig {
        max_message_size: 100,
        ..config()
    });
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("RCPT TO:<r@example.net>", "250 2.1.5");
    h.expect("DATA", "354");
    let mut content = Vec::new();
    for _ in 0..20 {
        content.extend_from_slice(b"0123456789\r\n");
    }
    content.extend_from_slice(b".\r\nNOOP\r\n");
    let replies = h.send(&content);
    assert_eq!(heads(&replies), ["552 5.3.4", "250 2.0.0"], "{replies:?}");
    assert!(h.submitted.is_empty());
    assert!(h.session.is_idle());
    // Exactly the limit as stored is accepted.
    let mut fits = Vec::new();
    for _ in 0..8 {
        fits.extend_from_slice(b"0123456789\r\n");
    }
    fits.extend_from_slice(b"0123\r\n");
    assert_eq!(fits.len(), 102);
    fits.truncate(100 - 2);
    fits.extend_from_slice(b"\r\n");
    let stored = h.send_message(USER, &["r@example.net"], &fits);
    assert_eq!(stored.len(), 100);
}

#[test]
fn a_refused_submission_ends_the_transaction() {
    let mut h = Harness::logged_in(config());
    h.submit_refusal = Some(Reply::new(451, "4.7.1", "Error: rate limit"));
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("RCPT TO:<r@example.net>", "250 2.1.5");
    h.expect("DATA", "354");
    assert_eq!(heads(&h.send("x\r\n.\r\n")), ["451 4.7.1"]);
    assert!(h.session.is_idle());
    h.submit_refusal = None;
    h.send_message(USER, &["r@example.net"], b"x\r\n");
}

#[test]
fn commands_after_the_end_marker_are_commands() {
    let mut h = Harness::logged_in(config());
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("RCPT TO:<r@example.net>", "250 2.1.5");
    h.expect("DATA", "354");
    let replies = h.send("x\r\n.\r\nQUIT\r\n");
    assert_eq!(heads(&replies), ["250 2.0.0", "221 2.0.0"]);
    assert!(h.closed);
    assert_eq!(h.submitted.len(), 1);
}

// --------------------------------------------------------------------- BDAT

#[test]
fn bdat_single_chunk() {
    let mut h = Harness::logged_in(config());
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("RCPT TO:<r@example.net>", "250 2.1.5");
    let body = "Subject: b\r\n\r\n.not stuffed\r\n.\r\n";
    let replies = h.send(format!("BDAT {} LAST\r\n{body}", body.len()));
    assert_eq!(heads(&replies), ["250 2.0.0"], "{replies:?}");
    assert!(replies[0].text().starts_with("2.0.0 Ok: queued as "));
    assert_eq!(h.submitted[0].1, body.as_bytes());
    assert!(h.session.is_idle());
}

#[test]
fn bdat_multiple_chunks_split_anywhere() {
    let mut h = Harness::logged_in(config());
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("RCPT TO:<r@example.net>", "250 2.1.5");
    let replies = h.send("BDAT 8\r\nSubject:");
    assert_eq!(heads(&replies), ["250 2.0.0"]);
    assert!(replies[0].text().contains("8 octets"));
    // The next chunk arrives in three pieces; its size line too.
    assert!(h.send("BDA").is_empty());
    assert!(h.send("T 8\r\n x\r\n").is_empty());
    assert!(h.session.in_data());
    let replies = h.send("\r\nbo");
    assert_eq!(heads(&replies), ["250 2.0.0"]);
    assert!(replies[0].text().contains("8 octets"), "{replies:?}");
    // Bare LF in BDAT content is fixed too; no trailing CRLF is added to.
    let replies = h.send("BDAT 5 LAST\r\nNOOP\n");
    assert_eq!(heads(&replies), ["250 2.0.0"]);
    assert!(replies[0].text().starts_with("2.0.0 Ok: queued as "));
    assert_eq!(h.submitted.len(), 1);
    assert_eq!(h.submitted[0].1, b"Subject: x\r\n\r\nboNOOP\r\n");
}

#[test]
fn bdat_zero_last_ends_the_message() {
    let mut h = Harness::logged_in(config());
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("RCPT TO:<r@example.net>", "250 2.1.5");
    assert_eq!(heads(&h.send("BDAT 3\r\nab\n")), ["250 2.0.0"]);
    assert_eq!(heads(&h.send("BDAT 0 LAST\r\n")), ["250 2.0.0"]);
    assert_eq!(h.submitted[0].1, b"ab\r\n");
}

#[test]
fn bdat_without_mail_consumes_the_chunk_then_refuses() {
    let mut h = Harness::logged_in(config());
    let chunk = "QUIT\r\nMAIL FROM:<sender@example.com>\r\n";
    let replies = h.send(format!("BDAT {} LAST\r\n{chunk}", chunk.len()));
    assert_eq!(heads(&replies), ["503 5.5.1"], "{replies:?}");
    assert!(!h.closed);
    assert!(h.mail_requests.is_empty());
    h.expect("NOOP", "250 2.0.0");
    // Also before login, and in pieces.
    let mut h = Harness::started(config());
    assert!(h.send("BDAT 10\r\nQUIT\r\n").is_empty());
    assert_eq!(heads(&h.send("QUIT")), ["503 5.5.1"]);
    assert!(!h.closed);
    h.expect("NOOP", "250 2.0.0");
}

#[test]
fn bdat_without_recipients_is_refused() {
    let mut h = Harness::logged_in(config());
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    assert_eq!(heads(&h.send("BDAT 3\r\nabc")), ["554 5.5.1"]);
    assert_eq!(heads(&h.send("BDAT 3 LAST\r\nabc")), ["554 5.5.1"]);
    assert!(h.submitted.is_empty());
    assert!(h.session.is_idle());
}

#[test]
fn data_and_rcpt_after_bdat_are_refused() {
    let mut h = Harness::logged_in(config());
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("RCPT TO:<r@example.net>", "250 2.1.5");
    assert_eq!(heads(&h.send("BDAT 4\r\nabc\n")), ["250 2.0.0"]);
    h.expect("DATA", "503 5.5.1");
    h.expect("RCPT TO:<s@example.net>", "503 5.5.1");
    assert_eq!(heads(&h.send("BDAT 4 LAST\r\ndef\n")), ["250 2.0.0"]);
    assert_eq!(h.submitted[0].1, b"abc\r\ndef\r\n");
    assert_eq!(h.submitted[0].0.rcpt_to, ["r@example.net"]);
}

#[test]
fn bdat_oversize_is_read_through_and_refused() {
    let mut h = Harness::logged_in(SessionConfig {
        max_message_size: 100,
        ..config()
    });
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("RCPT TO:<r@example.net>", "250 2.1.5");
    let chunk = "x".repeat(60);
    assert_eq!(heads(&h.send(format!("BDAT 60\r\n{chunk}"))), ["250 2.0.0"]);
    assert_eq!(heads(&h.send(format!("BDAT 60\r\n{chunk}"))), ["552 5.3.4"]);
    assert_eq!(
        heads(&h.send(format!("BDAT 60 LAST\r\n{chunk}"))),
        ["552 5.3.4"]
    );
    assert!(h.submitted.is_empty());
    assert!(h.session.is_idle());
    h.send_message(USER, &["r@example.net"], b"small\r\n");
}

#[test]
fn bdat_line_endings_follow_the_config() {
    let mut h = Harness::logged_in(SessionConfig {
        line_endings: LineEndings::Reject,
        ..config()
    });
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("RCPT TO:<r@example.net>", "250 2.1.5");
    assert_eq!(heads(&h.send("BDAT 4 LAST\r\nab\nc")), ["550 5.5.2"]);
    assert!(h.session.is_idle());
    h.expect("BDAT x", "501 5.5.4");
    h.expect("BDAT 4 FIRST", "501 5.5.4");
}

// ---------------------------------------------------- RSET, NOOP, HELP, ...

#[test]
fn rset_ends_the_transaction() {
    let mut h = Harness::logged_in(config());
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("RCPT TO:<r@example.net>", "250 2.1.5");
    h.expect("RSET", "250 2.0.0");
    assert!(h.session.is_idle());
    h.expect("RCPT TO:<r@example.net>", "503 5.5.1");
    h.expect("DATA", "503 5.5.1");
    h.expect("RSET x", "501 5.5.4");
    // Still logged in.
    h.send_message(USER, &["r@example.net"], b"after rset\r\n");
}

#[test]
fn noop_help_vrfy_expn() {
    let mut h = Harness::started(config());
    h.expect("NOOP", "250 2.0.0");
    h.expect("NOOP with an argument", "250 2.0.0");
    h.expect("HELP", "214 2.0.0");
    h.expect("HELP MAIL", "214 2.0.0");
    h.expect("VRFY postmaster", "252 2.5.0");
    h.expect("VRFY", "501 5.5.4");
    h.expect("EXPN staff", "502 5.5.1");
}

#[test]
fn quit_says_goodbye_and_closes() {
    let mut h = Harness::started(config());
    let replies = h.send("QUIT\r\nNOOP\r\n");
    assert_eq!(heads(&replies), ["221 2.0.0"]);
    assert!(h.closed);
    // Nothing more is read or answered.
    assert!(h.send("NOOP\r\n").is_empty());
    assert_eq!(h.session.step(), posthorn_smtp::Event::Close);
    let mut h = Harness::started(config());
    h.expect("QUIT x", "501 5.5.4");
    assert!(!h.closed);
}

#[test]
fn unknown_and_malformed_commands() {
    let mut h = Harness::started(config());
    h.expect("XYZZY", "500 5.5.1");
    h.expect("", "500 5.5.1");
    h.expect("MAILFROM:<a@example.com>", "500 5.5.1");
    let replies = h.send(b"NO\xffOP\r\n");
    assert_eq!(heads(&replies), ["500 5.5.2"]);
    h.expect("noop", "250 2.0.0");
}

// ------------------------------------------------------ pipelining, streams

#[test]
fn a_pipelined_batch_is_answered_in_order() {
    let mut h = Harness::started(tls_config());
    let batch = format!(
        "EHLO client.example\r\nAUTH PLAIN {}\r\nMAIL FROM:<sender@example.com> SIZE=20\r\n\
         RCPT TO:<a@example.net>\r\nRCPT TO:<nobody>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n",
        plain_ok()
    );
    let replies = h.send(batch);
    assert_eq!(
        heads(&replies),
        [
            "250",
            "235 2.7.0",
            "250 2.1.0",
            "250 2.1.5",
            "501 5.1.3",
            "250 2.1.5",
            "354"
        ],
        "{replies:?}"
    );
    let replies = h.send("Subject: p\r\n\r\nbody\r\n.\r\nMAIL FROM:<sender@example.com>\r\nRCPT TO:<c@example.net>\r\nDATA\r\nsecond\r\n.\r\nQUIT\r\n");
    assert_eq!(
        heads(&replies),
        [
            "250 2.0.0",
            "250 2.1.0",
            "250 2.1.5",
            "354",
            "250 2.0.0",
            "221 2.0.0"
        ],
        "{replies:?}"
    );
    assert_eq!(h.submitted.len(), 2);
    assert_eq!(h.submitted[0].0.rcpt_to, ["a@example.net", "b@example.net"]);
    assert_eq!(h.submitted[0].1, b"Subject: p\r\n\r\nbody\r\n");
    assert_eq!(h.submitted[1].0.rcpt_to, ["c@example.net"]);
    assert_eq!(h.submitted[1].1, b"second\r\n");
    assert!(h.closed);
}

#[test]
fn several_transactions_on_one_session() {
    let mut h = Harness::logged_in(config());
    for i in 0..5 {
        let content = format!("Subject: {i}\r\n\r\nmessage {i}\r\n");
        let stored = h.send_message(USER, &["r@example.net"], content.as_bytes());
        assert_eq!(stored, content.as_bytes());
    }
    // And with BDAT in between, and HELO resetting nothing but the
    // transaction.
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("RCPT TO:<r@example.net>", "250 2.1.5");
    assert_eq!(heads(&h.send("BDAT 3 LAST\r\nb\r\n")), ["250 2.0.0"]);
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("EHLO again.example", "250");
    h.expect("RCPT TO:<r@example.net>", "503 5.5.1");
    h.send_message(USER, &["r@example.net"], b"last\r\n");
    assert_eq!(h.submitted.len(), 7);
    let mut ids = h.queued_ids.clone();
    ids.dedup();
    assert_eq!(ids.len(), 7);
}

/// A script touching most of the session: login, DATA with dot-stuffing,
/// bare line endings and fake end markers, BDAT, errors, a long command line.
fn long_script() -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(b"EHLO client.example\r\nAUTH LOGIN\r\n");
    s.extend_from_slice(format!("{}\r\n{}\r\n", b64(USER), b64("wrong")).as_bytes());
    s.extend_from_slice(format!("AUTH LOGIN {}\r\n{}\r\n", b64(USER), b64(PASS)).as_bytes());
    s.extend_from_slice(b"MAIL FROM:<sender@example.com> BODY=8BITMIME\r\n");
    s.extend_from_slice(b"RCPT TO:<a@example.net>\r\nRCPT TO:<bad>\r\nDATA\r\n");
    s.extend_from_slice(b"Subject: s\r\n\r\n..dot\r\nlf\n.\ncr\r.\rend\r\n.\r\n");
    s.extend_from_slice(b"XYZZY\r\nNOOP\r\n");
    s.extend(std::iter::repeat_n(b'N', 13_000));
    s.extend_from_slice(b"\r\nMAIL FROM:<sender@example.com>\r\nRCPT TO:<b@example.net>\r\n");
    s.extend_from_slice(b"BDAT 12\r\nQUIT\r\nRSET\r\nBDAT 0 LAST\r\n");
    s.extend_from_slice(b"MAIL FROM:<sender@example.com>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n");
    s.extend(std::iter::repeat_n(b'y', 2500));
    s.extend_from_slice(b"\r\n.\r\nRSET\r\nVRFY x\r\nHELP\r\nQUIT\r\n");
    s
}

#[test]
fn bytes_one_at_a_time_give_the_same_replies() {
    let script = long_script();
    let mut whole = Harness::new(tls_config());
    whole.send(&script);
    let mut single = Harness::new(tls_config());
    for b in &script {
        single.send([*b]);
    }
    let (a, b) = (normalize(&whole.transcript), normalize(&single.transcript));
    assert_eq!(a, b);
    assert_eq!(whole.submitted, single.submitted);
    assert!(whole.closed && single.closed);
    // And the script did what it says.
    let replies = parse_replies(&whole.transcript);
    let heads = heads(&replies);
    assert_eq!(
        heads,
        [
            "220",
            "250",
            "334",
            "334",
            "535 5.7.8",
            "334",
            "235 2.7.0",
            "250 2.1.0",
            "250 2.1.5",
            "501 5.1.3",
            "354",
            "250 2.0.0",
            "500 5.5.1",
            "250 2.0.0",
            "500 5.5.2",
            "250 2.1.0",
            "250 2.1.5",
            "250 2.0.0",
            "250 2.0.0",
            "250 2.1.0",
            "250 2.1.5",
            "354",
            "554 5.0.0",
            "250 2.0.0",
            "252 2.5.0",
            "214 2.0.0",
            "221 2.0.0"
        ]
    );
    assert_eq!(whole.submitted.len(), 2);
    assert_eq!(
        whole.submitted[0].1,
        b"Subject: s\r\n\r\n.dot\r\nlf\r\n\r\ncr\r\n.\r\nend\r\n"
    );
    assert_eq!(whole.submitted[1].1, b"QUIT\r\nRSET\r\n");
}

#[test]
fn an_over_long_command_line_is_refused_and_the_session_goes_on() {
    let mut h = Harness::started(SessionConfig {
        max_command_length: 64,
        ..config()
    });
    // Exactly the limit, CRLF included, is fine.
    let fits = format!("NOOP {}", "a".repeat(64 - 7));
    assert_eq!(fits.len() + 2, 64);
    h.expect(&fits, "250 2.0.0");
    h.expect(&format!("{fits}a"), "500 5.5.2");
    // Arriving in pieces, with no line end for a long while.
    for _ in 0..100 {
        assert!(h.send("MAIL FROM:<sender@example.com> ").is_empty());
    }
    assert_eq!(heads(&h.send("\r\nNOOP\r\n")), ["500 5.5.2", "250 2.0.0"]);
    // An over-long line ends an AUTH exchange too.
    let mut h = Harness::started(SessionConfig {
        max_command_length: 64,
        ..tls_config()
    });
    h.expect("EHLO client.example", "250");
    assert_eq!(h.cmd("AUTH PLAIN").code, 334);
    h.expect(&"A".repeat(100), "500 5.5.2");
    h.expect("NOOP", "250 2.0.0");
    assert!(h.auth_attempts.is_empty());
}

#[test]
fn too_many_errors_close_the_session_with_421() {
    let mut h = Harness::started(config());
    let mut batch = String::new();
    for _ in 0..30 {
        batch.push_str("XYZZY\r\n");
    }
    let replies = h.send(batch);
    let mut expected = vec!["500 5.5.1".to_string(); 21];
    expected.push("421 4.7.0".into());
    assert_eq!(heads(&replies), expected);
    assert!(h.closed);
    assert!(h.send("NOOP\r\n").is_empty());
}

#[test]
fn error_limit_is_configurable() {
    let mut h = Harness::started(SessionConfig {
        max_errors: 2,
        ..tls_config()
    });
    h.expect("EHLO client.example", "250");
    h.expect("MAIL FROM:<sender@example.com>", "530 5.7.0");
    h.expect("RCPT TO:<r@example.net>", "503 5.5.1");
    let replies = h.send("NOOP\r\nXYZZY\r\nNOOP\r\n");
    assert_eq!(heads(&replies), ["250 2.0.0", "500 5.5.1", "421 4.7.0"]);
    assert!(h.closed);
}

#[test]
fn timeout_and_shutdown_close_with_421() {
    let mut h = Harness::started(config());
    h.session.timeout();
    h.run();
    assert_eq!(heads(&h.take()), ["421 4.4.2"]);
    assert!(h.closed);
    let mut h = Harness::started(config());
    h.session.shutdown();
    h.run();
    assert_eq!(heads(&h.take()), ["421 4.3.2"]);
    assert!(h.closed);
}

#[test]
fn over_long_lines_in_one_feed_count_towards_the_error_limit() {
    let mut h = Harness::started(SessionConfig {
        max_command_length: 16,
        max_errors: 3,
        ..config()
    });
    let long = format!("{}\r\n", "x".repeat(40));
    let replies = h.send(long.repeat(10));
    assert_eq!(
        heads(&replies),
        [
            "500 5.5.2",
            "500 5.5.2",
            "500 5.5.2",
            "500 5.5.2",
            "421 4.7.0"
        ]
    );
    assert!(h.closed);
}

#[test]
fn replies_do_not_echo_long_or_control_text() {
    let mut h = Harness::logged_in(config());
    let param = format!("X{}=1", "Y".repeat(3000));
    let reply = h.expect(
        &format!("MAIL FROM:<sender@example.com> {param}"),
        "555 5.5.4",
    );
    assert!(reply.text().len() < 200, "{}", reply.text());
    let reply = h.expect(
        "MAIL FROM:<sender@example.com> A\u{0}\u{1b}[2J",
        "555 5.5.4",
    );
    assert!(
        !reply.text().contains(['\u{0}', '\u{1b}']),
        "{:?}",
        reply.text()
    );
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    let reply = h.expect(&format!("RCPT TO:<r@example.net> {param}"), "555 5.5.4");
    assert!(reply.text().len() < 200, "{}", reply.text());
}

#[test]
fn bdat_size_limit_applies_to_the_stored_copy() {
    // Bare LFs become CRLF when stored: the limit, "in bytes as stored",
    // must hold after that, as it does for DATA.
    let mut h = Harness::logged_in(SessionConfig {
        max_message_size: 100,
        ..config()
    });
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("RCPT TO:<r@example.net>", "250 2.1.5");
    let lfs = "\n".repeat(90);
    assert_eq!(
        heads(&h.send(format!("BDAT 90 LAST\r\n{lfs}"))),
        ["552 5.3.4"]
    );
    assert!(h.submitted.is_empty());
    // The same content through DATA is refused the same way.
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("RCPT TO:<r@example.net>", "250 2.1.5");
    h.expect("DATA", "354");
    assert_eq!(heads(&h.send(format!("{lfs}\r\n.\r\n"))), ["552 5.3.4"]);
    // Exactly the limit as stored goes through BDAT.
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("RCPT TO:<r@example.net>", "250 2.1.5");
    let fits = "\n".repeat(50);
    assert_eq!(
        heads(&h.send(format!("BDAT 50 LAST\r\n{fits}"))),
        ["250 2.0.0"]
    );
    assert_eq!(h.submitted[0].1.len(), 100);
}

#[test]
fn data_size_limit_counts_bare_crs_as_stored() {
    // "a\rb\r\n" is stored as "a\r\nb\r\n": 6 bytes, not 5.
    let mut h = Harness::logged_in(SessionConfig {
        max_message_size: 5,
        ..config()
    });
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("RCPT TO:<r@example.net>", "250 2.1.5");
    h.expect("DATA", "354");
    assert_eq!(heads(&h.send("a\rb\r\n.\r\n")), ["552 5.3.4"]);
    h.expect("MAIL FROM:<sender@example.com>", "250 2.1.0");
    h.expect("RCPT TO:<r@example.net>", "250 2.1.5");
    assert_eq!(heads(&h.send("BDAT 4 LAST\r\na\rb\n")), ["552 5.3.4"]);
    assert!(h.submitted.is_empty());
}

#[test]
fn refusals_of_senders_and_messages_do_not_count_as_errors() {
    let mut h = Harness::logged_in(SessionConfig {
        max_errors: 2,
        ..tls_config()
    });
    for _ in 0..5 {
        h.expect("MAIL FROM:<someone@elsewhere.org>", "553 5.7.1");
    }
    h.expect("NOOP", "250 2.0.0");
    assert!(!h.closed);
}

#[test]
fn three_failed_logins_close_the_connection() {
    let mut h = Harness::started(tls_config());
    h.expect("EHLO client.example", "250");
    let bad = b64("\0sender@example.com\0wrong");
    h.expect(&format!("AUTH PLAIN {bad}"), "535 5.7.8");
    h.expect(&format!("AUTH PLAIN {bad}"), "535 5.7.8");
    let replies = h.send(format!("AUTH PLAIN {bad}\r\n"));
    assert_eq!(heads(&replies), ["535 5.7.8", "421 4.7.0"]);
    assert!(h.closed);
}

#[test]
fn bytes_arriving_during_the_tls_handshake_are_dropped() {
    use posthorn_smtp::{Event, Session};
    let mut s = Session::new(SessionConfig::default());
    s.feed(b"EHLO x\r\nSTARTTLS\r\n");
    assert_eq!(s.step(), Event::StartTls);
    // A driver that read more plaintext before the handshake finished.
    s.feed(b"MAIL FROM:<sender@example.com>\r\n");
    s.tls_started();
    s.clear_output();
    assert_eq!(s.step(), Event::NeedInput);
    assert!(
        s.output().is_empty(),
        "{:?}",
        String::from_utf8_lossy(s.output())
    );
}
