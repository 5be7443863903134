//! Binding listeners, the accept loops, and graceful shutdown.

use crate::connection;
use crate::{ListenerKind, ListenerSpec, SmtpConfig, TlsStore};
use posthorn_ratelimit::{
    count_refusal, AcceptBackoff, CapFull, ConnectionCap, ConnectionCounter, LogThrottle, Mode,
    Quota,
};
use posthorn_submit::Submitter;
use posthorn_types::Reply;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What every connection shares.
pub(crate) struct Shared {
    pub submitter: Arc<Submitter>,
    pub config: SmtpConfig,
    pub tls: Arc<TlsStore>,
    /// Connections per address that have not logged in yet.
    pub ip_conns: ConnectionCounter,
    /// Logged-in connections per user on this node.
    pub user_conns: ConnectionCounter,
    /// Names this node's cluster-wide leases.
    pub node_id: String,
    /// Numbers this node's connections.
    pub next_conn: AtomicU64,
    /// Every connection of these listeners holds a slot: `[smtp]
    /// max_connections`, within the process's file descriptors.
    pub conns: ConnectionCap,
    /// Refusals past that cap that still need a TLS handshake to be said
    /// (implicit TLS); past these, a connection is closed unanswered.
    pub refusing: ConnectionCap,
}

/// TLS handshakes at once for refusals past the connection cap.
const REFUSING_MAX: u64 = 64;
/// The longest such a handshake may take.
const REFUSAL_HANDSHAKE: Duration = Duration::from_secs(5);

/// A listener address that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for {}: {source}", kind.name())]
pub struct BindError {
    pub addr: SocketAddr,
    pub kind: ListenerKind,
    #[source]
    pub source: std::io::Error,
}

/// Bound SMTP listeners, ready to serve.
pub struct SmtpServer {
    shared: Arc<Shared>,
    listeners: Vec<(TcpListener, ListenerKind)>,
}

impl SmtpServer {
    /// Bind every listener now, so the caller can report a port that is
    /// taken or privileged before anything starts.
    pub async fn bind(
        specs: &[ListenerSpec],
        config: SmtpConfig,
        submitter: Arc<Submitter>,
        tls: Arc<TlsStore>,
    ) -> Result<Self, BindError> {
        let mut listeners = Vec::new();
        for spec in specs {
            let listener = TcpListener::bind(spec.addr)
                .await
                .map_err(|source| BindError {
                    addr: spec.addr,
                    kind: spec.kind,
                    source,
                })?;
            listeners.push((listener, spec.kind));
        }
        Ok(Self {
            shared: Arc::new(Shared {
                submitter,
                tls,
                ip_conns: ConnectionCounter::new(),
                user_conns: ConnectionCounter::new(),
                node_id: format!("{:016x}", rand_u64()),
                next_conn: AtomicU64::new(0),
                conns: ConnectionCap::new(config.max_connections),
                refusing: ConnectionCap::new(REFUSING_MAX),
                config,
            }),
            listeners,
        })
    }

    /// Hold the connections of these listeners to `cap` instead of `[smtp]
    /// max_connections` alone: the caller draws it from the process's file
    /// descriptors (`posthorn_ratelimit::FdBudget::cap`).
    pub fn limit_connections(&mut self, cap: ConnectionCap) {
        Arc::get_mut(&mut self.shared)
            .expect("before run, the server alone holds its shared state")
            .conns = cap;
    }

    /// The addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> Vec<(SocketAddr, ListenerKind)> {
        self.listeners
            .iter()
            .filter_map(|(l, k)| l.local_addr().ok().map(|a| (a, *k)))
            .collect()
    }

    /// Serve until `shutdown` is cancelled; then stop accepting, let open
    /// transactions finish (up to the grace period) and return.
    pub async fn run(self, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        for (listener, kind) in self.listeners {
            let shared = self.shared.clone();
            let shutdown = shutdown.clone();
            let conns = tracker.clone();
            tracker.spawn(accept_loop(listener, kind, shared, shutdown, conns));
        }
        tracker.close();
        shutdown.cancelled().await;
        let grace = self.shared.config.shutdown_grace;
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(
                ?grace,
                "connections still open after the shutdown grace period"
            );
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    kind: ListenerKind,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    conns: TaskTracker,
) {
    let mut backoff = AcceptBackoff::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff.reset();
                metrics::counter!("posthorn_smtp_connections_total", "listener" => kind.name())
                    .increment(1);
                let slot = match shared.conns.try_acquire() {
                    Ok(slot) => slot,
                    Err(full) => {
                        refuse(stream, peer, kind, full, &shared, &conns);
                        continue;
                    }
                };
                let serve = connection::serve(stream, peer, kind, shared.clone(), shutdown.clone());
                conns.spawn(async move {
                    let open = metrics::gauge!("posthorn_smtp_connections_open");
                    open.increment(1.0);
                    serve.await;
                    open.decrement(1.0);
                    drop(slot);
                });
            }
            Err(e) => {
                // Out of file descriptors (EMFILE, ENFILE), out of memory
                // for socket buffers and the like: the connection waits in
                // the backlog; wait briefly, then go on, without spinning.
                let (wait, log) = backoff.failed();
                if log {
                    tracing::warn!(error = %e, listener = kind.name(), "accept failed; backing off");
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Refusals past a cap are logged at most once every 10 s.
static CAP_WARNING: LogThrottle = LogThrottle::new();

/// The reply to a connection past the cap.
pub(crate) fn cap_reply(hostname: &str, full: CapFull) -> Reply {
    let why = match full {
        CapFull::Cap => "too many connections to this server",
        CapFull::Budget => "out of connection resources on this server",
    };
    Reply::new(
        421,
        "4.3.2",
        format!("{hostname} Error: {why}, try again later"),
    )
}

/// Answer a connection past the cap with `421 4.3.2` and close it, without
/// holding it: in plain text with one write the socket's empty buffer takes
/// at once; on an implicit-TLS listener after a short handshake, as long as
/// few such handshakes run (else it is closed unanswered).
fn refuse(
    stream: TcpStream,
    peer: SocketAddr,
    kind: ListenerKind,
    full: CapFull,
    shared: &Arc<Shared>,
    tasks: &TaskTracker,
) {
    count_refusal(match full {
        CapFull::Cap => "smtp_connections",
        CapFull::Budget => "open_files",
    });
    if CAP_WARNING.ready() {
        let why = match full {
            CapFull::Cap => "[smtp] max_connections",
            CapFull::Budget => "the file descriptors kept for connections",
        };
        tracing::warn!(%peer, limit = shared.conns.limit(), "SMTP connection refused: {why} reached (logged once per 10 s)");
    }
    let mut line = Vec::new();
    cap_reply(&shared.config.hostname, full).write_to(&mut line);
    match kind {
        ListenerKind::StartTls | ListenerKind::AutoTls => {
            let _ = stream.try_write(&line);
        }
        ListenerKind::ImplicitTls => {
            let Ok(slot) = shared.refusing.try_acquire() else {
                return;
            };
            let acceptor = shared.tls.acceptor();
            tasks.spawn(async move {
                let said = async {
                    let mut tls = acceptor.accept(stream).await?;
                    tls.write_all(&line).await?;
                    tls.shutdown().await
                };
                let _ = tokio::time::timeout(REFUSAL_HANDSHAKE, said).await;
                drop(slot);
            });
        }
    }
}

/// The per-address count behind `new_connections_per_ip_per_minute`. It
/// counts connections that do not log in: each is booked when it opens
/// and given back when it logs in. An application that opens one
/// connection per message (PHP's mail libraries and many frameworks do)
/// logs in on each, and is held to its account's own limits (messages per
/// second, connections per user), while a client that connects again and
/// again without logging in (a scanner, a password guesser between
/// lockouts, a misconfigured health check) is refused past the quota.
pub(crate) fn new_connection_key(ip: IpAddr) -> String {
    format!("conn:{ip}")
}

/// How a new connection is booked.
pub(crate) const NEW_CONNECTION_OPENS: Mode = Mode::Consume;
/// How a connection that logged in gives its booking back.
pub(crate) const NEW_CONNECTION_LOGS_IN: Mode = Mode::Refund;

/// Whether `ip` may open a new connection under
/// `new_connections_per_ip_per_minute` (see [`new_connection_key`]); books
/// it when it may.
pub(crate) async fn may_open(shared: &Shared, ip: IpAddr) -> bool {
    let quota = Quota::per_minute(shared.config.new_connections_per_ip_per_minute);
    shared
        .submitter
        .limiter()
        .check(&new_connection_key(ip), quota, 1, NEW_CONNECTION_OPENS)
        .await
        .map(|d| d.is_allowed())
        .unwrap_or(true)
}

/// A connection from `ip` logged in: it no longer counts as a new
/// connection of the address.
pub(crate) async fn logged_in(shared: &Shared, ip: IpAddr) {
    let quota = Quota::per_minute(shared.config.new_connections_per_ip_per_minute);
    let _ = shared
        .submitter
        .limiter()
        .check(&new_connection_key(ip), quota, 1, NEW_CONNECTION_LOGS_IN)
        .await;
}

/// A random number for the node id, from the standard library's hasher keys.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use posthorn_ratelimit::LocalLimiter;

    /// Three minutes of connections from one address, one every 50 ms
    /// (1,200 a minute: one per message at the default account rate of 20
    /// a second), each booked as it opens and given back when it logs in,
    /// as the driver does. Returns how many were refused.
    fn refused_in_a_minute(logs_in: bool) -> usize {
        let limiter = LocalLimiter::new();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let key = new_connection_key(ip);
        let quota = Quota::per_minute(SmtpConfig::default().new_connections_per_ip_per_minute);
        let mut refused = 0;
        for i in 0..3600u64 {
            let now = 1_000_000_000 + i * 50_000;
            if !limiter
                .check_at(&key, quota, 1, NEW_CONNECTION_OPENS, now)
                .is_allowed()
            {
                refused += 1;
                continue;
            }
            if logs_in {
                limiter.check_at(&key, quota, 1, NEW_CONNECTION_LOGS_IN, now + 10_000);
            }
        }
        refused
    }

    #[test]
    fn a_connection_per_message_at_the_account_rate_is_not_refused() {
        let d = SmtpConfig::default();
        let account = posthorn_submit::RateLimits::default();
        // The defaults this test is about: 20 messages a second is 1,200
        // connections a minute for a client that opens one per message,
        // twice the per-address quota.
        assert!(account.messages_per_second * 60 > d.new_connections_per_ip_per_minute);
        assert_eq!(refused_in_a_minute(true), 0);
    }

    #[test]
    fn connections_that_never_log_in_are_held_to_the_quota() {
        let refused = refused_in_a_minute(false);
        let quota = SmtpConfig::default().new_connections_per_ip_per_minute as usize;
        // The quota's burst, then one every 100 ms: 600 + 1,800 of the
        // 3,600 get in, about 1,200 are refused.
        assert!(
            (1100..=1300).contains(&refused),
            "{refused} of 3,600 refused with a quota of {quota} a minute"
        );
    }

    #[test]
    fn past_the_cap_is_421_4_3_2() {
        let r = cap_reply("mx.test", CapFull::Cap);
        assert_eq!((r.code, r.status), (421, "4.3.2"));
        assert!(r.text.contains("too many connections to this server"));
        let r = cap_reply("mx.test", CapFull::Budget);
        assert_eq!((r.code, r.status), (421, "4.3.2"));
    }
}
