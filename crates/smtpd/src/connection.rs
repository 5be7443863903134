//! One client connection: TLS set-up, the read/step/write loop, timeouts,
//! and the answers to the session's events.

use crate::replies::{auth_failure, submit_failure};
use crate::server::Shared;
use crate::ListenerKind;
use posthorn_smtp::{Event, Session, SessionConfig};
use posthorn_types::{Identity, LoginKind, Origin, Reply};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const READ_BUFFER: usize = 16 * 1024;

/// Per-connection state the driver keeps beside the session.
struct Conn {
    shared: Arc<Shared>,
    peer: SocketAddr,
    identity: Option<Identity>,
    /// TLS version and cipher once TLS is up.
    tls: Option<String>,
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
    let mut session = Session::new(session_config);
    let mut conn = Conn {
        shared: shared.clone(),
        peer,
        identity: None,
        tls: None,
        shutdown,
    };
    if let Some(trusted) = cfg
        .trusted_networks
        .iter()
        .find(|t| t.network.contains(peer.ip()))
    {
        match shared.submitter.trusted_identity(&trusted.account).await {
            Ok(identity) => {
                conn.identity = Some(identity);
                session.set_authenticated();
            }
            Err(e) => {
                tracing::error!(%peer, account = %trusted.account, error = %e, "trusted network maps to an unusable account");
            }
        }
    }

    let result = match kind {
        ListenerKind::ImplicitTls => match conn.handshake(stream).await {
            Some(tls) => conn.drive(tls, &mut session).await.map(|_| ()),
            None => Ok(()),
        },
        ListenerKind::StartTls => match conn.drive(stream, &mut session).await {
            Ok(End::StartTls(plain)) => match conn.handshake(plain).await {
                Some(tls) => {
                    session.tls_started();
                    conn.identity = None;
                    conn.drive(tls, &mut session).await.map(|_| ())
                }
                None => Ok(()),
            },
            Ok(End::Closed) => Ok(()),
            Err(e) => Err(e),
        },
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an I/O error");
    }
}

impl Conn {
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
        let mut buf = vec![0u8; READ_BUFFER];
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
                    let idle = session.is_idle();
                    tokio::select! {
                        read = tokio::time::timeout(limit, stream.read(&mut buf)) => match read {
                            Err(_) => session.timeout(),
                            Ok(Ok(0)) => return Ok(End::Closed),
                            Ok(Ok(n)) => session.feed(&buf[..n]),
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
                    let result = if !creds.authzid.is_empty() && creds.authzid != creds.username {
                        // Acting for another user is not supported.
                        Err(auth_failure(&posthorn_submit::AuthError::Invalid))
                    } else {
                        match self
                            .shared
                            .submitter
                            .authenticate(&creds.username, &creds.password)
                            .await
                        {
                            Ok(identity) => {
                                tracing::debug!(peer = %self.peer, user = %creds.username, "authenticated");
                                self.identity = Some(identity);
                                Ok(())
                            }
                            Err(e) => {
                                tracing::info!(peer = %self.peer, user = %creds.username, error = %e, "authentication failed");
                                Err(auth_failure(&e))
                            }
                        }
                    };
                    session.auth_result(result);
                }
                Event::Mail(from) => {
                    let result = match &self.identity {
                        Some(who) => self
                            .shared
                            .submitter
                            .check_sender(who, &from)
                            .await
                            .map_err(|e| submit_failure(&e)),
                        None => Err(Reply::new(530, "5.7.0", "Error: authentication required")),
                    };
                    session.mail_result(result);
                }
                Event::Rcpt(to) => {
                    let who = self.identity.as_ref().expect("RCPT only after MAIL");
                    let result = self
                        .shared
                        .submitter
                        .check_recipient(who, &to)
                        .await
                        .map_err(|e| submit_failure(&e));
                    session.rcpt_result(result);
                }
                Event::Submit { envelope, data } => {
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
                    let result = self
                        .shared
                        .submitter
                        .submit(who, &origin, envelope, data)
                        .await;
                    match &result {
                        Ok(id) => {
                            tracing::info!(peer = %self.peer, user = who.login_name(), %id, rcpts, size, "message accepted")
                        }
                        Err(e) => {
                            tracing::info!(peer = %self.peer, user = who.login_name(), error = %e, "message refused")
                        }
                    }
                    session.submit_result(result.map_err(|e| submit_failure(&e)));
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
