//! A sink SMTP server on loopback whose answers depend on the recipient's
//! local part, recording what it receives: the remote MX (or smart host)
//! that delivery tests deliver to.
//!
//! It is synchronous to use from plain `#[test]`s: [`Sink::start`] binds
//! `127.0.0.1:0` and runs its own single-threaded tokio runtime on a
//! background thread; dropping the [`Sink`] stops it.
//!
//! Behaviour by recipient local part (case-insensitive; anything after a `+`
//! is ignored for choosing the behaviour, so `tempfail+a@x` behaves like
//! `tempfail@x` but has its own attempt counter), decided at RCPT:
//!
//! | local part | behaviour |
//! |---|---|
//! | `ok`, anything else | `250` |
//! | `tempfail` | `451 4.3.0 try again later` for the first `tempfail_times` attempts of that address (across connections), then `250` |
//! | `permfail` | `550 5.1.1 user unknown` |
//! | `slow` | `250`, but the reply to the final DATA dot comes `slow_delay` late |
//! | `drop` | `250`, then the connection is closed in the middle of DATA (after the first data line, before any final reply) |
//! | `tempfail-data` | `250`, then `452 4.3.1` to the final DATA dot |
//!
//! DATA with no accepted recipient gets `554`. A message is recorded only when
//! the reply to its final dot is `250`.
//!
//! SMTPUTF8 (RFC 6531) is offered unless [`SinkOptions::smtputf8`] is
//! false. As Postfix does, a non-ASCII address in MAIL or RCPT of a
//! transaction whose MAIL did not declare ` SMTPUTF8` gets `553 5.6.7`,
//! and ` SMTPUTF8` on MAIL when it is not offered gets `555 5.5.4`.

use base64::Engine;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The name the sink greets with.
pub const SINK_HOSTNAME: &str = "sink.test";
/// The SIZE the sink advertises (not enforced).
pub const SINK_SIZE: usize = 52_428_800;

/// How a [`Sink`] behaves.
#[derive(Clone, Debug)]
pub struct SinkOptions {
    /// Offer STARTTLS (with a generated self-signed certificate).
    pub starttls: bool,
    /// Answer `530 5.7.0` to MAIL until STARTTLS has been done.
    pub require_tls: bool,
    /// Require AUTH PLAIN or LOGIN with these credentials before MAIL.
    pub auth: Option<(String, String)>,
    /// How many RCPT attempts of a `tempfail@` address fail before it is
    /// accepted (counted per address across connections). Default 2.
    pub tempfail_times: u32,
    /// How late the final DATA reply is for `slow@`. Default 2 s.
    pub slow_delay: Duration,
    /// Do not listen: the port was bound and released, so connections to
    /// it are refused.
    pub refuse_connections: bool,
    /// Advertise PIPELINING. Default true.
    pub pipelining: bool,
    /// Advertise SMTPUTF8 (and accept non-ASCII addresses in transactions
    /// that declare it). Default true.
    pub smtputf8: bool,
    /// Where to listen. Default `127.0.0.1:0`; a test that needs two sinks
    /// on one port (delivery uses one port for every mail server) binds
    /// the second to another loopback address, like `127.0.0.2`.
    pub bind: std::net::SocketAddr,
    /// Random trouble for recipients that would get `250` (`ok@` and the
    /// like): a share answered `451 4.3.0` at RCPT, a share whose
    /// connection is dropped in the middle of DATA. Seeded, so a run can
    /// be repeated.
    pub chaos: Option<Chaos>,
}

/// See [`SinkOptions::chaos`].
#[derive(Clone, Copy, Debug)]
pub struct Chaos {
    pub tempfail_percent: u64,
    pub drop_percent: u64,
    pub seed: u64,
}

impl Default for SinkOptions {
    fn default() -> Self {
        Self {
            starttls: false,
            require_tls: false,
            auth: None,
            tempfail_times: 2,
            slow_delay: Duration::from_secs(2),
            refuse_connections: false,
            pipelining: true,
            smtputf8: true,
            bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            chaos: None,
        }
    }
}

/// One message the sink accepted (final reply `250`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkMessage {
    /// The reverse path without angle brackets (`""` for `MAIL FROM:<>`).
    pub mail_from: String,
    /// The MAIL parameters after the path, as written (`SIZE=1234`,
    /// `BODY=8BITMIME`, `SMTPUTF8`).
    pub mail_params: Vec<String>,
    /// The accepted recipients, in RCPT order, as the client wrote them.
    pub rcpt_to: Vec<String>,
    /// The content, dot-unstuffed, as received (ends with the CRLF before
    /// the terminating dot).
    pub data: Vec<u8>,
    /// Whether the transaction ran inside STARTTLS.
    pub tls: bool,
    /// The EHLO/HELO argument in effect.
    pub helo: String,
    /// The user that authenticated on this connection, if any.
    pub auth_user: Option<String>,
    /// Which connection it came in on (1 for the first the sink accepted,
    /// and so on): equal numbers mean one connection was reused.
    pub connection: u64,
}

#[derive(Default)]
struct State {
    messages: Vec<SinkMessage>,
    attempts: HashMap<String, u32>,
    transcript: Vec<String>,
    batches: Vec<Vec<String>>,
    connections: u64,
    /// Connections open now, and the most ever open at once.
    open: u64,
    max_open: u64,
    /// Greet with this line and close (a server refusing service).
    refusal: Option<String>,
    /// The chaos generator's state (xorshift64).
    rng: u64,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running sink SMTP server; stops when dropped.
pub struct Sink {
    port: u16,
    shared: Arc<Shared>,
    cert_pem: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    /// Start a sink on `127.0.0.1:0`.
    pub fn start(opts: SinkOptions) -> Sink {
        let listener = std::net::TcpListener::bind(opts.bind).expect("bind the sink");
        let port = listener.local_addr().expect("sink address").port();
        let certified = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            SINK_HOSTNAME.to_string(),
            "127.0.0.1".to_string(),
        ])
        .expect("generate the sink's certificate");
        let cert_pem = certified.cert.pem();
        let shared = Arc::new(Shared::default());
        if opts.refuse_connections {
            drop(listener);
            return Sink {
                port,
                shared,
                cert_pem,
                stop: None,
                thread: None,
            };
        }
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()),
        );
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("sink TLS config");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let ctx = Arc::new(Ctx {
            opts,
            shared: shared.clone(),
            acceptor,
        });
        let thread = std::thread::Builder::new()
            .name(format!("sink-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("sink runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    let mut stop_rx = stop_rx;
                    loop {
                        tokio::select! {
                            _ = &mut stop_rx => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                let id = {
                                    let mut st = ctx.shared.lock();
                                    st.connections += 1;
                                    st.open += 1;
                                    st.max_open = st.max_open.max(st.open);
                                    st.connections
                                };
                                tokio::spawn(serve(ctx.clone(), stream, id));
                            }
                        }
                    }
                });
                // Dropping the runtime cancels every connection task.
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .expect("spawn the sink thread");
        Sink {
            port,
            shared,
            cert_pem,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The self-signed certificate STARTTLS presents, as PEM (names
    /// `localhost`, `sink.test`, `127.0.0.1`).
    pub fn certificate_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// Every message accepted so far, in order.
    pub fn received(&self) -> Vec<SinkMessage> {
        self.shared.lock().messages.clone()
    }

    /// Block until at least `n` messages were accepted; panics after
    /// `timeout` with what there is.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<SinkMessage> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if st.messages.len() >= n {
                return st.messages.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "sink: waited {timeout:?} for {n} message(s), got {}: {:#?}\ntranscript: {:#?}",
                    st.messages.len(),
                    st.messages,
                    st.transcript
                );
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// How many RCPT commands named `rcpt` (case-insensitive), whatever the
    /// answer, over all connections.
    pub fn attempts(&self, rcpt: &str) -> u32 {
        self.shared
            .lock()
            .attempts
            .get(&rcpt.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }

    /// Every command line received, over all connections, in order (without
    /// CRLF; AUTH arguments and responses shown as `<redacted>`; message
    /// content not included).
    pub fn transcript(&self) -> Vec<String> {
        self.shared.lock().transcript.clone()
    }

    /// The command lines grouped by batch: the lines that were in the input
    /// buffer together and got their replies in one write. A pipelining
    /// client's `MAIL`, `RCPT`..., `DATA` sent in one write show up as one
    /// batch.
    pub fn batches(&self) -> Vec<Vec<String>> {
        self.shared.lock().batches.clone()
    }

    /// How many connections the sink has accepted.
    pub fn connections(&self) -> u64 {
        self.shared.lock().connections
    }

    /// The most connections that were open at once.
    pub fn max_concurrent(&self) -> u64 {
        self.shared.lock().max_open
    }

    /// Greet every new connection with `line` (such as `421 4.3.2 not
    /// now`) and close it; `None` serves again.
    pub fn set_refusal(&self, line: Option<&str>) {
        self.shared.lock().refusal = line.map(str::to_string);
    }
}

/// Counts a connection closed, however its task ends.
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.lock().open -= 1;
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Ctx {
    opts: SinkOptions,
    shared: Arc<Shared>,
    acceptor: TlsAcceptor,
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf).await,
            Conn::Tls(s) => s.read(buf).await,
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Conn::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    async fn shutdown(&mut self) {
        let _ = match self {
            Conn::Plain(s) => s.shutdown().await,
            Conn::Tls(s) => s.shutdown().await,
        };
    }
}

/// What the recipient's local part asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Ok,
    TempFail,
    PermFail,
    Slow,
    Drop,
    TempFailData,
}

fn behaviour(addr: &str) -> Behaviour {
    let local = addr.rsplit_once('@').map_or(addr, |(l, _)| l);
    let local = local
        .split('+')
        .next()
        .unwrap_or(local)
        .to_ascii_lowercase();
    match local.as_str() {
        "tempfail" => Behaviour::TempFail,
        "permfail" => Behaviour::PermFail,
        "slow" => Behaviour::Slow,
        "drop" => Behaviour::Drop,
        "tempfail-data" => Behaviour::TempFailData,
        _ => Behaviour::Ok,
    }
}

enum Mode {
    Command,
    /// Waiting for the PLAIN response after an empty `334`.
    AuthPlain,
    AuthLoginUser,
    AuthLoginPass(String),
    Data {
        content: Vec<u8>,
        /// Whether the last line ended with CRLF (the DATA line did), so a
        /// `.` line now ends the content.
        after_crlf: bool,
    },
}

#[derive(Default)]
struct Txn {
    mail_from: Option<String>,
    mail_params: Vec<String>,
    /// MAIL declared SMTPUTF8.
    smtputf8: bool,
    rcpts: Vec<String>,
    slow: bool,
    drop: bool,
    tempfail_data: bool,
}

struct Session {
    ctx: Arc<Ctx>,
    id: u64,
    tls: bool,
    helo: Option<String>,
    auth_user: Option<String>,
    mode: Mode,
    txn: Txn,
    out: Vec<u8>,
    batch: Vec<String>,
}

/// What to do after a line.
enum Next {
    Continue,
    StartTls,
    /// Write what is pending, then close.
    Close,
    /// Close without writing anything more (drop@ mid-DATA).
    Drop,
}

async fn serve(ctx: Arc<Ctx>, stream: TcpStream, id: u64) {
    let _open = OpenGuard(ctx.shared.clone());
    let _ = stream.set_nodelay(true);
    let mut conn = Conn::Plain(stream);
    let refusal = ctx.shared.lock().refusal.clone();
    if let Some(line) = refusal {
        let _ = conn.write_all(format!("{line}\r\n").as_bytes()).await;
        conn.shutdown().await;
        return;
    }
    let mut s = Session {
        ctx,
        id,
        tls: false,
        helo: None,
        auth_user: None,
        mode: Mode::Command,
        txn: Txn::default(),
        out: Vec::new(),
        batch: Vec::new(),
    };
    let greeting = format!("220 {SINK_HOSTNAME} ESMTP Posthorn test sink\r\n");
    if conn.write_all(greeting.as_bytes()).await.is_err() {
        return;
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        // Answer every complete line in the buffer, in order.
        let mut next = Next::Continue;
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            next = s.line(line).await;
            if !matches!(next, Next::Continue) {
                break;
            }
        }
        s.end_batch();
        match next {
            Next::Drop => {
                s.note("<connection dropped mid-DATA>".to_string());
                if !s.out.is_empty() {
                    let _ = conn.write_all(&std::mem::take(&mut s.out)).await;
                }
                conn.shutdown().await;
                return;
            }
            Next::Close => {
                let _ = conn.write_all(&std::mem::take(&mut s.out)).await;
                conn.shutdown().await;
                return;
            }
            Next::StartTls => {
                if conn.write_all(&std::mem::take(&mut s.out)).await.is_err() {
                    return;
                }
                // Plaintext sent after STARTTLS is not carried into TLS.
                buf.clear();
                let Conn::Plain(tcp) = conn else { return };
                match s.ctx.acceptor.accept(tcp).await {
                    Ok(tls) => conn = Conn::Tls(Box::new(tls)),
                    Err(_) => return,
                }
                s.tls = true;
                s.helo = None;
                s.auth_user = None;
                s.txn = Txn::default();
                s.mode = Mode::Command;
                continue;
            }
            Next::Continue => {}
        }
        if !s.out.is_empty() && conn.write_all(&std::mem::take(&mut s.out)).await.is_err() {
            return;
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}

/// The parameters after the path in `rest` (what follows `FROM:`).
fn path_params(rest: &str) -> Vec<String> {
    let rest = rest.trim_start();
    let after = match rest.strip_prefix('<') {
        Some(inner) => inner.find('>').map_or("", |end| &inner[end + 1..]),
        None => rest.split_once(' ').map_or("", |(_, p)| p),
    };
    after.split_whitespace().map(str::to_string).collect()
}

/// The address in `<...>` (or up to the first space) after `FROM:`/`TO:`.
fn path_arg(rest: &str) -> Option<String> {
    let rest = rest.trim_start();
    if let Some(inner) = rest.strip_prefix('<') {
        let end = inner.find('>')?;
        Some(inner[..end].to_string())
    } else {
        let addr = rest.split_whitespace().next()?;
        Some(addr.to_string())
    }
}

impl Session {
    fn reply(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn note(&self, entry: String) {
        self.ctx.shared.lock().transcript.push(entry);
    }

    fn record_command(&mut self, entry: String) {
        self.batch.push(entry.clone());
        self.note(entry);
    }

    fn end_batch(&mut self) {
        if !self.batch.is_empty() {
            let batch = std::mem::take(&mut self.batch);
            self.ctx.shared.lock().batches.push(batch);
        }
    }

    async fn line(&mut self, raw: Vec<u8>) -> Next {
        if let Mode::Data { .. } = self.mode {
            return self.data_line(raw).await;
        }
        let text = String::from_utf8_lossy(&raw);
        let text = text.trim_end_matches(['\r', '\n']).to_string();
        match std::mem::replace(&mut self.mode, Mode::Command) {
            Mode::AuthPlain => {
                self.record_command("<redacted>".to_string());
                self.auth_plain_response(&text);
                Next::Continue
            }
            Mode::AuthLoginUser => {
                self.record_command("<redacted>".to_string());
                self.auth_login_user(&text);
                Next::Continue
            }
            Mode::AuthLoginPass(user) => {
                self.record_command("<redacted>".to_string());
                if text == "*" {
                    self.reply("501 5.0.0 AUTH cancelled");
                } else {
                    match b64(&text).and_then(|p| String::from_utf8(p).ok()) {
                        Some(pass) => self.check_credentials(&user, &pass),
                        None => self.reply("501 5.5.2 bad base64"),
                    }
                }
                Next::Continue
            }
            _ => self.command(text),
        }
    }

    fn command(&mut self, text: String) -> Next {
        let (verb, rest) = match text.split_once(' ') {
            Some((v, r)) => (v.to_ascii_uppercase(), r.to_string()),
            None => (text.to_ascii_uppercase(), String::new()),
        };
        if verb == "AUTH" {
            let mech = rest.split_whitespace().next().unwrap_or("").to_string();
            self.record_command(format!("AUTH {mech} <redacted>").trim_end().to_string());
        } else {
            self.record_command(text.clone());
        }
        match verb.as_str() {
            "EHLO" | "HELO" => {
                let name = rest.trim().to_string();
                if name.is_empty() {
                    self.reply(&format!("501 5.5.4 {verb} needs a name"));
                    return Next::Continue;
                }
                self.helo = Some(name.clone());
                self.txn = Txn::default();
                if verb == "HELO" {
                    self.reply(&format!("250 {SINK_HOSTNAME} greets {name}"));
                    return Next::Continue;
                }
                let mut lines = vec![
                    format!("{SINK_HOSTNAME} greets {name}"),
                    format!("SIZE {SINK_SIZE}"),
                    "8BITMIME".to_string(),
                    "ENHANCEDSTATUSCODES".to_string(),
                ];
                if self.ctx.opts.smtputf8 {
                    lines.push("SMTPUTF8".to_string());
                }
                if self.ctx.opts.pipelining {
                    lines.push("PIPELINING".to_string());
                }
                if self.ctx.opts.starttls && !self.tls {
                    lines.push("STARTTLS".to_string());
                }
                if self.ctx.opts.auth.is_some() {
                    lines.push("AUTH PLAIN LOGIN".to_string());
                }
                let last = lines.len() - 1;
                for (i, l) in lines.iter().enumerate() {
                    let sep = if i == last { ' ' } else { '-' };
                    self.reply(&format!("250{sep}{l}"));
                }
                Next::Continue
            }
            "STARTTLS" => {
                if !self.ctx.opts.starttls {
                    self.reply("502 5.5.1 STARTTLS not offered");
                } else if self.tls {
                    self.reply("503 5.5.1 TLS already active");
                } else {
                    self.reply("220 2.0.0 Ready to start TLS");
                    return Next::StartTls;
                }
                Next::Continue
            }
            "AUTH" => {
                self.auth(&rest);
                Next::Continue
            }
            "MAIL" => {
                self.mail(&rest);
                Next::Continue
            }
            "RCPT" => {
                self.rcpt(&rest);
                Next::Continue
            }
            "DATA" => {
                if self.txn.mail_from.is_none() {
                    self.reply("503 5.5.1 MAIL first");
                } else if self.txn.rcpts.is_empty() {
                    self.reply("554 5.5.1 no valid recipients");
                } else {
                    self.reply("354 End data with <CR><LF>.<CR><LF>");
                    self.mode = Mode::Data {
                        content: Vec::new(),
                        after_crlf: true,
                    };
                }
                Next::Continue
            }
            "RSET" => {
                self.txn = Txn::default();
                self.reply("250 2.0.0 Ok");
                Next::Continue
            }
            "NOOP" => {
                self.reply("250 2.0.0 Ok");
                Next::Continue
            }
            "VRFY" => {
                self.reply("252 2.5.2 cannot verify");
                Next::Continue
            }
            "QUIT" => {
                self.reply("221 2.0.0 Bye");
                Next::Close
            }
            _ => {
                self.reply("500 5.5.2 command not recognized");
                Next::Continue
            }
        }
    }

    fn auth(&mut self, rest: &str) {
        if self.ctx.opts.auth.is_none() {
            self.reply("503 5.5.1 AUTH not offered");
            return;
        }
        if self.helo.is_none() {
            self.reply("503 5.5.1 EHLO first");
            return;
        }
        if self.auth_user.is_some() {
            self.reply("503 5.5.1 already authenticated");
            return;
        }
        if self.txn.mail_from.is_some() {
            self.reply("503 5.5.1 AUTH not allowed in a transaction");
            return;
        }
        let mut parts = rest.split_whitespace();
        let mech = parts.next().unwrap_or("").to_ascii_uppercase();
        let initial = parts.next();
        match (mech.as_str(), initial) {
            ("PLAIN", Some(resp)) => self.auth_plain_response(resp),
            ("PLAIN", None) => {
                self.reply("334 ");
                self.mode = Mode::AuthPlain;
            }
            ("LOGIN", Some(user)) => self.auth_login_user(user),
            ("LOGIN", None) => {
                self.reply("334 VXNlcm5hbWU6");
                self.mode = Mode::AuthLoginUser;
            }
            _ => self.reply("504 5.5.4 mechanism not supported"),
        }
    }

    fn auth_plain_response(&mut self, resp: &str) {
        if resp.trim() == "*" {
            self.reply("501 5.0.0 AUTH cancelled");
            return;
        }
        let Some(decoded) = b64(resp) else {
            self.reply("501 5.5.2 bad base64");
            return;
        };
        let fields: Vec<&[u8]> = decoded.split(|&b| b == 0).collect();
        if fields.len() != 3 {
            self.reply("501 5.5.2 bad PLAIN response");
            return;
        }
        let user = String::from_utf8_lossy(fields[1]).into_owned();
        let pass = String::from_utf8_lossy(fields[2]).into_owned();
        self.check_credentials(&user, &pass);
    }

    fn auth_login_user(&mut self, resp: &str) {
        if resp.trim() == "*" {
            self.reply("501 5.0.0 AUTH cancelled");
            return;
        }
        match b64(resp).and_then(|u| String::from_utf8(u).ok()) {
            Some(user) => {
                self.reply("334 UGFzc3dvcmQ6");
                self.mode = Mode::AuthLoginPass(user);
            }
            None => self.reply("501 5.5.2 bad base64"),
        }
    }

    fn check_credentials(&mut self, user: &str, pass: &str) {
        let ok = matches!(&self.ctx.opts.auth, Some((u, p)) if u == user && p == pass);
        if ok {
            self.auth_user = Some(user.to_string());
            self.reply("235 2.7.0 Authentication successful");
        } else {
            self.reply("535 5.7.8 Authentication credentials invalid");
        }
    }

    fn mail(&mut self, rest: &str) {
        if self.helo.is_none() {
            self.reply("503 5.5.1 EHLO first");
            return;
        }
        if self.txn.mail_from.is_some() {
            self.reply("503 5.5.1 nested MAIL");
            return;
        }
        if self.ctx.opts.require_tls && !self.tls {
            self.reply("530 5.7.0 Must issue a STARTTLS command first");
            return;
        }
        if self.ctx.opts.auth.is_some() && self.auth_user.is_none() {
            self.reply("530 5.7.0 Authentication required");
            return;
        }
        let Some(from) = rest
            .get(..5)
            .filter(|p| p.eq_ignore_ascii_case("FROM:"))
            .and_then(|_| path_arg(&rest[5..]))
        else {
            self.reply("501 5.5.4 syntax: MAIL FROM:<address>");
            return;
        };
        let mail_params = path_params(&rest[5..]);
        let smtputf8 = mail_params
            .iter()
            .any(|p| p.eq_ignore_ascii_case("SMTPUTF8"));
        if smtputf8 && !self.ctx.opts.smtputf8 {
            self.reply("555 5.5.4 Unsupported option: SMTPUTF8");
            return;
        }
        if !smtputf8 && !from.is_ascii() {
            self.reply("553 5.6.7 Must declare SMTPUTF8 to send unicode address");
            return;
        }
        self.txn = Txn {
            mail_from: Some(from),
            mail_params,
            smtputf8,
            ..Txn::default()
        };
        self.reply("250 2.1.0 Ok");
    }

    fn rcpt(&mut self, rest: &str) {
        if self.txn.mail_from.is_none() {
            self.reply("503 5.5.1 MAIL first");
            return;
        }
        let Some(to) = rest
            .get(..3)
            .filter(|p| p.eq_ignore_ascii_case("TO:"))
            .and_then(|_| path_arg(&rest[3..]))
            .filter(|a| !a.is_empty())
        else {
            self.reply("501 5.5.4 syntax: RCPT TO:<address>");
            return;
        };
        let attempt = {
            let mut st = self.ctx.shared.lock();
            let n = st.attempts.entry(to.to_ascii_lowercase()).or_insert(0);
            *n += 1;
            *n
        };
        self.ctx.shared.changed.notify_all();
        if !self.txn.smtputf8 && !to.is_ascii() {
            self.reply("553 5.6.7 Must declare SMTPUTF8 to send unicode address");
            return;
        }
        match behaviour(&to) {
            Behaviour::PermFail => {
                self.reply("550 5.1.1 user unknown");
                return;
            }
            Behaviour::TempFail if attempt <= self.ctx.opts.tempfail_times => {
                self.reply("451 4.3.0 try again later");
                return;
            }
            Behaviour::Slow => self.txn.slow = true,
            Behaviour::Drop => self.txn.drop = true,
            Behaviour::TempFailData => self.txn.tempfail_data = true,
            Behaviour::Ok | Behaviour::TempFail => {}
        }
        if let (Some(chaos), Behaviour::Ok) = (self.ctx.opts.chaos, behaviour(&to)) {
            let (a, b) = {
                let mut st = self.ctx.shared.lock();
                if st.rng == 0 {
                    st.rng = chaos.seed | 1;
                }
                let mut roll = || {
                    st.rng ^= st.rng << 13;
                    st.rng ^= st.rng >> 7;
                    st.rng ^= st.rng << 17;
                    st.rng % 100
                };
                (roll(), roll())
            };
            if a < chaos.tempfail_percent {
                self.reply("451 4.3.0 chaos: try again later");
                return;
            }
            if b < chaos.drop_percent {
                self.txn.drop = true;
            }
        }
        self.txn.rcpts.push(to);
        self.reply("250 2.1.5 Ok");
    }

    async fn data_line(&mut self, raw: Vec<u8>) -> Next {
        if self.txn.drop {
            self.mode = Mode::Command;
            self.txn = Txn::default();
            return Next::Drop;
        }
        let Mode::Data {
            content,
            after_crlf,
        } = &mut self.mode
        else {
            unreachable!("data_line outside DATA");
        };
        if *after_crlf && raw == b".\r\n" {
            let content = std::mem::take(content);
            self.mode = Mode::Command;
            let txn = std::mem::take(&mut self.txn);
            self.end_of_data(txn, content).await;
            return Next::Continue;
        }
        *after_crlf = raw.ends_with(b"\r\n");
        let line = raw.strip_prefix(b".").unwrap_or(&raw);
        content.extend_from_slice(line);
        Next::Continue
    }

    async fn end_of_data(&mut self, txn: Txn, content: Vec<u8>) {
        self.note(format!("<data: {} bytes>", content.len()));
        if txn.slow {
            tokio::time::sleep(self.ctx.opts.slow_delay).await;
        }
        if txn.tempfail_data {
            self.reply("452 4.3.1 insufficient system storage, try again later");
            return;
        }
        let message = SinkMessage {
            mail_from: txn.mail_from.unwrap_or_default(),
            mail_params: txn.mail_params,
            rcpt_to: txn.rcpts,
            data: content,
            tls: self.tls,
            helo: self.helo.clone().unwrap_or_default(),
            auth_user: self.auth_user.clone(),
            connection: self.id,
        };
        {
            let mut st = self.ctx.shared.lock();
            st.messages.push(message);
        }
        self.ctx.shared.changed.notify_all();
        self.reply("250 2.0.0 Ok: queued");
    }
}
