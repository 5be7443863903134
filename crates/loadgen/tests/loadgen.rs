//! The loadgen binary against a tiny in-test SMTP responder that counts what
//! it sees: connections, TLS handshakes, AUTH, pipelined batches, messages.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

const BIN: &str = env!("CARGO_BIN_EXE_posthorn-loadgen");

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tls {
    None,
    Starttls,
    Implicit,
}

#[derive(Clone)]
struct Opts {
    tls: Tls,
    pipelining: bool,
    /// Answer 451 to every n-th MAIL (counted over all connections).
    fail_every: Option<u64>,
    /// Require AUTH PLAIN with these credentials before MAIL.
    auth: Option<(&'static str, &'static str)>,
    /// Wait this long before the final reply to the data.
    delay: Duration,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            tls: Tls::None,
            pipelining: true,
            fail_every: None,
            auth: None,
            delay: Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    tls: AtomicU64,
    auth_ok: AtomicU64,
    mails: AtomicU64,
    /// MAIL commands that arrived with RCPT and DATA already behind them.
    pipelined: AtomicU64,
    rcpts: AtomicU64,
    accepted: AtomicU64,
    quits: AtomicU64,
    last_message: Mutex<Vec<u8>>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Responder {
    port: u16,
    counters: Arc<Counters>,
}

impl Responder {
    async fn start(opts: Opts) -> Responder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let counters = Arc::new(Counters::default());
        let acceptor = acceptor();
        let c = counters.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (opts, c, acceptor) = (opts.clone(), c.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, opts, c, acceptor).await;
                });
            }
        });
        Responder { port, counters }
    }

    fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn count(&self, f: impl Fn(&Counters) -> &AtomicU64) -> u64 {
        f(&self.counters).load(Ordering::SeqCst)
    }
}

fn acceptor() -> TlsAcceptor {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

async fn serve(
    stream: TcpStream,
    opts: Opts,
    c: Arc<Counters>,
    acceptor: TlsAcceptor,
) -> io::Result<()> {
    c.connections.fetch_add(1, Ordering::SeqCst);
    // One write per reply: without this, Nagle holds the replies after the
    // first of a pipelined batch until the client's delayed ACK.
    stream.set_nodelay(true)?;
    let mut tls = false;
    let io: Box<dyn Io> = if opts.tls == Tls::Implicit {
        let s = acceptor.accept(stream).await?;
        c.tls.fetch_add(1, Ordering::SeqCst);
        tls = true;
        Box::new(s)
    } else {
        Box::new(stream)
    };
    let mut rd = BufReader::new(io);
    rd.get_mut().write_all(b"220 responder ESMTP\r\n").await?;
    let (mut authed, mut mail_ok, mut rcpts) = (false, false, 0u32);
    let mut line = Vec::new();
    loop {
        line.clear();
        if rd.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let verb = text
            .split([' ', ':'])
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply: String = match verb.as_str() {
            "EHLO" => {
                let mut r = String::from("250-responder\r\n250-8BITMIME\r\n");
                if opts.pipelining {
                    r.push_str("250-PIPELINING\r\n");
                }
                if opts.tls == Tls::Starttls && !tls {
                    r.push_str("250-STARTTLS\r\n");
                }
                if opts.auth.is_some() {
                    r.push_str("250-AUTH PLAIN\r\n");
                }
                r.push_str("250 SIZE 10000000\r\n");
                r
            }
            "STARTTLS" if opts.tls == Tls::Starttls && !tls => {
                rd.get_mut().write_all(b"220 go ahead\r\n").await?;
                assert!(rd.buffer().is_empty(), "nothing pipelined after STARTTLS");
                let s = acceptor.accept(rd.into_inner()).await?;
                c.tls.fetch_add(1, Ordering::SeqCst);
                tls = true;
                rd = BufReader::new(Box::new(s));
                continue;
            }
            "AUTH" => {
                let (user, pass) = opts.auth.unwrap();
                let expected =
                    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
                if text == format!("AUTH PLAIN {expected}") {
                    authed = true;
                    c.auth_ok.fetch_add(1, Ordering::SeqCst);
                    "235 2.7.0 ok\r\n".into()
                } else {
                    "535 5.7.8 bad credentials\r\n".into()
                }
            }
            "MAIL" if opts.auth.is_some() && !authed => "530 5.7.0 auth first\r\n".into(),
            "MAIL" => {
                let n = c.mails.fetch_add(1, Ordering::SeqCst) + 1;
                if rd.buffer().windows(6).any(|w| w == b"DATA\r\n") {
                    c.pipelined.fetch_add(1, Ordering::SeqCst);
                }
                rcpts = 0;
                if opts.fail_every.is_some_and(|k| n.is_multiple_of(k)) {
                    mail_ok = false;
                    "451 4.3.0 try again\r\n".into()
                } else {
                    mail_ok = true;
                    "250 2.1.0 ok\r\n".into()
                }
            }
            "RCPT" if mail_ok => {
                rcpts += 1;
                c.rcpts.fetch_add(1, Ordering::SeqCst);
                "250 2.1.5 ok\r\n".into()
            }
            "RCPT" => "503 5.5.1 MAIL first\r\n".into(),
            "DATA" if mail_ok && rcpts > 0 => {
                rd.get_mut().write_all(b"354 go ahead\r\n").await?;
                let mut content = Vec::new();
                loop {
                    line.clear();
                    if rd.read_until(b'\n', &mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == b".\r\n" {
                        break;
                    }
                    let l = line.strip_prefix(b".").unwrap_or(&line);
                    content.extend_from_slice(l);
                }
                *c.last_message.lock().unwrap() = content;
                tokio::time::sleep(opts.delay).await;
                c.accepted.fetch_add(1, Ordering::SeqCst);
                mail_ok = false;
                "250 2.0.0 queued\r\n".into()
            }
            "DATA" => "503 5.5.1 no valid recipients\r\n".into(),
            "RSET" => {
                mail_ok = false;
                "250 2.0.0 reset\r\n".into()
            }
            "QUIT" => {
                c.quits.fetch_add(1, Ordering::SeqCst);
                rd.get_mut().write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            _ => "500 5.5.2 what\r\n".into(),
        };
        rd.get_mut().write_all(reply.as_bytes()).await?;
    }
}

async fn loadgen(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(BIN)
        .args(args)
        .output()
        .await
        .expect("run posthorn-loadgen");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn loadgen_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (code, stdout, stderr) = loadgen(&all).await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_and_pipelining_with_refusals_counted_by_code() {
    let r = Responder::start(Opts {
        fail_every: Some(10),
        ..Opts::default()
    })
    .await;
    let server = r.server();
    let report = loadgen_json(&[
        "--server",
        &server,
        "--sessions",
        "4",
        "--messages",
        "200",
        "--size",
        "3000",
        "--rcpts",
        "3",
        "--reuse",
        "--pipelining",
    ])
    .await;
    assert_eq!(report["ok"], 180, "{report:#}");
    assert_eq!(report["failed"], 20);
    // Each refused MAIL also gets 503 for its three RCPTs and its DATA.
    assert_eq!(report["replies"], serde_json::json!({"451": 20, "503": 80}));
    assert_eq!(report["reply_samples"]["451"], "451 4.3.0 try again");
    assert_eq!(report["errors"], serde_json::json!({}));
    assert_eq!(report["connections"], 4);
    assert_eq!(report["sessions"], 4);
    assert_eq!(report["rcpts"], 3);
    assert_eq!(report["reuse"], true);
    assert_eq!(report["pipelining"], true);
    assert_eq!(report["tls"], "none");
    assert!(report["messages_per_s"].as_f64().unwrap() > 0.0);
    assert!(report["elapsed_s"].as_f64().unwrap() > 0.0);
    let l = &report["latency_ms"];
    let (p50, p90, p99, max) = (
        l["p50"].as_f64().unwrap(),
        l["p90"].as_f64().unwrap(),
        l["p99"].as_f64().unwrap(),
        l["max"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= max, "{l}");

    assert_eq!(r.count(|c| &c.connections), 4);
    assert_eq!(r.count(|c| &c.mails), 200);
    assert_eq!(r.count(|c| &c.pipelined), 200);
    assert_eq!(r.count(|c| &c.accepted), 180);
    assert_eq!(r.count(|c| &c.rcpts), 180 * 3);
    assert_eq!(r.count(|c| &c.quits), 4);
    let msg = r.counters.last_message.lock().unwrap().clone();
    assert_eq!(msg.len(), 3000);
    let text = String::from_utf8(msg).unwrap();
    let (head, _) = text.split_once("\r\n\r\n").unwrap();
    for field in [
        "From: load@bench.test\r\n",
        "Subject: ",
        "Date: ",
        "Message-ID: <",
    ] {
        assert!(head.contains(field), "{field} in {head}");
    }
    assert!(head.contains("To: sink+1@example.net,\r\n sink+2@example.net,\r\n sink+3@example.net"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_per_connection_in_lockstep() {
    let r = Responder::start(Opts::default()).await;
    let server = r.server();
    let report = loadgen_json(&[
        "--server",
        &server,
        "--sessions",
        "3",
        "--messages",
        "30",
        "--size",
        "1000",
        "--to",
        "one@example.org",
    ])
    .await;
    assert_eq!(report["ok"], 30, "{report:#}");
    assert_eq!(report["failed"], 0);
    assert_eq!(report["connections"], 30);
    assert_eq!(report["replies"], serde_json::json!({}));
    assert_eq!(r.count(|c| &c.connections), 30);
    assert_eq!(r.count(|c| &c.quits), 30);
    assert_eq!(r.count(|c| &c.accepted), 30);
    assert_eq!(r.count(|c| &c.pipelined), 0);
    let msg = r.counters.last_message.lock().unwrap().clone();
    assert_eq!(msg.len(), 1000);
    assert!(String::from_utf8(msg)
        .unwrap()
        .contains("\r\nTo: one@example.org\r\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelining_only_when_advertised() {
    let r = Responder::start(Opts {
        pipelining: false,
        ..Opts::default()
    })
    .await;
    let server = r.server();
    let report = loadgen_json(&[
        "--server",
        &server,
        "--sessions",
        "2",
        "--messages",
        "10",
        "--reuse",
        "--pipelining",
    ])
    .await;
    assert_eq!(report["ok"], 10, "{report:#}");
    assert_eq!(r.count(|c| &c.pipelined), 0);
    assert_eq!(
        report["warnings"],
        serde_json::json!({"PIPELINING not advertised: lockstep": 2})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_with_auth() {
    let r = Responder::start(Opts {
        tls: Tls::Implicit,
        auth: Some(("app@example.com", "s3cret")),
        ..Opts::default()
    })
    .await;
    let server = r.server();
    let report = loadgen_json(&[
        "--server",
        &server,
        "--sessions",
        "2",
        "--messages",
        "20",
        "--reuse",
        "--pipelining",
        "--tls",
        "implicit",
        "--user",
        "app@example.com",
        "--password",
        "s3cret",
    ])
    .await;
    assert_eq!(report["ok"], 20, "{report:#}");
    assert_eq!(report["tls"], "implicit");
    assert_eq!(report["auth"], true);
    assert_eq!(r.count(|c| &c.tls), 2);
    assert_eq!(r.count(|c| &c.auth_ok), 2);
    assert_eq!(r.count(|c| &c.pipelined), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_auth_per_message() {
    let r = Responder::start(Opts {
        tls: Tls::Starttls,
        auth: Some(("app@example.com", "s3cret")),
        ..Opts::default()
    })
    .await;
    let server = r.server();
    let report = loadgen_json(&[
        "--server",
        &server,
        "--sessions",
        "2",
        "--messages",
        "8",
        "--pipelining",
        "--tls",
        "starttls",
        "--user",
        "app@example.com",
        "--password",
        "s3cret",
    ])
    .await;
    assert_eq!(report["ok"], 8, "{report:#}");
    assert_eq!(report["connections"], 8);
    assert_eq!(r.count(|c| &c.tls), 8);
    assert_eq!(r.count(|c| &c.auth_ok), 8);
    assert_eq!(r.count(|c| &c.pipelined), 8);
    assert_eq!(r.count(|c| &c.accepted), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_not_offered_and_bad_password_are_counted() {
    let plain = Responder::start(Opts::default()).await;
    let server = plain.server();
    let report = loadgen_json(&[
        "--server",
        &server,
        "--sessions",
        "1",
        "--messages",
        "3",
        "--tls",
        "starttls",
    ])
    .await;
    assert_eq!(report["ok"], 0, "{report:#}");
    assert_eq!(report["failed"], 3);
    assert_eq!(
        report["errors"],
        serde_json::json!({"setup: STARTTLS not advertised": 3})
    );

    let r = Responder::start(Opts {
        auth: Some(("app@example.com", "s3cret")),
        ..Opts::default()
    })
    .await;
    let server = r.server();
    let report = loadgen_json(&[
        "--server",
        &server,
        "--sessions",
        "1",
        "--messages",
        "3",
        "--reuse",
        "--user",
        "app@example.com",
        "--password",
        "wrong",
    ])
    .await;
    assert_eq!(report["ok"], 0, "{report:#}");
    assert_eq!(report["failed"], 3);
    assert_eq!(report["replies"], serde_json::json!({"535": 3}));
    assert_eq!(
        report["errors"],
        serde_json::json!({"setup: AUTH refused": 3})
    );
    assert_eq!(r.count(|c| &c.mails), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_report() {
    let r = Responder::start(Opts {
        fail_every: Some(5),
        ..Opts::default()
    })
    .await;
    let server = r.server();
    let (code, stdout, stderr) = loadgen(&[
        "--server",
        &server,
        "--sessions",
        "2",
        "--messages",
        "20",
        "--reuse",
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("16 ok, 4 failed in "), "{stdout}");
    assert!(stdout.contains(" messages/s"), "{stdout}");
    assert!(
        stdout.contains("latency (MAIL to final reply): p50 "),
        "{stdout}"
    );
    assert!(
        stdout.contains("replies not 2xx:\n  451: 4  (e.g. \"451 4.3.0 try again\")\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("connections: 2 established, 0 failed"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_limit_stops_early() {
    let r = Responder::start(Opts {
        delay: Duration::from_millis(20),
        ..Opts::default()
    })
    .await;
    let server = r.server();
    let started = Instant::now();
    let report = loadgen_json(&[
        "--server",
        &server,
        "--sessions",
        "2",
        "--messages",
        "100000",
        "--reuse",
        "--duration-limit",
        "0.3",
    ])
    .await;
    assert!(started.elapsed() < Duration::from_secs(3));
    let ok = report["ok"].as_u64().unwrap();
    assert!(ok > 0 && ok < 100, "{report:#}");
    assert_eq!(report["failed"], 0);
    assert!(report["latency_ms"]["p50"].as_f64().unwrap() >= 20.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_paces_the_messages() {
    let r = Responder::start(Opts::default()).await;
    let server = r.server();
    let started = Instant::now();
    let report = loadgen_json(&[
        "--server",
        &server,
        "--sessions",
        "4",
        "--messages",
        "20",
        "--reuse",
        "--rate",
        "100",
    ])
    .await;
    // Message 19 may not start before 190 ms.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(report["ok"], 20, "{report:#}");
    assert_eq!(report["offered_rate"], 100.0);
    assert!(report["elapsed_s"].as_f64().unwrap() >= 0.19, "{report:#}");
    assert_eq!(r.count(|c| &c.accepted), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes() {
    // Nothing listening: 1, quickly, with the error counted.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server = format!("127.0.0.1:{port}");
    let (code, stdout, stderr) =
        loadgen(&["--server", &server, "--messages", "1000", "--json"]).await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["ok"], 0);
    assert_eq!(report["connections"], 0);
    assert_eq!(
        report["errors"]["connect: connection refused"], 20,
        "{report:#}"
    );

    // Bad arguments: 2.
    for bad in [
        &["--server", "127.0.0.1"][..],
        &["--server", "127.0.0.1:25", "--sessions", "0"],
        &["--server", "127.0.0.1:25", "--tls", "sometimes"],
        &["--server", "127.0.0.1:25", "--user", "u"],
        &["--server", "127.0.0.1:25", "--to", "nobody"],
        &["--server", "127.0.0.1:25", "--rate", "0"],
        &["--messages", "1"],
    ] {
        let (code, _, stderr) = loadgen(bad).await;
        assert_eq!(code, 2, "{bad:?}: {stderr}");
    }
}
