//! Message policy over real SMTP: Cc and Bcc delivered, Bcc removed from the
//! stored copy, the headers Posthorn writes, refusals that store nothing,
//! and per-account overrides.

use posthorn_testkit::*;
use serde_json::Value;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_posthorn");

fn send(c: &mut RawClient, rcpts: &[&str], content: &str) -> String {
    assert!(c.cmd(&format!("MAIL FROM:<{SENDER}>")).starts_with("250"));
    for r in rcpts {
        assert!(c.cmd(&format!("RCPT TO:<{r}>")).starts_with("250"));
    }
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(format!("{content}.\r\n").as_bytes());
    c.read_reply()
}

#[test]
fn cc_and_bcc_are_queued_and_bcc_is_not_in_the_stored_copy() {
    let server = TestServer::start(BIN.as_ref(), "allow_plaintext_auth_on_loopback = true");
    let mut c = server.logged_in();
    let content = format!(
        "From: \"Shop\" <{SENDER}>\r\nTo: to@example.net\r\nCc: cc@example.net\r\nBcc: hidden@example.org,\r\n  hidden2@example.org\r\nSubject: =?UTF-8?B?6K6i5Y2V?=\r\nMessage-ID: <client-1@example.com>\r\n\r\nYour order.\r\n"
    );
    let id = queued_id(&send(
        &mut c,
        &[
            "to@example.net",
            "cc@example.net",
            "hidden@example.org",
            "hidden2@example.org",
        ],
        &content,
    ));
    let stored = String::from_utf8(server.content(&id)).unwrap();
    assert!(!stored.to_ascii_lowercase().contains("bcc:"), "{stored}");
    assert!(!stored.contains("hidden"), "{stored}");
    assert!(
        stored.starts_with(
            "Received: from client.test ([127.0.0.1])\r\n\tby posthorn.test (Posthorn) with ESMTPA"
        ),
        "{stored}"
    );
    assert!(stored.contains(&format!("(authenticated as {SENDER})")));
    assert!(stored.contains(&format!("id {id};")));
    // The client's Message-ID is kept; a Date is added.
    assert_eq!(stored.matches("Message-ID:").count(), 1);
    assert!(stored.contains("Message-ID: <client-1@example.com>"));
    assert!(stored.contains("\r\nDate: "));
    let m: Value =
        serde_json::from_str(&server.cli_ok(&["message", "show", &id, "--json"])).unwrap();
    let rcpts: Vec<&str> = m["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        rcpts,
        [
            "to@example.net",
            "cc@example.net",
            "hidden@example.org",
            "hidden2@example.org"
        ]
    );
    assert_eq!(m["subject"], "订单");
    assert_eq!(m["header_from"], SENDER);
}

#[test]
fn a_refused_message_stores_nothing_and_the_next_one_passes() {
    let server = TestServer::start(BIN.as_ref(), "allow_plaintext_auth_on_loopback = true");
    let mut c = server.logged_in();
    let no_subject = format!("From: {SENDER}\r\nTo: to@example.net\r\n\r\nhi\r\n");
    assert_eq!(
        business_code(&send(&mut c, &["to@example.net"], &no_subject)),
        "FailedOperation.MissingSubject"
    );
    let spoofed = "From: ceo@example.com\r\nTo: to@example.net\r\nSubject: x\r\n\r\nhi\r\n";
    assert_eq!(
        business_code(&send(&mut c, &["to@example.net"], spoofed)),
        "FailedOperation.SenderMismatch"
    );
    assert!(server.messages().is_empty());
    let good = format!("From: {SENDER}\r\nTo: to@example.net\r\nSubject: ok\r\n\r\nhi\r\n");
    let id = queued_id(&send(&mut c, &["to@example.net"], &good));
    // No Message-ID from the client: Posthorn adds one from the queue id.
    let stored = String::from_utf8(server.content(&id)).unwrap();
    assert!(
        stored.contains(&format!("Message-ID: <{id}@posthorn.test>")),
        "{stored}"
    );
    assert_eq!(server.messages().len(), 1);
}

/// A refusal over real SMTP, read exactly as a Tencent client reads it:
/// split the line at `##SES-response-json: `, parse the rest, take
/// `Response.QcloudError.Error.Code` and `.Message` (and `Response.Error`).
#[test]
fn a_refusal_reads_as_a_tencent_client_expects() {
    let server = TestServer::start(BIN.as_ref(), "allow_plaintext_auth_on_loopback = true");
    let mut c = server.logged_in();
    let cases = [
        (
            format!("From: {SENDER}\r\nTo: to@example.net\r\n\r\nhi\r\n"),
            "FailedOperation.MissingSubject",
            "msg.Subject is null: ",
        ),
        (
            format!("From: {SENDER}\r\nTo: to@example.net\r\nSubject: x\r\nContent-Type: application/pdf\r\n\r\nhi\r\n"),
            "FailedOperation.InvalidContentType",
            "Content-Type must in...: ",
        ),
    ];
    for (content, code, wording) in cases {
        let line = send(&mut c, &["to@example.net"], &content);
        let line = line.trim_end();
        assert!(
            line.starts_with("554 5.0.0 Error: transaction failed, blame it on the weather: ##SES-response-json: {"),
            "{line}"
        );
        assert!(line.len() + 2 <= 512 && line.is_ascii(), "{line}");
        let (_, json) = line.split_once("##SES-response-json: ").unwrap();
        let v: Value = serde_json::from_str(json).unwrap();
        let error = &v["Response"]["QcloudError"]["Error"];
        assert_eq!(error["Code"], code, "{line}");
        let message = error["Message"].as_str().unwrap();
        assert!(message.starts_with(wording), "{line}");
        assert!(message.len() > wording.len(), "{line}");
        assert_eq!(v["Response"]["Error"]["Code"], code, "{line}");
        assert_eq!(v["Response"]["Error"]["Message"], message, "{line}");
        let id = v["Response"]["RequestId"].as_str().unwrap();
        let parts: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12], "{id}");
        assert!(
            id.bytes()
                .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{id}"
        );
    }
    assert!(server.messages().is_empty());
}

#[test]
fn per_account_overrides_apply_and_attachments_are_recorded() {
    let server = TestServer::start(BIN.as_ref(), "allow_plaintext_auth_on_loopback = true");
    let with_attachment = format!(
        "From: {SENDER}\r\nTo: to@example.net\r\nSubject: invoice\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--b1\r\nContent-Type: application/pdf; name=\"=?UTF-8?B?5Y+R56WoLnBkZg==?=\"\r\nContent-Disposition: attachment; filename=\"=?UTF-8?B?5Y+R56WoLnBkZg==?=\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n"
    );
    let mut c = server.logged_in();
    let id = queued_id(&send(&mut c, &["to@example.net"], &with_attachment));
    let m: Value =
        serde_json::from_str(&server.cli_ok(&["message", "show", &id, "--json"])).unwrap();
    assert_eq!(m["attachments"][0]["filename"], "发票.pdf");
    assert_eq!(m["attachments"][0]["content_type"], "application/pdf");
    assert_eq!(m["attachments"][0]["size"], 9);

    // A second server on a fresh store, where the account allows no
    // attachments before its first message (settings are cached briefly).
    let server = TestServer::start(BIN.as_ref(), "allow_plaintext_auth_on_loopback = true");
    let out = server.cli_ok(&["account", "set", ACCOUNT, "max_attachments", "0"]);
    assert!(out.contains("max_attachments = 0"), "{out}");
    let shown = server.cli_ok(&["account", "show", ACCOUNT]);
    assert!(
        shown.contains("max_attachments") && shown.contains("(set for this account)"),
        "{shown}"
    );
    let mut c = server.logged_in();
    assert_eq!(
        business_code(&send(&mut c, &["to@example.net"], &with_attachment)),
        "FailedOperation.TooManyAttachments"
    );
    let bad = server.cli(&["account", "set", ACCOUNT, "max_atachments", "1"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("unknown setting") && err.contains("max_attachments,"),
        "{err}"
    );
}

#[test]
fn the_received_header_names_tls_over_implicit_tls() {
    let server = TestServer::start(BIN.as_ref(), "");
    let script = r#"
import smtplib, ssl, sys
s = smtplib.SMTP_SSL("127.0.0.1", int(sys.argv[1]), context=ssl._create_unverified_context())
s.login(sys.argv[2], sys.argv[3])
msg = "From: %s\r\nTo: to@example.net\r\nSubject: tls\r\n\r\nhi\r\n" % sys.argv[2]
s.sendmail(sys.argv[2], ["to@example.net"], msg)
s.quit()
"#;
    let out = Command::new("python3")
        .args([
            "-c",
            script,
            &server.smtps_port.to_string(),
            SENDER,
            SENDER_PASSWORD,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = server.messages()[0]["id"].as_str().unwrap().to_string();
    let stored = String::from_utf8(server.content(&id)).unwrap();
    assert!(
        stored.contains("with ESMTPSA\r\n\t(TLSv1.3 TLS13_"),
        "{stored}"
    );
}
