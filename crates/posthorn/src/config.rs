//! The configuration file. Every key has a default; `posthorn.example.toml`
//! lists them all. Unknown keys are an error, so a typo is not silently
//! ignored.

use anyhow::{bail, Context};
use posthorn_delivery::client::TlsPolicy;
use posthorn_delivery::route::ResolverSettings;
use posthorn_delivery::shaping::{Shape, Shaping, ShapingRule};
use posthorn_delivery::{parse_duration, DeliveryConfig, Relay};
use posthorn_smtp::LineEndings;
use posthorn_smtpd::{IpNet, ListenerKind, ListenerSpec, SmtpConfig, TrustedNetwork};
use posthorn_submit::{AccountLimits, PolicyLimits, RateLimits, ReceivedMode, SubmitConfig};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "POSTHORN_CONFIG";

/// Where the configuration is looked for when `--config` is not given, after
/// `$POSTHORN_CONFIG`: the working directory, then the system's.
pub const DISCOVERY: [&str; 2] = ["./posthorn.toml", "/etc/posthorn/posthorn.toml"];

/// The configuration file to read: `--config`, else `$POSTHORN_CONFIG`
/// (which must exist: a variable naming a missing file is a mistake to
/// report, not to skip), else the first file of [`DISCOVERY`] that exists.
fn discover(
    flag: Option<&Path>,
    env: Option<&Path>,
    exists: impl Fn(&Path) -> bool,
) -> Option<PathBuf> {
    if let Some(f) = flag.or(env) {
        return Some(f.to_path_buf());
    }
    DISCOVERY
        .iter()
        .map(Path::new)
        .find(|p| exists(p))
        .map(Path::to_path_buf)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The file this configuration was read from (none: the defaults).
    #[serde(skip)]
    pub source: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub hostname: Option<String>,
    pub smtp: SmtpSection,
    pub policy: PolicySection,
    pub limits: LimitsSection,
    pub ratelimit: RateLimitSection,
    pub delivery: DeliverySection,
    pub http: HttpSection,
    pub webhooks: WebhooksSection,
    pub tls: TlsSection,
    pub log: LogSection,
    pub store: StoreSection,
    pub cluster: ClusterSection,
    pub tracking: TrackingSection,
}

/// Links Posthorn writes into messages and serves (issue 22): the
/// one-click unsubscribe URL (docs/unsubscribe.md), the open pixel and the
/// click links (docs/tracking.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingSection {
    /// The public HTTPS base of this server's HTTP listener the links use
    /// (`https://mail.example.com`); unset: no links are written.
    pub base_url: Option<String>,
    /// The key links are signed with, the same on every node of a cluster
    /// (at least 32 characters). Unset on the embedded store: one is
    /// generated once into `<data_dir>/tracking-key`; required with
    /// PostgreSQL.
    pub secret: Option<String>,
}

/// Where accounts, the queue and statuses are kept.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// `sqlite` (the embedded store in `data_dir`) or `postgres` (a
    /// database several nodes share).
    pub backend: String,
    /// For `postgres`: `postgres://USER:PASSWORD@HOST:PORT/DATABASE`.
    pub url: Option<String>,
    /// For `postgres`: a schema of that database to work in (created if
    /// missing), else the user's default search path.
    pub schema: Option<String>,
    /// For `postgres`: connections this node keeps to the database.
    pub max_connections: u32,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            backend: "sqlite".into(),
            url: None,
            schema: None,
            max_connections: 20,
        }
    }
}

/// Several nodes on one shared store.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// A node whose last heartbeat is older than this is dead: the others
    /// take over its delivery leases at once.
    pub node_timeout: String,
}

impl Default for ClusterSection {
    fn default() -> Self {
        Self {
            node_timeout: "30s".into(),
        }
    }
}

/// Which store a configuration names, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreChoice {
    /// The embedded store in this directory.
    Sqlite(PathBuf),
    Postgres {
        url: String,
        schema: Option<String>,
        max_connections: u32,
    },
}

impl std::fmt::Display for StoreChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreChoice::Sqlite(dir) => write!(
                f,
                "embedded (SQLite) {}",
                posthorn_store::SqliteStore::database_path(dir).display()
            ),
            StoreChoice::Postgres { url, schema, .. } => {
                write!(f, "PostgreSQL {}", redact_url(url))?;
                if let Some(s) = schema {
                    write!(f, " schema {s}")?;
                }
                Ok(())
            }
        }
    }
}

/// A database URL without its password, for logs and messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// The HTTP API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    pub enabled: bool,
    pub listen: String,
    /// A key with admin rights (or make one: posthorn apikey create --admin).
    pub admin_key: Option<String>,
    pub max_body_bytes: usize,
    /// Connections at once (503 past it) and from one address (429).
    pub max_connections: u64,
    pub max_connections_per_ip: u64,
    /// Seconds for a request's head, from the connection's start or the
    /// previous answer (so also how long a kept-alive connection may idle).
    pub header_read_timeout_secs: u64,
    /// Seconds a request body or an answer may stall.
    pub idle_timeout_secs: u64,
}

impl Default for HttpSection {
    fn default() -> Self {
        let d = posthorn_api::ApiConfig::default();
        Self {
            enabled: true,
            listen: d.listen.to_string(),
            admin_key: None,
            max_body_bytes: d.max_body_bytes,
            max_connections: d.max_connections,
            max_connections_per_ip: d.max_connections_per_ip,
            header_read_timeout_secs: d.header_read_timeout.as_secs(),
            idle_timeout_secs: d.idle_timeout.as_secs(),
        }
    }
}

/// Webhook delivery. Durations as in [delivery].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksSection {
    pub retry_schedule: Vec<String>,
    pub max_age: String,
    pub timeout: String,
    pub allow_private_networks: bool,
}

impl Default for WebhooksSection {
    fn default() -> Self {
        let d = posthorn_api::ApiConfig::default();
        Self {
            retry_schedule: d
                .webhook_retry_schedule
                .iter()
                .map(|s| format!("{s}s"))
                .collect(),
            max_age: format!("{}h", d.webhook_max_age / 3600),
            timeout: format!("{}s", d.webhook_timeout.as_secs()),
            allow_private_networks: d.allow_private_networks,
        }
    }
}

/// Outbound delivery. Durations are strings such as "30s", "5m", "72h".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySection {
    pub enabled: bool,
    /// `send` (to the recipients' mail servers, or the relay) or `capture`
    /// (keep every message in the store, mark it delivered, send nothing).
    pub mode: String,
    pub hostname: Option<String>,
    pub port: u16,
    pub nameservers: Vec<String>,
    pub retry_schedule: Vec<String>,
    pub max_age: String,
    pub dsn: bool,
    /// Outbound connections at once, all destinations together.
    pub max_connections: usize,
    /// The defaults of every `[[delivery.shaping]]` value, per destination
    /// (the mail servers of a domain, or the relay); 0 means no limit.
    #[serde(alias = "max_connections_per_host")]
    pub max_connections_per_destination: usize,
    pub messages_per_minute: u64,
    pub max_messages_per_connection: usize,
    /// A destination none of whose hosts can be reached is suspended this
    /// long, twice as long after each failed probe, up to `backoff_max`.
    pub backoff_initial: String,
    pub backoff_max: String,
    /// Overrides by recipient domain or mail server name suffix.
    pub shaping: Vec<ShapingSection>,
    pub idle_connection_timeout: String,
    pub require_tls_domains: Vec<String>,
    pub tls_ca_file: Option<PathBuf>,
    pub connect_timeout: String,
    pub command_timeout: String,
    pub data_timeout: String,
    pub lease: String,
    /// Acceptance first: how long delivery may hold its claims back while
    /// sessions crowd the store ("0s": never).
    pub yield_to_sessions: String,
    pub body_retention: String,
    pub status_retention: String,
    pub node_id: Option<String>,
    /// Deliver to internal networks (loopback, private, link-local, ...):
    /// off, recipients at such address literals are refused at RCPT and
    /// domains resolving only there bounce. The relay is exempt.
    pub allow_private_destinations: bool,
    pub relay: Option<RelaySection>,
}

/// One `[[delivery.shaping]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShapingSection {
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub mx_suffixes: Vec<String>,
    pub max_connections: Option<usize>,
    pub messages_per_minute: Option<u64>,
    pub max_messages_per_connection: Option<usize>,
}

/// A smart host that takes all outbound mail.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySection {
    pub host: String,
    #[serde(default = "default_relay_port")]
    pub port: u16,
    #[serde(default = "default_relay_tls")]
    pub tls: String,
    /// Verify the relay's certificate (webpki roots and `tls_ca_file`).
    #[serde(default)]
    pub verify_certificate: bool,
    pub user: Option<String>,
    pub password: Option<String>,
}

fn default_relay_port() -> u16 {
    587
}

fn default_relay_tls() -> String {
    "starttls".into()
}

fn duration_text(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        s if s % 86400 == 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

impl Default for DeliverySection {
    fn default() -> Self {
        let d = DeliveryConfig::default();
        Self {
            enabled: true,
            mode: "send".into(),
            hostname: None,
            port: d.port,
            nameservers: Vec::new(),
            retry_schedule: d.retry_schedule.iter().map(|&t| duration_text(t)).collect(),
            max_age: duration_text(d.max_age),
            dsn: d.dsn,
            max_connections: d.max_connections,
            max_connections_per_destination: d.shaping.defaults.max_connections,
            messages_per_minute: d.shaping.defaults.messages_per_minute,
            max_messages_per_connection: d.shaping.defaults.max_messages_per_connection,
            backoff_initial: duration_text(d.shaping.backoff_initial),
            backoff_max: duration_text(d.shaping.backoff_max),
            shaping: Vec::new(),
            idle_connection_timeout: duration_text(d.idle_connection_timeout),
            require_tls_domains: Vec::new(),
            tls_ca_file: None,
            connect_timeout: duration_text(d.connect_timeout),
            command_timeout: duration_text(d.command_timeout),
            data_timeout: duration_text(d.data_timeout),
            lease: duration_text(d.lease),
            yield_to_sessions: duration_text(d.yield_to_sessions),
            body_retention: duration_text(d.body_retention),
            status_retention: duration_text(d.status_retention),
            node_id: None,
            allow_private_destinations: d.allow_private_destinations,
            relay: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpSection {
    pub implicit_tls: Vec<String>,
    pub starttls: Vec<String>,
    /// Listeners that take either (see `ListenerKind::AutoTls`).
    pub auto_tls: Vec<String>,
    /// Milliseconds an auto_tls listener waits for a TLS ClientHello
    /// before greeting in plain text.
    pub auto_tls_wait_ms: u64,
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_line_length: usize,
    pub line_endings: String,
    pub idle_timeout_secs: u64,
    pub data_timeout_secs: u64,
    /// Seconds a connection has to log in (AUTH) from its accept, whatever
    /// it sends meanwhile; 0: no limit. Trusted networks are exempt.
    pub login_timeout_secs: u64,
    pub allow_plaintext_auth_on_loopback: bool,
    pub shutdown_grace_secs: u64,
    /// Connections of the SMTP listeners at once (421 4.3.2 past it).
    pub max_connections: u64,
    /// Seconds a message may wait for the store (451 4.3.2 past it).
    pub store_timeout_secs: u64,
    pub trusted_networks: Vec<TrustedNetworkEntry>,
    /// `full` (the client's name, address and login, as MTAs write) or
    /// `private` (none of them, as hosted providers do).
    pub received_header: ReceivedHeader,
}

/// `[smtp] received_header`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReceivedHeader {
    #[default]
    Full,
    Private,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedNetworkEntry {
    pub network: String,
    pub account: String,
}

/// Defaults for every account; `posthorn account set` overrides per account.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySection {
    pub max_attachments: usize,
    pub max_attachment_size: usize,
    pub max_attachments_total: usize,
    pub max_body_size: usize,
}

impl Default for PolicySection {
    fn default() -> Self {
        let d = PolicyLimits::default();
        Self {
            max_attachments: d.max_attachments,
            max_attachment_size: d.max_attachment_size,
            max_attachments_total: d.max_attachments_total,
            max_body_size: d.max_body_size,
        }
    }
}

/// Rate limits: account defaults (overridable with `posthorn account set`)
/// and per-address protection.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    pub messages_per_second: u64,
    pub pair_per_hour: u64,
    pub connections_per_user: u64,
    pub api_calls_per_minute: u64,
    pub connections_per_ip: u64,
    pub new_connections_per_ip_per_minute: u64,
    /// AUTH lockouts (see `posthorn_store::LockoutPolicy`): distinct wrong
    /// secrets per (address, user) within the window, and how long the
    /// lockout lasts; then the same for one address over all users.
    pub auth_failures_per_user: u32,
    pub auth_user_window_secs: u64,
    pub auth_user_lockout_secs: u64,
    pub auth_failures_per_address: u32,
    pub auth_address_window_secs: u64,
    pub auth_address_lockout_secs: u64,
    pub connections_per_user_cluster: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        let r = RateLimits::default();
        let s = SmtpConfig::default();
        Self {
            messages_per_second: r.messages_per_second,
            pair_per_hour: r.pair_per_hour,
            connections_per_user: r.connections_per_user,
            api_calls_per_minute: r.api_calls_per_minute,
            connections_per_ip: s.max_connections_per_ip,
            new_connections_per_ip_per_minute: s.new_connections_per_ip_per_minute,
            auth_failures_per_user: s.auth_lockout.user_failures,
            auth_user_window_secs: s.auth_lockout.user_window,
            auth_user_lockout_secs: s.auth_lockout.user_lockout,
            auth_failures_per_address: s.auth_lockout.address_failures,
            auth_address_window_secs: s.auth_lockout.address_window,
            auth_address_lockout_secs: s.auth_lockout.address_lockout,
            connections_per_user_cluster: s.max_connections_per_user_cluster,
        }
    }
}

/// Where rate-limit counters live.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSection {
    /// `local` (this process) or `redis` (cluster-wide).
    pub backend: String,
    pub redis_url: String,
    /// Prefix of every key Posthorn writes to Redis.
    pub redis_prefix: String,
}

impl Default for RateLimitSection {
    fn default() -> Self {
        Self {
            backend: "local".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_prefix: "posthorn:".into(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            source: None,
            data_dir: PathBuf::from("./posthorn-data"),
            hostname: None,
            smtp: SmtpSection::default(),
            policy: PolicySection::default(),
            limits: LimitsSection::default(),
            ratelimit: RateLimitSection::default(),
            delivery: DeliverySection::default(),
            http: HttpSection::default(),
            webhooks: WebhooksSection::default(),
            tls: TlsSection::default(),
            log: LogSection::default(),
            store: StoreSection::default(),
            cluster: ClusterSection::default(),
            tracking: TrackingSection::default(),
        }
    }
}

impl Default for SmtpSection {
    fn default() -> Self {
        let d = SmtpConfig::default();
        Self {
            implicit_tls: vec!["0.0.0.0:465".into()],
            starttls: vec!["0.0.0.0:587".into(), "0.0.0.0:2525".into()],
            auto_tls: Vec::new(),
            auto_tls_wait_ms: d.auto_tls_wait.as_millis() as u64,
            max_message_size: d.max_message_size,
            max_recipients: d.max_recipients,
            max_line_length: d.max_line_length,
            line_endings: "fix".into(),
            idle_timeout_secs: d.idle_timeout.as_secs(),
            data_timeout_secs: d.data_timeout.as_secs(),
            login_timeout_secs: d.login_timeout.as_secs(),
            allow_plaintext_auth_on_loopback: false,
            shutdown_grace_secs: d.shutdown_grace.as_secs(),
            max_connections: d.max_connections,
            store_timeout_secs: SubmitConfig::default().store_timeout.as_secs(),
            trusted_networks: Vec::new(),
            received_header: ReceivedHeader::Full,
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

impl Config {
    /// Read the configuration file and apply `--data-dir`. The file is
    /// `file` when given (`--config`), else the first of [`DISCOVERY`] that
    /// applies, else none (the defaults). The server and the admin commands
    /// both load it this way, so they find the same store without flags.
    pub fn load(file: Option<&Path>, data_dir: Option<&Path>) -> anyhow::Result<Self> {
        let env = std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty());
        Self::load_from(
            discover(file, env.as_deref().map(Path::new), |p| p.is_file()),
            data_dir,
        )
    }

    fn load_from(file: Option<PathBuf>, data_dir: Option<&Path>) -> anyhow::Result<Self> {
        let mut config = match &file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                let mut c: Config = toml::from_str(&text)
                    .with_context(|| format!("config file {} is not valid", path.display()))?;
                c.source = Some(path.clone());
                c
            }
            None => Config::default(),
        };
        if let Some(dir) = data_dir {
            config.data_dir = dir.to_path_buf();
        }
        Ok(config)
    }

    /// One line for people: which file, which data directory.
    pub fn describe(&self) -> String {
        let store = match self.store_choice() {
            Ok(StoreChoice::Sqlite(_)) => String::new(),
            Ok(choice) => format!(", store {choice}"),
            Err(_) => String::new(),
        };
        format!(
            "config {}, data directory {}{store}",
            self.source
                .as_deref()
                .map_or("none (defaults)".to_string(), |p| p.display().to_string()),
            self.data_dir.display()
        )
    }

    /// The store `[store]` names, or what to fix.
    pub fn store_choice(&self) -> anyhow::Result<StoreChoice> {
        let s = &self.store;
        match s.backend.as_str() {
            "sqlite" => Ok(StoreChoice::Sqlite(self.data_dir.clone())),
            "postgres" => {
                let Some(url) = s.url.clone().filter(|u| !u.is_empty()) else {
                    bail!("[store] backend = \"postgres\" needs url = \"postgres://USER:PASSWORD@HOST:5432/DATABASE\"");
                };
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    bail!("[store] url must start with postgres:// (e.g. postgres://posthorn@127.0.0.1:5432/posthorn), not {}", redact_url(&url));
                }
                if s.max_connections < 2 {
                    bail!("[store] max_connections = {}: at least 2 (one enqueues while another delivers); 20 is the default", s.max_connections);
                }
                Ok(StoreChoice::Postgres {
                    url,
                    schema: s.schema.clone(),
                    max_connections: s.max_connections,
                })
            }
            other => bail!("[store] backend = {other:?}: use \"sqlite\" (the embedded store in data_dir) or \"postgres\" (shared by a cluster)"),
        }
    }

    /// This node's name in leases and heartbeats: `[delivery] node_id`, or
    /// one made once and kept in the data directory.
    pub fn node_id(&self) -> anyhow::Result<String> {
        match &self.delivery.node_id {
            Some(id) => Ok(id.clone()),
            None => node_id(&self.data_dir),
        }
    }

    /// `[cluster] node_timeout`.
    pub fn node_timeout(&self) -> anyhow::Result<Duration> {
        let t = parse_duration(&self.cluster.node_timeout)
            .map_err(|e| anyhow::anyhow!("[cluster] node_timeout: {e}"))?;
        if t < Duration::from_secs(2) {
            bail!("[cluster] node_timeout = {:?}: at least 2s (nodes send a heartbeat every fifth of it)", self.cluster.node_timeout);
        }
        Ok(t)
    }

    /// Whether the name is a fully qualified domain name (with a dot, not
    /// `localhost`): receivers check the greeting and SPF names against DNS.
    pub fn hostname_is_qualified(name: &str) -> bool {
        let name = name.trim_end_matches('.');
        name.contains('.')
            && !name.ends_with(".localdomain")
            && !name.ends_with(".local")
            && name.parse::<std::net::IpAddr>().is_err()
    }

    /// The host name: the config's, else the machine's.
    pub fn hostname(&self) -> String {
        self.hostname.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "localhost".into())
        })
    }

    /// The HTTP API's settings from [http] and [webhooks].
    pub fn api_config(&self) -> anyhow::Result<posthorn_api::ApiConfig> {
        let h = &self.http;
        let w = &self.webhooks;
        let listen: SocketAddr = h.listen.parse().with_context(|| {
            format!(
                "[http] listen: {:?} is not an address like 127.0.0.1:8025",
                h.listen
            )
        })?;
        let dur = |key: &str, text: &str| {
            parse_duration(text).map_err(|e| anyhow::anyhow!("[webhooks] {key}: {e}"))
        };
        let mut schedule = Vec::new();
        for t in &w.retry_schedule {
            schedule.push(dur("retry_schedule", t)?.as_secs().max(1));
        }
        if schedule.is_empty() {
            bail!("[webhooks] retry_schedule is empty: give at least one delay, e.g. [\"1m\"]");
        }
        if let Some(k) = &h.admin_key {
            if k.len() < 16 {
                bail!("[http] admin_key is shorter than 16 characters: use a long random key (or posthorn apikey create --admin)");
            }
        }
        Ok(posthorn_api::ApiConfig {
            listen,
            admin_key: h.admin_key.clone(),
            max_body_bytes: h.max_body_bytes,
            allow_private_networks: w.allow_private_networks,
            webhook_retry_schedule: schedule,
            webhook_max_age: dur("max_age", &w.max_age)?.as_secs(),
            webhook_timeout: dur("timeout", &w.timeout)?,
            nameservers: self
                .delivery
                .nameservers
                .iter()
                .map(|n| {
                    n.parse::<SocketAddr>().with_context(|| {
                        format!(
                            "[delivery] nameservers: {n:?} is not an address like \"127.0.0.1:53\""
                        )
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
            auth_lockout: self.lockout_policy(),
            node_timeout: self.node_timeout()?,
            max_connections: h.max_connections,
            max_connections_per_ip: h.max_connections_per_ip,
            header_read_timeout: Duration::from_secs(h.header_read_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(h.idle_timeout_secs.max(1)),
            bounce_notices: posthorn_admin::bounce::BounceNotices {
                enabled: self.delivery.dsn,
                hostname: self
                    .delivery
                    .hostname
                    .clone()
                    .unwrap_or_else(|| self.hostname()),
            },
        })
    }

    /// The AUTH lockout of `[limits]`, the same for SMTP AUTH and for SMTP
    /// credentials over HTTP.
    fn lockout_policy(&self) -> posthorn_smtpd::LockoutPolicy {
        posthorn_smtpd::LockoutPolicy {
            user_failures: self.limits.auth_failures_per_user,
            user_window: self.limits.auth_user_window_secs,
            user_lockout: self.limits.auth_user_lockout_secs,
            address_failures: self.limits.auth_failures_per_address,
            address_window: self.limits.auth_address_window_secs,
            address_lockout: self.limits.auth_address_lockout_secs,
        }
    }

    /// The SMTP listeners. An address in `auto_tls` takes precedence over
    /// the same address in `starttls` or `implicit_tls`, so moving 587 to
    /// auto-TLS is the one line `auto_tls = ["0.0.0.0:587"]`, whatever the
    /// other lists say.
    pub fn listeners(&self) -> anyhow::Result<Vec<ListenerSpec>> {
        let mut out: Vec<ListenerSpec> = Vec::new();
        for (list, kind, key) in [
            (
                &self.smtp.implicit_tls,
                ListenerKind::ImplicitTls,
                "implicit_tls",
            ),
            (&self.smtp.starttls, ListenerKind::StartTls, "starttls"),
            (&self.smtp.auto_tls, ListenerKind::AutoTls, "auto_tls"),
        ] {
            for addr in list {
                let addr: SocketAddr = addr.parse().with_context(|| {
                    format!("[smtp] {key}: {addr:?} is not an address like 0.0.0.0:587")
                })?;
                out.push(ListenerSpec { addr, kind });
            }
        }
        let auto: Vec<SocketAddr> = out
            .iter()
            .filter(|l| l.kind == ListenerKind::AutoTls)
            .map(|l| l.addr)
            .collect();
        out.retain(|l| l.kind == ListenerKind::AutoTls || !auto.contains(&l.addr));
        if out.is_empty() {
            bail!("no SMTP listener is configured: set [smtp] implicit_tls, starttls or auto_tls, or pass --smtps / --submission / --auto-tls");
        }
        Ok(out)
    }

    /// What the submission path runs with.
    pub fn submit_config(&self) -> SubmitConfig {
        let p = &self.policy;
        let l = &self.limits;
        SubmitConfig {
            hostname: self.hostname(),
            limits: AccountLimits {
                policy: PolicyLimits {
                    max_attachments: p.max_attachments,
                    max_attachment_size: p.max_attachment_size,
                    max_attachments_total: p.max_attachments_total,
                    max_body_size: p.max_body_size,
                    max_message_size: self.smtp.max_message_size,
                },
                rate: RateLimits {
                    messages_per_second: l.messages_per_second,
                    pair_per_hour: l.pair_per_hour,
                    connections_per_user: l.connections_per_user,
                    api_calls_per_minute: l.api_calls_per_minute,
                },
                bounce_notices: u64::from(self.delivery.dsn),
                max_recipients: self.smtp.max_recipients as u64,
                unsubscribe: 0,
                tracking: 0,
            },
            received: match self.smtp.received_header {
                ReceivedHeader::Full => ReceivedMode::Full,
                ReceivedHeader::Private => ReceivedMode::Private,
            },
            allow_private_destinations: self.delivery.allow_private_destinations,
            store_timeout: Duration::from_secs(self.smtp.store_timeout_secs),
            ..SubmitConfig::default()
        }
    }

    /// What the delivery engine runs with. The node id is the config's, or
    /// one generated into the data directory on first run.
    pub fn delivery_config(&self) -> anyhow::Result<DeliveryConfig> {
        let d = &self.delivery;
        let dur = |key: &str, text: &str| {
            parse_duration(text).map_err(|e| anyhow::anyhow!("[delivery] {key}: {e}"))
        };
        let nameservers = d
            .nameservers
            .iter()
            .map(|n| {
                n.parse::<SocketAddr>().with_context(|| {
                    format!("[delivery] nameservers: {n:?} is not an address like \"127.0.0.1:53\"")
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let retry_schedule = d
            .retry_schedule
            .iter()
            .map(|t| dur("retry_schedule", t))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if retry_schedule.is_empty() {
            bail!(
                "[delivery] retry_schedule is empty: give at least one wait, e.g. [\"1m\", \"5m\"]"
            );
        }
        let relay = match &d.relay {
            None => None,
            Some(r) => {
                let tls = match r.tls.as_str() {
                    "none" => TlsPolicy::None,
                    "starttls" => TlsPolicy::Required,
                    "opportunistic" => TlsPolicy::Opportunistic,
                    "implicit" => TlsPolicy::Implicit,
                    other => bail!("[delivery.relay] tls = {other:?}: use \"none\", \"starttls\", \"opportunistic\" or \"implicit\""),
                };
                let auth = match (&r.user, &r.password) {
                    (Some(u), Some(p)) => Some((u.clone(), p.clone())),
                    (None, None) => None,
                    _ => bail!("[delivery.relay] needs both user and password, or neither"),
                };
                if auth.is_some() && tls == TlsPolicy::None {
                    bail!("[delivery.relay] sends a password only over TLS: set tls = \"starttls\" or \"implicit\"");
                }
                Some(Relay {
                    host: r.host.clone(),
                    port: r.port,
                    tls,
                    verify_certificate: r.verify_certificate,
                    auth,
                })
            }
        };
        let extra_roots = match &d.tls_ca_file {
            None => Vec::new(),
            Some(path) => {
                use rustls_pki_types::pem::PemObject;
                rustls_pki_types::CertificateDer::pem_file_iter(path)
                    .with_context(|| {
                        format!("[delivery] tls_ca_file: cannot read {}", path.display())
                    })?
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| {
                        format!(
                            "[delivery] tls_ca_file: {} holds no PEM certificates",
                            path.display()
                        )
                    })?
            }
        };
        let node_id = self.node_id()?;
        let capture = match d.mode.as_str() {
            "send" => false,
            "capture" => true,
            other => bail!("[delivery] mode = {other:?}: use \"send\" (deliver) or \"capture\" (keep mail, send nothing)"),
        };
        let status_retention = dur("status_retention", &d.status_retention)?;
        let mut body_retention = dur("body_retention", &d.body_retention)?;
        if capture {
            // Captured mail is there to be read: keep it as long as its
            // record.
            body_retention = body_retention.max(status_retention);
        }
        Ok(DeliveryConfig {
            capture,
            hostname: d.hostname.clone().unwrap_or_else(|| self.hostname()),
            port: d.port,
            resolver: ResolverSettings {
                nameservers,
                ..ResolverSettings::default()
            },
            retry_schedule,
            max_age: dur("max_age", &d.max_age)?,
            dsn: d.dsn,
            relay,
            allow_private_destinations: d.allow_private_destinations,
            max_connections: d.max_connections.max(1),
            shaping: self.shaping()?,
            idle_connection_timeout: dur("idle_connection_timeout", &d.idle_connection_timeout)?,
            require_tls_domains: d.require_tls_domains.clone(),
            extra_roots,
            connect_timeout: dur("connect_timeout", &d.connect_timeout)?,
            command_timeout: dur("command_timeout", &d.command_timeout)?,
            data_timeout: dur("data_timeout", &d.data_timeout)?,
            lease: dur("lease", &d.lease)?,
            yield_to_sessions: dur("yield_to_sessions", &d.yield_to_sessions)?,
            body_retention,
            status_retention,
            node_id,
            ..DeliveryConfig::default()
        })
    }

    /// `[delivery]`'s per-destination defaults and `[[delivery.shaping]]`.
    fn shaping(&self) -> anyhow::Result<Shaping> {
        let d = &self.delivery;
        let dur = |key: &str, text: &str| {
            parse_duration(text).map_err(|e| anyhow::anyhow!("[delivery] {key}: {e}"))
        };
        let backoff_initial = dur("backoff_initial", &d.backoff_initial)?;
        let backoff_max = dur("backoff_max", &d.backoff_max)?;
        if backoff_initial.is_zero() || backoff_max < backoff_initial {
            bail!("[delivery] backoff_initial = {:?}, backoff_max = {:?}: the first must be above zero and the second at least the first (defaults \"1m\" and \"30m\")", d.backoff_initial, d.backoff_max);
        }
        let mut rules = Vec::new();
        for (i, r) in d.shaping.iter().enumerate() {
            if r.domains.is_empty() && r.mx_suffixes.is_empty() {
                bail!("[[delivery.shaping]] entry {}: name the destinations it is for with domains = [...] or mx_suffixes = [...]", i + 1);
            }
            let lower = |v: &[String]| -> Vec<String> {
                v.iter()
                    .map(|x| x.trim().trim_end_matches('.').to_ascii_lowercase())
                    .collect()
            };
            let mx_suffixes = lower(&r.mx_suffixes)
                .into_iter()
                .map(|x| {
                    if x.starts_with('.') {
                        x
                    } else {
                        format!(".{x}")
                    }
                })
                .collect();
            rules.push(ShapingRule {
                domains: lower(&r.domains),
                mx_suffixes,
                max_connections: r.max_connections,
                messages_per_minute: r.messages_per_minute,
                max_messages_per_connection: r.max_messages_per_connection,
            });
        }
        Ok(Shaping {
            defaults: Shape {
                max_connections: d.max_connections_per_destination,
                messages_per_minute: d.messages_per_minute,
                max_messages_per_connection: d.max_messages_per_connection,
            },
            rules,
            backoff_initial,
            backoff_max,
        })
    }

    pub fn smtp_config(&self) -> anyhow::Result<SmtpConfig> {
        let s = &self.smtp;
        let line_endings = match s.line_endings.as_str() {
            "fix" => LineEndings::Fix,
            "reject" => LineEndings::Reject,
            other => bail!("[smtp] line_endings = {other:?}: use \"fix\" or \"reject\""),
        };
        let trusted_networks = s
            .trusted_networks
            .iter()
            .map(|t| {
                Ok(TrustedNetwork {
                    network: t
                        .network
                        .parse::<IpNet>()
                        .map_err(|e| anyhow::anyhow!("[smtp] trusted_networks: {e}"))?,
                    account: t.account.clone(),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(SmtpConfig {
            hostname: self.hostname(),
            max_message_size: s.max_message_size,
            max_recipients: s.max_recipients,
            max_line_length: s.max_line_length,
            line_endings,
            idle_timeout: Duration::from_secs(s.idle_timeout_secs),
            data_timeout: Duration::from_secs(s.data_timeout_secs),
            login_timeout: Duration::from_secs(s.login_timeout_secs),
            allow_plaintext_auth_on_loopback: s.allow_plaintext_auth_on_loopback,
            trusted_networks,
            shutdown_grace: Duration::from_secs(s.shutdown_grace_secs),
            auto_tls_wait: Duration::from_millis(s.auto_tls_wait_ms),
            max_connections: s.max_connections,
            max_connections_per_ip: self.limits.connections_per_ip,
            new_connections_per_ip_per_minute: self.limits.new_connections_per_ip_per_minute,
            auth_lockout: self.lockout_policy(),
            max_connections_per_user_cluster: self.limits.connections_per_user_cluster,
            ..SmtpConfig::default()
        })
    }
}

/// This node's id: kept in `<data_dir>/node-id`, made on first run.
impl Config {
    /// How the submitter makes signed links and the HTTP listener checks
    /// them (`[tracking]`): `None` without `base_url`. The key is
    /// `secret`'s, or on the embedded store one generated once into
    /// `<data_dir>/tracking-key` (mode 0600), so links stay valid across
    /// restarts; a cluster must configure `secret`, the same on every
    /// node, or links made by one node would be refused by the others.
    pub fn links(&self) -> anyhow::Result<Option<posthorn_submit::links::Links>> {
        use posthorn_submit::links::Links;
        let Some(base) = self.tracking.base_url.as_deref().filter(|b| !b.is_empty()) else {
            return Ok(None);
        };
        let host = base.strip_prefix("https://").unwrap_or("");
        if host.trim_end_matches('/').is_empty()
            || host.contains(['?', '#', ' ', '"', '<', '>', '\\'])
            || !host.is_ascii()
        {
            bail!("[tracking] base_url = {base:?}: the public https:// address of the HTTP listener, e.g. \"https://mail.example.com\" (RFC 8058 unsubscribe links must be HTTPS; no query or fragment)");
        }
        let key = match self.tracking.secret.as_deref() {
            Some(secret) if secret.len() >= 32 => Links::key_from_secret(secret),
            Some(_) => bail!("[tracking] secret must be at least 32 characters (e.g. `openssl rand -hex 32`)"),
            None if self.store.backend == "postgres" => bail!("[tracking] base_url with [store] backend = \"postgres\" needs [tracking] secret, the same on every node (e.g. `openssl rand -hex 32`): links made by one node are checked by any"),
            None => tracking_key(&self.data_dir)?,
        };
        Ok(Some(Links::new(key, base)))
    }
}

/// The link key kept in `<data_dir>/tracking-key` (64 hex digits, mode
/// 0600), made on first use.
fn tracking_key(data_dir: &Path) -> anyhow::Result<[u8; 32]> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = data_dir.join("tracking-key");
    let parse = |text: &str| -> Option<[u8; 32]> {
        let text = text.trim();
        if text.len() != 64 {
            return None;
        }
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(key)
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return parse(&text).with_context(|| {
                format!("{} is not 64 hex digits; remove it to make a new key (links already sent stop working)", path.display())
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let key: [u8; 32] = rand::random();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(format!("{hex}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(key)
}

fn node_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("node-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() {
            return Ok(id.to_string());
        }
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let id = format!("node-{:016x}", rand::random::<u64>());
    std::fs::write(&path, format!("{id}\n"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_file_is_found_without_flags() {
        let none = |_: &Path| false;
        let all = |_: &Path| true;
        let only_etc = |p: &Path| p.starts_with("/etc");
        let flag = Path::new("/srv/my.toml");
        let env = Path::new("/opt/env.toml");
        // --config wins, then $POSTHORN_CONFIG (even when missing: then
        // loading it says so), then ./posthorn.toml, then /etc.
        assert_eq!(discover(Some(flag), Some(env), all), Some(flag.into()));
        assert_eq!(discover(None, Some(env), none), Some(env.into()));
        assert_eq!(
            discover(None, None, all),
            Some(PathBuf::from("./posthorn.toml"))
        );
        assert_eq!(
            discover(None, None, only_etc),
            Some(PathBuf::from("/etc/posthorn/posthorn.toml"))
        );
        assert_eq!(discover(None, None, none), None);
        let err = Config::load_from(Some(env.into()), None).unwrap_err();
        assert!(format!("{err:#}").contains("cannot read config file /opt/env.toml"));
    }

    #[test]
    fn an_auto_tls_address_replaces_the_same_starttls_one() {
        let mut c = Config::default();
        c.smtp.auto_tls = vec!["0.0.0.0:587".into()];
        let listeners = c.listeners().unwrap();
        let on_587: Vec<_> = listeners
            .iter()
            .filter(|l| l.addr.port() == 587)
            .map(|l| l.kind)
            .collect();
        assert_eq!(on_587, [ListenerKind::AutoTls]);
        assert!(listeners.iter().any(|l| l.addr.port() == 2525));
        assert!(listeners.iter().any(|l| l.addr.port() == 465));
    }

    #[test]
    fn qualified_host_names() {
        assert!(Config::hostname_is_qualified("mail.example.com"));
        assert!(Config::hostname_is_qualified("mail.example.com."));
        assert!(!Config::hostname_is_qualified("vm"));
        assert!(!Config::hostname_is_qualified("localhost"));
        assert!(!Config::hostname_is_qualified("box.localdomain"));
        assert!(!Config::hostname_is_qualified("192.0.2.1"));
    }

    #[test]
    fn the_store_section_is_checked_with_a_fix_in_each_error() {
        let parse = |t: &str| toml::from_str::<Config>(t).unwrap();
        assert!(matches!(
            Config::default().store_choice().unwrap(),
            StoreChoice::Sqlite(_)
        ));
        let pg =
            parse("[store]\nbackend = \"postgres\"\nurl = \"postgres://u:secret@db:5432/ph\"\n");
        let choice = pg.store_choice().unwrap();
        assert!(!choice.to_string().contains("secret"), "{choice}");
        assert!(choice.to_string().contains("postgres://u:***@db:5432/ph"));
        let e = parse("[store]\nbackend = \"postgres\"\n")
            .store_choice()
            .unwrap_err();
        assert!(e.to_string().contains("needs url"), "{e}");
        let e = parse("[store]\nbackend = \"mysql\"\n")
            .store_choice()
            .unwrap_err();
        assert!(e.to_string().contains("\"sqlite\""), "{e}");
        let e = parse("[store]\nbackend = \"postgres\"\nurl = \"mysql://x\"\n")
            .store_choice()
            .unwrap_err();
        assert!(e.to_string().contains("postgres://"), "{e}");
        let e = parse("[cluster]\nnode_timeout = \"1s\"\n")
            .node_timeout()
            .unwrap_err();
        assert!(e.to_string().contains("at least 2s"), "{e}");
        assert_eq!(redact_url("postgres://u@h/d"), "postgres://u@h/d");
    }

    #[test]
    fn internal_destinations_are_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let parse = |t: &str| {
            let mut c = toml::from_str::<Config>(t).unwrap();
            c.data_dir = dir.path().to_path_buf();
            c
        };
        let off = parse("");
        assert!(!off.submit_config().allow_private_destinations);
        assert!(!off.delivery_config().unwrap().allow_private_destinations);
        assert!(!off.api_config().unwrap().allow_private_networks);
        let on = parse(
            "[delivery]\nallow_private_destinations = true\n[webhooks]\nallow_private_networks = true\n",
        );
        assert!(on.submit_config().allow_private_destinations);
        assert!(on.delivery_config().unwrap().allow_private_destinations);
        assert!(on.api_config().unwrap().allow_private_networks);
    }

    #[test]
    fn example_config_parses_and_matches_defaults() {
        let text = include_str!("../../../posthorn.example.toml");
        let parsed: Config = toml::from_str(text).expect("example config parses");
        let d = Config::default();
        assert_eq!(parsed.data_dir, d.data_dir);
        assert_eq!(parsed.smtp.implicit_tls, d.smtp.implicit_tls);
        assert_eq!(parsed.smtp.starttls, d.smtp.starttls);
        assert_eq!(parsed.smtp.max_message_size, d.smtp.max_message_size);
        assert_eq!(parsed.smtp.max_recipients, d.smtp.max_recipients);
        assert_eq!(parsed.smtp.received_header, d.smtp.received_header);
        assert_eq!(parsed.smtp.max_line_length, d.smtp.max_line_length);
        assert_eq!(parsed.smtp.line_endings, d.smtp.line_endings);
        assert_eq!(parsed.smtp.idle_timeout_secs, d.smtp.idle_timeout_secs);
        assert_eq!(parsed.smtp.data_timeout_secs, d.smtp.data_timeout_secs);
        assert_eq!(parsed.smtp.max_connections, d.smtp.max_connections);
        assert_eq!(parsed.smtp.store_timeout_secs, d.smtp.store_timeout_secs);
        assert_eq!(parsed.http.max_connections, d.http.max_connections);
        assert_eq!(
            parsed.http.max_connections_per_ip,
            d.http.max_connections_per_ip
        );
        assert_eq!(
            parsed.http.header_read_timeout_secs,
            d.http.header_read_timeout_secs
        );
        assert_eq!(parsed.http.idle_timeout_secs, d.http.idle_timeout_secs);
        assert_eq!(parsed.smtp.login_timeout_secs, d.smtp.login_timeout_secs);
        assert_eq!(parsed.log.level, d.log.level);
        assert_eq!(parsed.submit_config().limits, d.submit_config().limits);
        assert_eq!(
            parsed.limits.connections_per_ip,
            d.limits.connections_per_ip
        );
        assert_eq!(
            parsed.limits.new_connections_per_ip_per_minute,
            d.limits.new_connections_per_ip_per_minute
        );
        assert_eq!(
            parsed.smtp_config().unwrap().auth_lockout,
            d.smtp_config().unwrap().auth_lockout
        );
        assert_eq!(
            parsed.limits.connections_per_user_cluster,
            d.limits.connections_per_user_cluster
        );
        assert_eq!(parsed.store_choice().unwrap(), d.store_choice().unwrap());
        assert_eq!(parsed.store.max_connections, d.store.max_connections);
        assert_eq!(parsed.node_timeout().unwrap(), d.node_timeout().unwrap());
        assert_eq!(parsed.ratelimit.backend, d.ratelimit.backend);
        assert_eq!(parsed.ratelimit.redis_url, d.ratelimit.redis_url);
        assert_eq!(parsed.ratelimit.redis_prefix, d.ratelimit.redis_prefix);
        parsed.listeners().unwrap();
        parsed.smtp_config().unwrap();
        let (pd, dd) = (&parsed.delivery, &d.delivery);
        assert_eq!(pd.enabled, dd.enabled);
        assert_eq!(pd.port, dd.port);
        assert_eq!(pd.retry_schedule, dd.retry_schedule);
        assert_eq!(pd.max_age, dd.max_age);
        assert_eq!(pd.dsn, dd.dsn);
        assert_eq!(pd.max_connections, dd.max_connections);
        assert_eq!(
            pd.max_connections_per_destination,
            dd.max_connections_per_destination
        );
        assert_eq!(pd.messages_per_minute, dd.messages_per_minute);
        assert_eq!(
            pd.max_messages_per_connection,
            dd.max_messages_per_connection
        );
        assert_eq!(pd.backoff_initial, dd.backoff_initial);
        assert_eq!(pd.backoff_max, dd.backoff_max);
        // (Not delivery_config(): it reads or writes the node id in the
        // data directory.)
        assert_eq!(parsed.shaping().unwrap(), d.shaping().unwrap());
        assert_eq!(pd.idle_connection_timeout, dd.idle_connection_timeout);
        assert_eq!(pd.connect_timeout, dd.connect_timeout);
        assert_eq!(pd.command_timeout, dd.command_timeout);
        assert_eq!(pd.data_timeout, dd.data_timeout);
        assert_eq!(pd.lease, dd.lease);
        assert_eq!(pd.yield_to_sessions, dd.yield_to_sessions);
        assert_eq!(pd.body_retention, dd.body_retention);
        assert_eq!(pd.status_retention, dd.status_retention);
        assert!(pd.relay.is_none());
        assert_eq!(pd.allow_private_destinations, dd.allow_private_destinations);
        assert!(!dd.allow_private_destinations);
        assert_eq!(
            parsed.webhooks.allow_private_networks,
            d.webhooks.allow_private_networks
        );
        assert!(!d.webhooks.allow_private_networks);
        let dir = tempfile::tempdir().unwrap();
        let mut with_dir = parsed;
        with_dir.data_dir = dir.path().to_path_buf();
        let c = with_dir.delivery_config().unwrap();
        assert_eq!(c.retry_schedule, DeliveryConfig::default().retry_schedule);
        assert_eq!(
            c.node_id,
            with_dir.delivery_config().unwrap().node_id,
            "the node id is kept"
        );
    }

    #[test]
    fn shaping_rules_take_the_defaults_they_do_not_set() {
        let c: Config = toml::from_str(
            "[delivery]\nmax_connections_per_host = 7\nmessages_per_minute = 100\n\
             [[delivery.shaping]]\ndomains = [\"GMail.com\"]\nmax_connections = 10\n\
             [[delivery.shaping]]\nmx_suffixes = [\"google.com.\"]\nmessages_per_minute = 0\n",
        )
        .unwrap();
        let s = c.shaping().unwrap();
        // The old name of the per-destination default still works.
        assert_eq!(s.defaults.max_connections, 7);
        assert_eq!(s.rules[0].domains, ["gmail.com"]);
        assert_eq!(s.rules[1].mx_suffixes, [".google.com"]);
        let (rule, shape) = s.shape_for("example.org", &["aspmx.l.google.com".into()]);
        assert_eq!(rule, Some(1));
        assert_eq!((shape.max_connections, shape.messages_per_minute), (7, 0));
        let (_, shape) = s.shape_for("gmail.com", &[]);
        assert_eq!(
            (shape.max_connections, shape.messages_per_minute),
            (10, 100)
        );

        let bad: Config = toml::from_str("[[delivery.shaping]]\nmax_connections = 1\n").unwrap();
        let e = bad.shaping().unwrap_err().to_string();
        assert!(e.contains("domains = [...] or mx_suffixes"), "{e}");
        let bad: Config =
            toml::from_str("[delivery]\nbackoff_initial = \"10m\"\nbackoff_max = \"1m\"\n")
                .unwrap();
        assert!(bad.shaping().is_err());
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(toml::from_str::<Config>("[smtp]\nmax_recipient = 3\n").is_err());
    }

    #[test]
    fn tracking_links_need_https_and_a_shared_secret_in_a_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let config = |extra: &str| {
            let mut c: Config = toml::from_str(&format!("[tracking]\n{extra}")).unwrap();
            c.data_dir = dir.path().to_path_buf();
            c
        };
        assert!(config("").links().unwrap().is_none());
        for bad in [
            "http://mail.example.com",
            "https://",
            "https://x/?a=1",
            "mail.example.com",
        ] {
            let err = config(&format!("base_url = {bad:?}")).links().unwrap_err();
            assert!(
                err.to_string().contains("[tracking] base_url"),
                "{bad}: {err}"
            );
        }
        // Embedded store: a key made once, 0600, the same after.
        let base = "base_url = \"https://mail.example.com/\"";
        let links = config(base).links().unwrap().unwrap();
        assert_eq!(links.base_url(), "https://mail.example.com");
        let path = dir.path().join("tracking-key");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let token = links.unsubscribe_token(1, posthorn_types::MessageId::generate(), "a@b.c");
        let again = config(base).links().unwrap().unwrap();
        assert!(again.verify_unsubscribe(&token).is_some());
        // PostgreSQL: a secret, at least 32 characters, the same on every node.
        let pg = format!("{base}\n[store]\nbackend = \"postgres\"");
        let err = config(&pg).links().unwrap_err().to_string();
        assert!(err.contains("needs [tracking] secret"), "{err}");
        let short = config(&format!("{base}\nsecret = \"short\"")).links();
        assert!(short.unwrap_err().to_string().contains("at least 32"));
        let secret = format!("{base}\nsecret = \"{}\"", "s".repeat(32));
        let a = config(&secret).links().unwrap().unwrap();
        assert!(a.verify_unsubscribe(&token).is_none());
        let t = a.unsubscribe_token(1, posthorn_types::MessageId::generate(), "a@b.c");
        assert!(config(&secret)
            .links()
            .unwrap()
            .unwrap()
            .verify_unsubscribe(&t)
            .is_some());
    }
}
