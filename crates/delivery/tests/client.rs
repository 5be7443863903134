//! The outbound SMTP client against the test sink.

use posthorn_delivery::client::{ClientError, ClientSettings, Connection, TlsPolicy};
use posthorn_testkit::sink::{Sink, SinkOptions, SINK_SIZE};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const MESSAGE: &[u8] = b"From: app@example.com\r\nTo: ok@example.org\r\nSubject: hi\r\n\r\nHello.\r\n.leading dot\r\n..two dots\r\n.\r\nlast line\r\n";

fn settings(tls: TlsPolicy) -> ClientSettings {
    ClientSettings {
        helo_name: "client.test".to_string(),
        connect_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(10),
        data_timeout: Duration::from_secs(10),
        tls,
        auth: None,
        verify_tls: true,
    }
}

fn addr(sink: &Sink) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], sink.port()))
}

fn rcpts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

async fn open(sink: &Sink, settings: &ClientSettings) -> Connection {
    Connection::open(addr(sink), "localhost", settings, &[])
        .await
        .expect("open")
}

fn sink_root(sink: &Sink) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(sink.certificate_pem().as_bytes()).expect("sink certificate")
}

#[tokio::test]
async fn ok_is_delivered_with_the_exact_bytes() {
    let sink = Sink::start(SinkOptions::default());
    let mut c = open(&sink, &settings(TlsPolicy::None)).await;
    assert!(!c.is_tls());
    let out = c
        .send("app@example.com", &rcpts(&["ok@example.org"]), MESSAGE)
        .await
        .expect("send");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].rcpt, "ok@example.org");
    assert_eq!(out[0].code, 250, "{out:?}");
    assert_eq!(out[0].enhanced.as_deref(), Some("2.0.0"));
    assert!(out[0].is_delivered());
    c.quit().await;
    let got = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(got[0].data, MESSAGE);
    assert_eq!(got[0].mail_from, "app@example.com");
    assert_eq!(got[0].rcpt_to, vec!["ok@example.org".to_string()]);
    assert_eq!(got[0].helo, "client.test");
    assert!(!got[0].tls);
    assert!(sink
        .transcript()
        .iter()
        .any(|l| l == &format!("MAIL FROM:<app@example.com> SIZE={}", MESSAGE.len())));
}

#[tokio::test]
async fn null_sender_and_message_without_final_crlf() {
    let sink = Sink::start(SinkOptions::default());
    let mut c = open(&sink, &settings(TlsPolicy::None)).await;
    let out = c
        .send(
            "",
            &rcpts(&["ok@example.org"]),
            b"Subject: x\r\n\r\nno newline",
        )
        .await
        .expect("send");
    assert_eq!(out[0].code, 250);
    let got = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(got[0].mail_from, "");
    assert_eq!(got[0].data, b"Subject: x\r\n\r\nno newline\r\n");
}

async fn mixed(pipelining: bool) {
    let sink = Sink::start(SinkOptions {
        pipelining,
        ..SinkOptions::default()
    });
    let mut c = open(&sink, &settings(TlsPolicy::None)).await;
    let out = c
        .send(
            "app@example.com",
            &rcpts(&["ok@example.org", "permfail@example.org"]),
            MESSAGE,
        )
        .await
        .expect("send");
    assert_eq!(out[0].rcpt, "ok@example.org");
    assert_eq!(out[0].code, 250);
    assert_eq!(out[1].rcpt, "permfail@example.org");
    assert_eq!(out[1].code, 550);
    assert_eq!(out[1].enhanced.as_deref(), Some("5.1.1"));
    assert_eq!(out[1].text, "user unknown");
    assert!(out[1].is_permanent());
    let got = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_to, vec!["ok@example.org".to_string()]);
}

#[tokio::test]
async fn mixed_outcomes_per_recipient_pipelined() {
    mixed(true).await;
}

#[tokio::test]
async fn mixed_outcomes_per_recipient_not_pipelined() {
    mixed(false).await;
}

#[tokio::test]
async fn tempfail_is_451() {
    let sink = Sink::start(SinkOptions::default());
    let mut c = open(&sink, &settings(TlsPolicy::None)).await;
    let out = c
        .send(
            "app@example.com",
            &rcpts(&["tempfail@example.org"]),
            MESSAGE,
        )
        .await
        .expect("send");
    assert_eq!(out[0].code, 451);
    assert_eq!(out[0].enhanced.as_deref(), Some("4.3.0"));
    assert!(out[0].is_temporary());
    assert!(c.is_usable());
    // The connection goes on (RSET first, as the transaction stayed open).
    let out = c
        .send("app@example.com", &rcpts(&["ok@example.org"]), MESSAGE)
        .await
        .expect("send again");
    assert_eq!(out[0].code, 250);
    assert!(sink.transcript().iter().any(|l| l == "RSET"));
    assert!(sink.received().len() == 1);
}

#[tokio::test]
async fn tempfail_data_is_452_for_all_accepted() {
    let sink = Sink::start(SinkOptions::default());
    let mut c = open(&sink, &settings(TlsPolicy::None)).await;
    let out = c
        .send(
            "app@example.com",
            &rcpts(&[
                "tempfail-data@example.org",
                "ok@example.org",
                "permfail@example.org",
            ]),
            MESSAGE,
        )
        .await
        .expect("send");
    assert_eq!(out[0].code, 452);
    assert_eq!(out[0].enhanced.as_deref(), Some("4.3.1"));
    assert_eq!(out[1].code, 452);
    assert_eq!(out[2].code, 550);
    assert!(sink.received().is_empty());
    assert!(c.is_usable());
}

#[tokio::test]
async fn drop_mid_data_is_temporary() {
    let sink = Sink::start(SinkOptions::default());
    let mut c = open(&sink, &settings(TlsPolicy::None)).await;
    let out = c
        .send(
            "app@example.com",
            &rcpts(&["drop@example.org", "ok@example.org", "permfail@example.org"]),
            MESSAGE,
        )
        .await
        .expect("send");
    assert_eq!(out[0].code, 451, "{out:?}");
    assert!(out[0].text.starts_with("connection lost"), "{out:?}");
    assert_eq!(out[1].code, 451);
    assert_eq!(out[2].code, 550);
    assert!(!c.is_usable());
    let again = c
        .send("app@example.com", &rcpts(&["ok@example.org"]), MESSAGE)
        .await;
    assert!(matches!(again, Err(ClientError::Temporary(_))), "{again:?}");
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn slow_final_reply_times_out_temporarily() {
    let sink = Sink::start(SinkOptions::default());
    let mut s = settings(TlsPolicy::None);
    s.data_timeout = Duration::from_millis(300);
    let mut c = open(&sink, &s).await;
    let started = Instant::now();
    let out = c
        .send("app@example.com", &rcpts(&["slow@example.org"]), MESSAGE)
        .await
        .expect("send");
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(out[0].code, 451, "{out:?}");
    assert!(out[0].text.contains("timed out"), "{out:?}");
    assert!(!c.is_usable());
}

#[tokio::test]
async fn opportunistic_starttls_with_a_self_signed_certificate() {
    let sink = Sink::start(SinkOptions {
        starttls: true,
        require_tls: true,
        ..SinkOptions::default()
    });
    let mut c = open(&sink, &settings(TlsPolicy::Opportunistic)).await;
    assert!(c.is_tls());
    let out = c
        .send("app@example.com", &rcpts(&["ok@example.org"]), MESSAGE)
        .await
        .expect("send");
    assert_eq!(out[0].code, 250);
    let got = sink.wait_for(1, Duration::from_secs(5));
    assert!(got[0].tls);
    assert_eq!(got[0].data, MESSAGE);
    // EHLO again after STARTTLS.
    let ehlos = sink
        .transcript()
        .iter()
        .filter(|l| l.starts_with("EHLO"))
        .count();
    assert_eq!(ehlos, 2);
}

#[tokio::test]
async fn opportunistic_without_starttls_stays_plain() {
    let sink = Sink::start(SinkOptions::default());
    let mut c = open(&sink, &settings(TlsPolicy::Opportunistic)).await;
    assert!(!c.is_tls());
    let out = c
        .send("app@example.com", &rcpts(&["ok@example.org"]), MESSAGE)
        .await
        .expect("send");
    assert_eq!(out[0].code, 250);
}

#[tokio::test]
async fn required_tls_verifies_against_extra_roots() {
    let sink = Sink::start(SinkOptions {
        starttls: true,
        ..SinkOptions::default()
    });
    let s = settings(TlsPolicy::Required);
    let mut c = Connection::open(addr(&sink), "localhost", &s, &[sink_root(&sink)])
        .await
        .expect("open with the sink's certificate as a root");
    assert!(c.is_tls());
    let out = c
        .send("app@example.com", &rcpts(&["ok@example.org"]), MESSAGE)
        .await
        .expect("send");
    assert_eq!(out[0].code, 250);
    assert!(sink.wait_for(1, Duration::from_secs(5))[0].tls);

    // Not trusted without the extra root.
    let err = Connection::open(addr(&sink), "localhost", &s, &[])
        .await
        .err()
        .expect("untrusted certificate");
    assert!(matches!(err, ClientError::Temporary(_)), "{err:?}");
    // Nor under a name the certificate does not carry.
    let err = Connection::open(addr(&sink), "mx.example.org", &s, &[sink_root(&sink)])
        .await
        .err()
        .expect("wrong name");
    assert!(matches!(err, ClientError::Temporary(_)), "{err:?}");
}

#[tokio::test]
async fn required_tls_without_starttls_fails_temporarily() {
    let sink = Sink::start(SinkOptions::default());
    let s = settings(TlsPolicy::Required);
    let err = Connection::open(addr(&sink), "localhost", &s, &[sink_root(&sink)])
        .await
        .err()
        .expect("no STARTTLS");
    assert!(matches!(err, ClientError::Temporary(_)), "{err:?}");
    assert!(err.message().contains("STARTTLS"), "{err}");
    assert!(!sink.transcript().iter().any(|l| l.starts_with("MAIL")));
}

#[tokio::test]
async fn auth_plain() {
    let creds = ("relay-user".to_string(), "s3cret".to_string());
    let sink = Sink::start(SinkOptions {
        starttls: true,
        auth: Some(creds.clone()),
        ..SinkOptions::default()
    });
    let mut s = settings(TlsPolicy::Opportunistic);
    s.auth = Some(creds.clone());
    let mut c = open(&sink, &s).await;
    let out = c
        .send("app@example.com", &rcpts(&["ok@example.org"]), MESSAGE)
        .await
        .expect("send");
    assert_eq!(out[0].code, 250);
    let got = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(got[0].auth_user.as_deref(), Some("relay-user"));
    assert!(got[0].tls);

    // Wrong password: permanent.
    s.auth = Some((creds.0.clone(), "wrong".to_string()));
    let err = Connection::open(addr(&sink), "localhost", &s, &[])
        .await
        .err()
        .expect("bad credentials");
    assert!(matches!(err, ClientError::Permanent(_)), "{err:?}");

    // No credentials: the sink refuses MAIL with 530.
    s.auth = None;
    let mut c = open(&sink, &s).await;
    let err = c
        .send("app@example.com", &rcpts(&["ok@example.org"]), MESSAGE)
        .await
        .expect_err("MAIL refused");
    assert!(matches!(err, ClientError::Permanent(_)), "{err:?}");
    assert!(err.message().contains("530"), "{err}");
}

#[tokio::test]
async fn auth_not_offered_fails() {
    let sink = Sink::start(SinkOptions::default());
    let mut s = settings(TlsPolicy::None);
    s.auth = Some(("u".to_string(), "p".to_string()));
    let err = Connection::open(addr(&sink), "localhost", &s, &[])
        .await
        .err()
        .expect("AUTH not offered");
    assert!(matches!(err, ClientError::Temporary(_)), "{err:?}");
}

#[tokio::test]
async fn refused_connection_is_temporary_and_quick() {
    let sink = Sink::start(SinkOptions {
        refuse_connections: true,
        ..SinkOptions::default()
    });
    let started = Instant::now();
    let err = Connection::open(addr(&sink), "localhost", &settings(TlsPolicy::None), &[])
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, ClientError::Temporary(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn several_messages_on_one_connection() {
    let sink = Sink::start(SinkOptions::default());
    let mut c = open(&sink, &settings(TlsPolicy::None)).await;
    for i in 0..3 {
        let msg = format!("Subject: {i}\r\n\r\nbody {i}\r\n");
        let out = c
            .send(
                "app@example.com",
                &rcpts(&["ok@example.org"]),
                msg.as_bytes(),
            )
            .await
            .expect("send");
        assert_eq!(out[0].code, 250);
    }
    // A transaction where every recipient is refused, then another message.
    let out = c
        .send(
            "app@example.com",
            &rcpts(&["permfail@example.org"]),
            MESSAGE,
        )
        .await
        .expect("send");
    assert_eq!(out[0].code, 550);
    let out = c
        .send("app@example.com", &rcpts(&["ok+4@example.org"]), MESSAGE)
        .await
        .expect("send");
    assert_eq!(out[0].code, 250);
    c.quit().await;
    let got = sink.wait_for(4, Duration::from_secs(5));
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|m| m.connection == got[0].connection));
    assert_eq!(got[1].data, b"Subject: 1\r\n\r\nbody 1\r\n");
    assert_eq!(sink.connections(), 1);
    assert_eq!(sink.transcript().last().map(String::as_str), Some("QUIT"));
}

#[tokio::test]
async fn pipelining_sends_mail_rcpt_data_in_one_batch() {
    let sink = Sink::start(SinkOptions::default());
    let mut c = open(&sink, &settings(TlsPolicy::None)).await;
    c.send(
        "app@example.com",
        &rcpts(&["ok@example.org", "ok+2@example.org"]),
        MESSAGE,
    )
    .await
    .expect("send");
    let batches = sink.batches();
    let batch = batches
        .iter()
        .find(|b| b.iter().any(|l| l.starts_with("MAIL")))
        .expect("MAIL batch");
    assert_eq!(batch.len(), 4, "{batches:?}");
    assert!(batch[1].starts_with("RCPT TO:<ok@example.org>"));
    assert!(batch[2].starts_with("RCPT TO:<ok+2@example.org>"));
    assert_eq!(batch[3], "DATA");
}

#[tokio::test]
async fn without_pipelining_one_command_at_a_time() {
    let sink = Sink::start(SinkOptions {
        pipelining: false,
        ..SinkOptions::default()
    });
    let mut c = open(&sink, &settings(TlsPolicy::None)).await;
    let out = c
        .send(
            "app@example.com",
            &rcpts(&["ok@example.org", "ok+2@example.org"]),
            MESSAGE,
        )
        .await
        .expect("send");
    assert!(out.iter().all(|o| o.code == 250));
    assert!(
        sink.batches().iter().all(|b| b.len() == 1),
        "{:?}",
        sink.batches()
    );
    assert_eq!(sink.wait_for(1, Duration::from_secs(5))[0].data, MESSAGE);
}

#[tokio::test]
async fn over_the_servers_size_is_refused_early() {
    let sink = Sink::start(SinkOptions::default());
    let mut c = open(&sink, &settings(TlsPolicy::None)).await;
    let big = vec![b'a'; SINK_SIZE + 1];
    let err = c
        .send("app@example.com", &rcpts(&["ok@example.org"]), &big)
        .await
        .expect_err("too big");
    assert!(matches!(err, ClientError::Permanent(_)), "{err:?}");
    assert!(c.is_usable());
    assert!(!sink.transcript().iter().any(|l| l.starts_with("MAIL")));
}
