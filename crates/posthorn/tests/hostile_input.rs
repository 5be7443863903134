//! Hostile or broken clients against the real server: control characters
//! in header fields refused on both doors with one code, a connection that
//! never logs in closed whatever it sends, a full disk answered `452 4.3.1`
//! (SMTP) and `503 InternalError.NoSpace` (HTTP) with `/readyz` not ready
//! until space is back, and the refusal of a From with two addresses.

use posthorn_testkit::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_posthorn");
const CONTROL_CHARACTER: &str = "FailedOperation.ControlCharacter";

fn data(c: &mut RawClient, content: &[u8]) -> String {
    let r = c.cmd(&format!("MAIL FROM:<{SENDER}>"));
    assert!(r.starts_with("250"), "{r}");
    let r = c.cmd("RCPT TO:<to@example.net>");
    assert!(r.starts_with("250"), "{r}");
    let r = c.cmd("DATA");
    assert!(r.starts_with("354"), "{r}");
    c.send(content);
    c.send(b".\r\n");
    c.read_reply()
}

fn raw_send(server: &TestServer, key: &str, content: &[u8]) -> http::Response {
    http::request(
        server.http_port,
        "POST",
        "/v1/messages/raw",
        &[
            ("Authorization", &format!("Bearer {key}")),
            ("Content-Type", "message/rfc822"),
        ],
        content,
    )
}

fn message(subject: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = format!("From: {SENDER}\r\nTo: to@example.net\r\nSubject: ").into_bytes();
    m.extend_from_slice(subject);
    m.extend_from_slice(b"\r\n\r\n");
    m.extend_from_slice(body);
    m.extend_from_slice(b"\r\n");
    m
}

#[test]
fn control_characters_in_headers_are_refused_with_one_code_on_both_doors() {
    let server = TestServer::start(BIN.as_ref(), "allow_plaintext_auth_on_loopback = true");
    let key = server.http_key(ACCOUNT);
    let mut c = server.logged_in();
    for subject in [&b"Hello\0world"[..], b"Hello\x1b[2J", b"Hello\x7f"] {
        let m = message(subject, b"text");
        let reply = data(&mut c, &m);
        assert!(reply.starts_with("554 5.0.0 "), "{reply}");
        assert_eq!(business_code(&reply), CONTROL_CHARACTER, "{reply}");
        let r = raw_send(&server, &key, &m);
        assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.error_code(), CONTROL_CHARACTER);
    }
    // A NUL in the body: refused on both doors too.
    let m = message(b"Hello", b"bin\0ary");
    assert_eq!(business_code(&data(&mut c, &m)), CONTROL_CHARACTER);
    assert_eq!(raw_send(&server, &key, &m).error_code(), CONTROL_CHARACTER);
    // The JSON API never builds such a message: the field is refused as a
    // parameter (400), before there is a message to check.
    let r = http::post_json(
        server.http_port,
        "/v1/messages",
        &key,
        &serde_json::json!({"from": SENDER, "to": "to@example.net", "subject": "Hi\u{0}", "text": "t"}),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "InvalidParameter.Subject");
    // Nothing refused was stored; the connection goes on.
    assert!(server.messages().is_empty());
    let ok = data(&mut c, &message(b"Hello\tworld", b"fine"));
    queued_id(&ok);
}

#[test]
fn a_from_with_two_addresses_is_refused_naming_both() {
    let server = TestServer::start(BIN.as_ref(), "allow_plaintext_auth_on_loopback = true");
    let mut c = server.logged_in();
    let m = format!(
        "From: {SENDER}, {OTHER_SENDER}\r\nTo: to@example.net\r\nSubject: two\r\n\r\ntext\r\n"
    );
    let reply = data(&mut c, m.as_bytes());
    assert_eq!(business_code(&reply), "FailedOperation.SenderMismatch");
    let text = business_json(&reply)["Response"]["Error"]["Message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.contains(&format!("<{SENDER}>, <{OTHER_SENDER}>")) && text.contains("2 addresses"),
        "{text}"
    );
}

/// NOOPs every 200 ms until the server answers something else; returns that
/// answer and when it came.
fn noop_until_refused(c: &mut RawClient, give_up: Duration) -> Option<(String, Duration)> {
    let start = Instant::now();
    while start.elapsed() < give_up {
        let r = c.cmd("NOOP");
        if !r.starts_with("250") {
            return Some((r, start.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

#[test]
fn a_connection_that_never_logs_in_is_closed_whatever_it_sends() {
    let server = TestServer::start(
        BIN.as_ref(),
        "allow_plaintext_auth_on_loopback = true\nlogin_timeout_secs = 1",
    );
    let mut c = RawClient::connect(server.submission_port);
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    let (reply, after) =
        noop_until_refused(&mut c, Duration::from_secs(10)).expect("closed within 10 s");
    assert!(
        reply.starts_with("421 4.7.0 posthorn.test Error: no login within 1 seconds"),
        "{reply}"
    );
    assert!(
        after >= Duration::from_millis(700) && after < Duration::from_secs(5),
        "{after:?}"
    );

    // A byte at a time does not keep it open either: the limit runs from
    // the connection's start (the idle timeout is 30 s).
    let mut c = RawClient::connect(server.submission_port);
    let start = Instant::now();
    for _ in 0..4 {
        c.send(b"N");
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = c.read_reply();
    assert!(r.starts_with("421 4.7.0"), "{r}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(c.is_closed());

    // A login within the limit ends it: the session goes on.
    let mut c = server.logged_in();
    assert!(noop_until_refused(&mut c, Duration::from_millis(1800)).is_none());
    queued_id(&data(&mut c, &message(b"after", b"text")));
}

#[test]
fn trusted_networks_need_no_login_and_have_no_login_limit() {
    let server = TestServer::start(
        BIN.as_ref(),
        "login_timeout_secs = 1\ntrusted_networks = [{ network = \"127.0.0.1/32\", account = \"shop\" }]",
    );
    let mut c = RawClient::connect(server.submission_port);
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert!(noop_until_refused(&mut c, Duration::from_millis(1800)).is_none());
    queued_id(&data(&mut c, &message(b"trusted", b"text")));
}

// ---------------------------------------------------------------------------
// A full disk

/// A tmpfs mounted over a directory, unmounted (lazily: the server may
/// still hold files in it) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mount a tmpfs of `size` over `dir`, keeping the files `dir` held.
    /// `None` (and why) when this machine does not let us mount.
    fn over(dir: &Path, size: &str) -> Result<Self, String> {
        let keep = tempfile::tempdir().map_err(|e| e.to_string())?;
        let copy = |from: &Path, to: &Path| -> Result<(), String> {
            for entry in std::fs::read_dir(from).map_err(|e| e.to_string())? {
                let entry = entry.map_err(|e| e.to_string())?;
                if entry.file_type().map_err(|e| e.to_string())?.is_file() {
                    std::fs::copy(entry.path(), to.join(entry.file_name()))
                        .map_err(|e| e.to_string())?;
                }
            }
            Ok(())
        };
        copy(dir, keep.path())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed (not root, or no mount permission in this container): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let mounted = Tmpfs(dir.to_path_buf());
        copy(keep.path(), dir)?;
        Ok(mounted)
    }

    /// Write a file until the file system is full.
    fn fill(&self) -> PathBuf {
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0x55u8; 64 * 1024];
        loop {
            if let Err(e) = f.write_all(&chunk) {
                assert_eq!(e.raw_os_error(), Some(28), "ENOSPC expected: {e}");
                break;
            }
        }
        // The last pages, byte by byte.
        while f.write_all(&chunk[..512]).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn readyz(server: &TestServer) -> http::Response {
    http::request(server.http_port, "GET", "/readyz", &[], b"")
}

#[test]
fn a_full_disk_is_answered_452_and_503_and_readyz_is_not_ready_until_space_is_back() {
    let mut mount: Option<Result<Tmpfs, String>> = None;
    let mut server = TestServer::start_with(
        BIN.as_ref(),
        "allow_plaintext_auth_on_loopback = true",
        |s| mount = Some(Tmpfs::over(s.data_dir(), "24m")),
    );
    let tmpfs = match mount.expect("setup ran") {
        Ok(t) => t,
        Err(why) => {
            eprintln!("SKIPPED: a full disk needs a tmpfs: {why}");
            return;
        }
    };
    let key = server.http_key(ACCOUNT);
    let mut c = server.logged_in();
    queued_id(&data(&mut c, &message(b"before", b"text")));
    assert_eq!(readyz(&server).status, 200);

    let filler = tmpfs.fill();
    // Larger than any room left in the WAL file.
    let big = format!("{}\r\n", "0123456789abcdef".repeat(60)).repeat(512);
    let m = message(b"full", big.as_bytes());
    let reply = data(&mut c, &m);
    assert!(reply.starts_with("452 4.3.1 "), "{reply}\n{}", server.log());
    let r = raw_send(&server, &key, &m);
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.error_code(), "InternalError.NoSpace");
    let r = readyz(&server);
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.json()["status"]
            .as_str()
            .unwrap()
            .starts_with("store out of space since "),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    // Still not ready a moment later: nothing has been freed.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(readyz(&server).status, 503);

    // Space is back: ready again without any traffic, and mail is taken.
    std::fs::remove_file(filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while readyz(&server).status != 200 {
        assert!(Instant::now() < deadline, "readyz stayed not ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    let id = queued_id(&data(&mut c, &m));
    let r = raw_send(&server, &key, &m);
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(readyz(&server).status, 200);
    // What was refused was not stored; what was accepted was.
    let subjects: Vec<String> = server
        .messages()
        .iter()
        .map(|m| m["subject"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(subjects, ["before", "full", "full"], "{id}");
    server.terminate(Duration::from_secs(10));
    drop(tmpfs);
}
