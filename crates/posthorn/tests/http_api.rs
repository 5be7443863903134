//! The HTTP API end to end, over real HTTP against the real binary: send
//! (JSON and raw), delivered through a real DNS server to a real sink;
//! status, listing and statistics; webhooks to a real receiver, signed and
//! retried; and bad requests answered with stable codes, never a 5xx.

use hmac::{Hmac, Mac};
use posthorn_testkit::dns::DnsServer;
use posthorn_testkit::http::{self, Receiver};
use posthorn_testkit::sink::{Sink, SinkOptions};
use posthorn_testkit::*;
use serde_json::{json, Value};
use sha2::Sha256;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_posthorn");
const WAIT: Duration = Duration::from_secs(30);

/// Stored templates and sends with them (issue 22).
#[path = "http_api/templates.rs"]
mod templates;

/// Open and click tracking (issue 22).
#[path = "http_api/tracking.rs"]
mod tracking;

/// MX records of the recipients' domain and of the sender's (bounce
/// notices) pointing at the sink.
fn dns_to(sink: &Sink, more: &str) -> (DnsServer, String) {
    let dns = DnsServer::start();
    for d in ["example.net", DOMAIN] {
        let mx = format!("mx.{d}");
        dns.set_mx(d, &[(10, &mx)]);
        dns.set_a(&mx, &[Ipv4Addr::LOCALHOST]);
    }
    let config = format!(
        "[delivery]\nhostname = \"out.posthorn.test\"\nport = {}\nnameservers = [\"{}\"]\nretry_schedule = [\"1s\"]\nallow_private_destinations = true\n{more}\n",
        sink.port(),
        dns.addr()
    );
    (dns, config)
}

fn final_status(s: &str) -> bool {
    matches!(s, "delivered" | "bounced" | "expired" | "suppressed")
}

/// Poll `GET /v1/messages/{id}` until every recipient is final.
fn wait_final(server: &TestServer, key: &str, id: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = http::get(server.http_port, &format!("/v1/messages/{id}"), key);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let m = r.json();
        if m["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| final_status(r["status"].as_str().unwrap()))
        {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "not final: {m:#}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn send(server: &TestServer, key: &str, body: Value) -> String {
    let r = http::post_json(server.http_port, "/v1/messages", key, &body);
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.header("x-request-id").is_some());
    r.json()["message_id"].as_str().unwrap().to_string()
}

fn today() -> String {
    posthorn_types::time::rfc3339(posthorn_types::time::unix_now())[..10].to_string()
}

#[test]
fn sent_over_http_is_delivered_listed_and_counted() {
    let sink = Sink::start(SinkOptions::default());
    let (_dns, config) = dns_to(&sink, "");
    let server = TestServer::start(BIN.as_ref(), &config);
    let key = server.http_key(ACCOUNT);
    let port = server.http_port;

    let rich = send(
        &server,
        &key,
        json!({
            "from": {"email": SENDER, "name": "Shop"},
            "to": ["ok@example.net"],
            "cc": "Second <ok2@example.net>",
            "bcc": ["hidden@example.net"],
            "reply_to": "help@example.com",
            "subject": "Your order 🚚",
            "text": "It has shipped.",
            "html": "<p>It has <b>shipped</b>.</p>",
            "attachments": [{"filename": "invoice.pdf", "content_type": "application/pdf", "content": "JVBERi0xLjQK"}],
            "headers": {"X-Campaign": "autumn"},
            "label": LABEL,
        }),
    );
    let bounced = send(
        &server,
        &key,
        json!({"from": SENDER, "to": "permfail@example.net", "subject": "s", "text": "t"}),
    );
    let raw = format!(
        "From: {SENDER}\nTo: raw@example.net\nSubject: raw one\n\nsent raw, bare LF line ends\n"
    );
    let r = http::request(
        port,
        "POST",
        "/v1/messages/raw",
        &[
            ("Authorization", &format!("Bearer {key}")),
            ("Content-Type", "message/rfc822"),
        ],
        raw.as_bytes(),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let raw_id = r.json()["message_id"].as_str().unwrap().to_string();

    let m = wait_final(&server, &key, &rich);
    let statuses: Vec<(&str, &str)> = m["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["address"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("ok@example.net", "delivered"),
            ("ok2@example.net", "delivered"),
            ("hidden@example.net", "delivered")
        ]
    );
    let first = &m["recipients"][0];
    assert!(
        first["last_reply"].as_str().unwrap().starts_with("250"),
        "{m:#}"
    );
    assert!(first["remote_host"].as_str().unwrap().contains("127.0.0.1"));
    assert_eq!(first["attempts"], 1);
    assert_eq!(m["label"], LABEL);
    assert_eq!(m["subject"], "Your order 🚚");
    assert_eq!(m["attachments"][0]["filename"], "invoice.pdf");
    assert_eq!(m["attachments"][0]["size"], 9);
    let b = wait_final(&server, &key, &bounced);
    assert_eq!(b["recipients"][0]["status"], "bounced");
    assert!(b["recipients"][0]["last_reply"]
        .as_str()
        .unwrap()
        .starts_with("550"));
    wait_final(&server, &key, &raw_id);

    // What the sink got (the rich message, the raw one, the bounce notice;
    // permfail@ was refused): the header as sent, Bcc nowhere in the
    // content.
    let got = sink.wait_for(3, WAIT);
    let rich_copy = got
        .iter()
        .find(|g| g.rcpt_to.contains(&"ok@example.net".to_string()))
        .expect("the rich message");
    let text = String::from_utf8_lossy(&rich_copy.data);
    assert!(text.contains("X-Campaign: autumn"), "{text}");
    assert!(
        text.contains("Reply-To: <help@example.com>")
            || text.contains("Reply-To: help@example.com"),
        "{text}"
    );
    assert!(
        !text.to_ascii_lowercase().contains("hidden@example.net"),
        "{text}"
    );
    assert!(text.contains("Received: from"), "{text}");
    assert!(text.contains("with HTTP"), "{text}");
    let raw_copy = got
        .iter()
        .find(|g| g.rcpt_to == ["raw@example.net"])
        .expect("the raw message");
    assert!(!raw_copy
        .data
        .windows(2)
        .any(|w| w[1] == b'\n' && w[0] != b'\r'));

    // Listing: today's messages one per page, following the cursor.
    let mut cursor = String::new();
    let mut listed = Vec::new();
    loop {
        let r = http::get(
            port,
            &format!("/v1/messages?date={}&limit=1{cursor}", today()),
            &key,
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let page = r.json();
        for m in page["messages"].as_array().unwrap() {
            listed.push(m["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    // The three sent and the bounce notice, oldest first.
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert_eq!(
        &listed[..3],
        [rich.clone(), bounced.clone(), raw_id.clone()]
    );
    let ids = |q: &str| -> Vec<String> {
        http::get(port, &format!("/v1/messages?{q}"), &key).json()["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids("recipient=PERMFAIL@example.net"),
        std::slice::from_ref(&bounced)
    );
    assert_eq!(ids("status=bounced"), std::slice::from_ref(&bounced));
    assert_eq!(ids(&format!("label={LABEL}")), std::slice::from_ref(&rich));
    assert!(ids("date=2001-01-01").is_empty());

    // Statistics agree with the sink: 5 recipients requested, 4 delivered
    // (the sink's count without the bounce notice), 1 bounced.
    let from_us = got.iter().filter(|g| !g.mail_from.is_empty());
    let delivered_at_sink: usize = from_us.map(|g| g.rcpt_to.len()).sum();
    let stats = http::get(port, "/v1/stats", &key).json();
    let day = &stats["days"][0];
    assert_eq!(day["date"], today());
    assert_eq!(day["messages"], 3);
    assert_eq!(day["requests"], 5);
    assert_eq!(day["delivered"], delivered_at_sink as u64);
    assert_eq!(day["bounced"], 1);
    let labelled = http::get(port, &format!("/v1/stats?label={LABEL}"), &key).json();
    assert_eq!(labelled["days"][0]["requests"], 3);

    // The command line shows the same status.
    let cli: Value = serde_json::from_str(&server.cli_ok(&["status", &rich, "--json"])).unwrap();
    assert_eq!(cli, wait_final(&server, &key, &rich));

    // Metrics count what happened.
    let metrics = String::from_utf8(http::request(port, "GET", "/metrics", &[], b"").body).unwrap();
    assert!(
        metrics.contains("posthorn_submissions_total{via=\"http\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("posthorn_queue_recipients{status=\"delivered\"}"),
        "{metrics}"
    );
    assert_eq!(http::request(port, "GET", "/healthz", &[], b"").status, 200);
    assert_eq!(http::request(port, "GET", "/readyz", &[], b"").status, 200);
}

fn verify_signature(secret: &str, received: &http::Received) {
    let header = received
        .header("x-posthorn-signature")
        .expect("signature header");
    let (t, v1) = header.split_once(",v1=").expect("t=..,v1=..");
    let t = t.strip_prefix("t=").expect("t=");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&received.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        v1,
        expected,
        "signature of {}",
        String::from_utf8_lossy(&received.body)
    );
}

#[test]
fn webhooks_are_signed_stored_and_retried_after_a_500() {
    let sink = Sink::start(SinkOptions::default());
    // The receiver is on loopback.
    let (_dns, config) = dns_to(
        &sink,
        "[webhooks]\nretry_schedule = [\"1s\"]\nallow_private_networks = true",
    );
    let server = TestServer::start(BIN.as_ref(), &config);
    let key = server.http_key(ACCOUNT);
    let port = server.http_port;
    let receiver = Receiver::start();

    let r = http::post_json(
        port,
        "/v1/webhooks",
        &key,
        &json!({"url": receiver.url("/hook"), "events": ["delivered", "bounced", "suppressed"]}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let hook = r.json();
    let secret = hook["secret"].as_str().unwrap().to_string();
    let hook_id = hook["id"].as_str().unwrap().to_string();
    let listed = http::get(port, "/v1/webhooks", &key).json();
    assert_eq!(listed["webhooks"][0]["id"], hook_id.as_str());
    assert!(listed["webhooks"][0].get("secret").is_none(), "{listed}");

    receiver.answer_next(500);
    let id = send(
        &server,
        &key,
        json!({"from": SENDER, "to": "ok@example.net", "subject": "s", "text": "t"}),
    );
    let got = receiver.wait_for(2, 30);
    assert_eq!(got[0].answered, 500);
    assert_eq!(got[1].answered, 200);
    for g in &got[..2] {
        assert_eq!(g.path, "/hook");
        verify_signature(&secret, g);
        let event: Value = serde_json::from_slice(&g.body).unwrap();
        assert_eq!(event["type"], "delivered");
        assert_eq!(event["message_id"], id.as_str());
        assert_eq!(event["recipient"], "ok@example.net");
        assert!(event["reply"].as_str().unwrap().starts_with("250"));
    }
    // A retry is the same event.
    let ev = |g: &http::Received| serde_json::from_slice::<Value>(&g.body).unwrap()["id"].clone();
    assert_eq!(ev(&got[0]), ev(&got[1]));

    // A bounce, and a suppressed recipient on the next message.
    send(
        &server,
        &key,
        json!({"from": SENDER, "to": "permfail@example.net", "subject": "s", "text": "t"}),
    );
    let got = receiver.wait_for(3, 30);
    let bounce: Value = serde_json::from_slice(&got[2].body).unwrap();
    assert_eq!(bounce["type"], "bounced");
    let r = http::post_json(
        port,
        "/v1/messages",
        &key,
        &json!({"from": SENDER, "to": ["permfail@example.net", "ok@example.net"], "subject": "s", "text": "t"}),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let rcpts = r.json()["recipients"].clone();
    assert_eq!(rcpts[0]["status"], "suppressed");
    assert_eq!(rcpts[0]["code"], "FailedOperation.RecipientSuppressed");
    assert_eq!(rcpts[1]["status"], "queued");
    let got = receiver.wait_for(5, 30);
    let kinds: Vec<String> = got[3..]
        .iter()
        .map(|g| {
            serde_json::from_slice::<Value>(&g.body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(kinds.contains(&"suppressed".to_string()), "{kinds:?}");
    assert!(kinds.contains(&"delivered".to_string()), "{kinds:?}");

    assert_eq!(
        http::delete(port, &format!("/v1/webhooks/{hook_id}"), &key).status,
        204
    );
    let again = http::delete(port, &format!("/v1/webhooks/{hook_id}"), &key);
    assert_eq!(again.status, 404);
    assert_eq!(again.error_code(), "ResourceNotFound.Object");
}

#[test]
fn webhook_events_wait_in_the_store_across_a_restart() {
    let sink = Sink::start(SinkOptions::default());
    // The receiver is on loopback.
    let (_dns, config) = dns_to(
        &sink,
        "[webhooks]\nretry_schedule = [\"1s\"]\nallow_private_networks = true",
    );
    let mut server = TestServer::start(BIN.as_ref(), &config);
    let key = server.http_key(ACCOUNT);
    // Nothing listens there yet: every POST fails.
    let hook_port = free_port();
    let r = http::post_json(
        server.http_port,
        "/v1/webhooks",
        &key,
        &json!({"url": format!("http://127.0.0.1:{hook_port}/h"), "events": ["delivered"]}),
    );
    assert_eq!(r.status, 201);
    let secret = r.json()["secret"].as_str().unwrap().to_string();
    let id = send(
        &server,
        &key,
        json!({"from": SENDER, "to": "ok@example.net", "subject": "s", "text": "t"}),
    );
    wait_final(&server, &key, &id);
    std::thread::sleep(Duration::from_millis(1500));
    server.restart();
    let receiver = Receiver::start_on(hook_port);
    let got = receiver.wait_for(1, 30);
    verify_signature(&secret, &got[0]);
    let event: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(event["message_id"], id.as_str());
    assert_eq!(event["type"], "delivered");
}

#[test]
fn bad_requests_get_stable_codes_and_never_another_accounts_data() {
    let server = TestServer::start_with(BIN.as_ref(), "[http]\nmax_body_bytes = 20000", |s| {
        s.cli_ok(&["account", "create", "other"]);
        s.cli_ok(&["domain", "add", "other.test", "--account", "other"]);
        s.cli_ok(&[
            "sender",
            "add",
            "a@other.test",
            "--account",
            "other",
            "--password",
            "pw-other-1",
        ]);
    });
    let key = server.http_key(ACCOUNT);
    let other_key = server.http_key("other");
    let port = server.http_port;
    let post = |body: &[u8], ctype: &str, k: &str| {
        http::request(
            port,
            "POST",
            "/v1/messages",
            &[
                ("Authorization", &format!("Bearer {k}")),
                ("Content-Type", ctype),
            ],
            body,
        )
    };
    let ok = json!({"from": SENDER, "to": "x@example.net", "subject": "s", "text": "t"});
    let with = |field: &str, v: Value| {
        let mut b = ok.clone();
        b[field] = v;
        b
    };
    let cases: Vec<(&str, http::Response, u16, &str)> = vec![
        (
            "malformed JSON",
            post(b"{\"from\": ", "application/json", &key),
            400,
            "InvalidParameter.Json",
        ),
        (
            "missing subject",
            post(
                br#"{"from": "app@example.com", "to": "x@example.net"}"#,
                "application/json",
                &key,
            ),
            422,
            "FailedOperation.MissingSubject",
        ),
        (
            "unknown field",
            post(
                with("colour", json!("red")).to_string().as_bytes(),
                "application/json",
                &key,
            ),
            400,
            "InvalidParameter.Json",
        ),
        (
            "wrong type",
            post(
                with("to", json!(42)).to_string().as_bytes(),
                "application/json",
                &key,
            ),
            400,
            "InvalidParameter.Json",
        ),
        (
            "not JSON",
            post(ok.to_string().as_bytes(), "text/plain", &key),
            415,
            "InvalidParameter.MediaType",
        ),
        (
            "oversized",
            post(
                with("text", json!("x".repeat(30_000)))
                    .to_string()
                    .as_bytes(),
                "application/json",
                &key,
            ),
            413,
            "InvalidParameter.RequestTooLarge",
        ),
        (
            "bad base64",
            post(
                with(
                    "attachments",
                    json!([{"filename": "a.bin", "content": "!!!"}]),
                )
                .to_string()
                .as_bytes(),
                "application/json",
                &key,
            ),
            422,
            "FailedOperation.InvalidAttachmentContent",
        ),
        (
            "bad address",
            post(
                with("to", json!("not an address")).to_string().as_bytes(),
                "application/json",
                &key,
            ),
            400,
            "InvalidParameter.Address",
        ),
        (
            "header injection",
            post(
                with("headers", json!({"X-A": "b\r\nBcc: evil@example.org"}))
                    .to_string()
                    .as_bytes(),
                "application/json",
                &key,
            ),
            400,
            "InvalidParameter.Header",
        ),
        (
            "no content",
            post(
                with("text", Value::Null).to_string().as_bytes(),
                "application/json",
                &key,
            ),
            422,
            "FailedOperation.MissingEmailContent",
        ),
        (
            "another account's sender",
            post(
                with("from", json!("a@other.test")).to_string().as_bytes(),
                "application/json",
                &key,
            ),
            403,
            "UnauthorizedOperation.SenderNotAllowed",
        ),
        (
            "unknown label",
            post(
                with("label", json!("nope")).to_string().as_bytes(),
                "application/json",
                &key,
            ),
            400,
            "InvalidParameter.Value",
        ),
        (
            "no key",
            http::request(port, "GET", "/v1/messages", &[], b""),
            401,
            "AuthFailure.MissingKey",
        ),
        (
            "wrong key",
            http::get(
                port,
                "/v1/messages",
                "ph_aaaaaaaaaaaa_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            ),
            401,
            "AuthFailure.InvalidKey",
        ),
        (
            "garbage key",
            http::get(port, "/v1/messages", "hunter2"),
            401,
            "AuthFailure.InvalidKey",
        ),
        (
            "bad id",
            http::get(port, "/v1/messages/nope", &key),
            400,
            "InvalidParameter.MessageId",
        ),
        (
            "bad date",
            http::get(port, "/v1/messages?date=2026-02-30", &key),
            400,
            "InvalidParameter.Query",
        ),
        (
            "bad status",
            http::get(port, "/v1/messages?status=lost", &key),
            400,
            "InvalidParameter.Query",
        ),
        (
            "bad limit",
            http::get(port, "/v1/messages?limit=0", &key),
            400,
            "InvalidParameter.Query",
        ),
        (
            "bad cursor",
            http::get(port, "/v1/messages?cursor=x", &key),
            400,
            "InvalidParameter.Query",
        ),
        (
            "stats window",
            http::get(port, "/v1/stats?from=2020-01-01&to=2026-01-01", &key),
            400,
            "InvalidParameter.Query",
        ),
        (
            "bad webhook url",
            http::post_json(
                port,
                "/v1/webhooks",
                &key,
                &json!({"url": "ftp://x/", "events": ["delivered"]}),
            ),
            400,
            "InvalidParameter.Url",
        ),
        (
            "bad webhook event",
            http::post_json(
                port,
                "/v1/webhooks",
                &key,
                &json!({"url": "http://127.0.0.1:9/", "events": ["read"]}),
            ),
            400,
            "InvalidParameter.Event",
        ),
        (
            "no route",
            http::get(port, "/v2/nothing", &key),
            404,
            "ResourceNotFound.Route",
        ),
        (
            "wrong method",
            http::request(port, "PUT", "/v1/messages", &[], b""),
            405,
            "UnsupportedOperation.Method",
        ),
        (
            "account key on admin route",
            http::get(port, "/v1/admin/accounts", &key),
            403,
            "UnauthorizedOperation.AdminOnly",
        ),
    ];
    for (what, r, status, code) in cases {
        assert_eq!(
            r.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.error_code(), code, "{what}");
        assert!(
            !r.json()["error"]["request_id"].as_str().unwrap().is_empty(),
            "{what}"
        );
    }
    // Nothing refused was stored.
    assert!(server.messages().is_empty(), "{:?}", server.messages());

    // Another account's message does not exist for this key, nor in its lists.
    let theirs = send(
        &server,
        &other_key,
        json!({"from": "a@other.test", "to": "x@example.net", "subject": "s", "text": "t"}),
    );
    let r = http::get(port, &format!("/v1/messages/{theirs}"), &key);
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "ResourceNotFound.Message");
    assert!(http::get(port, "/v1/messages", &key).json()["messages"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(http::get(port, "/v1/stats", &key).json()["days"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(
        http::get(port, &format!("/v1/messages/{theirs}"), &other_key).status,
        200
    );

    // A revoked key stops working.
    let id = other_key.split('_').nth(1).unwrap().to_string();
    server.cli_ok(&["apikey", "revoke", &id]);
    let fresh = server.http_key("other");
    assert_eq!(http::get(port, "/v1/messages", &fresh).status, 200);
}

#[test]
fn internal_destinations_and_webhook_urls_are_refused_by_default() {
    let server = TestServer::start(BIN.as_ref(), "");
    let key = server.http_key(ACCOUNT);
    let port = server.http_port;
    let hook = |url: &str| {
        http::post_json(
            port,
            "/v1/webhooks",
            &key,
            &json!({"url": url, "events": ["delivered"]}),
        )
    };
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[64:ff9b::a00:1]/",
        "http://[::127.0.0.1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://198.18.0.1/",
        "http://127.0.0.1:9/",
        "http://2130706433/",
        "http://localhost:9/",
    ] {
        let r = hook(url);
        assert_eq!(r.status, 400, "{url}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.error_code(), "InvalidParameter.Url", "{url}");
        let message = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains("internal address"), "{url}: {message}");
    }
    // A URL of 3,000 bytes (the cap is 2,048).
    let long = format!(
        "http://8.8.8.8/{}",
        "a".repeat(3000 - "http://8.8.8.8/".len())
    );
    assert_eq!(long.len(), 3000);
    let r = hook(&long);
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "InvalidParameter.Url");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 2048"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    // At most 20 webhooks per account; the 21st is refused until one goes.
    let mut ids = Vec::new();
    for i in 0..20 {
        let r = hook(&format!("http://8.8.8.8/hook/{i}"));
        assert_eq!(r.status, 201, "{i}: {}", String::from_utf8_lossy(&r.body));
        ids.push(r.json()["id"].as_str().unwrap().to_string());
    }
    let r = hook("http://8.8.8.8/hook/20");
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.error_code(), "LimitExceeded.Webhooks");
    let listed = http::get(port, "/v1/webhooks", &key).json();
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 20);
    assert_eq!(
        http::delete(port, &format!("/v1/webhooks/{}", ids[0]), &key).status,
        204
    );
    assert_eq!(hook("http://8.8.8.8/hook/20").status, 201);

    // A send to an internal address literal: refused as over SMTP, 422.
    let r = http::post_json(
        port,
        "/v1/messages",
        &key,
        &json!({"from": SENDER, "to": "x@[127.0.0.1]", "subject": "s", "text": "t"}),
    );
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.error_code(), "FailedOperation.InternalDestination");
    // Beside a public recipient: sent to that one, the other refused.
    let r = http::post_json(
        port,
        "/v1/messages",
        &key,
        &json!({"from": SENDER, "to": ["ok@example.net", "x@[IPv6:::1]"], "subject": "s", "text": "t"}),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let recipients = r.json()["recipients"].clone();
    assert_eq!(recipients[1]["status"], "refused", "{recipients}");
    assert_eq!(
        recipients[1]["code"], "FailedOperation.InternalDestination",
        "{recipients}"
    );
}

#[test]
fn http_sends_share_the_accounts_rate_limits() {
    let server = TestServer::start_with(BIN.as_ref(), "", |s| {
        s.cli_ok(&["account", "set", ACCOUNT, "messages_per_second", "2"]);
    });
    let key = server.http_key(ACCOUNT);
    let body = json!({"from": SENDER, "to": "x@example.net", "subject": "s", "text": "t"});
    let answers: Vec<http::Response> = (0..6)
        .map(|_| http::post_json(server.http_port, "/v1/messages", &key, &body))
        .collect();
    let accepted = answers.iter().filter(|r| r.status == 202).count();
    let limited: Vec<&http::Response> = answers.iter().filter(|r| r.status != 202).collect();
    assert!((2..=3).contains(&accepted), "{accepted}");
    for r in limited {
        assert_eq!(r.status, 429);
        assert_eq!(r.error_code(), "RequestLimitExceeded.SmtpRateLimit");
    }
    assert_eq!(server.messages().len(), accepted);
}

#[test]
fn openapi_document_lists_every_route() {
    let server = TestServer::start(BIN.as_ref(), "");
    let r = http::request(server.http_port, "GET", "/openapi.json", &[], b"");
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/v1/messages",
        "/v1/messages/raw",
        "/v1/messages/{id}",
        "/v1/stats",
        "/v1/webhooks",
        "/v1/webhooks/{id}",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
}
