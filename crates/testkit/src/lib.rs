//! Test helpers: run the real `posthorn` binary on loopback ports with a
//! fresh data directory, set up an account to send with, and read back what
//! the store holds through the same CLI an operator uses.

pub mod cluster;
pub mod dns;
pub mod http;
pub mod sink;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The account every test server is set up with.
pub const ACCOUNT: &str = "shop";
pub const DOMAIN: &str = "example.com";
/// A sender address and its SMTP password.
pub const SENDER: &str = "app@example.com";
pub const SENDER_PASSWORD: &str = "sender-secret-1";
/// A second sender address of the same account.
pub const OTHER_SENDER: &str = "news@example.com";
/// An API user, its key, and a label of the account.
pub const API_USER: &str = "api1";
pub const API_KEY: &str = "api-key-secret-1";
pub const LABEL: &str = "42";

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A running `posthorn serve`, killed when dropped.
pub struct TestServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub smtps_port: u16,
    pub submission_port: u16,
    /// The HTTP API (`serve --http 127.0.0.1:PORT`).
    pub http_port: u16,
    extra_config: String,
}

impl TestServer {
    /// Start a server with the standard account set up. `extra_config` is
    /// TOML appended under `[smtp]` (e.g. `line_endings = "reject"`); it may
    /// go on with other sections. Delivery is off unless it has a
    /// `[delivery]` section (see [`TestServer::delivering`]).
    pub fn start(bin: &Path, extra_config: &str) -> Self {
        Self::start_with(bin, extra_config, |_| {})
    }

    /// [`TestServer::start`] with `setup` run on the data directory (CLI
    /// commands) before the server starts.
    pub fn start_with(bin: &Path, extra_config: &str, setup: impl FnOnce(&TestServer)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Self {
            bin: bin.to_path_buf(),
            dir,
            child: None,
            smtps_port: free_port(),
            submission_port: free_port(),
            http_port: free_port(),
            extra_config: extra_config.to_string(),
        };
        server.cli_ok(&["account", "create", ACCOUNT]);
        server.cli_ok(&["domain", "add", DOMAIN, "--account", ACCOUNT]);
        server.cli_ok(&[
            "sender",
            "add",
            SENDER,
            "--account",
            ACCOUNT,
            "--password",
            SENDER_PASSWORD,
        ]);
        server.cli_ok(&[
            "sender",
            "add",
            OTHER_SENDER,
            "--account",
            ACCOUNT,
            "--password",
            SENDER_PASSWORD,
        ]);
        server.cli_ok(&[
            "apiuser",
            "add",
            API_USER,
            "--account",
            ACCOUNT,
            "--key",
            API_KEY,
        ]);
        server.cli_ok(&["label", "add", LABEL, "--account", ACCOUNT]);
        // Tests send fast and often to the same recipients: the account's
        // message rates are lifted; rate-limit tests set them back.
        server.cli_ok(&["account", "set", ACCOUNT, "messages_per_second", "0"]);
        server.cli_ok(&["account", "set", ACCOUNT, "pair_per_hour", "0"]);
        setup(&server);
        server.spawn();
        server
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("posthorn.toml")
    }

    /// Start the server; when a port it was given was taken in the
    /// meantime (a free port is only free until someone binds it), try
    /// again on other ports.
    fn spawn(&mut self) {
        for _ in 0..5 {
            match self.spawn_once() {
                Ok(()) => return,
                Err(log) if log.contains("Address already in use") => {
                    self.smtps_port = free_port();
                    self.submission_port = free_port();
                    self.http_port = free_port();
                }
                Err(log) => panic!("{log}"),
            }
        }
        panic!(
            "no free ports for posthorn serve after 5 tries:\n{}",
            self.log()
        );
    }

    fn spawn_once(&mut self) -> Result<(), String> {
        let mut config = format!(
            "hostname = \"posthorn.test\"\n[smtp]\nimplicit_tls = [\"127.0.0.1:{}\"]\nstarttls = [\"127.0.0.1:{}\"]\nshutdown_grace_secs = 5\n{}\n",
            self.smtps_port, self.submission_port, self.extra_config
        );
        if !self.extra_config.contains("[delivery") {
            config.push_str("[delivery]\nenabled = false\n");
        }
        std::fs::write(self.config_path(), config).expect("write config");
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log file");
        let child = Command::new(&self.bin)
            .arg("--config")
            .arg(self.config_path())
            .arg("--data-dir")
            .arg(self.dir.path())
            .arg("serve")
            .arg("--http")
            .arg(format!("127.0.0.1:{}", self.http_port))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn posthorn serve");
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in [self.smtps_port, self.submission_port, self.http_port] {
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break;
                }
                if let Some(status) = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                {
                    self.child = None;
                    return Err(format!(
                        "posthorn serve exited with {status}:\n{}",
                        self.log()
                    ));
                }
                assert!(
                    Instant::now() < deadline,
                    "server did not listen on {port}:\n{}",
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Run an admin command on this server's data directory.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(args)
            .output()
            .expect("run posthorn")
    }

    /// Run an admin command that must succeed; returns its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "posthorn {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// A new HTTP API key for `account` (`apikey create`).
    pub fn http_key(&self, account: &str) -> String {
        self.cli_ok(&["apikey", "create", "--account", account])
            .trim()
            .to_string()
    }

    /// A new admin HTTP API key (`apikey create --admin`).
    pub fn admin_http_key(&self) -> String {
        self.cli_ok(&["apikey", "create", "--admin"])
            .trim()
            .to_string()
    }

    /// `queue list --json`.
    pub fn messages(&self) -> Vec<Value> {
        let out = self.cli_ok(&["queue", "list", "--json"]);
        match serde_json::from_str(&out).expect("queue list --json is JSON") {
            Value::Array(v) => v,
            other => panic!("expected an array, got {other}"),
        }
    }

    /// Replace the config text (as given to [`TestServer::start`]) used by
    /// the next [`TestServer::restart`].
    pub fn set_extra_config(&mut self, extra_config: &str) {
        self.extra_config = extra_config.to_string();
    }

    /// `message show ID --json`.
    pub fn message(&self, id: &str) -> Value {
        let out = self.cli_ok(&["message", "show", id, "--json"]);
        serde_json::from_str(&out).expect("message show --json is JSON")
    }

    /// The statuses of a message's recipients, in order.
    pub fn statuses(&self, id: &str) -> Vec<String> {
        self.message(id)["recipients"]
            .as_array()
            .expect("recipients")
            .iter()
            .map(|r| r["status"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Poll until `done` holds for the message, or panic after `timeout`
    /// with its last state and the server log.
    pub fn wait_message(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.message(id);
            if done(&m) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "message {id} did not reach the expected state in {timeout:?}: {m:#}\n--- server log ---\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The stored bytes of a message.
    pub fn content(&self, id: &str) -> Vec<u8> {
        let out = self.cli(&["message", "content", id]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Kill the server with SIGKILL and wait for it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Send SIGTERM and wait up to `limit` for the process to exit; returns
    /// whether it exited successfully.
    pub fn terminate(&mut self, limit: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start the server again on the same ports and data directory.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A minimal plaintext SMTP client over raw TCP, for byte-exact tests
/// (smuggling, long lines) that real clients would refuse to send. For TLS
/// tests use a real client.
pub struct RawClient {
    stream: BufReader<TcpStream>,
}

impl RawClient {
    pub fn connect(port: u16) -> Self {
        Self::try_connect(port).unwrap_or_else(|greeting| panic!("{greeting}"))
    }

    /// Connect and read the greeting; anything but a 220 is the `Err`.
    pub fn try_connect(port: u16) -> Result<Self, String> {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut c = Self {
            stream: BufReader::new(stream),
        };
        let greeting = c.read_reply();
        if greeting.starts_with("220 ") {
            Ok(c)
        } else {
            Err(greeting)
        }
    }

    /// Write raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.get_mut().write_all(bytes).expect("write");
    }

    /// Read one (possibly multi-line) reply; returns all its lines.
    pub fn read_reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = self.stream.read_line(&mut line).expect("read reply");
            assert!(
                n > 0,
                "connection closed while waiting for a reply; got so far: {all:?}"
            );
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    /// Send a command line and read its reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.read_reply()
    }

    /// Whether the server has closed the connection (reads to EOF).
    pub fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 64];
        matches!(self.stream.read(&mut buf), Ok(0))
    }
}

/// The base64 of a SASL PLAIN response for `user` and `pass`.
pub fn auth_plain(user: &str, pass: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"))
}

impl RawClient {
    /// Connect to `port`, EHLO and AUTH PLAIN; returns the client and the
    /// reply to AUTH. Needs `allow_plaintext_auth_on_loopback = true`.
    pub fn login(port: u16, user: &str, pass: &str) -> (RawClient, String) {
        let mut c = RawClient::connect(port);
        c.cmd("EHLO client.test");
        let reply = c.cmd(&format!("AUTH PLAIN {}", auth_plain(user, pass)));
        (c, reply)
    }
}

impl TestServer {
    /// A raw client on the STARTTLS port logged in as [`SENDER`] (the
    /// server must allow plaintext AUTH on loopback).
    pub fn logged_in(&self) -> RawClient {
        let (c, reply) = RawClient::login(self.submission_port, SENDER, SENDER_PASSWORD);
        assert!(reply.starts_with("235 2.7.0"), "{reply}");
        c
    }
}

/// The id in `250 2.0.0 Ok: queued as <ID>`; panics on any other reply.
pub fn queued_id(reply: &str) -> String {
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    reply
        .trim_end()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The `Code` of a business error reply (`... ##SES-response-json: {...}`),
/// read as a Tencent client reads it: `Response.QcloudError.Error.Code`
/// (checked to be the same as `Response.Error.Code`).
pub fn business_code(reply: &str) -> String {
    let v = business_json(reply);
    let code = v["Response"]["QcloudError"]["Error"]["Code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        v["Response"]["Error"]["Code"], code,
        "Response.Error.Code differs from QcloudError's in {reply}"
    );
    code
}

/// The JSON of a business error reply: the text after
/// `##SES-response-json: `, parsed.
pub fn business_json(reply: &str) -> Value {
    let json = reply
        .split("##SES-response-json: ")
        .nth(1)
        .unwrap_or_else(|| panic!("not a business error: {reply}"))
        .trim_end();
    serde_json::from_str(json).expect("valid JSON in the reply")
}
