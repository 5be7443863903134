//! Real SMTP clients against the real `posthorn serve`: Python smtplib, swaks,
//! Go net/smtp and lettre each send over implicit TLS and STARTTLS, and every
//! test then checks the store: envelope, login, label and the stored bytes.
//!
//! Python is required. swaks and Go are skipped (with a message saying how to
//! install them) when they are not on PATH; CI installs them in `.ci/run`.

use posthorn_testkit::{
    TestServer, API_KEY, API_USER, LABEL, OTHER_SENDER, SENDER, SENDER_PASSWORD,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn start() -> TestServer {
    TestServer::start(Path::new(env!("CARGO_BIN_EXE_posthorn")), "")
}

/// What a test expects to find in the store about the one message it sent.
struct Expect<'a> {
    mail_from: &'a str,
    recipients: &'a [&'a str],
    auth_user: &'a str,
    label: Option<&'a str>,
}

/// The only message in the store; panics unless there is exactly one.
fn only_message(server: &TestServer) -> Value {
    let mut all = server.messages();
    assert_eq!(
        all.len(),
        1,
        "expected exactly one stored message, got {all:#?}\nserver log:\n{}",
        server.log()
    );
    all.remove(0)
}

fn check_envelope(server: &TestServer, m: &Value, want: &Expect) {
    let ctx = || format!("message: {m:#}\nserver log:\n{}", server.log());
    assert_eq!(m["account"], "shop", "{}", ctx());
    assert_eq!(m["mail_from"], want.mail_from, "{}", ctx());
    assert_eq!(m["auth_user"], want.auth_user, "{}", ctx());
    match want.label {
        None => assert!(m["label"].is_null(), "label should be null; {}", ctx()),
        Some(l) => assert_eq!(m["label"], l, "{}", ctx()),
    }
    let mut got: Vec<String> = m["recipients"]
        .as_array()
        .unwrap_or_else(|| panic!("recipients is not an array; {}", ctx()))
        .iter()
        .map(|r| {
            r["address"]
                .as_str()
                .expect("recipient address")
                .to_string()
        })
        .collect();
    got.sort();
    let mut expected: Vec<String> = want.recipients.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(got, expected, "{}", ctx());
    let id = m["id"].as_str().expect("message id");
    assert_eq!(
        m["size"].as_u64(),
        Some(server.content(id).len() as u64),
        "size should be the stored length; {}",
        ctx()
    );
}

/// Turn every bare LF and bare CR into CRLF, as the server does by default.
fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 16);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                continue;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Split at the first empty line: (header lines, body).
fn split_message(bytes: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let pos = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "no header/body separator in {:?}",
                String::from_utf8_lossy(bytes)
            )
        });
    let head = &bytes[..pos + 2];
    let lines = head
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    (lines, &bytes[pos + 4..])
}

fn no_bare_line_endings(stored: &[u8]) {
    for (i, &b) in stored.iter().enumerate() {
        let ok = match b {
            b'\r' => stored.get(i + 1) == Some(&b'\n'),
            b'\n' => i > 0 && stored[i - 1] == b'\r',
            _ => true,
        };
        assert!(
            ok,
            "bare CR or LF at byte {i} of the stored message:\n{:?}",
            String::from_utf8_lossy(stored)
        );
    }
}

/// The stored copy must be what the client sent (in canonical CRLF form):
/// every header line the client sent is there unchanged (the server may add
/// headers such as Message-ID or Date), and the body is byte for byte the
/// same. With `extra_crlf`, the client is one that ends its data with
/// `\r\n.\r\n` whatever the message ends with (lettre, swaks, and smtplib
/// when the message ends in a bare LF), so by RFC 5321 the content it sent is
/// the message plus one more CRLF.
fn check_content(server: &TestServer, m: &Value, sent: &[u8], extra_crlf: bool) {
    let id = m["id"].as_str().expect("message id");
    let stored = server.content(id);
    no_bare_line_endings(&stored);
    let mut expected = crlf(sent);
    if extra_crlf {
        expected.extend_from_slice(b"\r\n");
    }
    let show = || {
        format!(
            "stored:\n{}\n--- expected:\n{}",
            String::from_utf8_lossy(&stored),
            String::from_utf8_lossy(&expected)
        )
    };
    let (stored_head, stored_body) = split_message(&stored);
    let (sent_head, sent_body) = split_message(&expected);
    for line in &sent_head {
        assert!(
            stored_head.contains(line),
            "header line {:?} missing from the stored copy\n{}",
            String::from_utf8_lossy(line),
            show()
        );
    }
    assert!(stored_body == sent_body, "bodies differ\n{}", show());
}

fn output_text(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout:\n{}\n--- stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn decode_base64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .unwrap_or_else(|e| panic!("bad base64 {s:?}: {e}"))
}

// ---------------------------------------------------------------------------
// Python smtplib
// ---------------------------------------------------------------------------

/// Common part of every Python script: argv is
/// `mode port user password mail_from rcpt,rcpt,...` and the script defines
/// `connect()` (an authenticated `smtplib.SMTP`/`SMTP_SSL`, with debug output
/// on stderr) and `done(msg_bytes)` (prints what was sent as base64).
const PY_PRELUDE: &str = r#"
import base64, smtplib, ssl, sys
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

mode, port, user, password, mail_from, rcpts = sys.argv[1:7]
port = int(port)
rcpts = rcpts.split(",")

def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx

def connect(auth=None):
    if mode == "ssl":
        s = smtplib.SMTP_SSL("127.0.0.1", port, context=tls_context(), timeout=20)
    else:
        s = smtplib.SMTP("127.0.0.1", port, timeout=20)
        s.set_debuglevel(1)
        code, resp = s.starttls(context=tls_context())
        assert code == 220, (code, resp)
    s.set_debuglevel(1)
    if auth == "LOGIN":
        s.ehlo_or_helo_if_needed()
        s.user, s.password = user, password
        code, resp = s.auth("LOGIN", s.auth_login)
        assert code == 235, (code, resp)
    else:
        code, resp = s.login(user, password)
        assert code == 235, (code, resp)
    return s

def new_message(subject, to, cc=None, body="Hello from smtplib.\nSecond line.\n"):
    msg = EmailMessage()
    msg["From"] = "Python App <%s>" % mail_from
    msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg.set_content(body)
    return msg

def done(sent):
    print("SENT " + base64.b64encode(sent).decode())
"#;

/// Run `python3 -c PRELUDE+script mode port user password from rcpts` and
/// return the bytes the script says it sent.
fn python(
    script: &str,
    mode: &str,
    port: u16,
    user: &str,
    password: &str,
    from: &str,
    rcpts: &[&str],
) -> Vec<Vec<u8>> {
    let program = format!("{PY_PRELUDE}\n{script}");
    let out = Command::new("python3")
        .arg("-c")
        .arg(&program)
        .args([
            mode,
            &port.to_string(),
            user,
            password,
            from,
            &rcpts.join(","),
        ])
        .output()
        .expect("python3 is required for these tests (it must be on PATH)");
    assert!(
        out.status.success(),
        "python smtplib failed\n{}",
        output_text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let sent: Vec<Vec<u8>> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("SENT "))
        .map(decode_base64)
        .collect();
    assert!(
        !sent.is_empty(),
        "the script printed no SENT line\n{}",
        output_text(&out)
    );
    sent
}

#[test]
fn python_smtp_ssl_sender_login() {
    let server = start();
    let rcpt = "alice@example.net";
    let sent = python(
        r#"
s = connect()
msg = new_message("Hello over SMTPS", rcpts)
s.send_message(msg)
s.quit()
done(msg.as_bytes())
"#,
        "ssl",
        server.smtps_port,
        SENDER,
        SENDER_PASSWORD,
        SENDER,
        &[rcpt],
    );
    let m = only_message(&server);
    check_envelope(
        &server,
        &m,
        &Expect {
            mail_from: SENDER,
            recipients: &[rcpt],
            auth_user: SENDER,
            label: None,
        },
    );
    check_content(&server, &m, &sent[0], false);
}

#[test]
fn python_starttls_auth_login() {
    let server = start();
    let rcpt = "bob@example.org";
    let sent = python(
        r#"
s = connect(auth="LOGIN")
msg = new_message("Hello over STARTTLS", rcpts)
s.send_message(msg)
s.quit()
done(msg.as_bytes())
"#,
        "starttls",
        server.submission_port,
        SENDER,
        SENDER_PASSWORD,
        SENDER,
        &[rcpt],
    );
    let m = only_message(&server);
    check_envelope(
        &server,
        &m,
        &Expect {
            mail_from: SENDER,
            recipients: &[rcpt],
            auth_user: SENDER,
            label: None,
        },
    );
    check_content(&server, &m, &sent[0], false);
}

#[test]
fn python_api_user_with_label() {
    let server = start();
    let rcpt = "carol@example.net";
    let login = format!("{API_USER}#{LABEL}");
    let sent = python(
        r#"
s = connect()
msg = new_message("Labelled", rcpts)
s.send_message(msg)
s.quit()
done(msg.as_bytes())
"#,
        "starttls",
        server.submission_port,
        &login,
        API_KEY,
        OTHER_SENDER,
        &[rcpt],
    );
    let m = only_message(&server);
    check_envelope(
        &server,
        &m,
        &Expect {
            mail_from: OTHER_SENDER,
            recipients: &[rcpt],
            auth_user: API_USER,
            label: Some(LABEL),
        },
    );
    check_content(&server, &m, &sent[0], false);
}

#[test]
fn python_sendmail_bytes_with_bare_lf() {
    let server = start();
    let rcpt = "dave@example.net";
    let sent = python(
        r#"
s = connect()
msg = new_message("Bare LF", rcpts, body="First line.\nSecond line.\n\nAfter a blank line.\n")
raw = msg.as_bytes()
assert b"\r" not in raw and b"\n" in raw, raw
refused = s.sendmail(mail_from, rcpts, raw)
assert refused == {}, refused
s.quit()
done(raw)
"#,
        "ssl",
        server.smtps_port,
        SENDER,
        SENDER_PASSWORD,
        SENDER,
        &[rcpt],
    );
    assert!(
        !sent[0].contains(&b'\r'),
        "the script should have sent bare LFs"
    );
    let m = only_message(&server);
    check_envelope(
        &server,
        &m,
        &Expect {
            mail_from: SENDER,
            recipients: &[rcpt],
            auth_user: SENDER,
            label: None,
        },
    );
    // Stored with CRLF line endings (checked inside), content otherwise intact.
    // smtplib ends data that does not end in CRLF with `\r\n.\r\n`.
    check_content(&server, &m, &sent[0], true);
}

/// smtplib dot-stuffs after every `\n`, also a bare one, so a line starting
/// with a dot arrives as `\n..line`; with `line_endings = "fix"` the stored
/// copy must have the line as the client meant it.
#[test]
fn python_sendmail_bare_lf_with_leading_dots() {
    let server = start();
    let rcpt = "erin@example.net";
    let sent = python(
        r#"
s = connect()
msg = new_message("Dots", rcpts, body="Line one.\n.starts with a dot\n..two dots\n.\nlast\n")
raw = msg.as_bytes()
refused = s.sendmail(mail_from, rcpts, raw)
assert refused == {}, refused
s.quit()
done(raw)
"#,
        "starttls",
        server.submission_port,
        SENDER,
        SENDER_PASSWORD,
        SENDER,
        &[rcpt],
    );
    let m = only_message(&server);
    check_envelope(
        &server,
        &m,
        &Expect {
            mail_from: SENDER,
            recipients: &[rcpt],
            auth_user: SENDER,
            label: None,
        },
    );
    check_content(&server, &m, &sent[0], true);
}

#[test]
fn python_several_recipients_to_cc_and_envelope_only() {
    let server = start();
    let to = ["to1@example.net", "to2@example.org"];
    let cc = ["cc1@example.com"];
    let hidden = "hidden@example.net";
    let all = [to[0], to[1], cc[0], hidden];
    let sent = python(
        r#"
s = connect()
to, cc, hidden = rcpts[0:2], rcpts[2:3], rcpts[3]
msg = new_message("To and Cc", to, cc=cc)
raw = msg.as_bytes().replace(b"\n", b"\r\n")
refused = s.sendmail(mail_from, to + cc + [hidden], raw)
assert refused == {}, refused
s.quit()
done(raw)
"#,
        "ssl",
        server.smtps_port,
        SENDER,
        SENDER_PASSWORD,
        SENDER,
        &all,
    );
    let m = only_message(&server);
    check_envelope(
        &server,
        &m,
        &Expect {
            mail_from: SENDER,
            recipients: &all,
            auth_user: SENDER,
            label: None,
        },
    );
    check_content(&server, &m, &sent[0], false);
}

#[test]
fn python_two_messages_on_one_connection() {
    let server = start();
    let sent = python(
        r#"
s = connect()
first = new_message("First of two", rcpts[0:1])
second = new_message("Second of two", rcpts[1:2])
code, resp = s.mail(mail_from); assert code == 250, (code, resp)
code, resp = s.rcpt(rcpts[0]); assert code == 250, (code, resp)
code, resp = s.data(first.as_bytes().replace(b"\n", b"\r\n"))
assert code == 250 and b"queued as" in resp, (code, resp)
s.send_message(second)
s.quit()
done(first.as_bytes())
done(second.as_bytes())
"#,
        "starttls",
        server.submission_port,
        SENDER,
        SENDER_PASSWORD,
        SENDER,
        &["one@example.net", "two@example.net"],
    );
    let all = server.messages();
    assert_eq!(all.len(), 2, "{all:#?}");
    for (i, rcpt) in ["one@example.net", "two@example.net"]
        .into_iter()
        .enumerate()
    {
        let m = all
            .iter()
            .find(|m| m["recipients"][0]["address"] == rcpt)
            .unwrap_or_else(|| panic!("no message to {rcpt}: {all:#?}"));
        check_envelope(
            &server,
            m,
            &Expect {
                mail_from: SENDER,
                recipients: &[rcpt],
                auth_user: SENDER,
                label: None,
            },
        );
        check_content(&server, m, &sent[i], false);
    }
}

// ---------------------------------------------------------------------------
// swaks
// ---------------------------------------------------------------------------

fn have(program: &str, version_arg: &str) -> bool {
    Command::new(program)
        .arg(version_arg)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn have_swaks() -> bool {
    if have("swaks", "--version") {
        return true;
    }
    eprintln!(
        "skipped: swaks not installed (apt-get install swaks libnet-ssleay-perl libio-socket-ssl-perl libauthen-sasl-perl)"
    );
    false
}

#[derive(Clone, Copy)]
enum SwaksTls {
    StartTls,
    OnConnect,
}

/// Send one message with swaks and check the store.
/// Who sends: the login, its password, the envelope sender it uses, and
/// what the store should record as `auth_user` and `label`.
struct Login {
    user: String,
    password: &'static str,
    from: &'static str,
    auth_user: &'static str,
    label: Option<&'static str>,
}

/// Logged in as the sender address itself.
fn sender_login() -> Login {
    Login {
        user: SENDER.to_string(),
        password: SENDER_PASSWORD,
        from: SENDER,
        auth_user: SENDER,
        label: None,
    }
}

/// Logged in as `api1#42`, sending from the account's other address.
fn api_label_login() -> Login {
    Login {
        user: format!("{API_USER}#{LABEL}"),
        password: API_KEY,
        from: OTHER_SENDER,
        auth_user: API_USER,
        label: Some(LABEL),
    }
}

fn swaks_case(tls: SwaksTls, auth: &str, pipeline: bool, login: Login) {
    let from = login.from;
    if !have_swaks() {
        return;
    }
    let server = start();
    let dir = tempfile::tempdir().expect("temp dir");
    let rcpt = "swaks-rcpt@example.net";
    let subject = format!("swaks {auth} pipeline={pipeline}");
    let message = format!(
        "From: Swaks <{from}>\r\nTo: <{rcpt}>\r\nSubject: {subject}\r\nDate: Mon, 29 Jun 2009 18:39:03 +0800\r\nMessage-ID: <swaks-1@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nHello from swaks.\r\nSecond line.\r\n"
    );
    let file = dir.path().join("message.eml");
    std::fs::write(&file, &message).expect("write message");
    let (port, tls_flag) = match tls {
        SwaksTls::StartTls => (server.submission_port, "--tls"),
        SwaksTls::OnConnect => (server.smtps_port, "--tls-on-connect"),
    };
    let mut cmd = Command::new("swaks");
    cmd.args([
        "--server",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        tls_flag,
    ])
    .args([
        "--auth",
        auth,
        "--auth-user",
        &login.user,
        "--auth-password",
        login.password,
    ])
    .args([
        "--from",
        from,
        "--to",
        rcpt,
        "--ehlo",
        "swaks.test",
        "--timeout",
        "20",
    ])
    .arg("--data")
    .arg(format!("@{}", file.display()));
    if pipeline {
        cmd.arg("--pipeline");
    }
    let out = cmd.output().expect("run swaks");
    assert!(
        out.status.success(),
        "swaks failed\n{}\nserver log:\n{}",
        output_text(&out),
        server.log()
    );
    let transcript = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = transcript.lines().map(str::trim).collect();
    let has = |l: &str| {
        lines
            .iter()
            .any(|x| *x == l || x.starts_with(&format!("{l} ")))
    };
    match tls {
        SwaksTls::StartTls => assert!(has("-> STARTTLS"), "no STARTTLS:\n{transcript}"),
        SwaksTls::OnConnect => assert!(
            !has("-> STARTTLS"),
            "STARTTLS on implicit TLS:\n{transcript}"
        ),
    }
    assert!(
        has(&format!("~> AUTH {auth}")),
        "swaks did not use AUTH {auth}:\n{transcript}"
    );
    if pipeline {
        let mail = lines
            .iter()
            .position(|l| l.starts_with("~> MAIL FROM:"))
            .unwrap_or_else(|| panic!("no MAIL FROM:\n{transcript}"));
        assert!(
            lines[mail + 1].starts_with("~> RCPT TO:") && lines[mail + 2] == "~> DATA",
            "MAIL, RCPT and DATA were not pipelined:\n{transcript}"
        );
    }
    let queued_id = lines
        .iter()
        .find_map(|l| {
            l.split_once("queued as ")
                .map(|(_, id)| id.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no 'queued as' in the transcript:\n{transcript}"));
    let m = only_message(&server);
    assert_eq!(
        m["id"],
        queued_id.as_str(),
        "the ID in the 250 reply is the stored message's ID"
    );
    check_envelope(
        &server,
        &m,
        &Expect {
            mail_from: from,
            recipients: &[rcpt],
            auth_user: login.auth_user,
            label: login.label,
        },
    );
    check_content(&server, &m, message.as_bytes(), true);
}

#[test]
fn swaks_starttls_auth_login() {
    swaks_case(SwaksTls::StartTls, "LOGIN", false, sender_login());
}

#[test]
fn swaks_starttls_auth_plain() {
    swaks_case(SwaksTls::StartTls, "PLAIN", false, sender_login());
}

#[test]
fn swaks_tls_on_connect_auth_login() {
    swaks_case(SwaksTls::OnConnect, "LOGIN", false, sender_login());
}

#[test]
fn swaks_tls_on_connect_auth_plain_api_user_label() {
    swaks_case(SwaksTls::OnConnect, "PLAIN", false, api_label_login());
}

#[test]
fn swaks_starttls_pipeline() {
    swaks_case(SwaksTls::StartTls, "PLAIN", true, sender_login());
}

#[test]
fn swaks_tls_on_connect_pipeline() {
    swaks_case(SwaksTls::OnConnect, "LOGIN", true, sender_login());
}

// ---------------------------------------------------------------------------
// Go net/smtp
// ---------------------------------------------------------------------------

/// argv: mode addr host user password from rcpt,rcpt message-file
const GO_PROGRAM: &str = r#"package main

import (
	"crypto/tls"
	"fmt"
	"net/smtp"
	"os"
	"strings"
)

func fail(what string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
	os.Exit(1)
}

// The seed's SendMailWithTLS: tls.Dial, smtp.NewClient, Auth, Mail, Rcpt,
// Data, Quit (with InsecureSkipVerify for the self-signed certificate).
func sendMailWithTLS(addr, host string, auth smtp.Auth, from string, to []string, msg []byte) error {
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return fmt.Errorf("tls.Dial: %w", err)
	}
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return fmt.Errorf("NewClient: %w", err)
	}
	defer c.Close()
	if ok, _ := c.Extension("AUTH"); !ok {
		return fmt.Errorf("server does not offer AUTH over TLS")
	}
	if err = c.Auth(auth); err != nil {
		return fmt.Errorf("Auth: %w", err)
	}
	if err = c.Mail(from); err != nil {
		return fmt.Errorf("Mail: %w", err)
	}
	for _, a := range to {
		if err = c.Rcpt(a); err != nil {
			return fmt.Errorf("Rcpt: %w", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("Data: %w", err)
	}
	if _, err = w.Write(msg); err != nil {
		return fmt.Errorf("Write: %w", err)
	}
	if err = w.Close(); err != nil {
		return fmt.Errorf("Data close: %w", err)
	}
	return c.Quit()
}

func main() {
	mode, addr, host, user, pass, from := os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6]
	to := strings.Split(os.Args[7], ",")
	msg, err := os.ReadFile(os.Args[8])
	if err != nil {
		fail("read message", err)
	}
	auth := smtp.PlainAuth("", user, pass, host)
	switch mode {
	case "tls":
		err = sendMailWithTLS(addr, host, auth, from, to, msg)
	case "sendmail":
		err = smtp.SendMail(addr, auth, from, to, msg)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		fail("send", err)
	}
	fmt.Println("Send mail success!")
}
"#;

fn have_go() -> bool {
    if have("go", "version") {
        return true;
    }
    eprintln!("skipped: go not installed (apt-get install golang-go)");
    false
}

/// Run the Go program; `env` adds environment variables.
fn go_send(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("go.mod"), "module t\n\ngo 1.19\n").expect("write go.mod");
    std::fs::write(dir.path().join("main.go"), GO_PROGRAM).expect("write main.go");
    // A build cache shared by the tests (and kept between runs) so only the
    // first `go run` compiles anything.
    let cache_root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("go");
    let mut cmd = Command::new("go");
    cmd.arg("run").arg(".").args(args).current_dir(dir.path());
    if std::env::var_os("GOCACHE").is_none() {
        cmd.env("GOCACHE", cache_root.join("cache"));
    }
    if std::env::var_os("GOPATH").is_none() {
        cmd.env("GOPATH", cache_root.join("path"));
    }
    cmd.env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GO111MODULE", "on");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run go")
}

/// A multipart/mixed message with a base64 attachment, built the way the
/// seed's Test465Attachment builds it (with the CRLFs it meant).
fn go_seed_message(from: &str, to: &str, subject: &str) -> Vec<u8> {
    use base64::Engine as _;
    let boundary = "GoBoundary";
    let mut m = String::new();
    m += &format!("From: test <{from}>\r\nTo: {to}\r\nSubject: {subject}\r\n");
    m += &format!("Content-Type: multipart/mixed;boundary={boundary}\r\nMime-Version: 1.0\r\n");
    m += "Date: Mon, 29 Jun 2009 18:39:03 +0800\r\n";
    m += &format!("\r\n--{boundary}\r\nContent-Type:text/html; charset=UTF-8\r\n\r\n");
    m += "<!DOCTYPE html>\r\n<html><head><meta charset=\"utf-8\"><title>hello world</title></head>\r\n";
    m += "<body><h1>My first heading</h1><p>My first paragraph.</p></body></html>\r\n";
    m += &format!("\r\n--{boundary}\r\nContent-Transfer-Encoding:base64\r\nContent-Disposition:attachment\r\n");
    m += "Content-Type:application/octet-stream;name=\"go.mod\"\r\n\r\n";
    let payload: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&payload);
    for chunk in b64.as_bytes().chunks(76) {
        m += std::str::from_utf8(chunk).expect("ascii");
        m += "\r\n";
    }
    m += &format!("\r\n--{boundary}--\r\n");
    m.into_bytes()
}

#[test]
fn go_seed_tls_dial_plain_auth_on_implicit_tls() {
    if !have_go() {
        return;
    }
    let server = start();
    let dir = tempfile::tempdir().expect("temp dir");
    let rcpt = "go-rcpt@example.net";
    let message = go_seed_message(SENDER, rcpt, "Test465Attachment");
    let file = dir.path().join("message.eml");
    std::fs::write(&file, &message).expect("write message");
    let addr = format!("127.0.0.1:{}", server.smtps_port);
    let out = go_send(
        &[
            "tls",
            &addr,
            "127.0.0.1",
            SENDER,
            SENDER_PASSWORD,
            SENDER,
            rcpt,
            file.to_str().expect("utf-8 path"),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "go failed\n{}\nserver log:\n{}",
        output_text(&out),
        server.log()
    );
    let m = only_message(&server);
    check_envelope(
        &server,
        &m,
        &Expect {
            mail_from: SENDER,
            recipients: &[rcpt],
            auth_user: SENDER,
            label: None,
        },
    );
    check_content(&server, &m, &message, false);
}

/// The real `smtp.SendMail` on the STARTTLS port: it verifies the
/// certificate against the system roots, so SSL_CERT_FILE points at the
/// server's generated certificate (made for "localhost"), and PlainAuth's
/// host is "localhost" too. Logs in as an API user with a label.
#[test]
fn go_sendmail_starttls_verified_certificate() {
    if !have_go() {
        return;
    }
    let server = start();
    let cert = server.data_dir().join("tls").join("cert.pem");
    assert!(
        cert.exists(),
        "no generated certificate at {}",
        cert.display()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let rcpts = ["go-a@example.net", "go-b@example.org"];
    let message = format!(
        "From: <{OTHER_SENDER}>\r\nTo: {}, {}\r\nSubject: SendMail over STARTTLS\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nHello from Go's smtp.SendMail.\r\n",
        rcpts[0], rcpts[1]
    )
    .into_bytes();
    let file = dir.path().join("message.eml");
    std::fs::write(&file, &message).expect("write message");
    let login = format!("{API_USER}#{LABEL}");
    let addr = format!("localhost:{}", server.submission_port);
    let out = go_send(
        &[
            "sendmail",
            &addr,
            "localhost",
            &login,
            API_KEY,
            OTHER_SENDER,
            &rcpts.join(","),
            file.to_str().expect("utf-8 path"),
        ],
        &[("SSL_CERT_FILE", &cert), ("SSL_CERT_DIR", dir.path())],
    );
    assert!(
        out.status.success(),
        "go failed\n{}\nserver log:\n{}",
        output_text(&out),
        server.log()
    );
    let m = only_message(&server);
    check_envelope(
        &server,
        &m,
        &Expect {
            mail_from: OTHER_SENDER,
            recipients: &rcpts,
            auth_user: API_USER,
            label: Some(LABEL),
        },
    );
    check_content(&server, &m, &message, false);
}

// ---------------------------------------------------------------------------
// lettre
// ---------------------------------------------------------------------------

mod lettre_client {
    use super::*;
    use lettre::message::{header::ContentType, Mailbox, Message};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{SmtpTransport, Transport};

    fn tls_parameters() -> TlsParameters {
        TlsParameters::builder("localhost".to_string())
            .dangerous_accept_invalid_certs(true)
            .build_rustls()
            .expect("rustls parameters")
    }

    fn message(from: &str, to: &[&str], cc: &[&str], subject: &str) -> Message {
        let mut b = Message::builder()
            .from(
                format!("Lettre App <{from}>")
                    .parse::<Mailbox>()
                    .expect("from"),
            )
            .subject(subject)
            .header(ContentType::TEXT_PLAIN);
        for t in to {
            b = b.to(t.parse().expect("to"));
        }
        for c in cc {
            b = b.cc(c.parse().expect("cc"));
        }
        b.body(String::from("Hello from lettre.\r\nSecond line.\r\n"))
            .expect("message")
    }

    /// Send and return the message ID from the `250 ... queued as ID` reply.
    fn send(tls: Tls, port: u16, user: &str, password: &str, msg: &Message) -> String {
        let transport = SmtpTransport::builder_dangerous("127.0.0.1")
            .port(port)
            .tls(tls)
            .hello_name(lettre::transport::smtp::extension::ClientId::Domain(
                "lettre.test".into(),
            ))
            .credentials(Credentials::new(user.to_string(), password.to_string()))
            .timeout(Some(std::time::Duration::from_secs(20)))
            .build();
        let response = transport.send(msg).expect("lettre send");
        assert!(response.is_positive(), "{response:?}");
        let text: Vec<&str> = response.message().collect();
        text.iter()
            .find_map(|l| {
                l.split_once("queued as ")
                    .map(|(_, id)| id.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no 'queued as' in {response:?}"))
    }

    #[test]
    fn lettre_implicit_tls_sender_login() {
        let server = start();
        let to = ["l-to@example.net"];
        let cc = ["l-cc@example.org"];
        let msg = message(SENDER, &to, &cc, "lettre over SMTPS");
        let id = send(
            Tls::Wrapper(tls_parameters()),
            server.smtps_port,
            SENDER,
            SENDER_PASSWORD,
            &msg,
        );
        let m = only_message(&server);
        assert_eq!(m["id"], id.as_str());
        check_envelope(
            &server,
            &m,
            &Expect {
                mail_from: SENDER,
                recipients: &[to[0], cc[0]],
                auth_user: SENDER,
                label: None,
            },
        );
        check_content(&server, &m, &msg.formatted(), true);
    }

    #[test]
    fn lettre_starttls_required_api_user_label() {
        let server = start();
        let to = ["l-starttls@example.net"];
        let msg = message(OTHER_SENDER, &to, &[], "lettre over STARTTLS");
        let login = format!("{API_USER}#{LABEL}");
        let id = send(
            Tls::Required(tls_parameters()),
            server.submission_port,
            &login,
            API_KEY,
            &msg,
        );
        let m = only_message(&server);
        assert_eq!(m["id"], id.as_str());
        check_envelope(
            &server,
            &m,
            &Expect {
                mail_from: OTHER_SENDER,
                recipients: &to,
                auth_user: API_USER,
                label: Some(LABEL),
            },
        );
        check_content(&server, &m, &msg.formatted(), true);
    }
}
