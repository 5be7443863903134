//! SMTPUTF8 on the way out (RFC 6531): a message submitted with SMTPUTF8
//! that needs it (a non-ASCII address, UTF-8 in header fields) is relayed
//! with ` SMTPUTF8` on MAIL; an ASCII one without. A next hop that does not
//! offer SMTPUTF8 gets what can be written in ASCII, and a recipient whose
//! address cannot is bounced with `553 5.6.7`.
//!
//! The sink is the smart host (`[delivery.relay]`), so no DNS routes to
//! loopback.

use posthorn_testkit::dns::DnsServer;
use posthorn_testkit::sink::{Sink, SinkMessage, SinkOptions};
use posthorn_testkit::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_posthorn");
const WAIT: Duration = Duration::from_secs(30);
const JUERGEN: &str = "j\u{fc}rgen@example.net";

/// A server relaying everything to `sink` in plaintext.
fn server(sink: &Sink, dns: &DnsServer) -> TestServer {
    let config = format!(
        "allow_plaintext_auth_on_loopback = true\n[delivery]\nhostname = \"out.posthorn.test\"\nnameservers = [\"{}\"]\nretry_schedule = [\"1s\"]\nidle_connection_timeout = \"1s\"\n[delivery.relay]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
        dns.addr(),
        sink.port()
    );
    TestServer::start(BIN.as_ref(), &config)
}

fn sink(smtputf8: bool) -> Sink {
    Sink::start(SinkOptions {
        smtputf8,
        ..SinkOptions::default()
    })
}

/// Submit as [`SENDER`] with `MAIL FROM:<…> SMTPUTF8`; the queue id.
fn submit(server: &TestServer, rcpts: &[&str], data: &str) -> String {
    let mut c = server.logged_in();
    let r = c.cmd(&format!("MAIL FROM:<{SENDER}> SMTPUTF8"));
    assert!(r.starts_with("250"), "{r}");
    for rcpt in rcpts {
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
        assert!(r.starts_with("250"), "{rcpt}: {r}");
    }
    let r = c.cmd("DATA");
    assert!(r.starts_with("354"), "{r}");
    c.send(data.as_bytes());
    queued_id(&c.read_reply())
}

fn message(to: &str, subject: &str) -> String {
    format!(
        "From: Shop <{SENDER}>\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nIt has shipped.\r\n.\r\n"
    )
}

fn all_final(m: &Value) -> bool {
    m["recipients"].as_array().is_some_and(|rs| {
        rs.iter()
            .all(|r| matches!(r["status"].as_str(), Some("delivered" | "bounced")))
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

fn has_param(m: &SinkMessage, param: &str) -> bool {
    m.mail_params.iter().any(|p| p.eq_ignore_ascii_case(param))
}

/// The sink's message with this reverse path (`""`: a bounce notice).
fn wait_from(sink: &Sink, mail_from: &str) -> SinkMessage {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(m) = sink
            .received()
            .into_iter()
            .find(|m| m.mail_from == mail_from)
        {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "nothing from <{mail_from}> reached the sink: {:#?}",
            sink.transcript()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_non_ascii_recipient_is_relayed_with_smtputf8() {
    let sink = sink(true);
    let dns = DnsServer::start();
    let server = server(&sink, &dns);
    let id = submit(&server, &[JUERGEN], &message(JUERGEN, "Gr\u{fc}\u{df}e"));
    let m = server.wait_message(&id, WAIT, all_final);
    let r = recipient(&m, JUERGEN);
    assert_eq!(r["status"], "delivered", "{m:#}");
    let got = sink.wait_for(1, WAIT);
    assert_eq!(got[0].mail_from, SENDER);
    assert_eq!(got[0].rcpt_to, [JUERGEN]);
    assert!(has_param(&got[0], "SMTPUTF8"), "{:?}", got[0].mail_params);
    assert!(
        sink.transcript()
            .iter()
            .any(|l| l.starts_with(&format!("MAIL FROM:<{SENDER}>")) && l.ends_with(" SMTPUTF8")),
        "{:?}",
        sink.transcript()
    );
    let text = String::from_utf8_lossy(&got[0].data);
    assert!(text.contains("Subject: Gr\u{fc}\u{df}e\r\n"), "{text}");

    // UTF-8 in a header field alone needs it too.
    let id = submit(
        &server,
        &["ok@example.net"],
        &message("ok@example.net", "\u{e9}t\u{e9}"),
    );
    server.wait_message(&id, WAIT, all_final);
    let got = sink.wait_for(2, WAIT);
    assert_eq!(got[1].rcpt_to, ["ok@example.net"]);
    assert!(has_param(&got[1], "SMTPUTF8"), "{:?}", got[1].mail_params);
}

#[test]
fn an_ascii_message_is_relayed_without_smtputf8() {
    let sink = sink(true);
    let dns = DnsServer::start();
    let server = server(&sink, &dns);
    // Submitted with SMTPUTF8, but nothing in it needs it.
    let id = submit(
        &server,
        &["ok@example.net"],
        &message("ok@example.net", "Your order"),
    );
    let m = server.wait_message(&id, WAIT, all_final);
    assert_eq!(
        recipient(&m, "ok@example.net")["status"],
        "delivered",
        "{m:#}"
    );
    let got = sink.wait_for(1, WAIT);
    assert!(!has_param(&got[0], "SMTPUTF8"), "{:?}", got[0].mail_params);
    assert!(
        !has_param(&got[0], "BODY=8BITMIME"),
        "{:?}",
        got[0].mail_params
    );
    assert!(got[0].mail_params.iter().any(|p| p.starts_with("SIZE=")));
}

#[test]
fn without_smtputf8_the_non_ascii_recipient_bounces_and_the_other_is_delivered() {
    let sink = sink(false);
    let dns = DnsServer::start();
    let server = server(&sink, &dns);
    let id = submit(
        &server,
        &[JUERGEN, "ok@example.net"],
        &message(&format!("{JUERGEN}, ok@example.net"), "Gr\u{fc}\u{df}e"),
    );
    let m = server.wait_message(&id, WAIT, all_final);

    let r = recipient(&m, JUERGEN);
    assert_eq!(r["status"], "bounced", "{m:#}");
    let reply = r["last_reply"].as_str().unwrap();
    assert!(reply.starts_with("553 5.6.7 "), "{reply}");
    assert!(
        reply.contains("does not support SMTPUTF8 (RFC 6531)"),
        "{reply}"
    );
    assert_eq!(
        recipient(&m, "ok@example.net")["status"],
        "delivered",
        "{m:#}"
    );
    // Not a reason to suppress the address: the next hop's limit, not the
    // mailbox's.
    let list = server.cli_ok(&["suppression", "list", "--account", ACCOUNT]);
    assert!(!list.contains(JUERGEN), "{list}");

    // The ASCII recipient got the message, UTF-8 subject and all, as 8-bit
    // content without SMTPUTF8; no non-ASCII address reached the sink.
    let got = wait_from(&sink, SENDER);
    assert_eq!(got.rcpt_to, ["ok@example.net"]);
    assert!(!has_param(&got, "SMTPUTF8"), "{:?}", got.mail_params);
    assert!(has_param(&got, "BODY=8BITMIME"), "{:?}", got.mail_params);
    assert!(
        String::from_utf8_lossy(&got.data).contains("Subject: Gr\u{fc}\u{df}e\r\n"),
        "{:?}",
        got.data
    );
    assert!(
        !sink.transcript().iter().any(|l| l.contains(JUERGEN)),
        "{:?}",
        sink.transcript()
    );

    // The sender hears of the bounce, with the reason.
    let notice = wait_from(&sink, "");
    assert_eq!(notice.rcpt_to, [SENDER]);
    let text = String::from_utf8_lossy(&notice.data);
    assert!(text.contains("Status: 5.6.7"), "{text}");
    assert!(text.contains("SMTPUTF8"), "{text}");
}
