//! X-SMTPAPI over SMTP (issue 22, SendCloud's convention): one submission
//! becomes one message per recipient, each with its own substitutions in
//! the subject and the text parts (plain and quoted-printable here), its
//! own To, no X-SMTPAPI; bad headers refused before the 250.

use super::{delivery_config, dns_for, BIN, WAIT};
use posthorn_testkit::sink::{Sink, SinkOptions};
use posthorn_testkit::*;

fn transaction(c: &mut RawClient, rcpt: &str, data: &str) -> String {
    let r = c.cmd(&format!("MAIL FROM:<{SENDER}>"));
    assert!(r.starts_with("250"), "{r}");
    let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
    assert!(r.starts_with("250"), "{r}");
    let r = c.cmd("DATA");
    assert!(r.starts_with("354"), "{r}");
    c.send(data.as_bytes());
    c.read_reply()
}

fn batch(header: &str) -> String {
    format!(
        "From: Shop <{SENDER}>\r\nTo: list@example.net\r\nCc: boss@example.net\r\nSubject: Hello %name%\r\nX-SMTPAPI: {header}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nDear %name%, your code is %code%.\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p style=3D\"x\">Dear %name%</p>\r\n--b1--\r\n.\r\n"
    )
}

#[test]
fn an_x_smtpapi_batch_arrives_as_one_message_per_recipient() {
    let sink = Sink::start(SinkOptions::default());
    let dns = dns_for(&["example.net", DOMAIN]);
    let server = TestServer::start(BIN.as_ref(), &delivery_config(sink.port(), &dns, ""));
    let mut c = server.logged_in();

    // Refused before the 250: bad JSON, lists of unequal length.
    for header in [
        "{\"to\": [\"ok1@example.net\"",
        "{\"to\": [\"ok1@example.net\", \"ok2@example.net\"], \"sub\": {\"%name%\": [\"Ann\"]}}",
    ] {
        let reply = transaction(&mut c, "ok1@example.net", &batch(header));
        assert!(reply.starts_with("554 5.0.0"), "{reply}");
        assert_eq!(
            business_code(&reply),
            "FailedOperation.InvalidSmtpApi",
            "{reply}"
        );
    }
    assert!(server.messages().is_empty());

    let header = "{\"to\": [\"ok1@example.net\", \"ok2@example.net\",\r\n \"ok3@example.net\"], \"sub\": {\"%name%\": [\"Ann\", \"Bob\", \"Zoë\"], \"%code%\": [\"111\", \"222\", 333]}}";
    let reply = transaction(&mut c, "ok1@example.net", &batch(header));
    let first = queued_id(&reply);
    let got = sink.wait_for(3, WAIT);
    assert_eq!(got.len(), 3);
    let mut seen = Vec::new();
    for m in &got {
        assert_eq!(m.rcpt_to.len(), 1, "{m:?}");
        let to = m.rcpt_to[0].clone();
        let raw = String::from_utf8_lossy(&m.data);
        assert!(!raw.to_ascii_lowercase().contains("x-smtpapi"), "{raw}");
        assert!(!raw.contains("boss@example.net"), "{raw}");
        let p = mail_parser::MessageParser::default()
            .parse(&m.data)
            .unwrap();
        let shown: Vec<String> = p
            .to()
            .unwrap()
            .iter()
            .filter_map(|a| a.address().map(str::to_string))
            .collect();
        assert_eq!(shown, std::slice::from_ref(&to), "{raw}");
        let (name, code) = match to.as_str() {
            "ok1@example.net" => ("Ann", "111"),
            "ok2@example.net" => ("Bob", "222"),
            "ok3@example.net" => ("Zoë", "333"),
            other => panic!("{other}"),
        };
        assert_eq!(p.subject().unwrap(), format!("Hello {name}"));
        assert_eq!(
            p.body_text(0).unwrap().trim_end(),
            format!("Dear {name}, your code is {code}.")
        );
        assert_eq!(
            p.body_html(0).unwrap().trim_end(),
            format!("<p style=\"x\">Dear {name}</p>")
        );
        seen.push(to);
    }
    seen.sort();
    assert_eq!(
        seen,
        ["ok1@example.net", "ok2@example.net", "ok3@example.net"]
    );
    // Three messages stored, each with its own id; the 250 named the first.
    let listed = server.messages();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(
        listed.iter().any(|m| m["id"] == first.as_str()),
        "{listed:?}"
    );
}

#[test]
fn every_copy_counts_against_the_rate_and_http_raw_answers_every_id() {
    let server = TestServer::start(
        BIN.as_ref(),
        "allow_plaintext_auth_on_loopback = true\n[delivery]\nmode = \"capture\"\n",
    );
    server.cli_ok(&["account", "set", ACCOUNT, "messages_per_second", "2"]);
    let mut c = server.logged_in();
    let to = |n: usize| {
        let list: Vec<String> = (1..=n).map(|i| format!("\"ok{i}@example.net\"")).collect();
        format!("{{\"to\": [{}]}}", list.join(", "))
    };
    // More copies than the account may send in a second: never possible.
    let reply = transaction(&mut c, "ok1@example.net", &batch(&to(3)));
    assert_eq!(
        business_code(&reply),
        "FailedOperation.InvalidSmtpApi",
        "{reply}"
    );
    // Two copies take the whole second's share: the next batch waits.
    queued_id(&transaction(&mut c, "ok1@example.net", &batch(&to(2))));
    let reply = transaction(&mut c, "ok1@example.net", &batch(&to(2)));
    assert!(reply.starts_with("451 4.7.1"), "{reply}");
    assert_eq!(business_code(&reply), "RequestLimitExceeded.SmtpRateLimit");
    assert_eq!(server.messages().len(), 2);

    // Over HTTP (raw), the answer lists every id, the first as message_id.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let key = server.http_key(ACCOUNT);
    let raw = batch(&to(2)).replace("\r\n.\r\n", "\r\n");
    let r = posthorn_testkit::http::request(
        server.http_port,
        "POST",
        "/v1/messages/raw",
        &[
            ("Authorization", &format!("Bearer {key}")),
            ("Content-Type", "message/rfc822"),
        ],
        raw.as_bytes(),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    let ids = v["message_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 2, "{v}");
    assert_eq!(ids[0], v["message_id"]);
    assert_eq!(server.messages().len(), 4);
}
