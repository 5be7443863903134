//! The HTTP API refuses by the same business codes as SMTP: every rule the
//! two doors share is answered over `POST /v1/messages` with the code the
//! same message gets over real SMTP (read from its `##SES-response-json`
//! line), in the API's error shape; a fault of the JSON form only keeps its
//! `InvalidParameter.*` code. A refusal stores nothing.

use posthorn_testkit::http;
use posthorn_testkit::*;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_posthorn");

/// The status of a policy refusal over HTTP (a business code whose SMTP
/// reply is 5xx; docs/spec.md, "HTTP API").
const POLICY_STATUS: u16 = 422;

/// The account's attachment limits for this test (set before the server
/// starts: settings are cached briefly).
const MAX_ATTACHMENTS: &str = "2";
const MAX_ATTACHMENT_SIZE: &str = "10";
const MAX_ATTACHMENTS_TOTAL: &str = "15";

/// 12 bytes decoded (over the one-attachment limit), 8 bytes, 2 bytes.
const B64_12: &str = "AAAAAAAAAAAAAAAA";
const B64_8: &str = "AAAAAAAAAAA=";
const B64_2: &str = "AAA=";
const NOT_B64: &str = "AAEC!wQ=";

fn server() -> TestServer {
    TestServer::start_with(
        BIN.as_ref(),
        "allow_plaintext_auth_on_loopback = true",
        |s| {
            for (key, value) in [
                ("max_attachments", MAX_ATTACHMENTS),
                ("max_attachment_size", MAX_ATTACHMENT_SIZE),
                ("max_attachments_total", MAX_ATTACHMENTS_TOTAL),
            ] {
                s.cli_ok(&["account", "set", ACCOUNT, key, value]);
            }
        },
    )
}

/// A complete request with `changes` applied: a null removes the field,
/// `"<null>"` sends it as JSON null.
fn request(changes: Value) -> Value {
    let mut body = json!({
        "from": SENDER,
        "to": "to@example.net",
        "subject": "Hi",
        "text": "Hello"
    });
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            body.as_object_mut().unwrap().remove(k);
        } else if v == "<null>" {
            body[k] = Value::Null;
        } else {
            body[k] = v.clone();
        }
    }
    body
}

fn attachments(contents: &[&str]) -> Value {
    contents
        .iter()
        .enumerate()
        .map(|(i, c)| json!({"filename": format!("f{i}.bin"), "content": c}))
        .collect()
}

/// A message as an SMTP client writes it: `head` (header fields, each
/// ending in CRLF), then the body.
fn message(head: &str, body: &str) -> String {
    format!("{head}\r\n{body}")
}

/// The standard header (From, To, Subject) with `field` replaced by
/// `replacement` (`""` leaves it out).
fn head_without(field: &str, replacement: &str) -> String {
    [
        ("From", format!("From: {SENDER}\r\n")),
        ("To", "To: to@example.net\r\n".to_string()),
        ("Subject", "Subject: Hi\r\n".to_string()),
    ]
    .into_iter()
    .map(|(name, line)| {
        if name == field {
            replacement.to_string()
        } else {
            line
        }
    })
    .collect()
}

/// multipart/mixed with a text part and one attachment per base64 content.
fn smtp_with_attachments(contents: &[&str]) -> String {
    let mut m = format!(
        "From: {SENDER}\r\nTo: to@example.net\r\nSubject: Hi\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nHello\r\n"
    );
    for (i, c) in contents.iter().enumerate() {
        m.push_str(&format!(
            "--b1\r\nContent-Type: application/octet-stream; name=\"f{i}.bin\"\r\nContent-Disposition: attachment; filename=\"f{i}.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{c}\r\n"
        ));
    }
    m.push_str("--b1--\r\n");
    m
}

/// MAIL, RCPT, DATA with `content`; the reply to the end of DATA.
fn smtp_send(c: &mut RawClient, content: &str) -> String {
    let reply = c.cmd(&format!("MAIL FROM:<{SENDER}>"));
    assert!(reply.starts_with("250"), "{reply}");
    let reply = c.cmd("RCPT TO:<to@example.net>");
    assert!(reply.starts_with("250"), "{reply}");
    let reply = c.cmd("DATA");
    assert!(reply.starts_with("354"), "{reply}");
    c.send(format!("{content}.\r\n").as_bytes());
    c.read_reply()
}

/// The error answer's code, checked to be in the API's error shape.
fn http_code(r: &http::Response) -> String {
    let body = r.json();
    let error = &body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        error["request_id"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(
        r.header("x-request-id"),
        error["request_id"].as_str(),
        "{body}"
    );
    r.error_code()
}

#[test]
fn json_sends_are_refused_with_the_codes_smtp_gives_the_same_message() {
    let server = server();
    let key = server.http_key(ACCOUNT);
    let mut smtp = server.logged_in();
    let no_from = message(&head_without("From", ""), "Hello\r\n");
    let no_subject = message(&head_without("Subject", ""), "Hello\r\n");
    let no_to = message(&head_without("To", ""), "Hello\r\n");
    // (case, request changes, the same message over SMTP, code)
    let cases: Vec<(&str, Value, String, &str)> = vec![
        (
            "no from",
            json!({"from": null}),
            no_from.clone(),
            "FailedOperation.MissingFrom",
        ),
        (
            "empty from",
            json!({"from": ""}),
            message(&head_without("From", "From: \r\n"), "Hello\r\n"),
            "FailedOperation.MissingFrom",
        ),
        (
            "from object without an address",
            json!({"from": {"email": " ", "name": "App"}}),
            no_from,
            "FailedOperation.MissingFrom",
        ),
        (
            "no subject",
            json!({"subject": null}),
            no_subject.clone(),
            "FailedOperation.MissingSubject",
        ),
        (
            "subject null",
            json!({"subject": "<null>"}),
            no_subject,
            "FailedOperation.MissingSubject",
        ),
        (
            "empty subject",
            json!({"subject": ""}),
            message(&head_without("Subject", "Subject: \r\n"), "Hello\r\n"),
            "FailedOperation.MissingSubject",
        ),
        (
            "blank subject",
            json!({"subject": "   "}),
            message(&head_without("Subject", "Subject:    \r\n"), "Hello\r\n"),
            "FailedOperation.MissingSubject",
        ),
        (
            "no to, cc or bcc",
            json!({"to": null}),
            no_to.clone(),
            "FailedOperation.MissingRecipient",
        ),
        (
            "empty to and cc",
            json!({"to": [], "cc": []}),
            no_to,
            "FailedOperation.MissingRecipient",
        ),
        (
            "bcc alone",
            json!({"to": null, "bcc": ["hidden@example.org"]}),
            message(
                &head_without("To", "Bcc: hidden@example.org\r\n"),
                "Hello\r\n",
            ),
            "FailedOperation.MissingRecipient",
        ),
        (
            "no text or html",
            json!({"text": null}),
            message(&head_without("", ""), ""),
            "FailedOperation.MissingEmailContent",
        ),
        (
            "blank text and html",
            json!({"text": " \n", "html": ""}),
            message(&head_without("", ""), " \r\n"),
            "FailedOperation.MissingEmailContent",
        ),
        (
            "too many attachments",
            json!({"attachments": attachments(&[B64_2, B64_2, B64_2])}),
            smtp_with_attachments(&[B64_2, B64_2, B64_2]),
            "FailedOperation.TooManyAttachments",
        ),
        (
            "an attachment too large",
            json!({"attachments": attachments(&[B64_12])}),
            smtp_with_attachments(&[B64_12]),
            "FailedOperation.AttachmentTooLarge",
        ),
        (
            "attachments too large together",
            json!({"attachments": attachments(&[B64_8, B64_8])}),
            smtp_with_attachments(&[B64_8, B64_8]),
            "FailedOperation.AttachmentsTooLarge",
        ),
        (
            "an attachment that is not base64",
            json!({"attachments": attachments(&[B64_2, NOT_B64])}),
            smtp_with_attachments(&[B64_2, NOT_B64]),
            "FailedOperation.InvalidAttachmentContent",
        ),
    ];
    for (case, changes, smtp_message, code) in cases {
        let body = request(changes);
        let r = http::post_json(server.http_port, "/v1/messages", &key, &body);
        assert_eq!(
            (r.status, http_code(&r).as_str()),
            (POLICY_STATUS, code),
            "{case}: {body}"
        );
        let reply = smtp_send(&mut smtp, &smtp_message);
        assert!(reply.starts_with("554 5.0.0"), "{case}: {reply}");
        assert_eq!(business_code(&reply), code, "{case} over SMTP: {reply}");
        // The same words as SMTP's: the seed table's wording, where the
        // code has one, then `: ` and Posthorn's explanation.
        let smtp_text = business_json(&reply)["Response"]["Error"]["Message"]
            .as_str()
            .unwrap()
            .to_string();
        let http_text = r.json()["error"]["message"].as_str().unwrap().to_string();
        if let Some((wording, _)) = smtp_text.split_once(": ") {
            assert!(
                http_text.starts_with(&format!("{wording}: ")),
                "{case}: {http_text} / SMTP: {smtp_text}"
            );
        }
    }
    assert!(server.messages().is_empty(), "a refused message was stored");

    // The limits let a message within them through, by both doors.
    let r = http::post_json(
        server.http_port,
        "/v1/messages",
        &key,
        &request(json!({"attachments": attachments(&[B64_8, B64_2])})),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    queued_id(&smtp_send(
        &mut smtp,
        &smtp_with_attachments(&[B64_8, B64_2]),
    ));
    assert_eq!(server.messages().len(), 2);
}

#[test]
fn json_form_faults_keep_their_own_codes() {
    let server = server();
    let key = server.http_key(ACCOUNT);
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "to of the wrong type",
            json!({"to": 5}),
            400,
            "InvalidParameter.Json",
        ),
        (
            "subject of the wrong type",
            json!({"subject": 5}),
            400,
            "InvalidParameter.Json",
        ),
        (
            "an unknown field",
            json!({"colour": "red"}),
            400,
            "InvalidParameter.Json",
        ),
        (
            "an attachment without content",
            json!({"attachments": [{"filename": "a.bin"}]}),
            400,
            "InvalidParameter.Json",
        ),
        (
            "a malformed to",
            json!({"to": "not an address"}),
            400,
            "InvalidParameter.Address",
        ),
        (
            "an inline part that is not base64",
            json!({"html": "<img src=\"cid:a\">", "inline": [
                {"content_id": "a", "content_type": "image/png", "content": NOT_B64}
            ]}),
            400,
            "InvalidParameter.Base64",
        ),
        (
            "a from that is not the account's",
            json!({"from": "someone@elsewhere.test"}),
            403,
            "UnauthorizedOperation.SenderNotAllowed",
        ),
    ];
    for (case, changes, status, code) in cases {
        let body = request(changes);
        let r = http::post_json(server.http_port, "/v1/messages", &key, &body);
        assert_eq!(
            (r.status, http_code(&r).as_str()),
            (status, code),
            "{case}: {body}"
        );
    }
    assert!(server.messages().is_empty());
}

#[test]
fn a_raw_message_without_subject_gets_the_smtp_code() {
    let server = server();
    let key = server.http_key(ACCOUNT);
    let raw = message(&head_without("Subject", ""), "Hello\r\n");
    let r = http::request(
        server.http_port,
        "POST",
        "/v1/messages/raw",
        &[
            ("Authorization", &format!("Bearer {key}")),
            ("Content-Type", "message/rfc822"),
        ],
        raw.as_bytes(),
    );
    assert_eq!(
        (r.status, http_code(&r).as_str()),
        (POLICY_STATUS, "FailedOperation.MissingSubject")
    );
    let mut smtp = server.logged_in();
    assert_eq!(
        business_code(&smtp_send(&mut smtp, &raw)),
        "FailedOperation.MissingSubject"
    );
    assert!(server.messages().is_empty());
}
