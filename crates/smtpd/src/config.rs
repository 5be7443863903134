use crate::IpNet;
use posthorn_smtp::LineEndings;
use posthorn_store::LockoutPolicy;
use std::net::SocketAddr;
use std::time::Duration;

/// How a listener starts TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerKind {
    /// TLS from the first byte (SMTPS, port 465).
    ImplicitTls,
    /// Plaintext until STARTTLS (submission 587, 2525, 25).
    StartTls,
    /// Either: waits [`SmtpConfig::auto_tls_wait`] for a TLS ClientHello
    /// before the greeting and speaks TLS from the first byte if one comes
    /// (clients told "587 uses SSL", as Tencent's samples and MailKit's
    /// `SslOnConnect` are), else greets in plain text and offers STARTTLS.
    AutoTls,
}

impl ListenerKind {
    pub fn name(&self) -> &'static str {
        match self {
            ListenerKind::ImplicitTls => "smtps (implicit TLS)",
            ListenerKind::StartTls => "submission (STARTTLS)",
            ListenerKind::AutoTls => "submission (implicit TLS or STARTTLS)",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerSpec {
    pub addr: SocketAddr,
    pub kind: ListenerKind,
}

/// A client network whose connections are logged in without AUTH as an
/// account (opt-in; for benchmarks with `smtp-source` and legacy hosts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedNetwork {
    pub network: IpNet,
    pub account: String,
}

/// Everything the SMTP side is configured with.
#[derive(Clone, Debug)]
pub struct SmtpConfig {
    pub hostname: String,
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_line_length: usize,
    pub line_endings: LineEndings,
    /// Longest wait for the next command.
    pub idle_timeout: Duration,
    /// Longest time for the whole content of one message.
    pub data_timeout: Duration,
    /// Longest TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// How long a connection may go on without a successful AUTH, counted
    /// from its accept, whatever it sends meanwhile (NOOP, RSET, EHLO, a
    /// byte at a time); past it `421 4.7.0` and close. Connections from a
    /// trusted network are logged in from the start and exempt. Zero: no
    /// limit (only `idle_timeout` applies).
    pub login_timeout: Duration,
    /// How long an [`ListenerKind::AutoTls`] listener waits for a TLS
    /// ClientHello before greeting in plain text: the delay a STARTTLS
    /// client there sees before its greeting.
    pub auto_tls_wait: Duration,
    /// Allow AUTH without TLS from loopback clients.
    pub allow_plaintext_auth_on_loopback: bool,
    pub trusted_networks: Vec<TrustedNetwork>,
    /// How long shutdown waits for transactions in flight.
    pub shutdown_grace: Duration,
    /// Connections of these listeners at once, on this node (0: no limit);
    /// past it `421 4.3.2` and close. The process's file descriptors may
    /// cap them lower (`SmtpServer::limit_connections`).
    pub max_connections: u64,
    /// Connections from one address that have not logged in (0: no limit).
    pub max_connections_per_ip: u64,
    /// Connections per address per minute that do not log in (0: no
    /// limit). Each is booked when it opens and given back when it logs
    /// in, so an application that opens a connection per message and logs
    /// in is held to its account's limits, not to this one.
    pub new_connections_per_ip_per_minute: u64,
    /// When failed logins lock AUTH out, per (client address, user) and per
    /// client address (see [`LockoutPolicy`] for the defaults and why). The
    /// state is in the store, so `posthorn lockout list|clear` sees it.
    pub auth_lockout: LockoutPolicy,
    /// Logged-in connections per user across the cluster (Redis leases;
    /// 0: no cluster-wide cap, only the per-node one).
    pub max_connections_per_user_cluster: u64,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            hostname: "localhost".into(),
            max_message_size: 16 * 1024 * 1024,
            max_recipients: 50,
            max_line_length: 2000,
            line_endings: LineEndings::Fix,
            idle_timeout: Duration::from_secs(30),
            data_timeout: Duration::from_secs(600),
            tls_handshake_timeout: Duration::from_secs(10),
            login_timeout: Duration::from_secs(60),
            auto_tls_wait: Duration::from_millis(300),
            allow_plaintext_auth_on_loopback: false,
            trusted_networks: Vec::new(),
            shutdown_grace: Duration::from_secs(30),
            max_connections: 10_000,
            max_connections_per_ip: 50,
            new_connections_per_ip_per_minute: 600,
            auth_lockout: LockoutPolicy::default(),
            max_connections_per_user_cluster: 0,
        }
    }
}
