//! Delivery end to end: submit over SMTP to the real server, which looks up
//! MX records on a real DNS server on loopback and delivers to a real sink
//! SMTP server on loopback; then read statuses through the CLI.

use mail_auth::hickory_resolver::config::{
    NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};
use posthorn_testkit::dns::DnsServer;
use posthorn_testkit::sink::{Sink, SinkOptions};
use posthorn_testkit::*;
use serde_json::Value;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_posthorn");
const WAIT: Duration = Duration::from_secs(30);
const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// X-SMTPAPI batches (issue 22).
#[path = "delivery/smtpapi.rs"]
mod smtpapi;

/// One-click unsubscribe (issue 22).
#[path = "delivery/unsubscribe.rs"]
mod unsubscribe;

/// MX for the recipients' domain and for the sender's (bounce notices go
/// there) pointing at the sink.
fn dns_for(sink_domains: &[&str]) -> DnsServer {
    let dns = DnsServer::start();
    for d in sink_domains {
        let mx = format!("mx.{d}");
        dns.set_mx(d, &[(10, &mx)]);
        dns.set_a(&mx, &[LOOPBACK]);
    }
    dns
}

/// The sink is on loopback, where Posthorn delivers only with
/// `allow_private_destinations` (see [`strict_config`] for without).
fn delivery_config(port: u16, dns: &DnsServer, more: &str) -> String {
    strict_config(
        port,
        dns,
        &format!("allow_private_destinations = true\n{more}"),
    )
}

/// [`delivery_config`] without `allow_private_destinations`: the default,
/// internal destinations refused.
fn strict_config(port: u16, dns: &DnsServer, more: &str) -> String {
    format!(
        "allow_plaintext_auth_on_loopback = true\n[delivery]\nhostname = \"out.posthorn.test\"\nport = {port}\nnameservers = [\"{}\"]\nretry_schedule = [\"1s\"]\nidle_connection_timeout = \"1s\"\n{more}\n",
        dns.addr()
    )
}

fn message(to: &str, extra_headers: &str) -> String {
    format!(
        "From: Shop <{SENDER}>\r\nTo: {to}\r\n{extra_headers}Subject: Your order\r\n\r\nIt has shipped.\r\n.\r\n"
    )
}

/// One transaction as [`SENDER`]; the RCPT replies and the final reply.
fn send(c: &mut RawClient, rcpts: &[&str], data: &str) -> (Vec<String>, String) {
    let r = c.cmd(&format!("MAIL FROM:<{SENDER}>"));
    assert!(r.starts_with("250"), "{r}");
    let replies: Vec<String> = rcpts
        .iter()
        .map(|r| c.cmd(&format!("RCPT TO:<{r}>")))
        .collect();
    if !replies.iter().any(|r| r.starts_with("250")) {
        c.cmd("RSET");
        return (replies, String::new());
    }
    let r = c.cmd("DATA");
    assert!(r.starts_with("354"), "{r}");
    c.send(data.as_bytes());
    (replies, c.read_reply())
}

fn submit(server: &TestServer, rcpts: &[&str], data: &str) -> String {
    let mut c = server.logged_in();
    let (replies, last) = send(&mut c, rcpts, data);
    for r in &replies {
        assert!(r.starts_with("250"), "{r}");
    }
    queued_id(&last)
}

fn all_final(m: &Value) -> bool {
    m["recipients"].as_array().is_some_and(|rs| {
        rs.iter().all(|r| {
            matches!(
                r["status"].as_str(),
                Some("delivered" | "bounced" | "expired" | "suppressed")
            )
        })
    })
}

fn recipient<'a>(m: &'a Value, address: &str) -> &'a Value {
    m["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == address)
        .unwrap_or_else(|| panic!("no recipient {address} in {m:#}"))
}

/// The DKIM public key of [`DOMAIN`] as `domain records` prints it.
fn publish_dkim(server: &TestServer, dns: &DnsServer) {
    publish_dkim_of(server, dns, DOMAIN);
}

fn publish_dkim_of(server: &TestServer, dns: &DnsServer, domain: &str) {
    let records = server.cli_ok(&["domain", "records", domain]);
    let line = records.lines().next().expect("the DKIM record");
    let (name, rest) = line.split_once(". IN TXT ").expect("zone-file line");
    let value: String = rest.split('"').skip(1).step_by(2).collect();
    dns.set_txt(name, &[&value]);
}

fn verify_dkim(dns: &DnsServer, message: &[u8]) -> DkimResult {
    let addr = dns.addr();
    let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
    for c in &mut ns.connections {
        c.port = addr.port();
    }
    let config = ResolverConfig::from_parts(None, vec![], vec![ns]);
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 1;
    opts.cache_size = 0;
    opts.use_hosts_file = ResolveHosts::Never;
    let auth = MessageAuthenticator::new(config, opts).expect("resolver");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let parsed = AuthenticatedMessage::parse(message).expect("parse");
        let results = auth.verify_dkim(&parsed).await;
        assert_eq!(results.len(), 1, "one signature: {results:?}");
        results[0].result().clone()
    })
}

#[test]
fn delivered_dkim_signed_without_bcc() {
    let sink = Sink::start(SinkOptions::default());
    let dns = dns_for(&["example.net"]);
    let server = TestServer::start(BIN.as_ref(), &delivery_config(sink.port(), &dns, ""));
    publish_dkim(&server, &dns);
    let id = submit(
        &server,
        &["ok@example.net", "hidden@example.net"],
        &message("ok@example.net", "Bcc: hidden@example.net\r\n"),
    );
    let m = server.wait_message(&id, WAIT, all_final);
    for address in ["ok@example.net", "hidden@example.net"] {
        let r = recipient(&m, address);
        assert_eq!(r["status"], "delivered", "{m:#}");
        assert_eq!(r["attempts"], 1);
        assert!(r["last_reply"].as_str().unwrap().starts_with("250"), "{r}");
    }
    let got = sink.wait_for(1, WAIT);
    assert_eq!(got.len(), 1, "one transaction carries both recipients");
    let msg = &got[0];
    assert_eq!(msg.mail_from, SENDER);
    assert_eq!(msg.rcpt_to, ["ok@example.net", "hidden@example.net"]);
    assert_eq!(msg.helo, "out.posthorn.test");
    let text = String::from_utf8_lossy(&msg.data);
    assert!(text.starts_with("DKIM-Signature: "), "{text}");
    assert!(!text.to_ascii_lowercase().contains("\nbcc:"), "{text}");
    assert_eq!(verify_dkim(&dns, &msg.data), DkimResult::Pass);
}

#[test]
fn a_message_to_two_domains_is_signed_once_and_sent_to_each() {
    let sink = Sink::start(SinkOptions::default());
    let dns = dns_for(&["example.net", "example.org"]);
    let server = TestServer::start(BIN.as_ref(), &delivery_config(sink.port(), &dns, ""));
    publish_dkim(&server, &dns);
    let id = submit(
        &server,
        &["a@example.net", "b@example.org"],
        &message("a@example.net", "Cc: b@example.org\r\n"),
    );
    let m = server.wait_message(&id, WAIT, all_final);
    for address in ["a@example.net", "b@example.org"] {
        assert_eq!(recipient(&m, address)["status"], "delivered", "{m:#}");
    }
    let mut got = sink.wait_for(2, WAIT);
    got.sort_by(|a, b| a.rcpt_to.cmp(&b.rcpt_to));
    assert_eq!(got.len(), 2, "one transaction per domain");
    assert_eq!(got[0].rcpt_to, ["a@example.net"]);
    assert_eq!(got[1].rcpt_to, ["b@example.org"]);
    assert_eq!(got[0].data, got[1].data, "the same signed bytes to both");
    assert_eq!(verify_dkim(&dns, &got[0].data), DkimResult::Pass);
    let metrics = posthorn_testkit::http::request(server.http_port, "GET", "/metrics", &[], b"");
    let metrics = String::from_utf8(metrics.body).unwrap();
    assert!(
        metrics.contains("posthorn_dkim_signatures_total 1\n"),
        "one signature for both: {metrics}"
    );
}

#[test]
fn ed25519_domains_sign_with_ed25519() {
    let sink = Sink::start(SinkOptions::default());
    let dns = dns_for(&["example.net"]);
    let server =
        TestServer::start_with(BIN.as_ref(), &delivery_config(sink.port(), &dns, ""), |s| {
            s.cli_ok(&[
                "domain",
                "add",
                "ed.test",
                "--account",
                ACCOUNT,
                "--dkim",
                "ed25519",
            ]);
            s.cli_ok(&[
                "sender",
                "add",
                "app@ed.test",
                "--account",
                ACCOUNT,
                "--password",
                SENDER_PASSWORD,
            ]);
        });
    let records = server.cli_ok(&["domain", "records", "ed.test"]);
    assert!(records.contains("k=ed25519"), "{records}");
    publish_dkim_of(&server, &dns, "ed.test");
    let (mut c, reply) = RawClient::login(server.submission_port, "app@ed.test", SENDER_PASSWORD);
    assert!(reply.starts_with("235"), "{reply}");
    assert!(c.cmd("MAIL FROM:<app@ed.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<ok@example.net>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"From: app@ed.test\r\nTo: ok@example.net\r\nSubject: ed\r\n\r\nhi\r\n.\r\n");
    let id = queued_id(&c.read_reply());
    server.wait_message(&id, WAIT, all_final);
    let got = sink.wait_for(1, WAIT);
    let text = String::from_utf8_lossy(&got[0].data);
    assert!(text.contains("a=ed25519-sha256"), "{text}");
    assert_eq!(verify_dkim(&dns, &got[0].data), DkimResult::Pass);
}

#[test]
fn temporary_failures_are_retried_until_delivered() {
    let sink = Sink::start(SinkOptions {
        tempfail_times: 2,
        ..SinkOptions::default()
    });
    let dns = dns_for(&["example.net"]);
    let server = TestServer::start(BIN.as_ref(), &delivery_config(sink.port(), &dns, ""));
    let id = submit(
        &server,
        &["tempfail@example.net", "ok@example.net"],
        &message("tempfail@example.net, ok@example.net", ""),
    );
    // The first attempt defers the one and delivers the other.
    let m = server.wait_message(&id, WAIT, |m| {
        recipient(m, "tempfail@example.net")["status"] == "deferred"
    });
    let t = recipient(&m, "tempfail@example.net");
    assert!(t["last_reply"].as_str().unwrap().starts_with("451"), "{t}");
    assert!(t["next_try"].is_string(), "{t}");
    let m = server.wait_message(&id, WAIT, all_final);
    let t = recipient(&m, "tempfail@example.net");
    assert_eq!(t["status"], "delivered", "{m:#}");
    assert_eq!(t["attempts"], 3);
    assert_eq!(recipient(&m, "ok@example.net")["attempts"], 1);
    assert_eq!(sink.attempts("tempfail@example.net"), 3);
}

#[test]
fn temporary_failures_expire_after_max_age() {
    let sink = Sink::start(SinkOptions {
        tempfail_times: 1000,
        ..SinkOptions::default()
    });
    let dns = dns_for(&["example.net", DOMAIN]);
    let server = TestServer::start(
        BIN.as_ref(),
        &delivery_config(sink.port(), &dns, "max_age = \"3s\""),
    );
    let id = submit(
        &server,
        &["tempfail@example.net"],
        &message("tempfail@example.net", ""),
    );
    let m = server.wait_message(&id, WAIT, all_final);
    let t = recipient(&m, "tempfail@example.net");
    assert_eq!(t["status"], "expired", "{m:#}");
    assert!(t["attempts"].as_u64().unwrap() >= 2, "{t}");
    // The sender hears of it.
    let notice = wait_notice(&sink);
    let text = String::from_utf8_lossy(&notice.data);
    assert!(text.contains("Status: 4.4.7"), "{text}");
}

fn wait_notice(sink: &Sink) -> posthorn_testkit::sink::SinkMessage {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(m) = sink.received().into_iter().find(|m| m.mail_from.is_empty()) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "no bounce notice reached the sink"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn hard_bounce_suppresses_and_notifies_the_sender() {
    let sink = Sink::start(SinkOptions::default());
    let dns = dns_for(&["example.net", DOMAIN]);
    let server = TestServer::start(BIN.as_ref(), &delivery_config(sink.port(), &dns, ""));
    publish_dkim(&server, &dns);
    let id = submit(
        &server,
        &["permfail@example.net"],
        &message("permfail@example.net", ""),
    );
    let m = server.wait_message(&id, WAIT, all_final);
    let r = recipient(&m, "permfail@example.net");
    assert_eq!(r["status"], "bounced", "{m:#}");
    assert!(
        r["last_reply"].as_str().unwrap().starts_with("550 5.1.1"),
        "{r}"
    );
    // On the suppression list.
    let list = server.cli_ok(&["suppression", "list", "--account", ACCOUNT]);
    assert!(list.contains("permfail@example.net"), "{list}");

    // The notice went to the sender's domain, from the null sender,
    // signed with the sender domain's key.
    let notice = wait_notice(&sink);
    assert_eq!(notice.rcpt_to, [SENDER]);
    let text = String::from_utf8_lossy(&notice.data);
    assert!(text.contains("multipart/report"), "{text}");
    assert!(
        text.contains("Final-Recipient: rfc822; permfail@example.net"),
        "{text}"
    );
    assert!(text.contains("Subject: Your order"), "{text}");
    assert_eq!(verify_dkim(&dns, &notice.data), DkimResult::Pass);
    assert_eq!(
        sink.received()
            .iter()
            .filter(|m| m.mail_from.is_empty())
            .count(),
        1
    );

    // The next send to it is refused at RCPT; the others go through, and
    // the refused one is recorded as suppressed.
    let mut c = server.logged_in();
    let (replies, last) = send(
        &mut c,
        &["permfail@example.net", "ok@example.net"],
        &message("permfail@example.net, ok@example.net", ""),
    );
    assert!(replies[0].starts_with("550 5.1.1"), "{}", replies[0]);
    assert_eq!(
        business_code(&replies[0]),
        "FailedOperation.RecipientSuppressed"
    );
    assert!(replies[1].starts_with("250"), "{}", replies[1]);
    let id2 = queued_id(&last);
    let m = server.wait_message(&id2, WAIT, all_final);
    assert_eq!(
        recipient(&m, "permfail@example.net")["status"],
        "suppressed"
    );
    assert_eq!(recipient(&m, "ok@example.net")["status"], "delivered");

    // Removed from the list, it may be sent to again.
    server.cli_ok(&[
        "suppression",
        "remove",
        "permfail@example.net",
        "--account",
        ACCOUNT,
    ]);
    let mut c = server.logged_in();
    let (replies, _) = send(
        &mut c,
        &["permfail@example.net"],
        &message("permfail@example.net", ""),
    );
    assert!(replies[0].starts_with("250"), "{}", replies[0]);
}

#[test]
fn connections_are_reused_within_the_caps() {
    // One connection per host at most, recycled after two messages: no
    // connection carries more than two, and some carry two (reused).
    let sink = Sink::start(SinkOptions::default());
    let dns = dns_for(&["example.net"]);
    let server = TestServer::start(
        BIN.as_ref(),
        &delivery_config(
            sink.port(),
            &dns,
            "max_connections_per_destination = 1\nmax_messages_per_connection = 2",
        ),
    );
    let ids: Vec<String> = (0..6)
        .map(|_| submit(&server, &["ok@example.net"], &message("ok@example.net", "")))
        .collect();
    for id in &ids {
        server.wait_message(id, WAIT, all_final);
    }
    let got = sink.wait_for(6, WAIT);
    let mut per_connection = std::collections::BTreeMap::new();
    for m in &got {
        *per_connection.entry(m.connection).or_insert(0) += 1;
    }
    assert!(
        per_connection.values().all(|&n| n <= 2),
        "at most 2 messages per connection: {per_connection:?}"
    );
    assert!(
        per_connection.values().any(|&n| n == 2),
        "a connection was reused: {per_connection:?}"
    );
    assert!(sink.connections() <= 6);
}

#[test]
fn an_account_can_turn_bounce_notices_off() {
    let sink = Sink::start(SinkOptions::default());
    let dns = dns_for(&["example.net", DOMAIN]);
    let server =
        TestServer::start_with(BIN.as_ref(), &delivery_config(sink.port(), &dns, ""), |s| {
            s.cli_ok(&["account", "set", ACCOUNT, "bounce_notices", "0"]);
        });
    let id = submit(
        &server,
        &["permfail@example.net"],
        &message("permfail@example.net", ""),
    );
    let m = server.wait_message(&id, WAIT, all_final);
    assert_eq!(recipient(&m, "permfail@example.net")["status"], "bounced");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.messages().len(), 1, "no notice was queued");
    assert!(sink.received().iter().all(|m| !m.mail_from.is_empty()));
}

#[test]
fn a_bounce_notice_is_never_about_a_notice() {
    // The sender's own domain refuses everything: the notice bounces too,
    // and no notice is made about it.
    let sink = Sink::start(SinkOptions::default());
    let dns = dns_for(&["example.net"]);
    dns.set_mx(DOMAIN, &[(0, ".")]);
    let server = TestServer::start(BIN.as_ref(), &delivery_config(sink.port(), &dns, ""));
    let id = submit(
        &server,
        &["permfail@example.net"],
        &message("permfail@example.net", ""),
    );
    server.wait_message(&id, WAIT, all_final);
    let deadline = Instant::now() + WAIT;
    let notice = loop {
        let notices: Vec<Value> = server
            .messages()
            .into_iter()
            .filter(|m| m["mail_from"] == "")
            .collect();
        if let Some(n) = notices.first() {
            if all_final(n) {
                assert_eq!(notices.len(), 1, "{notices:#?}");
                break n.clone();
            }
        }
        assert!(Instant::now() < deadline, "the notice did not end");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(notice["recipients"][0]["status"], "bounced", "{notice:#}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.messages().len(), 2, "no notice about the notice");
}

#[test]
fn null_mx_bounces_at_once() {
    let sink = Sink::start(SinkOptions::default());
    let dns = dns_for(&[]);
    dns.set_mx("nomail.test", &[(0, ".")]);
    let server = TestServer::start(
        BIN.as_ref(),
        &delivery_config(sink.port(), &dns, "dsn = false"),
    );
    let id = submit(
        &server,
        &["someone@nomail.test"],
        &message("someone@nomail.test", ""),
    );
    let m = server.wait_message(&id, WAIT, all_final);
    let r = recipient(&m, "someone@nomail.test");
    assert_eq!(r["status"], "bounced", "{m:#}");
    assert_eq!(r["attempts"], 1);
    assert!(r["last_reply"].as_str().unwrap().contains("null MX"), "{r}");
    assert_eq!(sink.connections(), 0);
}

#[test]
fn a_domain_resolving_only_to_internal_addresses_bounces_by_default() {
    let sink = Sink::start(SinkOptions::default());
    // MX on loopback, and an implicit MX (no MX record) on private and
    // NAT64-wrapped private addresses.
    let dns = dns_for(&["example.net"]);
    dns.set_a("inside.test", &[Ipv4Addr::new(10, 0, 0, 1)]);
    dns.set_aaaa("inside.test", &["64:ff9b::a00:1".parse().unwrap()]);
    let server = TestServer::start(
        BIN.as_ref(),
        &strict_config(sink.port(), &dns, "dsn = false"),
    );
    let id = submit(
        &server,
        &["ok@example.net", "ok@inside.test"],
        &message("ok@example.net, ok@inside.test", ""),
    );
    let m = server.wait_message(&id, WAIT, all_final);
    let r = recipient(&m, "ok@example.net");
    assert_eq!(r["status"], "bounced", "{m:#}");
    assert_eq!(r["attempts"], 1);
    assert_eq!(
        r["last_reply"],
        "550 5.7.1 <example.net> resolves only to internal addresses (127.0.0.1: loopback); \
         Posthorn does not deliver to internal networks ([delivery] allow_private_destinations)",
        "{r}"
    );
    let r = recipient(&m, "ok@inside.test");
    assert_eq!(r["status"], "bounced", "{m:#}");
    assert!(
        r["last_reply"].as_str().unwrap().starts_with(
            "550 5.7.1 <inside.test> resolves only to internal addresses \
             (10.0.0.1: private, 64:ff9b::a00:1: private via NAT64)"
        ),
        "{r}"
    );
    assert_eq!(sink.connections(), 0, "nothing was sent to the sink");
    // Posthorn's own finding: nothing is suppressed.
    let suppressed = server.cli_ok(&["suppression", "list", "--account", ACCOUNT]);
    assert!(!suppressed.contains("example.net"), "{suppressed}");
    // An address literal is refused before that, at RCPT.
    let mut c = server.logged_in();
    let (replies, _) = send(&mut c, &["x@[127.0.0.1]"], "");
    assert!(replies[0].starts_with("550 5.7.1 "), "{}", replies[0]);
    assert_eq!(
        business_code(&replies[0]),
        "FailedOperation.InternalDestination"
    );
}

#[test]
fn a_relay_on_loopback_is_used_but_internal_literals_are_still_refused() {
    // The smart host is the operator's choice: used whatever its address,
    // without allow_private_destinations.
    let sink = Sink::start(SinkOptions::default());
    let dns = DnsServer::start();
    let relay = format!(
        "[delivery.relay]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
        sink.port()
    );
    let server = TestServer::start(BIN.as_ref(), &strict_config(1, &dns, &relay));
    let id = submit(&server, &["ok@example.net"], &message("ok@example.net", ""));
    server.wait_message(&id, WAIT, all_final);
    assert_eq!(server.statuses(&id), ["delivered"]);
    assert_eq!(sink.wait_for(1, WAIT).len(), 1);
    // A recipient at an internal literal is refused at RCPT in relay mode
    // too: the relay would deliver it there.
    let mut c = server.logged_in();
    let (replies, _) = send(&mut c, &["x@[10.0.0.1]", "x@[IPv6:::1]"], "");
    for r in &replies {
        assert!(r.starts_with("550 5.7.1 "), "{r}");
        assert_eq!(business_code(r), "FailedOperation.InternalDestination");
    }
}

#[test]
fn mx_fallback_to_the_next_host_when_the_first_refuses() {
    let sink = Sink::start(SinkOptions::default());
    let dns = DnsServer::start();
    dns.set_mx(
        "example.net",
        &[(10, "down.example.net"), (20, "up.example.net")],
    );
    // Nothing listens on 127.0.0.2 at the sink's port: refused.
    dns.set_a("down.example.net", &[Ipv4Addr::new(127, 0, 0, 2)]);
    dns.set_a("up.example.net", &[LOOPBACK]);
    let server = TestServer::start(BIN.as_ref(), &delivery_config(sink.port(), &dns, ""));
    let id = submit(&server, &["ok@example.net"], &message("ok@example.net", ""));
    let m = server.wait_message(&id, WAIT, all_final);
    let r = recipient(&m, "ok@example.net");
    assert_eq!(r["status"], "delivered", "{m:#}");
    assert!(
        r["remote_host"]
            .as_str()
            .unwrap()
            .starts_with("up.example.net"),
        "{r}"
    );
}

#[test]
fn smart_host_with_starttls_and_auth() {
    let sink = Sink::start(SinkOptions {
        starttls: true,
        require_tls: true,
        auth: Some(("relayuser".into(), "relay-pass".into())),
        ..SinkOptions::default()
    });
    let dns = DnsServer::start();
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), sink.certificate_pem()).unwrap();
    let relay = format!(
        "tls_ca_file = \"{}\"\n[delivery.relay]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\nverify_certificate = true\nuser = \"relayuser\"\npassword = \"relay-pass\"\n",
        ca.path().display(),
        sink.port()
    );
    let server = TestServer::start(BIN.as_ref(), &delivery_config(1, &dns, &relay));
    // Any domain goes to the relay; no DNS is asked.
    let id = submit(
        &server,
        &["ok@example.net", "ok@elsewhere.test"],
        &message("ok@example.net, ok@elsewhere.test", ""),
    );
    let m = server.wait_message(&id, WAIT, all_final);
    assert_eq!(server.statuses(&id), ["delivered", "delivered"], "{m:#}");
    let got = sink.wait_for(1, WAIT);
    assert_eq!(got.len(), 1, "one transaction for both domains");
    assert!(got[0].tls);
    assert_eq!(got[0].auth_user.as_deref(), Some("relayuser"));
    assert!(dns.queries().is_empty(), "{:?}", dns.queries());
}

#[test]
fn smart_host_with_mandatory_unverified_tls() {
    // As Postfix's "encrypt" level: TLS or nothing, any certificate.
    let sink = Sink::start(SinkOptions {
        starttls: true,
        require_tls: true,
        ..SinkOptions::default()
    });
    let dns = DnsServer::start();
    let relay = format!(
        "[delivery.relay]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\n",
        sink.port()
    );
    let server = TestServer::start(BIN.as_ref(), &delivery_config(1, &dns, &relay));
    let id = submit(&server, &["ok@example.net"], &message("ok@example.net", ""));
    server.wait_message(&id, WAIT, all_final);
    assert_eq!(server.statuses(&id), ["delivered"]);
    assert!(sink.wait_for(1, WAIT)[0].tls);
}

#[test]
fn required_tls_defers_in_clear() {
    let sink = Sink::start(SinkOptions::default());
    let dns = dns_for(&["bank.test"]);
    let server = TestServer::start(
        BIN.as_ref(),
        &delivery_config(sink.port(), &dns, "require_tls_domains = [\"bank.test\"]"),
    );
    let id = submit(&server, &["ok@bank.test"], &message("ok@bank.test", ""));
    let m = server.wait_message(&id, WAIT, |m| {
        recipient(m, "ok@bank.test")["status"] == "deferred"
    });
    let r = recipient(&m, "ok@bank.test");
    assert!(r["last_reply"].as_str().unwrap().contains("TLS"), "{r}");
    assert!(sink.received().is_empty());
}

#[test]
fn crash_during_delivery_loses_nothing() {
    // Slow final replies keep deliveries in flight when the server dies.
    let sink = Sink::start(SinkOptions {
        slow_delay: Duration::from_millis(700),
        ..SinkOptions::default()
    });
    let dns = dns_for(&["example.net"]);
    let mut server = TestServer::start(BIN.as_ref(), &delivery_config(sink.port(), &dns, ""));
    let total = 20;
    let mut ids = Vec::new();
    for i in 0..total {
        let rcpt = if i % 2 == 0 {
            "slow@example.net"
        } else {
            "ok@example.net"
        };
        ids.push(submit(&server, &[rcpt], &message(rcpt, "")));
    }
    // Wait until something is on the wire, then kill -9.
    let deadline = Instant::now() + WAIT;
    while sink.transcript().is_empty() {
        assert!(Instant::now() < deadline, "nothing was delivered");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill9();
    let after_kill = sink.received().len();
    server.restart();
    for id in &ids {
        let m = server.wait_message(id, WAIT, all_final);
        assert_eq!(server.statuses(id), ["delivered"], "{m:#}");
    }
    let got = sink.received().len();
    assert!(got >= total, "the sink got {got} of {total}");
    eprintln!(
        "crash test: {total} accepted, {after_kill} at the sink when killed, {got} at the sink in the end ({} duplicates)",
        got - total
    );
    assert!(
        server.log().contains("took back this node's leases"),
        "the restart took its leases back at once"
    );
}
