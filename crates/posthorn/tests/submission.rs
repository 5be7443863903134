//! The submission server over real TCP and TLS: refusals, smuggling, line
//! endings, limits, crash safety, shutdown and timeouts. Byte-exact cases
//! use a raw client on the STARTTLS port with plaintext AUTH allowed for
//! loopback; TLS cases use Python's ssl module.

use posthorn_testkit::*;
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_posthorn");
const PLAIN_AUTH: &str = "allow_plaintext_auth_on_loopback = true";

/// A raw client logged in as the sender address.
fn message(subject: &str) -> String {
    format!("From: <{SENDER}>\r\nTo: <to@example.net>\r\nSubject: {subject}\r\n\r\nHello.\r\n")
}

/// MAIL, RCPT, DATA and the given raw content (which must carry the end
/// marker); returns the final reply.
fn transaction(c: &mut RawClient, rcpts: &[&str], content: &[u8]) -> String {
    assert!(c
        .cmd(&format!("MAIL FROM:<{SENDER}>"))
        .starts_with("250 2.1.0"));
    for r in rcpts {
        let reply = c.cmd(&format!("RCPT TO:<{r}>"));
        assert!(reply.starts_with("250 2.1.5"), "{reply}");
    }
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(content);
    c.read_reply()
}

fn python(script: &str, args: &[String]) -> std::process::Output {
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs")
}

#[test]
fn auth_needs_tls_and_wrong_credentials_say_nothing_about_the_user() {
    // smtplib tries PLAIN then LOGIN with the same password: that counts
    // once per user, far from any lockout.
    let server = TestServer::start(BIN.as_ref(), "");
    // Plaintext: AUTH is not offered and refused with 538.
    let mut c = RawClient::connect(server.submission_port);
    let ehlo = c.cmd("EHLO client.test");
    assert!(
        ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    let r = c.cmd(&format!(
        "AUTH PLAIN {}",
        auth_plain(SENDER, SENDER_PASSWORD)
    ));
    assert!(r.starts_with("538 5.7.11"), "{r}");
    assert!(c
        .cmd(&format!("MAIL FROM:<{SENDER}>"))
        .starts_with("530 5.7.0"));

    // Over TLS: a wrong password and an unknown user get the same 535; an
    // unknown label after the right key says so (the client proved it
    // knows the key, so a typo in a label id does not look like a wrong key).
    let script = r#"
import smtplib, ssl, sys
port = int(sys.argv[1])
ctx = ssl._create_unverified_context()
for user, pw in [(sys.argv[2], "wrong-password"), ("nobody@example.com", "whatever"), ("api1#999", sys.argv[3])]:
    s = smtplib.SMTP_SSL("127.0.0.1", port, context=ctx)
    try:
        s.login(user, pw)
        print("LOGGED IN", user)
    except smtplib.SMTPAuthenticationError as e:
        print(e.smtp_code, e.smtp_error.decode())
    s.quit()
"#;
    let out = python(
        script,
        &[server.smtps_port.to_string(), SENDER.into(), API_KEY.into()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(
        lines[0], lines[1],
        "a wrong password reads as an unknown user"
    );
    for line in &lines {
        assert!(line.starts_with("535 5.7.8"), "{line}");
    }
    assert!(
        lines[2].contains("the password is right, but the account has no label \"999\""),
        "{}",
        lines[2]
    );
}

#[test]
fn mail_from_must_be_the_login_or_a_sender_of_the_account() {
    let server = TestServer::start(BIN.as_ref(), PLAIN_AUTH);
    let mut c = server.logged_in();
    let r = c.cmd(&format!("MAIL FROM:<{OTHER_SENDER}>"));
    assert!(r.starts_with("553 5.7.1"), "{r}");
    assert!(c
        .cmd("MAIL FROM:<someone@elsewhere.org>")
        .starts_with("553 5.7.1"));
    assert!(c.cmd("MAIL FROM:<>").starts_with("553 5.7.1"));
    assert!(c.cmd(&format!("MAIL FROM:<{SENDER}>")).starts_with("250"));

    // An API user may send from any sender address of its account, only.
    let mut api = RawClient::connect(server.submission_port);
    api.cmd("EHLO client.test");
    assert!(api
        .cmd(&format!("AUTH PLAIN {}", auth_plain(API_USER, API_KEY)))
        .starts_with("235"));
    assert!(api
        .cmd(&format!("MAIL FROM:<{OTHER_SENDER}>"))
        .starts_with("250"));
    api.cmd("RSET");
    assert!(api
        .cmd("MAIL FROM:<unknown@example.com>")
        .starts_with("553 5.7.1"));
}

#[test]
fn smuggled_end_markers_are_content_and_never_a_second_message() {
    let server = TestServer::start(BIN.as_ref(), PLAIN_AUTH);
    let mut c = server.logged_in();
    let variants: [&[u8]; 4] = [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r"];
    for (i, fake_end) in variants.iter().enumerate() {
        let mut content = message(&format!("smuggle {i}")).into_bytes();
        content.extend_from_slice(fake_end);
        content.extend_from_slice(
            b"MAIL FROM:<app@example.com>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nsmuggled\r\n",
        );
        content.extend_from_slice(b".\r\n");
        let id = queued_id(&transaction(&mut c, &["to@example.net"], &content));
        // The next command is answered normally: nothing is left over.
        assert!(c.cmd("NOOP").starts_with("250 2.0.0"));
        let stored = server.content(&id);
        let text = String::from_utf8_lossy(&stored);
        assert!(text.contains("RCPT TO:<victim@example.org>"), "{text}");
        assert!(!stored.windows(2).any(|w| w == b"\n\n" || w == b"\r\r"));
    }
    let messages = server.messages();
    assert_eq!(messages.len(), variants.len());
    for m in &messages {
        let rcpts = m["recipients"].as_array().unwrap();
        assert_eq!(rcpts.len(), 1);
        assert_eq!(rcpts[0]["address"], "to@example.net");
    }
}

#[test]
fn bare_line_feeds_are_normalised_by_default() {
    let server = TestServer::start(BIN.as_ref(), PLAIN_AUTH);
    let mut c = server.logged_in();
    let content = format!(
        "From: <{SENDER}>\nTo: <a@example.net>\nSubject: lf\n\nline one\n..dotted\nend\r\n.\r\n"
    );
    let id = queued_id(&transaction(&mut c, &["a@example.net"], content.as_bytes()));
    let stored = String::from_utf8(server.content(&id)).unwrap();
    // Posthorn's own header fields come first and last; the client's
    // lines are between them with CRLF endings.
    let (headers, body) = stored.split_once("\r\n\r\n").unwrap();
    assert!(headers.contains(&format!(
        "From: <{SENDER}>\r\nTo: <a@example.net>\r\nSubject: lf\r\n"
    )));
    assert_eq!(body, "line one\r\n.dotted\r\nend\r\n");
    assert!(!stored.replace("\r\n", "").contains('\n'));
}

#[test]
fn bare_line_feeds_are_refused_under_reject() {
    let server = TestServer::start(
        BIN.as_ref(),
        &format!("{PLAIN_AUTH}\nline_endings = \"reject\""),
    );
    let mut c = server.logged_in();
    let r = transaction(&mut c, &["a@example.net"], b"Subject: x\n\nbody\r\n.\r\n");
    assert!(r.starts_with("550 5.5.2"), "{r}");
    // The connection stays usable and a clean message passes.
    let ok = transaction(
        &mut c,
        &["a@example.net"],
        format!("{}.\r\n", message("ok")).as_bytes(),
    );
    queued_id(&ok);
    assert_eq!(server.messages().len(), 1);
}

#[test]
fn a_long_line_is_refused_and_the_connection_stays_usable() {
    let server = TestServer::start(BIN.as_ref(), PLAIN_AUTH);
    let mut c = server.logged_in();
    let mut content = message("long").into_bytes();
    content.extend(std::iter::repeat_n(b'x', 2100));
    content.extend_from_slice(b"\r\n.\r\n");
    let r = transaction(&mut c, &["a@example.net"], &content);
    assert!(
        r.starts_with(
            "554 5.0.0 Error: transaction failed, blame it on the weather: ##SES-response-json: {"
        ),
        "{r}"
    );
    assert!(r.contains("FailedOperation.LineTooLong"), "{r}");
    let ok = transaction(
        &mut c,
        &["a@example.net"],
        format!("{}.\r\n", message("after")).as_bytes(),
    );
    queued_id(&ok);
    assert_eq!(server.messages().len(), 1);
}

#[test]
fn oversize_messages_are_read_through_and_refused() {
    let server = TestServer::start(
        BIN.as_ref(),
        &format!("{PLAIN_AUTH}\nmax_message_size = 100000"),
    );
    let mut c = server.logged_in();
    assert!(c.cmd("EHLO again.test").contains("SIZE 100000"));
    let r = c.cmd(&format!("MAIL FROM:<{SENDER}> SIZE=200000"));
    assert!(r.starts_with("552 5.3.4"), "{r}");
    let mut content = message("big").into_bytes();
    for _ in 0..2000 {
        content.extend_from_slice(&[b'y'; 98]);
        content.extend_from_slice(b"\r\n");
    }
    content.extend_from_slice(b".\r\n");
    let r = transaction(&mut c, &["a@example.net"], &content);
    assert!(r.starts_with("552 5.3.4"), "{r}");
    let ok = transaction(
        &mut c,
        &["a@example.net"],
        format!("{}.\r\n", message("small")).as_bytes(),
    );
    queued_id(&ok);
}

#[test]
fn the_51st_recipient_is_deferred_to_the_next_transaction() {
    let server = TestServer::start(BIN.as_ref(), PLAIN_AUTH);
    let mut c = server.logged_in();
    assert!(c.cmd(&format!("MAIL FROM:<{SENDER}>")).starts_with("250"));
    for i in 0..50 {
        assert!(c
            .cmd(&format!("RCPT TO:<r{i}@example.net>"))
            .starts_with("250 2.1.5"));
    }
    let r = c.cmd("RCPT TO:<r50@example.net>");
    assert!(r.starts_with("452 4.5.3"), "{r}");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(format!("{}.\r\n", message("many")).as_bytes());
    let id = queued_id(&c.read_reply());
    let out = server.cli_ok(&["message", "show", &id, "--json"]);
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(m["recipients"].as_array().unwrap().len(), 50);
    assert_eq!(m["recipients"][0]["status"], "queued");
}

#[test]
fn recipients_at_internal_address_literals_are_refused_at_rcpt() {
    let server = TestServer::start(BIN.as_ref(), PLAIN_AUTH);
    let mut c = server.logged_in();
    assert!(c.cmd(&format!("MAIL FROM:<{SENDER}>")).starts_with("250"));
    for rcpt in [
        "x@[127.0.0.1]",
        "x@[10.0.0.1]",
        "x@[169.254.169.254]",
        "x@[198.18.0.1]",
        "x@[IPv6:::1]",
        "x@[IPv6:::ffff:127.0.0.1]",
        "x@[IPv6:64:ff9b::a00:1]",
        "x@localhost",
    ] {
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
        assert!(r.starts_with("550 5.7.1 "), "{rcpt}: {r}");
        assert_eq!(
            business_code(&r),
            "FailedOperation.InternalDestination",
            "{rcpt}: {r}"
        );
        let message = business_json(&r)["Response"]["Error"]["Message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            message.contains("allow_private_destinations"),
            "{rcpt}: {message}"
        );
    }
    // The transaction goes on with the others; a public literal is taken.
    assert!(c.cmd("RCPT TO:<x@[192.88.98.1]>").starts_with("250 2.1.5"));
    assert!(c.cmd("RCPT TO:<to@example.net>").starts_with("250 2.1.5"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(format!("{}.\r\n", message("internal")).as_bytes());
    let id = queued_id(&c.read_reply());
    let recipients: Vec<String> = server.message(&id)["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(recipients, ["x@[192.88.98.1]", "to@example.net"]);
}

#[test]
fn internal_address_literals_are_taken_when_allowed() {
    let server = TestServer::start(
        BIN.as_ref(),
        &format!("{PLAIN_AUTH}\n[delivery]\nenabled = false\nallow_private_destinations = true\n"),
    );
    let mut c = server.logged_in();
    let reply = transaction(
        &mut c,
        &["x@[127.0.0.1]", "x@localhost"],
        format!("{}.\r\n", message("allowed")).as_bytes(),
    );
    queued_id(&reply);
}

#[test]
fn pipelined_batches_are_answered_in_order() {
    let server = TestServer::start(BIN.as_ref(), PLAIN_AUTH);
    let mut c = RawClient::connect(server.submission_port);
    let mut batch = format!(
        "EHLO client.test\r\nAUTH PLAIN {}\r\nMAIL FROM:<{SENDER}>\r\nRCPT TO:<a@example.net>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n",
        auth_plain(SENDER, SENDER_PASSWORD)
    );
    batch.push_str(&message("pipelined"));
    let chunk = message("chunked");
    batch.push_str(&format!(
        ".\r\nMAIL FROM:<app@example.com>\r\nRCPT TO:<c@example.net>\r\nBDAT {} LAST\r\n{chunk}QUIT\r\n",
        chunk.len()
    ));
    c.send(batch.as_bytes());
    let expect = [
        "250-", "235 ", "250 ", "250 ", "250 ", "354 ", "250 ", "250 ", "250 ", "250 ", "221 ",
    ];
    for prefix in expect {
        let r = c.read_reply();
        assert!(r.starts_with(prefix), "expected {prefix}, got {r}");
    }
    assert_eq!(server.messages().len(), 2);
}

#[test]
fn starttls_discards_pipelined_plaintext() {
    let server = TestServer::start(BIN.as_ref(), "");
    // The NOOP and MAIL travel in the same packet as STARTTLS; after the
    // handshake the first reply must be the one to the new EHLO.
    let script = r#"
import socket, ssl, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
f = s.makefile("rb")
def reply():
    lines = []
    while True:
        line = f.readline().decode()
        lines.append(line)
        if line[3:4] != "-":
            return "".join(lines)
reply()
s.sendall(b"EHLO x\r\n")
reply()
s.sendall(b"STARTTLS\r\nNOOP\r\nMAIL FROM:<app@example.com>\r\n")
print(reply().strip())
t = ssl._create_unverified_context().wrap_socket(s, server_hostname="localhost")
t.sendall(b"EHLO y\r\n")
data = b""
while not data.endswith(b"\r\n") or data.split(b"\r\n")[-2][3:4] == b"-":
    data += t.recv(4096)
print(data.decode().splitlines()[0])
print("AUTH" in data.decode())
t.sendall(b"NOOP\r\n")
print(t.recv(4096).decode().strip())
"#;
    let out = python(script, &[server.submission_port.to_string()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("220 2.0.0"), "{stdout}");
    assert!(
        lines[1].starts_with("250-"),
        "first reply after TLS must be EHLO's: {stdout}"
    );
    assert_eq!(lines[2], "True", "AUTH is offered after TLS");
    assert!(lines[3].starts_with("250 2.0.0"), "{stdout}");
}

#[test]
fn tls_1_1_clients_are_refused_and_tls_1_2_accepted() {
    let server = TestServer::start(BIN.as_ref(), "");
    let script = r#"
import socket, ssl, sys
port = int(sys.argv[1])
for version in ["TLSv1_1", "TLSv1_2", "TLSv1_3"]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    v = getattr(ssl.TLSVersion, version)
    ctx.minimum_version = v
    ctx.maximum_version = v
    try:
        with socket.create_connection(("127.0.0.1", port)) as s:
            with ctx.wrap_socket(s) as t:
                print(version, "accepted", t.version())
    except (ssl.SSLError, ConnectionResetError) as e:
        print(version, "refused")
"#;
    let out = python(script, &[server.smtps_port.to_string()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("TLSv1_1 refused"), "{stdout}");
    assert!(stdout.contains("TLSv1_2 accepted TLSv1.2"), "{stdout}");
    assert!(stdout.contains("TLSv1_3 accepted TLSv1.3"), "{stdout}");
}

#[test]
fn every_message_acknowledged_before_kill_9_survives_the_restart() {
    let mut server = TestServer::start(BIN.as_ref(), PLAIN_AUTH);
    let port = server.submission_port;
    // (queue id, whether its content was large enough for the spool)
    let (tx, rx) = std::sync::mpsc::channel::<(String, bool)>();
    let mut senders = Vec::new();
    for t in 0..4 {
        let tx = tx.clone();
        senders.push(std::thread::spawn(move || {
            // Send until the server dies; report every id that got a 250.
            let result = std::panic::catch_unwind(move || {
                let mut c = RawClient::connect(port);
                c.cmd("EHLO crash.test");
                c.cmd(&format!(
                    "AUTH PLAIN {}",
                    auth_plain(SENDER, SENDER_PASSWORD)
                ));
                // Two senders' messages are large: their contents go to
                // spool files, synced before the commit that points there.
                let large = t < 2;
                for i in 0.. {
                    let mut text = message(&format!("crash {t}-{i}"));
                    if large {
                        text.push_str(&format!("{}\r\n", "x".repeat(78)).repeat(600));
                    }
                    let body = format!("{text}.\r\n");
                    let reply =
                        transaction(&mut c, &["a@example.net", "b@example.net"], body.as_bytes());
                    tx.send((queued_id(&reply), large)).unwrap();
                }
            });
            drop(result);
        }));
    }
    drop(tx);
    // Let some messages through, then pull the plug mid-stream.
    let mut acknowledged: Vec<(String, bool)> = Vec::new();
    while acknowledged.len() < 40 {
        acknowledged.push(
            rx.recv_timeout(Duration::from_secs(20))
                .expect("messages flow"),
        );
    }
    server.kill9();
    acknowledged.extend(rx.iter());
    for s in senders {
        let _ = s.join();
    }
    server.restart();
    let stored: Vec<String> = server
        .messages()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    for (id, _) in &acknowledged {
        assert!(
            stored.contains(id),
            "message {id} got a 250 but is not in the store after kill -9"
        );
    }
    // The contents too, the spooled ones whole (the last acknowledged,
    // nearest the kill, first).
    let large: Vec<&String> = acknowledged
        .iter()
        .rev()
        .filter(|(_, large)| *large)
        .map(|(id, _)| id)
        .take(10)
        .collect();
    assert!(!large.is_empty(), "no large message was acknowledged");
    for id in large {
        let content = server.cli_ok(&["message", "content", id]);
        assert!(
            content.contains("Subject: crash ") && content.matches(&"x".repeat(78)).count() == 600,
            "message {id}: its content did not survive kill -9 whole ({} bytes)",
            content.len()
        );
    }
    // The server takes mail again after the restart.
    let mut c = server.logged_in();
    queued_id(&transaction(
        &mut c,
        &["a@example.net"],
        format!("{}.\r\n", message("after")).as_bytes(),
    ));
}

#[test]
fn sigterm_finishes_the_transaction_in_flight() {
    let mut server = TestServer::start(BIN.as_ref(), PLAIN_AUTH);
    let mut busy = server.logged_in();
    assert!(busy
        .cmd(&format!("MAIL FROM:<{SENDER}>"))
        .starts_with("250"));
    assert!(busy.cmd("RCPT TO:<a@example.net>").starts_with("250"));
    let mut idle = server.logged_in();

    let pid_server = std::thread::spawn({
        // terminate() waits for the exit; run it beside the client.
        let mut s = std::mem::replace(&mut server, TestServer::start(BIN.as_ref(), ""));
        move || {
            let exited_cleanly = s.terminate(Duration::from_secs(15));
            (s, exited_cleanly)
        }
    });
    // The idle connection is told the server is going away.
    let r = idle.read_reply();
    assert!(r.starts_with("421 4.3.2"), "{r}");
    // The transaction in flight completes.
    std::thread::sleep(Duration::from_millis(200));
    assert!(busy.cmd("DATA").starts_with("354"));
    busy.send(format!("{}.\r\n", message("in flight")).as_bytes());
    let id = queued_id(&busy.read_reply());
    let r = busy.read_reply();
    assert!(r.starts_with("421 4.3.2"), "{r}");
    let (mut old, exited_cleanly) = pid_server.join().unwrap();
    assert!(
        exited_cleanly,
        "server exits 0 after SIGTERM:\n{}",
        old.log()
    );
    old.restart();
    let stored = old.messages();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["id"], id.as_str());
}

#[test]
fn idle_connections_are_closed_with_421() {
    let server = TestServer::start(BIN.as_ref(), "idle_timeout_secs = 1");
    let mut c = RawClient::connect(server.submission_port);
    c.cmd("EHLO slow.test");
    std::thread::sleep(Duration::from_millis(1500));
    let r = c.read_reply();
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert!(c.is_closed());
}

#[test]
fn a_listener_that_cannot_bind_names_the_port_and_the_fix() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--data-dir", dir.path().to_str().unwrap(), "serve"])
        .args(["--smtps", &format!("127.0.0.1:{port}")])
        .args(["--submission", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("--smtps"), "{err}");
}
