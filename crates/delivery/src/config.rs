//! How the delivery engine is configured; the binary fills this from the
//! `[delivery]` section of its config file.

use crate::client::TlsPolicy;
use crate::route::ResolverSettings;
use crate::shaping::Shaping;
use rustls_pki_types::CertificateDer;
use std::time::Duration;

/// Everything the engine runs with. [`DeliveryConfig::default`] is what a
/// production node uses when the config file says nothing.
#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    /// Capture mode: send nothing; every recipient is recorded delivered
    /// with [`crate::engine::CAPTURED_REPLY`] and the content stays in the
    /// store (for trying Posthorn out, or an application's tests).
    pub capture: bool,
    /// The EHLO name, and the reporting MTA of bounce notices.
    pub hostname: String,
    /// The port of remote mail servers (25; tests set another).
    pub port: u16,
    pub resolver: ResolverSettings,
    /// Wait before each retry: the first entry after the first failure, and
    /// so on; the last entry repeats.
    pub retry_schedule: Vec<Duration>,
    /// A recipient still failing temporarily this long after the message
    /// was accepted expires.
    pub max_age: Duration,
    /// Send bounce notices (RFC 3464) to the envelope sender; an account
    /// setting `bounce_notices = 0` turns them off for one account.
    pub dsn: bool,
    /// Send everything through this host instead of MX lookups. The relay
    /// is the operator's choice and is used whatever its address.
    pub relay: Option<Relay>,
    /// Deliver to internal addresses (loopback, private, link-local, ...:
    /// `posthorn_types::net::is_internal`) that a recipient's domain
    /// resolves to or names as a literal. Off: they are left out of the
    /// route, and a domain with nothing else bounces (`550 5.7.1`). For
    /// test setups whose mail servers are on loopback.
    pub allow_private_destinations: bool,
    /// Outbound connections at once, all destinations together.
    pub max_connections: usize,
    /// Per destination: connections, messages per minute and per
    /// connection (defaults and overrides), and the backoff of a
    /// destination that cannot be reached.
    pub shaping: Shaping,
    /// How long an unused connection is kept open for the next message.
    pub idle_connection_timeout: Duration,
    /// Recipients claimed from the store at once.
    pub claim_batch: u32,
    /// Acceptance first: when sessions crowd the store (several waiting
    /// for their commit at once), delivery holds its claims back until the
    /// crowd has gone, for at most this long; a crowd that lasts longer is
    /// delivered as usual meanwhile. A burst is then accepted at the
    /// store's full pace, its delivery starting as it ends (at most this
    /// late), instead of delivery's store work (claims, the status of
    /// every message sent) making the sessions' `250`s wait. Zero turns it
    /// off.
    pub yield_to_sessions: Duration,
    /// How long a claimed recipient is leased to this node; one attempt
    /// never runs longer (it is cut off and retried), so no other node
    /// picks the same work while it runs.
    pub lease: Duration,
    /// How often the store is asked for due work when nothing woke the
    /// engine earlier.
    pub poll_interval: Duration,
    /// Domains whose mail must go over verified TLS (else it is deferred).
    pub require_tls_domains: Vec<String>,
    /// Extra trust anchors for verified TLS (the webpki roots always count).
    pub extra_roots: Vec<CertificateDer<'static>>,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    /// Keep a message's content this long after every recipient is final.
    pub body_retention: Duration,
    /// Keep a message's record and statuses this long after it is final.
    pub status_retention: Duration,
    /// This node's name in leases; stable across restarts so a restart
    /// takes its own leases back at once.
    pub node_id: String,
}

/// A smart host: every message goes there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relay {
    pub host: String,
    pub port: u16,
    pub tls: TlsPolicy,
    /// Verify the relay's certificate (with `Required` or `Implicit` TLS).
    pub verify_certificate: bool,
    /// AUTH PLAIN user and password.
    pub auth: Option<(String, String)>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        let m = |n: u64| Duration::from_secs(60 * n);
        Self {
            capture: false,
            hostname: "localhost".into(),
            port: 25,
            resolver: ResolverSettings::default(),
            retry_schedule: vec![m(1), m(5), m(15), m(30), m(60), m(120), m(240)],
            max_age: Duration::from_secs(72 * 3600),
            dsn: true,
            relay: None,
            allow_private_destinations: false,
            max_connections: 200,
            shaping: Shaping::default(),
            idle_connection_timeout: Duration::from_secs(5),
            claim_batch: 500,
            yield_to_sessions: Duration::from_secs(2),
            lease: Duration::from_secs(900),
            poll_interval: Duration::from_secs(1),
            require_tls_domains: Vec::new(),
            extra_roots: Vec::new(),
            connect_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
            body_retention: Duration::ZERO,
            status_retention: Duration::from_secs(30 * 86400),
            node_id: "node".into(),
        }
    }
}

/// `"90s"`, `"5m"`, `"2h"`, `"3d"`, `"250ms"`, or a plain number of
/// seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().map_err(|_| {
        format!("{text:?} is not a duration like \"30s\", \"5m\", \"2h\" or \"3d\"")
    })?;
    let secs = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(n)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?}; use ms, s, m, h or d"
            ))
        }
    };
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("72h"), Ok(Duration::from_secs(72 * 3600)));
        assert_eq!(parse_duration("3d"), Ok(Duration::from_secs(3 * 86400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
