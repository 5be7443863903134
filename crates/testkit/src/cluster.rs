//! Cluster tests: several real `posthorn serve` processes sharing one
//! PostgreSQL database (the store) and Redis (rate limits).
//!
//! - [`ClusterDb`]: a database of its own per test (created on the server
//!   named by `POSTHORN_TEST_POSTGRES_URL`, dropped `WITH (FORCE)` when
//!   dropped) and a Redis key prefix of its own (its keys deleted when
//!   dropped). [`ClusterDb::create`] returns `None`, after printing why,
//!   when `POSTHORN_TEST_POSTGRES_URL` or `REDIS_URL` is unset: the test
//!   then skips.
//! - [`Node`]: one `posthorn serve` with its own data directory, config
//!   file and loopback ports; admin commands run with `--config` on that
//!   file, so they reach the cluster's database.
//! - [`SmtpTls`]: a byte-level SMTP client that does STARTTLS (any
//!   certificate) and AUTH PLAIN and reports every failure as a value
//!   (reply, closed connection, timeout), never a panic, so a test can
//!   count what a client saw while the database was away.
//! - [`PgClient`] and [`redis_delete_prefix`]: just enough of the
//!   PostgreSQL and Redis protocols for setup, cleanup and fault injection
//!   (trust or cleartext-password authentication; simple queries).

use crate::{free_port, ACCOUNT, DOMAIN, SENDER, SENDER_PASSWORD};
use serde_json::Value;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The variables a cluster test needs.
pub const POSTGRES_ENV: &str = "POSTHORN_TEST_POSTGRES_URL";
pub const REDIS_ENV: &str = "REDIS_URL";

// ---------------------------------------------------------------------------
// PostgreSQL: a minimal client (protocol 3.0, simple query)
// ---------------------------------------------------------------------------

/// The parts of a `postgres://user:password@host:port/db?…` URL.
#[derive(Clone, Debug)]
pub struct PgUrl {
    pub user: String,
    pub password: Option<String>,
    pub host: String,
    pub port: u16,
    pub database: String,
    /// Everything from `?` on (kept when the database is replaced).
    pub query: String,
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl PgUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| format!("{url:?} is not a postgres:// URL"))?;
        let (rest, query) = match rest.find('?') {
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, String::new()),
        };
        let (authority, database) = match rest.split_once('/') {
            Some((a, d)) => (a, percent_decode(d)),
            None => (rest, String::new()),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((u, p)) => (percent_decode(u), Some(percent_decode(p))),
                None => (percent_decode(u), None),
            },
            None => ("postgres".to_string(), None),
        };
        // `host`, `host:port`, `[v6]` or `[v6]:port`.
        let (host, port) = match hostport.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((h, rest)) => (h.to_string(), rest.strip_prefix(':')),
                None => return Err(format!("bad host in {url:?}")),
            },
            None => match hostport.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            },
        };
        let port = match port {
            Some(p) => p.parse().map_err(|_| format!("bad port in {url:?}"))?,
            None => 5432,
        };
        let host = if host.is_empty() {
            "127.0.0.1".to_string()
        } else {
            host
        };
        let database = if database.is_empty() {
            user.clone()
        } else {
            database
        };
        Ok(Self {
            user,
            password,
            host,
            port,
            database,
            query,
        })
    }

    /// The same server and login with another database.
    pub fn with_database(&self, database: &str) -> String {
        let auth = match &self.password {
            Some(p) => format!("{}:{}", self.user, p),
            None => self.user.clone(),
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!(
            "postgres://{auth}@{host}:{}/{database}{}",
            self.port, self.query
        )
    }
}

/// One connection speaking the simple query protocol.
pub struct PgClient {
    stream: TcpStream,
}

/// A result row; `None` is SQL NULL.
pub type PgRow = Vec<Option<String>>;

impl PgClient {
    pub fn connect(url: &str) -> Result<Self, String> {
        let u = PgUrl::parse(url)?;
        let addr = (u.host.as_str(), u.port)
            .to_socket_addrs()
            .map_err(|e| format!("resolve {}: {e}", u.host))?
            .next()
            .ok_or_else(|| format!("no address for {}", u.host))?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("connect to PostgreSQL at {addr}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let mut c = Self { stream };
        let mut body = Vec::new();
        body.extend_from_slice(&196_608u32.to_be_bytes()); // protocol 3.0
        for (k, v) in [
            ("user", u.user.as_str()),
            ("database", u.database.as_str()),
            ("application_name", "posthorn-testkit"),
        ] {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        msg.extend_from_slice(&body);
        c.stream.write_all(&msg).map_err(|e| e.to_string())?;
        loop {
            let (tag, body) = c.read_message()?;
            match tag {
                b'R' => {
                    let code = u32::from_be_bytes(body[..4].try_into().unwrap());
                    match code {
                        0 => {}
                        3 => {
                            let pass = u.password.clone().ok_or(
                                "PostgreSQL asks for a password and the URL has none",
                            )?;
                            let mut p = pass.into_bytes();
                            p.push(0);
                            c.send(b'p', &p)?;
                        }
                        other => {
                            return Err(format!(
                                "PostgreSQL asks for authentication method {other}; the test client speaks only trust and cleartext password"
                            ))
                        }
                    }
                }
                b'E' => {
                    return Err(format!(
                        "PostgreSQL refused the login: {}",
                        error_text(&body)
                    ))
                }
                b'Z' => return Ok(c),
                _ => {} // ParameterStatus, BackendKeyData, notices
            }
        }
    }

    fn send(&mut self, tag: u8, body: &[u8]) -> Result<(), String> {
        let mut msg = vec![tag];
        msg.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        msg.extend_from_slice(body);
        self.stream.write_all(&msg).map_err(|e| e.to_string())
    }

    fn read_message(&mut self) -> Result<(u8, Vec<u8>), String> {
        let mut head = [0u8; 5];
        self.stream
            .read_exact(&mut head)
            .map_err(|e| format!("read from PostgreSQL: {e}"))?;
        let len = u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        self.stream
            .read_exact(&mut body)
            .map_err(|e| format!("read from PostgreSQL: {e}"))?;
        Ok((head[0], body))
    }

    /// Run one or more statements; the rows of every result, or the
    /// server's error message.
    pub fn query(&mut self, sql: &str) -> Result<Vec<PgRow>, String> {
        let mut q = sql.as_bytes().to_vec();
        q.push(0);
        self.send(b'Q', &q)?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            let (tag, body) = self.read_message()?;
            match tag {
                b'D' => {
                    let n = u16::from_be_bytes([body[0], body[1]]) as usize;
                    let mut at = 2;
                    let mut row = Vec::with_capacity(n);
                    for _ in 0..n {
                        let len = i32::from_be_bytes(body[at..at + 4].try_into().unwrap());
                        at += 4;
                        if len < 0 {
                            row.push(None);
                        } else {
                            let len = len as usize;
                            row.push(Some(
                                String::from_utf8_lossy(&body[at..at + len]).into_owned(),
                            ));
                            at += len;
                        }
                    }
                    rows.push(row);
                }
                b'E' => error = Some(error_text(&body)),
                b'Z' => {
                    return match error {
                        Some(e) => Err(e),
                        None => Ok(rows),
                    }
                }
                _ => {} // RowDescription, CommandComplete, notices
            }
        }
    }
}

impl Drop for PgClient {
    fn drop(&mut self) {
        let _ = self.send(b'X', &[]);
    }
}

/// The severity, code and message of an ErrorResponse.
fn error_text(body: &[u8]) -> String {
    let mut parts = Vec::new();
    let mut at = 0;
    while at < body.len() && body[at] != 0 {
        let field = body[at];
        let end = body[at + 1..]
            .iter()
            .position(|&b| b == 0)
            .map_or(body.len(), |p| at + 1 + p);
        let value = String::from_utf8_lossy(&body[at + 1..end]).into_owned();
        if matches!(field, b'S' | b'C' | b'M') {
            parts.push(value);
        }
        at = end + 1;
    }
    parts.join(" ")
}

// ---------------------------------------------------------------------------
// Redis: delete a prefix's keys
// ---------------------------------------------------------------------------

fn resp_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// One RESP reply as text (arrays flattened; errors as `Err`).
fn resp_read(r: &mut impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line.trim_end();
    let (kind, rest) = line.split_at(1.min(line.len()));
    match kind {
        "+" | ":" => Ok(rest.to_string()),
        "-" => Err(rest.to_string()),
        "$" => {
            let n: i64 = rest.parse().map_err(|_| format!("bad reply {line:?}"))?;
            if n < 0 {
                return Ok(String::new());
            }
            let mut buf = vec![0u8; n as usize + 2];
            r.read_exact(&mut buf).map_err(|e| e.to_string())?;
            Ok(String::from_utf8_lossy(&buf[..n as usize]).into_owned())
        }
        "*" => {
            let n: i64 = rest.parse().map_err(|_| format!("bad reply {line:?}"))?;
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                items.push(resp_read(r)?);
            }
            Ok(items.join(" "))
        }
        _ => Err(format!("bad reply {line:?}")),
    }
}

/// Delete every key starting with `prefix` on the Redis at `url`
/// (`redis://[:password@]host[:port][/db]`); returns how many.
pub fn redis_delete_prefix(url: &str, prefix: &str) -> Result<u64, String> {
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| format!("{url:?} is not a redis:// URL"))?;
    let (authority, db) = match rest.split_once('/') {
        Some((a, d)) => (a, d.to_string()),
        None => (rest, String::new()),
    };
    let (password, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (
            u.split_once(':')
                .map(|(_, p)| p.to_string())
                .filter(|p| !p.is_empty()),
            h,
        ),
        None => (None, authority),
    };
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:6379")
    };
    let stream = TcpStream::connect(&hostport).map_err(|e| format!("connect {hostport}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut w = stream.try_clone().map_err(|e| e.to_string())?;
    let mut r = BufReader::new(stream);
    if let Some(p) = password {
        w.write_all(&resp_command(&["AUTH", &p]))
            .map_err(|e| e.to_string())?;
        resp_read(&mut r)?;
    }
    if !db.is_empty() {
        w.write_all(&resp_command(&["SELECT", &db]))
            .map_err(|e| e.to_string())?;
        resp_read(&mut r)?;
    }
    let script = "local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do n = n + redis.call('DEL', k) end return n";
    let pattern = format!("{prefix}*");
    w.write_all(&resp_command(&["EVAL", script, "0", &pattern]))
        .map_err(|e| e.to_string())?;
    resp_read(&mut r)?
        .parse()
        .map_err(|_| "bad EVAL reply".to_string())
}

// ---------------------------------------------------------------------------
// The test's database and Redis prefix
// ---------------------------------------------------------------------------

static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// A PostgreSQL database and a Redis key prefix that belong to one test.
pub struct ClusterDb {
    /// The URL the test was given (its database is used for admin work).
    admin_url: String,
    /// `posthorn_cluster_<pid>_<n>`.
    pub name: String,
    /// The URL of this test's database.
    pub url: String,
    pub redis_url: String,
    /// `posthorn_cluster_<pid>_<n>:`.
    pub redis_prefix: String,
}

impl ClusterDb {
    /// Create the test's database, or `None` (after printing that `test`
    /// is skipped) when the environment does not name PostgreSQL and Redis.
    pub fn create(test: &str) -> Option<Self> {
        let pg = std::env::var(POSTGRES_ENV).ok().filter(|v| !v.is_empty());
        let redis = std::env::var(REDIS_ENV).ok().filter(|v| !v.is_empty());
        let (Some(admin_url), Some(redis_url)) = (pg, redis) else {
            eprintln!(
                "skipping {test}: set {POSTGRES_ENV} (e.g. postgres://postgres@127.0.0.1:5432/test) and {REDIS_ENV} (e.g. redis://127.0.0.1:6379) to run it"
            );
            return None;
        };
        let name = format!(
            "posthorn_cluster_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        let parsed = PgUrl::parse(&admin_url).expect(POSTGRES_ENV);
        let url = parsed.with_database(&name);
        let mut admin = PgClient::connect(&admin_url)
            .unwrap_or_else(|e| panic!("{POSTGRES_ENV}={admin_url}: {e}"));
        // A leftover of an earlier run with the same pid goes first.
        let _ = admin.query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        // CREATE DATABASE copies template1 and fails while someone else
        // copies it at the same moment: try again a few times.
        let mut tries = 0;
        loop {
            match admin.query(&format!("CREATE DATABASE {name}")) {
                Ok(_) => break,
                Err(e) if tries < 20 => {
                    tries += 1;
                    eprintln!("CREATE DATABASE {name}: {e}; trying again");
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => panic!("CREATE DATABASE {name}: {e}"),
            }
        }
        let db = Self {
            admin_url,
            redis_prefix: format!("{name}:"),
            name,
            url,
            redis_url,
        };
        eprintln!(
            "{test}: database {} on {}, Redis prefix {:?}",
            db.name, parsed.host, db.redis_prefix
        );
        Some(db)
    }

    /// A connection to the server named by the test's URL (not to this
    /// test's database), for admin work such as terminating backends.
    pub fn admin(&self) -> PgClient {
        PgClient::connect(&self.admin_url).expect("connect to PostgreSQL")
    }

    /// Terminate every server process connected to this test's database
    /// (what a PostgreSQL restart does to its clients); returns how many.
    pub fn terminate_connections(&self, admin: &mut PgClient) -> Result<usize, String> {
        let rows = admin.query(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
            self.name
        ))?;
        Ok(rows
            .iter()
            .filter(|r| r.first().and_then(|v| v.as_deref()) == Some("t"))
            .count())
    }
}

impl Drop for ClusterDb {
    fn drop(&mut self) {
        match PgClient::connect(&self.admin_url).and_then(|mut c| {
            c.query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
        }) {
            Ok(_) => {}
            Err(e) => eprintln!("could not drop database {}: {e}", self.name),
        }
        if let Err(e) = redis_delete_prefix(&self.redis_url, &self.redis_prefix) {
            eprintln!("could not delete Redis keys {}*: {e}", self.redis_prefix);
        }
    }
}

// ---------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------

/// The node settings a test chooses.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// `[cluster] node_timeout`, e.g. `"5s"`.
    pub node_timeout: String,
    /// `[store] max_connections`.
    pub max_connections: u32,
    /// Lines appended to `[delivery]` after `node_id` (may open
    /// `[delivery.relay]` and further sections after it).
    pub delivery: String,
}

/// A relay to `127.0.0.1:port` without TLS (the test kit's sink), retries
/// every second, room for many connections at once.
pub fn relay_to(port: u16) -> String {
    format!(
        "retry_schedule = [\"1s\"]\nidle_connection_timeout = \"1s\"\nmax_connections_per_host = 100\n[delivery.relay]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n"
    )
}

/// One `posthorn serve` of a cluster, killed when dropped.
pub struct Node {
    /// `[delivery] node_id`.
    pub id: String,
    bin: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub smtps_port: u16,
    pub submission_port: u16,
    pub http_port: u16,
    db_url: String,
    redis_url: String,
    redis_prefix: String,
    settings: NodeSettings,
}

impl Node {
    /// A node of `db`'s cluster (not started; its config file is written).
    pub fn new(bin: &Path, db: &ClusterDb, id: &str, settings: &NodeSettings) -> Self {
        let node = Self {
            id: id.to_string(),
            bin: bin.to_path_buf(),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
            smtps_port: free_port(),
            submission_port: free_port(),
            http_port: free_port(),
            db_url: db.url.clone(),
            redis_url: db.redis_url.clone(),
            redis_prefix: db.redis_prefix.clone(),
            settings: settings.clone(),
        };
        node.write_config();
        node
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("posthorn.toml")
    }

    fn write_config(&self) {
        let s = &self.settings;
        let config = format!(
            r#"data_dir = "{dir}"
hostname = "{id}.posthorn.test"

[smtp]
implicit_tls = ["127.0.0.1:{smtps}"]
starttls = ["127.0.0.1:{submission}"]
shutdown_grace_secs = 2

[http]
listen = "127.0.0.1:{http}"

[limits]
messages_per_second = 0
pair_per_hour = 0
connections_per_user = 0
new_connections_per_ip_per_minute = 0
connections_per_ip = 0

[ratelimit]
backend = "redis"
redis_url = "{redis}"
redis_prefix = "{prefix}"

[store]
backend = "postgres"
url = "{db}"
max_connections = {maxconn}

[cluster]
node_timeout = "{timeout}"

[delivery]
node_id = "{id}"
{delivery}
"#,
            dir = self.dir.path().display(),
            id = self.id,
            smtps = self.smtps_port,
            submission = self.submission_port,
            http = self.http_port,
            redis = self.redis_url,
            prefix = self.redis_prefix,
            db = self.db_url,
            maxconn = s.max_connections,
            timeout = s.node_timeout,
            delivery = s.delivery,
        );
        std::fs::write(self.config_path(), config).expect("write config");
    }

    /// Run an admin command with `--config` on this node's file.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .output()
            .expect("run posthorn")
    }

    /// An admin command that must succeed; its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "posthorn --config {} {args:?} failed: {}{}",
            self.config_path().display(),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// `cluster status --json` through this node's config file.
    pub fn cluster_status(&self) -> Value {
        let out = self.cli_ok(&["cluster", "status", "--json"]);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("cluster status --json is not JSON ({e}): {out}"))
    }

    /// Start the process without waiting for it to listen.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "node {} is running", self.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("log file");
        let child = Command::new(&self.bin)
            .arg("--config")
            .arg(self.config_path())
            .arg("serve")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn posthorn serve");
        self.child = Some(child);
    }

    /// Wait until every port of a spawned node listens; the log when the
    /// process exited first.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
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
                        "node {} exited with {status}:\n{}",
                        self.id,
                        self.log()
                    ));
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "node {} did not listen on {port} within {timeout:?}:\n{}",
                        self.id,
                        self.log()
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Start and wait until it listens; on a port taken in the meantime,
    /// again on other ports.
    pub fn start(&mut self) {
        for _ in 0..5 {
            self.spawn();
            match self.wait_ready(Duration::from_secs(30)) {
                Ok(()) => return,
                Err(log) if log.contains("Address already in use") => {
                    self.kill9();
                    self.smtps_port = free_port();
                    self.submission_port = free_port();
                    self.http_port = free_port();
                    self.write_config();
                }
                Err(log) => panic!("{log}"),
            }
        }
        panic!("no free ports for node {} after 5 tries", self.id);
    }

    /// Whether the process is running (not killed, not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The node's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The log lines that are warnings or errors (`WARN`/`ERROR`), at most
    /// `max` of the last ones.
    pub fn log_problems(&self, max: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("panicked"))
            .collect();
        lines[lines.len().saturating_sub(max)..].join("\n")
    }

    /// A STARTTLS connection logged in as [`SENDER`].
    pub fn smtp_login(&self, timeout: Duration) -> Result<SmtpTls, SmtpError> {
        let mut c = SmtpTls::connect(self.submission_port, timeout)?;
        let reply = c.auth_plain(SENDER, SENDER_PASSWORD)?;
        if reply.starts_with("235") {
            Ok(c)
        } else {
            Err(SmtpError::Reply(reply))
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The keys [`provision`] made.
pub struct Provisioned {
    /// An HTTP API key of [`ACCOUNT`].
    pub account_key: String,
    /// An admin HTTP API key.
    pub admin_key: String,
}

/// Set the cluster up once, through `node`'s config (the accounts live in
/// the shared database): [`ACCOUNT`], [`DOMAIN`], [`SENDER`] with
/// [`SENDER_PASSWORD`], an account key and an admin key.
pub fn provision(node: &Node) -> Provisioned {
    node.cli_ok(&["account", "create", ACCOUNT]);
    node.cli_ok(&["domain", "add", DOMAIN, "--account", ACCOUNT]);
    node.cli_ok(&[
        "sender",
        "add",
        SENDER,
        "--account",
        ACCOUNT,
        "--password",
        SENDER_PASSWORD,
    ]);
    node.cli_ok(&["account", "set", ACCOUNT, "messages_per_second", "0"]);
    node.cli_ok(&["account", "set", ACCOUNT, "pair_per_hour", "0"]);
    let account_key = node
        .cli_ok(&["apikey", "create", "--account", ACCOUNT])
        .trim()
        .to_string();
    let admin_key = node
        .cli_ok(&["apikey", "create", "--admin"])
        .trim()
        .to_string();
    Provisioned {
        account_key,
        admin_key,
    }
}

// ---------------------------------------------------------------------------
// SMTP over STARTTLS, failures as values
// ---------------------------------------------------------------------------

/// What went wrong on an SMTP connection.
#[derive(Debug, Clone)]
pub enum SmtpError {
    /// A reply other than the one expected (the whole reply).
    Reply(String),
    /// The connection was closed before a complete reply.
    Closed(String),
    /// No reply within the client's timeout.
    Timeout(String),
    /// Any other I/O or TLS error.
    Io(String),
}

impl std::fmt::Display for SmtpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SmtpError::Reply(r) => write!(f, "reply {}", r.trim_end()),
            SmtpError::Closed(s) => write!(f, "connection closed: {s}"),
            SmtpError::Timeout(s) => write!(f, "timed out: {s}"),
            SmtpError::Io(s) => write!(f, "I/O error: {s}"),
        }
    }
}

fn io_error(e: io::Error, what: &str) -> SmtpError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            SmtpError::Timeout(format!("{what}: {e}"))
        }
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => SmtpError::Closed(format!("{what}: {e}")),
        _ => SmtpError::Io(format!("{what}: {e}")),
    }
}

/// Read one (possibly multi-line) reply.
fn read_reply(r: &mut impl BufRead) -> Result<String, SmtpError> {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        let n = r
            .read_line(&mut line)
            .map_err(|e| io_error(e, &format!("reading a reply (so far {all:?})")))?;
        if n == 0 || !line.ends_with('\n') {
            return Err(SmtpError::Closed(format!(
                "EOF while reading a reply (so far {:?})",
                all + &line
            )));
        }
        all.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return Ok(all);
        }
    }
}

/// Accepts any server certificate (the nodes' are generated).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Arc::new(config)
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// An SMTP client on a STARTTLS port, inside TLS after [`SmtpTls::connect`].
pub struct SmtpTls {
    stream: BufReader<TlsStream>,
    /// An I/O error or a `421` was seen: the connection is done.
    broken: bool,
}

/// How one transaction ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// `250 … queued as ID`.
    Queued(String),
    /// A 4xx reply to MAIL, RCPT, DATA or the content (the stage, the reply).
    Temporary(&'static str, String),
    /// A 5xx reply (the stage, the reply).
    Permanent(&'static str, String),
    /// No reply: the connection closed, timed out or failed, or the reply
    /// was not SMTP (the stage, what happened).
    Broken(&'static str, SmtpError),
}

impl SmtpTls {
    /// Connect to 127.0.0.1:`port`, EHLO, STARTTLS, EHLO again; `timeout`
    /// bounds every read.
    pub fn connect(port: u16, timeout: Duration) -> Result<Self, SmtpError> {
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .map_err(|e| SmtpError::Io(format!("connect to {port}: {e}")))?;
        tcp.set_read_timeout(Some(timeout))
            .map_err(|e| SmtpError::Io(e.to_string()))?;
        tcp.set_write_timeout(Some(timeout))
            .map_err(|e| SmtpError::Io(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let mut plain = BufReader::new(tcp);
        let greeting = read_reply(&mut plain)?;
        if !greeting.starts_with("220") {
            return Err(SmtpError::Reply(greeting));
        }
        for (line, want) in [("EHLO client.test\r\n", "250"), ("STARTTLS\r\n", "220")] {
            plain
                .get_mut()
                .write_all(line.as_bytes())
                .map_err(|e| io_error(e, line.trim_end()))?;
            let reply = read_reply(&mut plain)?;
            if !reply.starts_with(want) {
                return Err(SmtpError::Reply(reply));
            }
        }
        let tcp = plain.into_inner();
        let conn = rustls::ClientConnection::new(
            client_config(),
            rustls::pki_types::ServerName::try_from("localhost").expect("name"),
        )
        .map_err(|e| SmtpError::Io(e.to_string()))?;
        let mut c = Self {
            stream: BufReader::new(rustls::StreamOwned::new(conn, tcp)),
            broken: false,
        };
        let ehlo = c.cmd("EHLO client.test")?;
        if !ehlo.starts_with("250") {
            return Err(SmtpError::Reply(ehlo));
        }
        Ok(c)
    }

    /// AUTH PLAIN; the reply.
    pub fn auth_plain(&mut self, user: &str, pass: &str) -> Result<String, SmtpError> {
        self.cmd(&format!("AUTH PLAIN {}", crate::auth_plain(user, pass)))
    }

    /// Whether the connection can carry another command: no I/O error and
    /// no `421` so far.
    pub fn is_usable(&self) -> bool {
        !self.broken
    }

    /// Write raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), SmtpError> {
        let s = self.stream.get_mut();
        let result = s
            .write_all(bytes)
            .and_then(|()| s.flush())
            .map_err(|e| io_error(e, "writing"));
        self.broken |= result.is_err();
        result
    }

    pub fn read_reply(&mut self) -> Result<String, SmtpError> {
        let result = read_reply(&mut self.stream);
        self.broken |= result.as_ref().map_or(true, |r| r.starts_with("421"));
        result
    }

    /// Send a command line and read its reply.
    pub fn cmd(&mut self, line: &str) -> Result<String, SmtpError> {
        self.send(format!("{line}\r\n").as_bytes())?;
        self.read_reply()
    }

    /// One transaction: MAIL, each RCPT, DATA, `data` (which must end with
    /// `\r\n.\r\n`). A refusal before the content ends it with RSET (when
    /// the connection is still usable), so [`SmtpTls::is_usable`] tells
    /// whether the next one may follow on this connection.
    pub fn transaction(&mut self, from: &str, rcpts: &[&str], data: &[u8]) -> Outcome {
        fn refused(stage: &'static str, reply: String) -> Outcome {
            match reply.as_bytes().first() {
                Some(b'4') => Outcome::Temporary(stage, reply),
                Some(b'5') => Outcome::Permanent(stage, reply),
                _ => Outcome::Broken(stage, SmtpError::Reply(reply)),
            }
        }
        let mut steps: Vec<(&'static str, String, &str)> =
            vec![("MAIL", format!("MAIL FROM:<{from}>"), "250")];
        for r in rcpts {
            steps.push(("RCPT", format!("RCPT TO:<{r}>"), "250"));
        }
        steps.push(("DATA", "DATA".to_string(), "354"));
        for (stage, line, want) in steps {
            match self.cmd(&line) {
                Ok(r) if r.starts_with(want) => {}
                Ok(r) => {
                    if self.is_usable() {
                        if let Ok(r) = self.cmd("RSET") {
                            self.broken |= !r.starts_with("250");
                        }
                    }
                    return refused(stage, r);
                }
                Err(e) => return Outcome::Broken(stage, e),
            }
        }
        if let Err(e) = self.send(data) {
            return Outcome::Broken("content", e);
        }
        match self.read_reply() {
            Ok(r) if r.starts_with("250") => match r.split_once("queued as ") {
                Some((_, id)) => Outcome::Queued(id.trim().to_string()),
                None => Outcome::Broken("content", SmtpError::Reply(r)),
            },
            Ok(r) => refused("content", r),
            Err(e) => Outcome::Broken("content", e),
        }
    }

    /// QUIT, ignoring what happens.
    pub fn quit(mut self) {
        let _ = self.cmd("QUIT");
    }
}
