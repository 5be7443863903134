//! The sink SMTP server, driven by lettre and by raw TCP.

use lettre::message::{header::ContentType, Message};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{SmtpTransport, Transport};
use posthorn_testkit::sink::{Sink, SinkOptions};
use posthorn_testkit::{auth_plain, RawClient};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

fn message(to: &[&str]) -> Message {
    let mut b = Message::builder()
        .from("App <app@example.com>".parse().expect("from"))
        .subject("sink test")
        .header(ContentType::TEXT_PLAIN);
    for t in to {
        b = b.to(t.parse().expect("to"));
    }
    b.body(String::from(
        "Hello.\r\n.leading dot\r\n..two dots\r\nlast line\r\n",
    ))
    .expect("message")
}

fn transport(sink: &Sink, tls: Tls) -> lettre::transport::smtp::SmtpTransportBuilder {
    SmtpTransport::builder_dangerous("127.0.0.1")
        .port(sink.port())
        .tls(tls)
        .hello_name(ClientId::Domain("client.test".into()))
        .timeout(Some(Duration::from_secs(10)))
}

fn tls_required() -> Tls {
    Tls::Required(
        TlsParameters::builder("localhost".to_string())
            .dangerous_accept_invalid_certs(true)
            .build_rustls()
            .expect("rustls parameters"),
    )
}

fn send(sink: &Sink, to: &[&str]) -> Result<(), lettre::transport::smtp::Error> {
    transport(sink, Tls::None)
        .build()
        .send(&message(to))
        .map(|_| ())
}

/// A raw client after EHLO.
fn raw(sink: &Sink) -> RawClient {
    let mut c = RawClient::connect(sink.port());
    let ehlo = c.cmd("EHLO raw.test");
    assert!(ehlo.starts_with("250-"), "{ehlo}");
    c
}

#[test]
fn ok_recipient_is_recorded() {
    let sink = Sink::start(SinkOptions::default());
    let msg = message(&["ok@example.net"]);
    transport(&sink, Tls::None)
        .build()
        .send(&msg)
        .expect("delivered");
    let got = sink.wait_for(1, WAIT);
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.mail_from, "app@example.com");
    assert_eq!(m.rcpt_to, vec!["ok@example.net".to_string()]);
    assert_eq!(m.helo, "client.test");
    assert!(!m.tls);
    assert_eq!(m.auth_user, None);
    assert_eq!(m.connection, 1);
    // Dot-unstuffed: what lettre formatted, byte for byte, plus the CRLF
    // lettre puts before the final dot.
    let mut expected = msg.formatted();
    expected.extend_from_slice(b"\r\n");
    assert_eq!(m.data, expected);
    assert!(String::from_utf8_lossy(&m.data).contains("\r\n.leading dot\r\n..two dots\r\n"));
    assert_eq!(sink.attempts("ok@example.net"), 1);
    assert_eq!(sink.attempts("OK@Example.NET"), 1);
    let t = sink.transcript();
    assert!(t.contains(&"EHLO client.test".to_string()), "{t:?}");
    assert!(
        t.iter()
            .any(|l| l.starts_with("MAIL FROM:<app@example.com>")),
        "{t:?}"
    );
}

#[test]
fn ehlo_advertises_by_options() {
    let sink = Sink::start(SinkOptions::default());
    let mut c = RawClient::connect(sink.port());
    let ehlo = c.cmd("EHLO raw.test");
    assert!(ehlo.contains("SIZE "), "{ehlo}");
    assert!(ehlo.contains("8BITMIME"), "{ehlo}");
    assert!(ehlo.contains("PIPELINING"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    drop(sink);

    let sink = Sink::start(SinkOptions {
        starttls: true,
        pipelining: false,
        auth: Some(("relay".into(), "pw".into())),
        ..SinkOptions::default()
    });
    let mut c = RawClient::connect(sink.port());
    let ehlo = c.cmd("EHLO raw.test");
    assert!(!ehlo.contains("PIPELINING"), "{ehlo}");
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    let helo = c.cmd("HELO old.test");
    assert!(helo.starts_with("250 "), "{helo}");
    assert!(c.cmd("NOOP").starts_with("250"));
    assert!(c.cmd("FROB").starts_with("500"));
    assert!(c.cmd("QUIT").starts_with("221"));
    assert!(c.is_closed());
}

#[test]
fn permfail_is_refused_and_nothing_recorded() {
    let sink = Sink::start(SinkOptions::default());
    let err = send(&sink, &["permfail@example.net"]).expect_err("refused");
    assert!(err.is_permanent(), "{err:?}");
    assert!(err.to_string().contains("user unknown"), "{err}");
    let mut c = raw(&sink);
    assert!(c.cmd("MAIL FROM:<a@example.com>").starts_with("250"));
    let r = c.cmd("RCPT TO:<PermFail@example.net>");
    assert!(r.starts_with("550 5.1.1"), "{r}");
    let r = c.cmd("DATA");
    assert!(r.starts_with("554"), "{r}");
    assert!(sink.received().is_empty());
    assert_eq!(sink.attempts("permfail@example.net"), 2);
}

#[test]
fn tempfail_fails_twice_then_accepts() {
    let sink = Sink::start(SinkOptions::default());
    for _ in 0..2 {
        let err = send(&sink, &["tempfail@example.net"]).expect_err("tempfail");
        assert!(err.is_transient(), "{err:?}");
        assert!(err.to_string().contains("try again later"), "{err}");
    }
    assert!(sink.received().is_empty());
    send(&sink, &["tempfail@example.net"]).expect("third attempt accepted");
    let got = sink.wait_for(1, WAIT);
    assert_eq!(got[0].rcpt_to, vec!["tempfail@example.net".to_string()]);
    assert_eq!(sink.attempts("tempfail@example.net"), 3);
    assert_eq!(sink.connections(), 3);

    // The count is per address and settable.
    let sink = Sink::start(SinkOptions {
        tempfail_times: 1,
        ..SinkOptions::default()
    });
    let mut c = raw(&sink);
    assert!(c.cmd("MAIL FROM:<>").starts_with("250"));
    assert!(c
        .cmd("RCPT TO:<tempfail+a@x.test>")
        .starts_with("451 4.3.0"));
    assert!(c
        .cmd("RCPT TO:<tempfail+b@x.test>")
        .starts_with("451 4.3.0"));
    assert!(c.cmd("RCPT TO:<tempfail+a@x.test>").starts_with("250"));
}

#[test]
fn mixed_recipients_deliver_only_to_accepted() {
    let sink = Sink::start(SinkOptions::default());
    let mut c = raw(&sink);
    assert!(c
        .cmd("MAIL FROM:<a@example.com> SIZE=100")
        .starts_with("250"));
    assert!(c.cmd("RCPT TO:<ok@example.net>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<permfail@example.net>").starts_with("550"));
    assert!(c.cmd("DATA").starts_with("354"));
    let r = c.cmd("Subject: mixed\r\n\r\nbody\r\n.");
    assert!(r.starts_with("250"), "{r}");
    let got = sink.wait_for(1, WAIT);
    assert_eq!(got[0].rcpt_to, vec!["ok@example.net".to_string()]);
    assert_eq!(got[0].data, b"Subject: mixed\r\n\r\nbody\r\n");

    // A second transaction on the same connection, after RSET.
    assert!(c.cmd("MAIL FROM:<b@example.com>").starts_with("250"));
    assert!(c.cmd("RSET").starts_with("250"));
    assert!(c.cmd("RCPT TO:<ok@example.net>").starts_with("503"));
    assert!(c.cmd("MAIL FROM:<c@example.com>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<other@example.org>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    assert!(c.cmd("x\r\n.").starts_with("250"));
    let got = sink.wait_for(2, WAIT);
    assert_eq!(got[1].mail_from, "c@example.com");
    assert_eq!(got[1].connection, got[0].connection);
    assert_eq!(sink.connections(), 1);
}

#[test]
fn starttls_is_used_and_recorded() {
    let sink = Sink::start(SinkOptions {
        starttls: true,
        ..SinkOptions::default()
    });
    transport(&sink, tls_required())
        .build()
        .send(&message(&["ok@example.net"]))
        .expect("delivered over STARTTLS");
    let got = sink.wait_for(1, WAIT);
    assert!(got[0].tls);
    assert_eq!(got[0].helo, "client.test");
    let t = sink.transcript();
    let starttls = t
        .iter()
        .position(|l| l == "STARTTLS")
        .expect("STARTTLS used");
    let mail = t.iter().position(|l| l.starts_with("MAIL")).expect("MAIL");
    assert!(starttls < mail, "{t:?}");
    // EHLO again after TLS.
    assert_eq!(
        t.iter().filter(|l| l.starts_with("EHLO")).count(),
        2,
        "{t:?}"
    );
    assert!(sink
        .certificate_pem()
        .starts_with("-----BEGIN CERTIFICATE-----"));
}

#[test]
fn starttls_not_offered_is_refused() {
    let sink = Sink::start(SinkOptions::default());
    let mut c = raw(&sink);
    assert!(c.cmd("STARTTLS").starts_with("502"));
}

#[test]
fn require_tls_refuses_mail_before_starttls() {
    let sink = Sink::start(SinkOptions {
        starttls: true,
        require_tls: true,
        ..SinkOptions::default()
    });
    let mut c = raw(&sink);
    let r = c.cmd("MAIL FROM:<a@example.com>");
    assert!(r.starts_with("530 5.7.0"), "{r}");
    // A client that does not do STARTTLS fails; one that does succeeds.
    let err = send(&sink, &["ok@example.net"]).expect_err("refused without TLS");
    assert!(err.to_string().contains("530"), "{err}");
    assert!(sink.received().is_empty());
    transport(&sink, tls_required())
        .build()
        .send(&message(&["ok@example.net"]))
        .expect("delivered over STARTTLS");
    assert!(sink.wait_for(1, WAIT)[0].tls);
}

#[test]
fn auth_is_required_and_recorded() {
    let sink = Sink::start(SinkOptions {
        starttls: true,
        auth: Some(("relay-user".into(), "relay-pass".into())),
        ..SinkOptions::default()
    });
    // No credentials: MAIL refused.
    let err = send(&sink, &["ok@example.net"]).expect_err("auth required");
    assert!(err.to_string().contains("530"), "{err}");
    // Wrong credentials.
    let err = transport(&sink, Tls::None)
        .credentials(Credentials::new("relay-user".into(), "nope".into()))
        .authentication(vec![Mechanism::Plain])
        .build()
        .send(&message(&["ok@example.net"]))
        .expect_err("bad password");
    assert!(err.to_string().contains("535"), "{err}");
    // PLAIN in clear, LOGIN over STARTTLS.
    transport(&sink, Tls::None)
        .credentials(Credentials::new("relay-user".into(), "relay-pass".into()))
        .authentication(vec![Mechanism::Plain])
        .build()
        .send(&message(&["ok@example.net"]))
        .expect("PLAIN");
    transport(&sink, tls_required())
        .credentials(Credentials::new("relay-user".into(), "relay-pass".into()))
        .authentication(vec![Mechanism::Login])
        .build()
        .send(&message(&["ok@example.net"]))
        .expect("LOGIN");
    let got = sink.wait_for(2, WAIT);
    assert_eq!(got[0].auth_user.as_deref(), Some("relay-user"));
    assert!(!got[0].tls);
    assert_eq!(got[1].auth_user.as_deref(), Some("relay-user"));
    assert!(got[1].tls);
    // Secrets stay out of the transcript.
    let t = sink.transcript();
    assert!(t.iter().any(|l| l == "AUTH PLAIN <redacted>"), "{t:?}");
    assert!(t.iter().any(|l| l == "AUTH LOGIN <redacted>"), "{t:?}");
    let plain = auth_plain("relay-user", "relay-pass");
    assert!(!t.iter().any(|l| l.contains(&plain)), "{t:?}");

    // Raw PLAIN with the initial response.
    let mut c = raw(&sink);
    let r = c.cmd(&format!("AUTH PLAIN {plain}"));
    assert!(r.starts_with("235 2.7.0"), "{r}");
}

#[test]
fn drop_closes_mid_data() {
    let sink = Sink::start(SinkOptions::default());
    let err = send(&sink, &["drop@example.net"]).expect_err("connection dropped");
    assert!(!err.is_permanent(), "{err:?}");

    let mut c = raw(&sink);
    assert!(c.cmd("MAIL FROM:<a@example.com>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<drop@example.net>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: x\r\n\r\nbody\r\n.\r\n");
    assert!(c.is_closed(), "no reply after the dot, just a close");
    assert!(sink.received().is_empty());
    assert!(sink
        .transcript()
        .contains(&"<connection dropped mid-DATA>".to_string()));
}

#[test]
fn slow_delays_the_final_reply() {
    let delay = Duration::from_millis(300);
    let sink = Sink::start(SinkOptions {
        slow_delay: delay,
        ..SinkOptions::default()
    });
    let mut c = raw(&sink);
    assert!(c.cmd("MAIL FROM:<a@example.com>").starts_with("250"));
    let start = Instant::now();
    assert!(c.cmd("RCPT TO:<slow@example.net>").starts_with("250"));
    assert!(start.elapsed() < delay, "RCPT is not slow");
    assert!(c.cmd("DATA").starts_with("354"));
    let start = Instant::now();
    let r = c.cmd("hi\r\n.");
    let elapsed = start.elapsed();
    assert!(r.starts_with("250"), "{r}");
    assert!(elapsed >= delay, "{elapsed:?}");
    assert_eq!(sink.wait_for(1, WAIT).len(), 1);

    let start = Instant::now();
    send(&sink, &["slow@example.net"]).expect("delivered, slowly");
    assert!(start.elapsed() >= delay);
}

#[test]
fn tempfail_data_fails_after_data() {
    let sink = Sink::start(SinkOptions::default());
    let mut c = raw(&sink);
    assert!(c.cmd("MAIL FROM:<a@example.com>").starts_with("250"));
    assert!(c
        .cmd("RCPT TO:<tempfail-data@example.net>")
        .starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    let r = c.cmd("hi\r\n.");
    assert!(r.starts_with("452 4.3.1"), "{r}");
    assert!(sink.received().is_empty());
    let err = send(&sink, &["tempfail-data@example.net"]).expect_err("452");
    assert!(err.is_transient(), "{err:?}");
}

#[test]
fn pipelined_batch_is_answered_in_order() {
    let sink = Sink::start(SinkOptions::default());
    let mut s = TcpStream::connect(("127.0.0.1", sink.port())).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let read_until = |s: &mut TcpStream, want_lines: usize| -> String {
        let mut got = String::new();
        let mut buf = [0u8; 4096];
        while got.matches("\r\n").count() < want_lines {
            let n = s.read(&mut buf).expect("read");
            assert!(n > 0, "closed; got {got:?}");
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        got
    };
    read_until(&mut s, 1); // greeting
    s.write_all(b"EHLO pipe.test\r\n").expect("write");
    // greeting name, SIZE, 8BITMIME, ENHANCEDSTATUSCODES, PIPELINING
    let ehlo = read_until(&mut s, 5);
    assert!(ehlo.ends_with("250 PIPELINING\r\n"), "{ehlo}");
    assert!(ehlo.contains("PIPELINING"), "{ehlo}");
    s.write_all(
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<ok@example.net>\r\nRCPT TO:<permfail@example.net>\r\nRCPT TO:<tempfail@example.net>\r\nRCPT TO:<second@example.net>\r\nDATA\r\n",
    )
    .expect("write batch");
    let replies = read_until(&mut s, 6);
    let codes: Vec<&str> = replies.lines().map(|l| &l[..3]).collect();
    assert_eq!(
        codes,
        ["250", "250", "550", "451", "250", "354"],
        "{replies}"
    );
    s.write_all(b"one\r\n..two\r\n.\r\nRSET\r\nQUIT\r\n")
        .expect("write data");
    let replies = read_until(&mut s, 3);
    let codes: Vec<&str> = replies.lines().map(|l| &l[..3]).collect();
    assert_eq!(codes, ["250", "250", "221"], "{replies}");
    let got = sink.wait_for(1, WAIT);
    assert_eq!(
        got[0].rcpt_to,
        vec![
            "ok@example.net".to_string(),
            "second@example.net".to_string()
        ]
    );
    assert_eq!(got[0].data, b"one\r\n.two\r\n");
    let batches = sink.batches();
    assert!(
        batches
            .iter()
            .any(|b| b.len() == 6 && b[0].starts_with("MAIL") && b[5] == "DATA"),
        "{batches:?}"
    );
}

#[test]
fn refuse_connections_refuses() {
    let sink = Sink::start(SinkOptions {
        refuse_connections: true,
        ..SinkOptions::default()
    });
    let err = TcpStream::connect(("127.0.0.1", sink.port())).expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    let err = send(&sink, &["ok@example.net"]).expect_err("lettre cannot connect");
    assert!(!err.is_permanent(), "{err:?}");
}

#[test]
fn plaintext_after_starttls_is_discarded() {
    let sink = Sink::start(SinkOptions {
        starttls: true,
        ..SinkOptions::default()
    });
    let mut c = raw(&sink);
    // Smuggled command after STARTTLS in the same write: must not be run.
    c.send(b"STARTTLS\r\nMAIL FROM:<evil@example.com>\r\n");
    let r = c.read_reply();
    assert!(r.starts_with("220"), "{r}");
    let t = sink.transcript();
    assert!(!t.iter().any(|l| l.contains("evil")), "{t:?}");
}

#[test]
fn drop_stops_the_sink() {
    let sink = Sink::start(SinkOptions::default());
    let port = sink.port();
    let mut c = raw(&sink);
    drop(sink);
    assert!(c.is_closed(), "open connections end with the sink");
    let refused = TcpStream::connect(("127.0.0.1", port));
    assert!(refused.is_err(), "still listening after drop");
}
