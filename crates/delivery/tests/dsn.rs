//! The bounce notice as a mail reader sees it: built by `dsn::build`, parsed
//! back with mail-parser, and checked line by line for what may not be in it.

use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders};
use posthorn_delivery::dsn::{build, DsnAction, DsnInput, DsnRecipient};

/// The original as stored: CRLF line endings, a header section and a body.
const ORIGINAL: &[u8] = b"Received: from client.example.com by mail.example.com\r\n\
    \twith ESMTPSA id 01JBOUNCE; Mon, 23 Nov 2026 13:08:50 +0000\r\n\
    From: Alice <alice@example.com>\r\n\
    To: bob@example.net, carol@example.org\r\n\
    Subject: Quarterly report\r\n\
    Message-ID: <01JBOUNCE@mail.example.com>\r\n\
    \r\n\
    The secret body, which a notice never returns.\r\n";

fn recipient(address: &str, action: DsnAction, status: &str) -> DsnRecipient {
    DsnRecipient {
        address: address.to_string(),
        action,
        status: status.to_string(),
        diagnostic: None,
        remote_mta: None,
        last_attempt: None,
    }
}

/// Two recipients: one bounced by its server, one expired in the queue.
fn two_recipients() -> Vec<DsnRecipient> {
    vec![
        DsnRecipient {
            diagnostic: Some("550 5.1.1 <bob@example.net>: user unknown".to_string()),
            remote_mta: Some("mx1.example.net".to_string()),
            last_attempt: Some(1_795_439_400),
            ..recipient("bob@example.net", DsnAction::Failed, "5.1.1")
        },
        recipient("carol@example.org", DsnAction::Failed, "4.4.7"),
    ]
}

fn input<'a>(original: &'a [u8], recipients: &'a [DsnRecipient]) -> DsnInput<'a> {
    DsnInput {
        reporting_mta: "mail.example.com",
        queue_id: "01JBOUNCE",
        from: "mailer-daemon@example.com",
        to: "alice@example.com",
        arrival: 1_795_439_330,
        now: 1_795_871_330,
        message_id: "<01JDSN@mail.example.com>",
        original,
        recipients,
    }
}

fn parse(notice: &[u8]) -> Message<'_> {
    MessageParser::default()
        .parse(notice)
        .expect("the notice parses")
}

/// The parts of the top-level multipart, in order.
fn parts<'a>(message: &'a Message<'a>) -> Vec<&'a MessagePart<'a>> {
    message
        .root_part()
        .sub_parts()
        .expect("the notice is multipart")
        .iter()
        .map(|&id| message.part(id).expect("part exists"))
        .collect()
}

/// The groups of a delivery-status body (per message, then per recipient),
/// each a list of (name, unfolded value).
fn status_groups(body: &str) -> Vec<Vec<(String, String)>> {
    body.split("\r\n\r\n")
        .filter(|group| !group.trim().is_empty())
        .map(|group| {
            let unfolded = group.replace("\r\n ", " ").replace("\r\n\t", " ");
            unfolded
                .lines()
                .filter(|line| !line.is_empty())
                .map(|line| {
                    let (name, value) = line.split_once(':').expect("a field");
                    (name.to_string(), value.trim().to_string())
                })
                .collect()
        })
        .collect()
}

fn field<'a>(group: &'a [(String, String)], name: &str) -> Option<&'a str> {
    group
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Every line ends in CRLF (no bare CR or LF) and none is over 998 octets.
fn assert_well_formed(notice: &[u8]) {
    assert!(notice.ends_with(b"\r\n"));
    for (i, &b) in notice.iter().enumerate() {
        match b {
            b'\n' => assert!(i > 0 && notice[i - 1] == b'\r', "bare LF at {i}"),
            b'\r' => assert_eq!(notice.get(i + 1), Some(&b'\n'), "bare CR at {i}"),
            _ => {}
        }
    }
    for line in notice.split(|&b| b == b'\n') {
        assert!(line.len() <= 999, "line of {} octets", line.len() - 1);
    }
}

/// The top-level header section, as lines.
fn top_header_lines(notice: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(notice);
    let end = text.find("\r\n\r\n").expect("a header section");
    text[..end].split("\r\n").map(str::to_string).collect()
}

#[test]
fn is_a_delivery_status_report_in_three_parts() {
    let recipients = two_recipients();
    let notice = build(&input(ORIGINAL, &recipients));
    assert_well_formed(&notice);
    let message = parse(&notice);

    let content_type = message.content_type().expect("Content-Type");
    assert_eq!(content_type.ctype(), "multipart");
    assert_eq!(content_type.subtype(), Some("report"));
    assert_eq!(
        content_type.attribute("report-type"),
        Some("delivery-status")
    );
    assert_eq!(
        message.header("Auto-Submitted").and_then(|h| h.as_text()),
        Some("auto-replied")
    );
    assert_eq!(
        message.subject(),
        Some("Undelivered Mail Returned to Sender")
    );
    let from = message.from().and_then(|f| f.first()).expect("From");
    assert_eq!(from.name(), Some("Mail Delivery System"));
    assert_eq!(from.address(), Some("mailer-daemon@example.com"));
    assert_eq!(
        message
            .to()
            .and_then(|t| t.first())
            .and_then(|a| a.address()),
        Some("alice@example.com")
    );
    assert_eq!(message.message_id(), Some("01JDSN@mail.example.com"));
    assert_eq!(
        message.date().map(|d| d.to_timestamp()),
        Some(1_795_871_330)
    );
    assert!(message.header("MIME-Version").is_some());

    let parts = parts(&message);
    assert_eq!(parts.len(), 3);
    let types: Vec<String> = parts
        .iter()
        .map(|p| {
            let ct = p.content_type().expect("part Content-Type");
            format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
        })
        .collect();
    assert_eq!(
        types,
        [
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers"
        ]
    );
    assert_eq!(
        parts[0].content_type().and_then(|c| c.attribute("charset")),
        Some("us-ascii")
    );

    // The explanation names both recipients and the remote reply.
    let text = parts[0].text_contents().expect("text");
    assert!(text.contains("<bob@example.net>"), "{text}");
    assert!(text.contains("<carol@example.org>"), "{text}");
    assert!(text.contains("user unknown"), "{text}");

    // The header section of the original, and not its body.
    let headers = parts[2].text_contents().expect("headers text");
    assert!(headers.contains("Subject: Quarterly report"), "{headers}");
    assert!(headers.contains("Message-ID: <01JBOUNCE@mail.example.com>"));
    assert!(!String::from_utf8_lossy(&notice).contains("secret body"));
    assert_eq!(parts[2].content_transfer_encoding(), Some("7bit"));
}

#[test]
fn delivery_status_has_the_fields_of_each_recipient() {
    let recipients = two_recipients();
    let notice = build(&input(ORIGINAL, &recipients));
    let message = parse(&notice);
    let parts = parts(&message);
    let body = std::str::from_utf8(parts[1].contents()).expect("7-bit report");
    let groups = status_groups(body);
    assert_eq!(groups.len(), 3, "{body}");

    let per_message = &groups[0];
    assert_eq!(
        field(per_message, "Reporting-MTA"),
        Some("dns; mail.example.com")
    );
    assert_eq!(field(per_message, "X-Posthorn-Queue-ID"), Some("01JBOUNCE"));
    assert_eq!(
        field(per_message, "Arrival-Date"),
        Some("Mon, 23 Nov 2026 13:08:50 +0000")
    );

    let bob = &groups[1];
    assert_eq!(
        field(bob, "Final-Recipient"),
        Some("rfc822; bob@example.net")
    );
    assert_eq!(field(bob, "Action"), Some("failed"));
    assert_eq!(field(bob, "Status"), Some("5.1.1"));
    assert_eq!(field(bob, "Remote-MTA"), Some("dns; mx1.example.net"));
    assert_eq!(
        field(bob, "Diagnostic-Code"),
        Some("smtp; 550 5.1.1 <bob@example.net>: user unknown")
    );
    assert_eq!(
        field(bob, "Last-Attempt-Date"),
        Some("Mon, 23 Nov 2026 13:10:00 +0000")
    );

    let carol = &groups[2];
    assert_eq!(
        field(carol, "Final-Recipient"),
        Some("rfc822; carol@example.org")
    );
    assert_eq!(field(carol, "Action"), Some("failed"));
    assert_eq!(field(carol, "Status"), Some("4.4.7"));
    assert_eq!(field(carol, "Remote-MTA"), None);
    assert_eq!(field(carol, "Diagnostic-Code"), None);
    assert_eq!(field(carol, "Last-Attempt-Date"), None);
}

#[test]
fn delayed_notice_says_so() {
    let recipients = [DsnRecipient {
        diagnostic: Some("451 4.7.1 greylisted, try again later".to_string()),
        remote_mta: Some("mx.example.org".to_string()),
        ..recipient("carol@example.org", DsnAction::Delayed, "4.7.1")
    }];
    let notice = build(&input(ORIGINAL, &recipients));
    assert_well_formed(&notice);
    let message = parse(&notice);
    assert_eq!(
        message.subject(),
        Some("Delayed Mail (still being retried)")
    );
    let parts = parts(&message);
    let groups = status_groups(std::str::from_utf8(parts[1].contents()).unwrap());
    assert_eq!(field(&groups[1], "Action"), Some("delayed"));
    assert_eq!(field(&groups[1], "Status"), Some("4.7.1"));
    let text = parts[0].text_contents().unwrap();
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains("still being retried"), "{text}");
    assert!(words.contains("greylisted, try again later"), "{text}");
}

#[test]
fn remote_reply_cannot_inject_fields_or_boundaries() {
    // The boundary the notice would pick first, in the remote reply.
    let diagnostic = "550 no such user\r\nX-Injected: 1\r\n\r\n--=_posthorn_01JBOUNCE_0\r\n\
                      Content-Type: text/html\r\n\r\n<b>hi</b>\n\rX-Bare: 2";
    let recipients = [DsnRecipient {
        diagnostic: Some(diagnostic.to_string()),
        remote_mta: Some("evil.example\r\nX-Injected: 1".to_string()),
        ..recipient(
            "bob@example.net\r\nX-Injected: 1",
            DsnAction::Failed,
            "5.1.1\r\nX-Injected: 1",
        )
    }];
    let notice = build(&input(ORIGINAL, &recipients));
    assert_well_formed(&notice);
    let text = String::from_utf8_lossy(&notice);
    for line in text.split("\r\n") {
        assert!(!line.starts_with("X-Injected"), "injected line: {line:?}");
        assert!(!line.starts_with("X-Bare"), "injected line: {line:?}");
        assert!(
            !line.starts_with("--=_posthorn_01JBOUNCE_0"),
            "the boundary in the reply was used"
        );
    }

    let message = parse(&notice);
    assert!(message.header("X-Injected").is_none());
    let parts = parts(&message);
    assert_eq!(parts.len(), 3);
    for part in &parts {
        assert!(!part
            .headers()
            .iter()
            .any(|h| h.name().eq_ignore_ascii_case("X-Injected")));
    }
    let groups = status_groups(std::str::from_utf8(parts[1].contents()).unwrap());
    let diagnostic = field(&groups[1], "Diagnostic-Code").unwrap();
    assert!(diagnostic.starts_with("smtp; 550 no such user X-Injected: 1"));
    assert_eq!(field(&groups[1], "Status"), Some("5.0.0"));
    assert_eq!(
        field(&groups[1], "Final-Recipient"),
        Some("rfc822; bob@example.netX-Injected:1")
    );
}

#[test]
fn long_diagnostic_stays_within_line_limits() {
    let long_words = format!("550 5.7.1 {}", "blocked because ".repeat(190));
    let one_word = format!("550 5.7.1 {}", "x".repeat(3000));
    for diagnostic in [long_words, one_word] {
        assert!(diagnostic.len() >= 3000);
        let recipients = [DsnRecipient {
            diagnostic: Some(diagnostic.clone()),
            ..recipient("bob@example.net", DsnAction::Failed, "5.7.1")
        }];
        let notice = build(&input(ORIGINAL, &recipients));
        assert_well_formed(&notice);
        let message = parse(&notice);
        let parts = parts(&message);
        assert_eq!(parts.len(), 3);
        let groups = status_groups(std::str::from_utf8(parts[1].contents()).unwrap());
        let code = field(&groups[1], "Diagnostic-Code").unwrap();
        assert!(code.starts_with("smtp; 550 5.7.1 "), "{code}");
        assert!(code.len() > 1000, "most of the reply is kept");
    }
}

#[test]
fn eight_bit_headers_are_declared_8bit() {
    let original = "Subject: Gr\u{fc}\u{df}e aus K\u{f6}ln\r\nFrom: a@example.com\r\n\r\nbody\r\n";
    let recipients = [recipient("bob@example.net", DsnAction::Failed, "5.1.1")];
    let notice = build(&input(original.as_bytes(), &recipients));
    assert_well_formed(&notice);
    let message = parse(&notice);
    assert_eq!(message.content_transfer_encoding(), Some("8bit"));
    let parts = parts(&message);
    assert_eq!(parts[0].content_transfer_encoding(), Some("7bit"));
    assert_eq!(parts[1].content_transfer_encoding(), Some("7bit"));
    assert_eq!(parts[2].content_transfer_encoding(), Some("8bit"));
    let headers = std::str::from_utf8(parts[2].contents()).unwrap();
    assert!(headers.contains("Subject: Gr\u{fc}\u{df}e aus K\u{f6}ln"));
}

#[test]
fn ascii_notice_is_7bit_throughout() {
    let recipients = two_recipients();
    let notice = build(&input(ORIGINAL, &recipients));
    assert!(notice.is_ascii());
    assert!(top_header_lines(&notice)
        .iter()
        .any(|l| l == "Content-Transfer-Encoding: 7bit"));
}

#[test]
fn original_without_empty_line_is_returned_whole() {
    let original = b"Subject: Quarterly report\r\nFrom: a@example.com";
    let recipients = [recipient("bob@example.net", DsnAction::Failed, "5.1.1")];
    let notice = build(&input(original, &recipients));
    assert_well_formed(&notice);
    let message = parse(&notice);
    let parts = parts(&message);
    let headers = parts[2].text_contents().unwrap();
    assert!(headers.contains("Subject: Quarterly report\r\nFrom: a@example.com"));
}

#[test]
fn huge_header_section_is_capped() {
    let mut original = Vec::new();
    for i in 0..5000 {
        original.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "f".repeat(60)).as_bytes());
    }
    original.extend_from_slice(b"Subject: last\r\n\r\nbody\r\n");
    let recipients = [recipient("bob@example.net", DsnAction::Failed, "5.1.1")];
    let notice = build(&input(&original, &recipients));
    assert_well_formed(&notice);
    assert!(notice.len() < 70 * 1024, "{} octets", notice.len());
    let message = parse(&notice);
    let parts = parts(&message);
    let headers = parts[2].text_contents().unwrap();
    assert!(headers.starts_with("X-Filler-0: "));
    assert!(!headers.contains("Subject: last"));
}
