//! Binding listeners, the accept loops, and graceful shutdown.

use crate::connection;
use crate::{ListenerKind, ListenerSpec, SmtpConfig, TlsStore};
use posthorn_ratelimit::ConnectionCounter;
use posthorn_submit::Submitter;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
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
}

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
                config,
                tls,
                ip_conns: ConnectionCounter::new(),
                user_conns: ConnectionCounter::new(),
                node_id: format!("{:016x}", rand_u64()),
                next_conn: AtomicU64::new(0),
            }),
            listeners,
        })
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
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                metrics::counter!("posthorn_smtp_connections_total", "listener" => kind.name())
                    .increment(1);
                let serve = connection::serve(stream, peer, kind, shared.clone(), shutdown.clone());
                conns.spawn(async move {
                    let open = metrics::gauge!("posthorn_smtp_connections_open");
                    open.increment(1.0);
                    serve.await;
                    open.decrement(1.0);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: wait, then go on.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// A random number for the node id, from the standard library's hasher keys.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}
