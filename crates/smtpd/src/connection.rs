//! One client connection: TLS set-up, the read/step/write loop, timeouts,
//! and the answers to the session's events.

use crate::replies::{auth_failure, submit_failure, submit_failure_with_id};
use crate::server::Shared;
use crate::ListenerKind;
use posthorn_ratelimit::{count_refusal, ConnectionGuard, Limiter};
use posthorn_smtp::{Credentials, Event, Session, SessionConfig};
use posthorn_submit::{is_suppression, AuthError, SubmitError};
use posthorn_types::{Identity, LoginKind, Origin, Reply};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The read buffer a connection starts with: enough for a pipelined
/// command batch, small enough that idle connections cost little.
const READ_BUFFER_FIRST: usize = 2 * 1024;
/// What it grows to the first time a read fills it (message content
/// arriving), so content is read in large pieces from then on.
const READ_BUFFER: usize = 16 * 1024;

/// Per-connection state the driver keeps beside the session.
struct Conn {
    shared: Arc<Shared>,
    peer: SocketAddr,
    identity: Option<Identity>,
    /// The identity of a trusted network, given again after STARTTLS.
    trusted: Option<Identity>,
    /// When a connection that has not logged in is closed, whatever it
    /// sends (`login_timeout`); `None` for a trusted network or no limit.
    login_deadline: Option<Instant>,
    /// The sender of the open transaction.
    mail_from: Option<String>,
    /// Recipients of the open transaction refused as suppressed.
    suppressed: Vec<String>,
    /// TLS version and cipher once TLS is up.
    tls: Option<String>,
    /// The slot this connection takes among its address's connections that
    /// have not logged in; released at login.
    ip_slot: Option<ConnectionGuard>,
    /// The slot among its user's connections, once logged in.
    user_slot: Option<ConnectionGuard>,
    /// Its lease among the user's connections in the whole cluster.
    user_lease: Option<Lease>,
    shutdown: CancellationToken,
}

enum End<S> {
    Closed,
    StartTls(S),
}

pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    kind: ListenerKind,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let cfg = &shared.config;
    let kind = match kind {
        ListenerKind::AutoTls => sniff(&stream, cfg.auto_tls_wait).await,
        kind => kind,
    };
    let loopback = peer.ip().is_loopback()
        || matches!(peer.ip(), std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()));
    let session_config = SessionConfig {
        hostname: cfg.hostname.clone(),
        max_message_size: cfg.max_message_size,
        max_recipients: cfg.max_recipients,
        max_line_length: cfg.max_line_length,
        line_endings: cfg.line_endings,
        tls_active: kind == ListenerKind::ImplicitTls,
        starttls_available: true,
        auth_without_tls: cfg.allow_plaintext_auth_on_loopback && loopback,
        ..SessionConfig::default()
    };
    let trusted = match cfg
        .trusted_networks
        .iter()
        .find(|t| t.network.contains(peer.ip()))
    {
        Some(t) => match shared.submitter.trusted_identity(&t.account).await {
            Ok(identity) => Some(identity),
            Err(e) => {
                tracing::error!(%peer, account = %t.account, error = %e, "trusted network maps to an unusable account");
                None
            }
        },
        None => None,
    };
    // Trusted networks are logged in from the start: no address caps.
    let admission = match trusted {
        Some(_) => Ok(None),
        None => admit(&shared, peer).await.map(Some),
    };
    let mut conn = Conn {
        shared: shared.clone(),
        peer,
        identity: trusted.clone(),
        login_deadline: (trusted.is_none() && !cfg.login_timeout.is_zero())
            .then(|| Instant::now() + cfg.login_timeout),
        trusted,
        mail_from: None,
        suppressed: Vec::new(),
        tls: None,
        ip_slot: None,
        user_slot: None,
        user_lease: None,
        shutdown,
    };
    let mut session = match admission {
        Ok(slot) => {
            conn.ip_slot = slot;
            let mut session = Session::new(session_config);
            if let Some(who) = &conn.identity {
                session.set_authenticated();
                if let Ok(l) = shared.submitter.limits(who.account_id).await {
                    session.set_max_recipients(l.max_recipients as usize);
                }
            }
            session
        }
        Err(reply) => Session::refused(session_config, reply),
    };

    let result = match kind {
        ListenerKind::ImplicitTls => match conn.handshake(stream).await {
            Some(tls) => conn.drive(tls, &mut session).await.map(|_| ()),
            None => Ok(()),
        },
        ListenerKind::StartTls | ListenerKind::AutoTls => {
            match conn.drive(stream, &mut session).await {
                Ok(End::StartTls(plain)) => match conn.handshake(plain).await {
                    Some(tls) => {
                        session.tls_started();
                        // TLS starts the session again: a login before it is void.
                        conn.identity = conn.trusted.clone();
                        conn.user_slot = None;
                        conn.user_lease = None;
                        if conn.identity.is_some() {
                            session.set_authenticated();
                        }
                        conn.drive(tls, &mut session).await.map(|_| ())
                    }
                    None => Ok(()),
                },
                Ok(End::Closed) => Ok(()),
                Err(e) => Err(e),
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an I/O error");
    }
}

/// How long a cluster-wide connection lease lives without renewal: a
/// crashed node's slots are free again after this.
const LEASE_TTL: Duration = Duration::from_secs(30);

/// A held cluster-wide slot, renewed in the background until dropped.
struct Lease {
    renewal: tokio::task::JoinHandle<()>,
    limiter: Arc<dyn Limiter>,
    key: String,
    holder: String,
}

impl Lease {
    async fn acquire(
        limiter: Arc<dyn Limiter>,
        key: String,
        holder: String,
        limit: u64,
    ) -> Option<Self> {
        if !limiter
            .acquire_lease(&key, &holder, limit, LEASE_TTL)
            .await
            .unwrap_or(true)
        {
            return None;
        }
        let renewal = tokio::spawn({
            let (limiter, key, holder) = (limiter.clone(), key.clone(), holder.clone());
            async move {
                loop {
                    tokio::time::sleep(LEASE_TTL / 3).await;
                    let _ = limiter.renew_lease(&key, &holder, LEASE_TTL).await;
                }
            }
        });
        Some(Self {
            renewal,
            limiter,
            key,
            holder,
        })
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewal.abort();
        let (limiter, key, holder) = (
            self.limiter.clone(),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.holder),
        );
        // During runtime shutdown there is nowhere to run the release; the
        // lease then expires on its own.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = limiter.release_lease(&key, &holder).await;
            });
        }
    }
}

/// May a new connection from `peer` start? Returns its slot among the
/// address's connections that have not logged in, or the `421` to send.
async fn admit(shared: &Shared, peer: SocketAddr) -> Result<ConnectionGuard, Reply> {
    let cfg = &shared.config;
    let too_many = || {
        Reply::new(
            421,
            "4.7.0",
            format!(
                "{} Error: too many connections from your address, try again later",
                cfg.hostname
            ),
        )
    };
    let ip = peer.ip().to_string();
    if !crate::server::may_open(shared, peer.ip()).await {
        count_refusal("new_connections_per_ip");
        return Err(too_many());
    }
    shared
        .ip_conns
        .try_acquire(&ip, cfg.max_connections_per_ip)
        .ok_or_else(|| {
            count_refusal("connections_per_ip");
            too_many()
        })
}

/// What a client on an auto-TLS listener speaks: TLS when the first byte
/// to arrive within `wait` opens a TLS handshake record (0x16), else plain
/// SMTP (an SMTP client waits for the greeting and sends nothing).
async fn sniff(stream: &TcpStream, wait: Duration) -> ListenerKind {
    let mut first = [0u8; 1];
    match tokio::time::timeout(wait, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == 0x16 => ListenerKind::ImplicitTls,
        _ => ListenerKind::StartTls,
    }
}

impl Conn {
    /// The connection has not logged in and its time to do so is up.
    fn login_due(&self) -> bool {
        self.identity.is_none()
            && self
                .login_deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
    }

    /// Check a login, minding the AUTH lockouts and the user's connection
    /// cap. Answers the account's recipients-per-message limit when it
    /// could be read.
    async fn authenticate(&mut self, creds: &Credentials) -> Result<Option<u64>, Reply> {
        let shared = self.shared.clone();
        let cfg = &shared.config;
        let limiter = shared.submitter.limiter().clone();
        if !creds.authzid.is_empty() && creds.authzid != creds.username {
            // Acting for another user is not supported.
            return Err(auth_failure(&AuthError::Invalid));
        }
        let identity = match shared
            .submitter
            .login(
                self.peer.ip(),
                &creds.username,
                &creds.password,
                &cfg.auth_lockout,
            )
            .await
        {
            Ok(identity) => identity,
            Err(e) => {
                tracing::info!(peer = %self.peer, user = %creds.username, error = %e, "authentication failed");
                return Err(auth_failure(&e));
            }
        };
        let (per_user, max_recipients) = match shared.submitter.limits(identity.account_id).await {
            Ok(l) => (l.rate.connections_per_user, Some(l.max_recipients)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read account limits");
                (0, None)
            }
        };
        let Some(slot) = shared
            .user_conns
            .try_acquire(identity.login_name(), per_user)
        else {
            count_refusal("connections_per_user");
            return Err(Reply::new(
                421,
                "4.7.0",
                format!(
                    "{} Error: too many connections for this user, at most {per_user}",
                    cfg.hostname
                ),
            ));
        };
        let cluster_cap = cfg.max_connections_per_user_cluster;
        let lease = if cluster_cap > 0 {
            let key = format!("lease:user:{}", identity.login_name());
            let holder = format!(
                "{}:{}",
                shared.node_id,
                shared
                    .next_conn
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            match Lease::acquire(limiter.clone(), key, holder, cluster_cap).await {
                Some(lease) => Some(lease),
                None => {
                    count_refusal("connections_per_user_cluster");
                    return Err(Reply::new(
                        421,
                        "4.7.0",
                        format!("{} Error: too many connections for this user in the cluster, at most {cluster_cap}", cfg.hostname),
                    ));
                }
            }
        } else {
            None
        };
        tracing::debug!(peer = %self.peer, user = %creds.username, "authenticated");
        self.user_lease = lease;
        self.user_slot = Some(slot);
        if self.ip_slot.take().is_some() {
            crate::server::logged_in(&shared, self.peer.ip()).await;
        }
        self.identity = Some(identity);
        Ok(max_recipients)
    }

    async fn handshake(
        &mut self,
        stream: TcpStream,
    ) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
        let acceptor = self.shared.tls.acceptor();
        match tokio::time::timeout(
            self.shared.config.tls_handshake_timeout,
            acceptor.accept(stream),
        )
        .await
        {
            Ok(Ok(tls)) => {
                let (_, state) = tls.get_ref();
                self.tls = Some(format!(
                    "{} {}",
                    state
                        .protocol_version()
                        .and_then(|v| v.as_str())
                        .unwrap_or("TLS")
                        .replace('_', "."),
                    state
                        .negotiated_cipher_suite()
                        .and_then(|c| c.suite().as_str())
                        .unwrap_or("unknown-cipher")
                ));
                Some(tls)
            }
            Ok(Err(e)) => {
                tracing::info!(peer = %self.peer, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::info!(peer = %self.peer, "TLS handshake timed out");
                None
            }
        }
    }

    async fn drive<S>(&mut self, mut stream: S, session: &mut Session) -> std::io::Result<End<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // Read into spare capacity (`read_buf`): nothing is zeroed first,
        // and growing it copies nothing (it is empty between reads).
        let mut buf: Vec<u8> = Vec::with_capacity(READ_BUFFER_FIRST);
        // When the content of the current message must be complete by.
        let mut data_deadline: Option<Instant> = None;
        loop {
            match session.step() {
                Event::NeedInput => {
                    flush(&mut stream, session).await?;
                    if self.shutdown.is_cancelled() && session.is_idle() {
                        session.shutdown();
                        continue;
                    }
                    if self.login_due() {
                        let reply = Reply::new(
                            421,
                            "4.7.0",
                            format!(
                                "{} Error: no login within {} seconds, closing connection",
                                self.shared.config.hostname,
                                self.shared.config.login_timeout.as_secs()
                            ),
                        );
                        tracing::info!(peer = %self.peer, "closed: no login within login_timeout");
                        session.close_with(reply);
                        continue;
                    }
                    let config = &self.shared.config;
                    let limit = if session.in_data() {
                        let deadline = *data_deadline
                            .get_or_insert_with(|| Instant::now() + config.data_timeout);
                        config
                            .idle_timeout
                            .min(deadline.saturating_duration_since(Instant::now()))
                    } else {
                        data_deadline = None;
                        config.idle_timeout
                    };
                    let limit = match (self.login_deadline, &self.identity) {
                        (Some(deadline), None) => {
                            limit.min(deadline.saturating_duration_since(Instant::now()))
                        }
                        _ => limit,
                    };
                    let idle = session.is_idle();
                    tokio::select! {
                        read = tokio::time::timeout(limit, stream.read_buf(&mut buf)) => match read {
                            // The next step closes it for want of a login.
                            Err(_) if self.login_due() => {}
                            Err(_) => session.timeout(),
                            Ok(Ok(0)) => return Ok(End::Closed),
                            Ok(Ok(n)) => {
                                session.feed(&buf);
                                let full = n == buf.capacity();
                                buf.clear();
                                if full && n < READ_BUFFER {
                                    buf.reserve_exact(READ_BUFFER);
                                }
                            }
                            Ok(Err(e)) => return Err(e),
                        },
                        _ = self.shutdown.cancelled(), if idle => session.shutdown(),
                    }
                }
                Event::StartTls => {
                    flush(&mut stream, session).await?;
                    return Ok(End::StartTls(stream));
                }
                Event::Authenticate(creds) => {
                    let result = self.authenticate(&creds).await;
                    if let Ok(Some(max)) = result {
                        session.set_max_recipients(max as usize);
                    }
                    session.auth_result(result.map(|_| ()));
                }
                Event::Mail(from) => {
                    let result = match &self.identity {
                        Some(who) => {
                            let submitter = &self.shared.submitter;
                            // Each transaction is one call of an API user
                            // (its HTTP calls share the budget); a refused
                            // sender takes none of it.
                            match submitter.check_sender(who, &from).await {
                                Ok(()) => submitter.api_call(who).await,
                                Err(e) => Err(e),
                            }
                            .map_err(|e| submit_failure(&e))
                        }
                        None => Err(Reply::new(530, "5.7.0", "Error: authentication required")),
                    };
                    if result.is_ok() {
                        self.mail_from = Some(from);
                        self.suppressed.clear();
                    }
                    session.mail_result(result);
                }
                Event::Rcpt(to) => {
                    let who = self.identity.as_ref().expect("RCPT only after MAIL");
                    let from = self.mail_from.as_deref().unwrap_or_default();
                    let result = self.shared.submitter.check_recipient(who, from, &to).await;
                    if let Err(e) = &result {
                        if is_suppression(e) && !self.suppressed.contains(&to) {
                            self.suppressed.push(to);
                        }
                    }
                    session.rcpt_result(result.map_err(|e| submit_failure(&e)));
                }
                Event::Submit { mut envelope, data } => {
                    envelope.suppressed = std::mem::take(&mut self.suppressed);
                    let who = self.identity.as_ref().expect("DATA only after MAIL");
                    let rcpts = envelope.rcpt_to.len();
                    let size = data.len();
                    let origin = Origin {
                        protocol: match (self.tls.is_some(), &who.login) {
                            (true, LoginKind::TrustedNetwork) => "ESMTPS",
                            (true, _) => "ESMTPSA",
                            (false, LoginKind::TrustedNetwork) => "ESMTP",
                            (false, _) => "ESMTPA",
                        },
                        helo: session.helo().map(str::to_string),
                        peer: Some(self.peer.ip()),
                        tls: self.tls.clone(),
                    };
                    let submitted = self
                        .shared
                        .submitter
                        .submit(who, &origin, envelope, data)
                        .await;
                    let result = match submitted {
                        Ok(id) => {
                            tracing::info!(peer = %self.peer, user = who.login_name(), %id, rcpts, size, "message accepted");
                            Ok(id)
                        }
                        Err(e @ SubmitError::StoreBusy(_)) => {
                            tracing::warn!(peer = %self.peer, user = who.login_name(), rcpts, size, "message not accepted: the store did not commit it within [smtp] store_timeout_secs");
                            Err(submit_failure(&e))
                        }
                        Err(e) => {
                            // The RequestId the client sees, in the log.
                            let request_id = posthorn_types::new_uuid();
                            tracing::info!(peer = %self.peer, user = who.login_name(), error = %e, %request_id, "message refused");
                            Err(submit_failure_with_id(&e, &request_id))
                        }
                    };
                    session.submit_result(result);
                }
                Event::Close => {
                    flush(&mut stream, session).await?;
                    let _ = stream.shutdown().await;
                    return Ok(End::Closed);
                }
            }
        }
    }
}

async fn flush<S: AsyncWrite + Unpin>(
    stream: &mut S,
    session: &mut Session,
) -> std::io::Result<()> {
    if !session.output().is_empty() {
        stream.write_all(session.output()).await?;
        stream.flush().await?;
        session.clear_output();
    }
    Ok(())
}
