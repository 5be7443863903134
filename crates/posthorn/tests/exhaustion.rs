//! Connection exhaustion and caps: the SMTP total cap (`[smtp]
//! max_connections`), the HTTP header-read timeout and per-address cap, a
//! server whose open-file limit is used up by idle HTTP connections (SMTP
//! still greets and accepts mail), and a store that falls behind (`[smtp]
//! store_timeout_secs`: `451 4.3.2`, not a session that hangs).
//!
//! Every wait is bounded by a deadline far above what the step needs, so
//! a slow machine only makes the tests slower, never wrong.

use posthorn_testkit::cluster::{provision, ClusterDb, Node, NodeSettings, Outcome, PgClient};
use posthorn_testkit::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_posthorn");

/// Read until the peer closes or `limit` passes; what came and whether it
/// closed.
fn read_to_close(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // A reset after the answer counts as closed too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (String::from_utf8_lossy(&got).into_owned(), true)
            }
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
        if Instant::now() >= deadline {
            return (String::from_utf8_lossy(&got).into_owned(), false);
        }
    }
}

/// A greeted plain SMTP connection, retried while transient connections
/// (the test kit's readiness probes) still hold slots.
fn greeted(port: u16, deadline: Instant) -> TcpStream {
    loop {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap_or(0);
        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
        if line.starts_with("220 ") {
            return s;
        }
        assert!(
            line.starts_with("421 4.3.2") && Instant::now() < deadline,
            "expected a greeting, got {line:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A real client on the implicit-TLS listener (any certificate).
fn lettre_smtps(port: u16) -> lettre::SmtpTransport {
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    let tls = TlsParameters::builder("localhost".to_string())
        .dangerous_accept_invalid_certs(true)
        .build_rustls()
        .expect("rustls parameters");
    lettre::SmtpTransport::builder_dangerous("127.0.0.1")
        .port(port)
        .tls(Tls::Wrapper(tls))
        .timeout(Some(Duration::from_secs(20)))
        .build()
}

#[test]
fn smtp_connections_past_max_connections_get_421_4_3_2() {
    let server = TestServer::start(Path::new(BIN), "max_connections = 3\n");
    let deadline = Instant::now() + Duration::from_secs(20);
    let held: Vec<TcpStream> = (0..3)
        .map(|_| greeted(server.submission_port, deadline))
        .collect();

    let started = Instant::now();
    let mut fourth = TcpStream::connect(("127.0.0.1", server.submission_port)).unwrap();
    let (reply, closed) = read_to_close(&mut fourth, Duration::from_secs(20));
    assert!(
        reply.starts_with("421 4.3.2 posthorn.test Error: too many connections to this server"),
        "{reply:?}"
    );
    assert!(
        reply.ends_with("\r\n") && reply.lines().count() == 1,
        "{reply:?}"
    );
    assert!(closed, "the refused connection is closed");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered at once"
    );

    // On the implicit-TLS listener the refusal comes after the handshake.
    let err = lettre_smtps(server.smtps_port)
        .test_connection()
        .expect_err("refused past the cap");
    let text = format!("{err}");
    assert!(
        text.contains("421") && text.contains("too many connections to this server"),
        "{text}"
    );

    // A slot given back is taken by the next connection.
    drop(held);
    let mut again = greeted(
        server.submission_port,
        Instant::now() + Duration::from_secs(20),
    );
    again.write_all(b"QUIT\r\n").unwrap();
    assert!(server.log().contains("SMTP connection refused"));
}

#[test]
fn only_connections_that_do_not_log_in_count_as_new_connections_of_an_address() {
    let server = TestServer::start(
        Path::new(BIN),
        "allow_plaintext_auth_on_loopback = true\n[limits]\nnew_connections_per_ip_per_minute = 5\n",
    );
    // A connection per message, each logging in: twice the quota and more.
    for _ in 0..12 {
        let mut c = server.logged_in();
        assert!(c.cmd("QUIT").starts_with("221"));
    }
    // Connections that do not log in are held to it (the test kit's
    // readiness probe made two of them already).
    let mut greeted = 0;
    let refusal = loop {
        let mut s = TcpStream::connect(("127.0.0.1", server.submission_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut first = [0u8; 512];
        let n = s.read(&mut first).unwrap();
        let line = String::from_utf8_lossy(&first[..n]).into_owned();
        if !line.starts_with("220 ") {
            break line;
        }
        greeted += 1;
        assert!(greeted <= 5, "more than the quota were greeted");
    };
    assert!(refusal.starts_with("421 4.7.0"), "{refusal}");
}

#[test]
fn http_connections_that_send_no_request_head_are_closed() {
    let server = TestServer::start(Path::new(BIN), "[http]\nheader_read_timeout_secs = 1\n");
    // Before the first connection: each is closed at least 1 s after it
    // opened.
    let started = Instant::now();
    // Nothing at all.
    let mut silent = TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();
    // Half a request head.
    let mut partial = TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    // A request, then nothing: the kept-alive connection idles.
    let mut kept = TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    for (name, s) in [
        ("silent", &mut silent),
        ("partial", &mut partial),
        ("kept-alive", &mut kept),
    ] {
        let (got, closed) = read_to_close(s, Duration::from_secs(20));
        assert!(closed, "{name}: still open after 20 s; got {got:?}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900),
            "{name}: closed by the timeout, not at once: {took:?}"
        );
        if name == "kept-alive" {
            assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");
        }
    }
    // The server still answers.
    assert_eq!(
        http::request(server.http_port, "GET", "/healthz", &[], b"").status,
        200
    );
}

#[test]
fn an_http_request_body_that_stalls_is_cut_off() {
    let server = TestServer::start(Path::new(BIN), "[http]\nidle_timeout_secs = 1\n");
    let key = server.http_key(ACCOUNT);
    let mut s = TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();
    s.write_all(
        format!(
            "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"from\": "
        )
        .as_bytes(),
    )
    .unwrap();
    let started = Instant::now();
    let (got, closed) = read_to_close(&mut s, Duration::from_secs(20));
    let took = started.elapsed();
    assert!(closed, "still open after 20 s; got {got:?}");
    assert!(
        took >= Duration::from_millis(900),
        "cut off by the idle timeout, not at once: {took:?} {got:?}"
    );
    // Whatever was answered, it was no acceptance.
    assert!(!got.starts_with("HTTP/1.1 2"), "{got:?}");
    assert!(server.messages().is_empty());
}

#[test]
fn http_connections_past_the_per_address_cap_get_429() {
    let server = TestServer::start(
        Path::new(BIN),
        "[http]\nmax_connections_per_ip = 3\nheader_read_timeout_secs = 60\n",
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    // Three idle connections from 127.0.0.1, retried while the test kit's
    // readiness probe may still hold a slot.
    let mut held = Vec::new();
    while held.len() < 3 {
        let mut s = TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();
        s.set_nonblocking(true).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let mut buf = [0u8; 16];
        match s.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                s.set_nonblocking(false).unwrap();
                held.push(s);
            }
            _ => assert!(Instant::now() < deadline, "no slot after 20 s"),
        }
    }
    let mut fourth = TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();
    let (answer, closed) = read_to_close(&mut fourth, Duration::from_secs(20));
    assert!(answer.starts_with("HTTP/1.1 429 "), "{answer:?}");
    assert!(
        answer.contains("\"code\":\"LimitExceeded.ConnectionsPerAddress\""),
        "{answer:?}"
    );
    assert!(closed);

    // One of them asks: it is served (its slot was taken at connect).
    held[0]
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (answer, _) = read_to_close(&mut held[0], Duration::from_secs(20));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    // Its slot is back once it closed: a new connection is served.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = http::request(server.http_port, "GET", "/healthz", &[], b"");
        if r.status == 200 {
            break;
        }
        assert!(r.status == 429 && Instant::now() < deadline, "{r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A script that runs the binary with `ulimit -n` set to `files` (soft and
/// hard), standing in for it in the test kit.
fn with_file_limit(dir: &Path, files: u32) -> PathBuf {
    let script = dir.join("posthorn-limited");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nulimit -n {files} || exit 99\nexec {BIN} \"$@\"\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// This test process may hold many sockets too.
fn raise_own_file_limit() {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

#[test]
fn idle_http_connections_cannot_use_up_the_files_smtp_needs() {
    const SERVER_FILES: u32 = 400;
    const CLIENTS: usize = 600;
    raise_own_file_limit();
    let scripts = tempfile::tempdir().unwrap();
    let bin = with_file_limit(scripts.path(), SERVER_FILES);
    let server = TestServer::start(
        &bin,
        "allow_plaintext_auth_on_loopback = true\n[http]\nheader_read_timeout_secs = 120\nmax_connections_per_ip = 0\n",
    );

    // Far more idle HTTP connections than the server has descriptors.
    let mut idle: Vec<TcpStream> = Vec::new();
    for _ in 0..CLIENTS {
        idle.push(TcpStream::connect(("127.0.0.1", server.http_port)).expect("connect"));
    }
    // The last one is refused at once, not left in the backlog by an
    // accept that fails with EMFILE.
    let last = idle.last_mut().unwrap();
    let (answer, closed) = read_to_close(last, Duration::from_secs(20));
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer:?}");
    assert!(
        answer.contains("\"code\":\"LimitExceeded.Connections\""),
        "{answer:?}"
    );
    assert!(closed);
    // The server answered them in order: the refused ones have their
    // answer already, the held ones nothing.
    let held = idle
        .iter()
        .filter(|s| {
            s.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 1];
            let mut stream: &TcpStream = s;
            matches!(stream.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    assert!(
        held > 0 && held < SERVER_FILES as usize,
        "{held} of {CLIENTS} held"
    );

    // SMTP still greets at once, and the store still takes a message.
    let started = Instant::now();
    let mut c = server.logged_in();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "greeted and logged in after {:?}",
        started.elapsed()
    );
    c.cmd(&format!("MAIL FROM:<{SENDER}>"));
    assert!(c.cmd("RCPT TO:<rcpt@example.net>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(
        format!("From: <{SENDER}>\r\nTo: <rcpt@example.net>\r\nSubject: under pressure\r\n\r\nStill here.\r\n.\r\n")
            .as_bytes(),
    );
    let reply = c.read_reply();
    queued_id(&reply);
    c.cmd("QUIT");

    // Once the idle connections go, HTTP serves again.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = http::request(server.http_port, "GET", "/healthz", &[], b"");
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "{r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = server.log();
    assert!(
        log.contains(&format!("limit={SERVER_FILES}")),
        "the server ran with the low limit:\n{log}"
    );
    assert!(!log.contains("Too many open files"), "{log}");
    if let Some(line) = log.lines().find(|l| l.contains("open files:")) {
        eprintln!("{line}\n{held} of {CLIENTS} idle HTTP connections held");
    }
    assert!(log.contains("HTTP connection refused"), "{log}");
}

#[test]
fn a_store_that_falls_behind_answers_451_4_3_2() {
    let Some(db) = ClusterDb::create("a_store_that_falls_behind_answers_451_4_3_2") else {
        return;
    };
    let settings = NodeSettings {
        node_timeout: "30s".into(),
        max_connections: 4,
        delivery: "mode = \"capture\"\n".into(),
    };
    let mut node = Node::new(Path::new(BIN), &db, "a", &settings);
    let config = std::fs::read_to_string(node.config_path()).unwrap();
    let config = config.replacen(
        "shutdown_grace_secs = 2\n",
        "shutdown_grace_secs = 2\nstore_timeout_secs = 2\n",
        1,
    );
    std::fs::write(node.config_path(), config).unwrap();
    node.start();
    let keys = provision(&node);
    let content = format!(
        "From: <{SENDER}>\r\nTo: <rcpt@example.net>\r\nSubject: behind\r\n\r\nWaiting.\r\n.\r\n"
    );
    let mut c = node
        .smtp_login(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("login: {e}\n{}", node.log()));
    assert!(matches!(
        c.transaction(SENDER, &["rcpt@example.net"], content.as_bytes()),
        Outcome::Queued(_)
    ));

    // Another session holds the messages table: commits wait for it.
    let mut blocker = PgClient::connect(&db.url).expect("connect to the test database");
    blocker
        .execute("BEGIN; LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let started = Instant::now();
    let outcome = c.transaction(SENDER, &["rcpt@example.net"], content.as_bytes());
    let took = started.elapsed();
    match &outcome {
        Outcome::Temporary("content", reply) => {
            assert!(reply.starts_with("451 4.3.2 "), "{reply}");
            assert!(reply.contains("busy storing other messages"), "{reply}");
        }
        other => panic!("{other:?}\n{}", node.log()),
    }
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(20),
        "answered after the store timeout (2 s): {took:?}"
    );
    // The HTTP door has the same bound, said its own way.
    let started = Instant::now();
    let r = http::post_json(
        node.http_port,
        "/v1/messages",
        &keys.account_key,
        &serde_json::json!({"from": SENDER, "to": ["rcpt@example.net"], "subject": "behind", "text": "Waiting."}),
    );
    let took = started.elapsed();
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.error_code(), "InternalError.StoreBusy");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(20),
        "answered after the store timeout (2 s): {took:?}"
    );

    // The store catches up: the same session sends again.
    blocker.execute("ROLLBACK").unwrap();
    let outcome = c.transaction(SENDER, &["rcpt@example.net"], content.as_bytes());
    assert!(matches!(outcome, Outcome::Queued(_)), "{outcome:?}");
    c.quit();
}
