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
//! - [`PgClient`] and [`redis_delete_prefix`]: blocking calls for setup,
//!   cleanup and fault injection, made with `sqlx` (on a current-thread
//!   tokio runtime of the client's own) and `redis`'s synchronous API.

use crate::{free_port, ACCOUNT, DOMAIN, SENDER, SENDER_PASSWORD};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};
use std::future::Future;
use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The variables a cluster test needs.
pub const POSTGRES_ENV: &str = "POSTHORN_TEST_POSTGRES_URL";
pub const REDIS_ENV: &str = "REDIS_URL";

// ---------------------------------------------------------------------------
// PostgreSQL (sqlx) and Redis (redis), blocking
// ---------------------------------------------------------------------------

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one statement or command may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// A runtime for one blocking client: its connection's I/O belongs to it.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Run `f` on `rt` for at most `limit`. A caller inside a runtime (where
/// `block_on` panics) gets a thread of its own for it.
fn block_on<F>(rt: &tokio::runtime::Runtime, limit: Duration, f: F) -> Result<F::Output, String>
where
    F: Future + Send,
    F::Output: Send,
{
    let run = move || {
        // The timer must be made inside the runtime.
        rt.block_on(async move { tokio::time::timeout(limit, f).await })
            .map_err(|_| format!("no answer within {limit:?}"))
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| s.spawn(run).join().expect("runtime thread"))
    } else {
        run()
    }
}

/// The code and message of a server error, or sqlx's description.
fn pg_error(e: sqlx::Error) -> String {
    match e.as_database_error() {
        Some(d) => format!("{} {}", d.code().unwrap_or_default(), d.message()),
        None => e.to_string(),
    }
}

/// `url` (a `postgres://` URL) with its database replaced by `database`;
/// everything else (login, host, `?` parameters) is kept.
pub fn url_with_database(url: &str, database: &str) -> Result<String, String> {
    // sqlx checks the rest, not the scheme.
    if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        return Err(format!("{url:?} is not a postgres:// URL"));
    }
    PgConnectOptions::from_str(url).map_err(|e| format!("{url:?}: {e}"))?;
    let (base, query) = url.split_at(url.find('?').unwrap_or(url.len()));
    let authority_at = base.find("://").map_or(0, |i| i + 3);
    let path_at = base[authority_at..]
        .find('/')
        .map_or(base.len(), |i| authority_at + i);
    Ok(format!("{}/{database}{query}", &base[..path_at]))
}

/// One PostgreSQL connection with blocking calls.
pub struct PgClient {
    rt: tokio::runtime::Runtime,
    /// `None` only while dropping.
    conn: Option<PgConnection>,
}

impl PgClient {
    pub fn connect(url: &str) -> Result<Self, String> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| format!("{url:?}: {e}"))?
            .application_name("posthorn-testkit");
        let rt = runtime();
        let conn = block_on(&rt, CONNECT_TIMEOUT, options.connect())?.map_err(|e| {
            format!(
                "connect to PostgreSQL at {}:{}: {}",
                options.get_host(),
                options.get_port(),
                pg_error(e)
            )
        })?;
        Ok(Self {
            rt,
            conn: Some(conn),
        })
    }

    /// Run one or more statements (simple query protocol, so also
    /// `CREATE DATABASE` and the like); the rows they affected.
    pub fn execute(&mut self, sql: &str) -> Result<u64, String> {
        let conn = self.conn.as_mut().expect("connection");
        let sql = sqlx::raw_sql(AssertSqlSafe(sql.to_string()));
        block_on(&self.rt, QUERY_TIMEOUT, sql.execute(conn))?
            .map(|done| done.rows_affected())
            .map_err(pg_error)
    }

    /// Terminate every other server process connected to `database`;
    /// returns how many.
    pub fn terminate_backends(&mut self, database: &str) -> Result<usize, String> {
        let conn = self.conn.as_mut().expect("connection");
        let query = sqlx::query_scalar::<_, bool>(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(database);
        let terminated =
            block_on(&self.rt, QUERY_TIMEOUT, query.fetch_all(conn))?.map_err(pg_error)?;
        Ok(terminated.into_iter().filter(|&t| t).count())
    }
}

impl Drop for PgClient {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = block_on(&self.rt, CONNECT_TIMEOUT, conn.close());
        }
    }
}

/// `prefix` as a SCAN pattern matching itself literally, then `*`.
fn glob_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('*');
    pattern
}

/// Delete every key starting with `prefix` on the Redis at `url`
/// (`redis://[:password@]host[:port][/db]`), with SCAN and UNLINK;
/// returns how many.
pub fn redis_delete_prefix(url: &str, prefix: &str) -> Result<u64, String> {
    let client = redis::Client::open(url).map_err(|e| format!("{url:?}: {e}"))?;
    let mut con = client
        .get_connection_with_timeout(CONNECT_TIMEOUT)
        .map_err(|e| format!("connect to Redis: {e}"))?;
    con.set_read_timeout(Some(QUERY_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let pattern = glob_prefix(prefix);
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query(&mut con)
            .map_err(|e| format!("SCAN: {e}"))?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    // SCAN may return a key twice.
    keys.sort_unstable();
    keys.dedup();
    let mut deleted = 0;
    for chunk in keys.chunks(1000) {
        deleted += redis::cmd("UNLINK")
            .arg(chunk)
            .query::<u64>(&mut con)
            .map_err(|e| format!("UNLINK: {e}"))?;
    }
    Ok(deleted)
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
        let url =
            url_with_database(&admin_url, &name).unwrap_or_else(|e| panic!("{POSTGRES_ENV}: {e}"));
        let mut admin = PgClient::connect(&admin_url)
            .unwrap_or_else(|e| panic!("{POSTGRES_ENV}={admin_url}: {e}"));
        // A leftover of an earlier run with the same pid goes first.
        let _ = admin.execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        // CREATE DATABASE copies template1 and fails while someone else
        // copies it at the same moment: try again a few times.
        let mut tries = 0;
        loop {
            match admin.execute(&format!("CREATE DATABASE {name}")) {
                Ok(_) => break,
                Err(e) if tries < 20 => {
                    tries += 1;
                    eprintln!("CREATE DATABASE {name}: {e}; trying again");
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => panic!("CREATE DATABASE {name}: {e}"),
            }
        }
        let host = PgConnectOptions::from_str(&admin_url)
            .map(|o| o.get_host().to_string())
            .unwrap_or_default();
        let db = Self {
            admin_url,
            redis_prefix: format!("{name}:"),
            name,
            url,
            redis_url,
        };
        eprintln!(
            "{test}: database {} on {}, Redis prefix {:?}",
            db.name, host, db.redis_prefix
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
        admin.terminate_backends(&self.name)
    }
}

impl Drop for ClusterDb {
    fn drop(&mut self) {
        match PgClient::connect(&self.admin_url).and_then(|mut c| {
            c.execute(&format!(
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
        "retry_schedule = [\"1s\"]\nidle_connection_timeout = \"1s\"\nmax_connections_per_destination = 100\n[delivery.relay]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_with_database_keeps_everything_else() {
        let cases = [
            (
                "postgres://postgres@127.0.0.1:5432/test",
                "postgres://postgres@127.0.0.1:5432/other",
            ),
            (
                "postgresql://u:p%2Fw@[::1]:5433/test?sslmode=disable",
                "postgresql://u:p%2Fw@[::1]:5433/other?sslmode=disable",
            ),
            ("postgres://db.example", "postgres://db.example/other"),
            (
                "postgres:///test?host=/run/postgresql",
                "postgres:///other?host=/run/postgresql",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(url_with_database(url, "other").unwrap(), want, "{url}");
        }
        assert!(url_with_database("mysql://x/y", "other").is_err());
    }

    /// Runs when `REDIS_URL` is set.
    #[test]
    fn redis_delete_prefix_deletes_only_its_keys() {
        let Some(url) = std::env::var(REDIS_ENV).ok().filter(|v| !v.is_empty()) else {
            eprintln!("skipped: {REDIS_ENV} is unset");
            return;
        };
        let prefix = format!("posthorn_testkit_{}:", std::process::id());
        let other = format!("posthorn_testkit_{}x", std::process::id());
        let mut con = redis::Client::open(url.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        for i in 0..2500 {
            redis::cmd("SET")
                .arg(format!("{prefix}{i}"))
                .arg(i)
                .exec(&mut con)
                .unwrap();
        }
        redis::cmd("SET").arg(&other).arg(1).exec(&mut con).unwrap();
        assert_eq!(redis_delete_prefix(&url, &prefix).unwrap(), 2500);
        assert_eq!(redis_delete_prefix(&url, &prefix).unwrap(), 0);
        let left: u64 = redis::cmd("DEL").arg(&other).query(&mut con).unwrap();
        assert_eq!(left, 1);
    }

    #[test]
    fn glob_prefix_is_literal() {
        assert_eq!(
            glob_prefix("posthorn_cluster_1_0:"),
            "posthorn_cluster_1_0:*"
        );
        assert_eq!(glob_prefix("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\*");
    }
}
