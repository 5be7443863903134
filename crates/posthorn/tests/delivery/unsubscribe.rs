//! One-click unsubscribe (issue 22, RFC 8058; docs/unsubscribe.md): with
//! `unsubscribe = 1` a message to three recipients arrives as three, each
//! with its own signed `List-Unsubscribe` URL and the To field as written,
//! both fields covered by a DKIM signature that verifies; a POST to the URL
//! over real HTTP suppresses the address (the next RCPT is refused
//! `550 5.1.1`) and makes an `unsubscribed` webhook event; a GET changes
//! nothing; a forged token is refused.

use super::{delivery_config, dns_for, publish_dkim, send, submit, verify_dkim, BIN, WAIT};
use mail_auth::DkimResult;
use posthorn_testkit::http::{self, Receiver};
use posthorn_testkit::sink::{Sink, SinkOptions};
use posthorn_testkit::*;
use serde_json::{json, Value};

const BASE: &str = "https://mail.posthorn.test";

/// The value of header field `name` in `raw` (unfolded).
fn field(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next().unwrap();
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.split("\r\n").find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

fn post(port: u16, path: &str, content_type: &str, body: &[u8]) -> http::Response {
    http::request(port, "POST", path, &[("Content-Type", content_type)], body)
}

#[test]
fn one_click_unsubscribe_per_recipient_signed_and_suppressing() {
    let sink = Sink::start(SinkOptions::default());
    let dns = dns_for(&["example.net"]);
    let server = TestServer::start(
        BIN.as_ref(),
        &delivery_config(
            sink.port(),
            &dns,
            &format!("[tracking]\nbase_url = \"{BASE}/\"\n[webhooks]\nretry_schedule = [\"1s\"]\nallow_private_networks = true"),
        ),
    );
    publish_dkim(&server, &dns);
    server.cli_ok(&["account", "set", ACCOUNT, "unsubscribe", "1"]);
    let key = server.http_key(ACCOUNT);
    let receiver = Receiver::start();
    let r = http::post_json(
        server.http_port,
        "/v1/webhooks",
        &key,
        &json!({"url": receiver.url("/hook"), "events": ["unsubscribed"]}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    // The key was made once, private to the server's user.
    let key_file = server.data_dir().join("tracking-key");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    let rcpts = ["ok1@example.net", "ok2@example.net", "ok3@example.net"];
    let to_field = "Team <ok1@example.net>, ok2@example.net";
    let first = submit(
        &server,
        &rcpts,
        &format!("From: Shop <{SENDER}>\r\nTo: {to_field}\r\nCc: ok3@example.net\r\nSubject: News\r\n\r\nHello.\r\n.\r\n"),
    );
    let got = sink.wait_for(3, WAIT);
    assert_eq!(got.len(), 3, "one message per recipient");
    let mut urls = std::collections::HashMap::new();
    for m in &got {
        assert_eq!(m.rcpt_to.len(), 1, "{m:?}");
        let raw = String::from_utf8_lossy(&m.data).into_owned();
        // The header as the sender wrote it.
        assert_eq!(field(&raw, "To").unwrap(), to_field, "{raw}");
        assert_eq!(field(&raw, "Cc").unwrap(), "ok3@example.net", "{raw}");
        assert_eq!(
            field(&raw, "List-Unsubscribe-Post").unwrap(),
            "List-Unsubscribe=One-Click"
        );
        let url = field(&raw, "List-Unsubscribe").unwrap();
        let url = url
            .strip_prefix('<')
            .and_then(|u| u.strip_suffix('>'))
            .unwrap_or_else(|| panic!("{url}"))
            .to_string();
        assert!(url.starts_with(&format!("{BASE}/u/")), "{url}");
        // Signed, and both fields in h=.
        assert_eq!(verify_dkim(&dns, &m.data), DkimResult::Pass);
        let sig = field(&raw, "DKIM-Signature").unwrap().replace(' ', "");
        let h = sig
            .split(';')
            .find_map(|t| t.strip_prefix("h="))
            .unwrap()
            .to_ascii_lowercase();
        let names: Vec<&str> = h.split(':').collect();
        assert!(names.contains(&"list-unsubscribe"), "{h}");
        assert!(names.contains(&"list-unsubscribe-post"), "{h}");
        urls.insert(m.rcpt_to[0].clone(), url);
    }
    assert_eq!(urls.len(), 3);
    let mut distinct: Vec<&String> = urls.values().collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "each recipient its own URL: {urls:?}");
    // Three messages stored, the 250 naming the first.
    let listed = server.messages();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed.iter().any(|m| m["id"] == first.as_str()));

    let path = urls["ok2@example.net"]
        .strip_prefix(BASE)
        .unwrap()
        .to_string();
    let port = server.http_port;
    let suppressed = || {
        let out = server.cli_ok(&["suppression", "list", "--account", ACCOUNT, "--json"]);
        serde_json::from_str::<Value>(&out).unwrap()
    };

    // GET: a confirmation page with a POST button; nothing changes.
    let page = http::request(port, "GET", &path, &[], b"");
    assert_eq!(page.status, 200);
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains("<form method=\"post\""), "{html}");
    assert_eq!(suppressed(), json!([]));

    // Forged: a changed tag, another recipient's tag on this token, a
    // token under a made-up account: 404, nothing changed.
    let (head, tag) = path.rsplit_once('.').unwrap();
    let flipped = format!(
        "{head}.{}{}",
        &tag[..tag.len() - 1],
        if tag.ends_with('A') { 'B' } else { 'A' }
    );
    let other_tag = urls["ok1@example.net"].rsplit_once('.').unwrap().1;
    for forged in [
        flipped,
        format!("{head}.{other_tag}"),
        path.replacen("/u/", "/u/9", 1),
        "/u/x".to_string(),
    ] {
        let r = post(
            port,
            &forged,
            "application/x-www-form-urlencoded",
            b"List-Unsubscribe=One-Click",
        );
        assert_eq!(r.status, 404, "{forged}");
        assert_eq!(http::request(port, "GET", &forged, &[], b"").status, 404);
    }
    assert_eq!(suppressed(), json!([]));
    // Too large a body.
    let r = post(port, &path, "text/plain", &vec![b'x'; 10_000]);
    assert_eq!(r.status, 413);
    assert_eq!(suppressed(), json!([]));

    // The one-click POST, as a mailbox provider sends it (twice: the
    // second changes nothing and makes no second event).
    for _ in 0..2 {
        let r = post(
            port,
            &path,
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--b--\r\n",
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    let list = suppressed();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["address"], "ok2@example.net");
    assert_eq!(list[0]["reason"], "unsubscribed");

    // The next RCPT to it is refused; the others still go.
    let mut c = server.logged_in();
    let (replies, _) = send(
        &mut c,
        &["ok2@example.net", "ok1@example.net"],
        &format!("From: {SENDER}\r\nTo: ok1@example.net\r\nSubject: again\r\n\r\nx\r\n.\r\n"),
    );
    assert!(replies[0].starts_with("550 5.1.1"), "{replies:?}");
    assert!(replies[1].starts_with("250"), "{replies:?}");

    // One webhook event.
    let hooks = receiver.wait_for(1, 30);
    let event: Value = serde_json::from_slice(&hooks[0].body).unwrap();
    assert_eq!(event["type"], "unsubscribed");
    assert_eq!(event["recipient"], "ok2@example.net");
    let msg_id = path.trim_start_matches("/u/").split('.').nth(1).unwrap();
    assert_eq!(event["message_id"], msg_id);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(receiver.received().len(), 1, "no second event");
}

#[test]
fn a_single_recipient_gets_a_link_and_a_senders_own_is_kept() {
    let server = TestServer::start(
        BIN.as_ref(),
        &format!("allow_plaintext_auth_on_loopback = true\n[delivery]\nmode = \"capture\"\n[tracking]\nbase_url = \"{BASE}\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n"),
    );
    // Set before the first message (the server caches settings for a few
    // seconds).
    server.cli_ok(&["account", "set", ACCOUNT, "unsubscribe", "1"]);
    let one = submit(
        &server,
        &["a@example.net"],
        &format!("From: {SENDER}\r\nTo: a@example.net\r\nSubject: s\r\n\r\nx\r\n.\r\n"),
    );
    let raw = String::from_utf8(server.content(&one)).unwrap();
    let url = field(&raw, "List-Unsubscribe").unwrap();
    assert!(url.starts_with(&format!("<{BASE}/u/")), "{raw}");
    assert!(url.contains(&one), "the token names its message: {url}");
    assert_eq!(server.messages().len(), 1);

    // The sender's own List-Unsubscribe stays, nothing added, no split.
    let own = submit(
        &server,
        &["a@example.net", "b@example.net"],
        &format!("From: {SENDER}\r\nTo: a@example.net, b@example.net\r\nList-Unsubscribe: <mailto:u@example.com>\r\nSubject: s\r\n\r\nx\r\n.\r\n"),
    );
    let raw = String::from_utf8(server.content(&own)).unwrap();
    assert_eq!(
        field(&raw, "List-Unsubscribe").unwrap(),
        "<mailto:u@example.com>"
    );
    assert!(field(&raw, "List-Unsubscribe-Post").is_none(), "{raw}");
    assert_eq!(server.messages().len(), 2);

    // An X-SMTPAPI batch: each copy its own link too.
    let mut c = server.logged_in();
    let (_, reply) = send(
        &mut c,
        &["c@example.net"],
        &format!("From: {SENDER}\r\nTo: c@example.net\r\nX-SMTPAPI: {{\"to\": [\"c@example.net\", \"d@example.net\"]}}\r\nSubject: s\r\n\r\nx\r\n.\r\n"),
    );
    queued_id(&reply);
    let listed = server.messages();
    assert_eq!(listed.len(), 4);
    let mut tokens = Vec::new();
    for m in &listed {
        let id = m["id"].as_str().unwrap();
        let rcpt = server.message(id)["recipients"][0]["address"]
            .as_str()
            .unwrap()
            .to_string();
        if rcpt != "c@example.net" && rcpt != "d@example.net" {
            continue;
        }
        let raw = String::from_utf8(server.content(id)).unwrap();
        let url = field(&raw, "List-Unsubscribe").unwrap();
        let token = url
            .trim_matches(['<', '>'])
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        let encoded = token.split('.').nth(2).unwrap().to_string();
        assert_eq!(
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, encoded)
                .unwrap(),
            rcpt.as_bytes()
        );
        tokens.push(token);
    }
    assert_eq!(tokens.len(), 2);

    // Over HTTP: one copy per recipient, every id in the answer.
    let key = server.http_key(ACCOUNT);
    let r = http::post_json(
        server.http_port,
        "/v1/messages",
        &key,
        &json!({"from": SENDER, "to": ["e@example.net", "f@example.net"], "subject": "s", "text": "t"}),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    let ids = v["message_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 2, "{v}");
    assert_eq!(ids[0], v["message_id"]);
    for (id, rcpt) in ids.iter().zip(["e@example.net", "f@example.net"]) {
        let raw = String::from_utf8(server.content(id.as_str().unwrap())).unwrap();
        // Both addresses in To, as composed: the header is not split.
        let to = field(&raw, "To").unwrap();
        assert!(
            to.contains("e@example.net") && to.contains("f@example.net"),
            "{raw}"
        );
        let url = field(&raw, "List-Unsubscribe").unwrap();
        let token = url
            .trim_matches(['<', '>'])
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        let encoded = token.split('.').nth(2).unwrap().to_string();
        assert_eq!(
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, encoded)
                .unwrap(),
            rcpt.as_bytes()
        );
    }
}
