//! Open and click tracking (issue 22, docs/tracking.md): with
//! `tracking = 1` a message to two recipients is stored as two, each HTML
//! part with its own pixel and signed click links; the pixel and a link
//! fetched over real HTTP show up in `GET /v1/messages/{id}`, in
//! `GET /v1/stats` and as webhook events; a forged link is refused and
//! never redirects.

use super::BIN;
use posthorn_testkit::http::{self, Receiver};
use posthorn_testkit::*;
use serde_json::{json, Value};

const BASE: &str = "https://mail.posthorn.test";

/// The `src` and `href` values of the HTML, entities decoded.
fn attrs(html: &str, name: &str) -> Vec<String> {
    html.split(&format!("{name}=\""))
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().replace("&amp;", "&"))
        .collect()
}

#[test]
fn opens_and_clicks_are_recorded_shown_counted_and_sent() {
    let server = TestServer::start(
        BIN.as_ref(),
        &format!("[delivery]\nmode = \"capture\"\n[tracking]\nbase_url = \"{BASE}\"\n[webhooks]\nretry_schedule = [\"1s\"]\nallow_private_networks = true\n"),
    );
    server.cli_ok(&["account", "set", ACCOUNT, "tracking", "1"]);
    let key = server.http_key(ACCOUNT);
    let port = server.http_port;
    let receiver = Receiver::start();
    let r = http::post_json(
        port,
        "/v1/webhooks",
        &key,
        &json!({"url": receiver.url("/hook"), "events": ["opened", "clicked"]}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));

    let shop = "https://shop.example.com/offer?id=7&src=mail";
    let r = http::post_json(
        port,
        "/v1/messages",
        &key,
        &json!({
            "from": SENDER,
            "to": ["ann@example.net", "bob@example.net"],
            "subject": "Offer",
            "text": "See https://shop.example.com/",
            "html": format!("<html><body><p>Hi</p><a href=\"{}\">Offer</a> <a href=\"mailto:help@example.com\">help</a></body></html>", shop.replace('&', "&amp;")),
        }),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let ids: Vec<String> = r.json()["message_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    let (ann_id, bob_id) = (&ids[0], &ids[1]);

    let raw = server.content(ann_id);
    let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert_eq!(
        parsed.body_text(0).unwrap().trim(),
        "See https://shop.example.com/",
        "text parts stay as written"
    );
    let html = parsed.body_html(0).unwrap().into_owned();
    let srcs = attrs(&html, "src");
    let hrefs = attrs(&html, "href");
    assert_eq!(srcs.len(), 1, "{html}");
    assert!(srcs[0].starts_with(&format!("{BASE}/t/o/")), "{html}");
    assert_eq!(hrefs.len(), 2, "{html}");
    assert!(hrefs[0].starts_with(&format!("{BASE}/t/c/")), "{html}");
    assert_eq!(hrefs[1], "mailto:help@example.com");
    // Bob's copy has links of its own.
    let bob_html = mail_parser::MessageParser::default()
        .parse(&server.content(bob_id))
        .unwrap()
        .body_html(0)
        .unwrap()
        .into_owned();
    assert_ne!(attrs(&bob_html, "src"), srcs);

    let pixel = srcs[0].strip_prefix(BASE).unwrap().to_string();
    let click = hrefs[0].strip_prefix(BASE).unwrap().to_string();

    // Forged: a changed signature, another URL under the signature, a
    // token that is not signed, a pixel of a made-up token.
    let (path, query) = click.split_once('?').unwrap();
    let sig = query.rsplit_once("&s=").unwrap().1;
    for forged in [
        format!(
            "{path}?{}",
            query.replace(&format!("&s={sig}"), "&s=AAAAAAAAAAAAAAAAAAAAAA")
        ),
        format!("{path}?u=https%3A%2F%2Fevil.example%2F&s={sig}"),
        format!("{path}x?{query}"),
        path.to_string(),
        pixel.replacen("/t/o/", "/t/o/9", 1),
        pixel.replace(".gif", ".png"),
    ] {
        let r = http::request(port, "GET", &forged, &[], b"");
        assert_eq!(r.status, 404, "{forged}");
        assert!(r.header("location").is_none());
    }

    // The pixel, and the link.
    let r = http::request(port, "GET", &pixel, &[("User-Agent", "TestMail/1.0")], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/gif"));
    assert!(r.body.starts_with(b"GIF89a"));
    let r = http::request(port, "GET", &click, &[("User-Agent", "TestMail/1.0")], b"");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some(shop));

    // In the status API.
    let m = http::get(port, &format!("/v1/messages/{ann_id}"), &key).json();
    let e = &m["recipients"][0]["engagement"];
    assert_eq!(e["opened"], true, "{m:#}");
    assert_eq!(e["opens"], 1);
    assert_eq!(e["clicked"], true);
    assert_eq!(e["clicks"], 1);
    assert!(
        e["first_opened_at"].is_string() && e["last_clicked_at"].is_string(),
        "{e}"
    );
    let b = http::get(port, &format!("/v1/messages/{bob_id}"), &key).json();
    assert_eq!(b["recipients"][0]["engagement"]["opened"], false, "{b:#}");
    assert_eq!(b["recipients"][0]["engagement"]["clicks"], 0);
    // In message show.
    let shown = server.cli_ok(&["message", "show", ann_id]);
    assert!(
        shown.contains("opened:") && shown.contains("clicked:"),
        "{shown}"
    );

    // In the statistics: one recipient opened, one clicked.
    let stats = http::get(port, "/v1/stats", &key).json();
    let day = &stats["days"].as_array().unwrap()[0];
    assert_eq!(day["requests"], 2, "{stats}");
    assert_eq!(day["opened"], 1, "{stats}");
    assert_eq!(day["clicked"], 1, "{stats}");

    // As webhook events.
    let got = receiver.wait_for(2, 30);
    let mut events: Vec<Value> = got
        .iter()
        .map(|g| serde_json::from_slice(&g.body).unwrap())
        .collect();
    events.sort_by_key(|e| e["type"].as_str().unwrap().to_string());
    assert_eq!(events[0]["type"], "clicked");
    assert_eq!(events[0]["url"], shop);
    assert_eq!(events[1]["type"], "opened");
    for e in &events {
        assert_eq!(e["message_id"], ann_id.as_str());
        assert_eq!(e["recipient"], "ann@example.net");
    }
    assert!(events[1].get("url").is_none(), "{}", events[1]);
}

/// The per-message switch: `"tracking": true` over HTTP (and its header,
/// `X-Posthorn-Track: on`, over SMTP) tracks a message of an account with
/// tracking off; `off` leaves one of an account with it on untracked; the
/// field never reaches a recipient, and any other value is refused before
/// the message is stored.
#[test]
fn one_message_can_turn_tracking_on_or_off() {
    let server = TestServer::start(
        BIN.as_ref(),
        &format!("allow_plaintext_auth_on_loopback = true\n[delivery]\nmode = \"capture\"\n[tracking]\nbase_url = \"{BASE}\"\n"),
    );
    let key = server.http_key(ACCOUNT);
    let html = "<html><body><a href=\"https://example.com/\">go</a></body></html>";
    let send = |tracking: Option<bool>| {
        let mut req =
            json!({"from": SENDER, "to": "ann@example.net", "subject": "S", "html": html});
        if let Some(on) = tracking {
            req["tracking"] = json!(on);
        }
        let r = http::post_json(server.http_port, "/v1/messages", &key, &req);
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        r.json()["message_id"].as_str().unwrap().to_string()
    };
    let tracked = |id: &str| {
        let raw = server.content(id);
        assert!(
            !String::from_utf8_lossy(&raw).contains("X-Posthorn-Track"),
            "the switch left Posthorn"
        );
        let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
        parsed
            .body_html(0)
            .unwrap()
            .contains(&format!("{BASE}/t/o/"))
    };
    // The account has tracking off (the default).
    assert!(!tracked(&send(None)));
    assert!(tracked(&send(Some(true))));
    // Over SMTP, the header does the same; a value other than on/off is
    // refused with its code.
    let smtp = |value: &str| {
        let mut c = server.logged_in();
        assert!(c.cmd(&format!("MAIL FROM:<{SENDER}>")).starts_with("250"));
        assert!(c.cmd("RCPT TO:<ann@example.net>").starts_with("250"));
        assert!(c.cmd("DATA").starts_with("354"));
        c.send(
            format!("From: <{SENDER}>\r\nTo: <ann@example.net>\r\nSubject: S\r\nX-Posthorn-Track: {value}\r\nMIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n{html}\r\n.\r\n")
                .as_bytes(),
        );
        c.read_reply()
    };
    let reply = smtp("on");
    assert!(tracked(&queued_id(&reply)), "{reply}");
    let reply = smtp("sometimes");
    assert!(reply.starts_with("554 5.0.0"), "{reply}");
    assert!(reply.contains("FailedOperation.InvalidTracking"), "{reply}");
    // With the account's tracking on, "off" and false leave one untracked.
    server.cli_ok(&["account", "set", ACCOUNT, "tracking", "1"]);
    std::thread::sleep(std::time::Duration::from_secs(6)); // the settings cache (5 s)
    assert!(tracked(&send(None)));
    assert!(!tracked(&send(Some(false))));
    let reply = smtp("off");
    assert!(!tracked(&queued_id(&reply)), "{reply}");
}
