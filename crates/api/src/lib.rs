//! The HTTP API: send, status, statistics, webhooks, admin, metrics and
//! the OpenAPI document, on its own listener.
//!
//! Every message sent here goes through the same
//! [`posthorn_submit::Submitter`] as SMTP, so policy, limits, errors and
//! durability are the same. This crate only translates: JSON in, an
//! envelope and RFC 5322 bytes to the submitter, JSON out. Only this crate
//! knows JSON-over-HTTP.

pub mod admin;
pub mod auth;
pub mod compose;
pub mod error;
pub mod extract;
pub mod health;
pub mod messages;
pub mod openapi;
pub mod stats;
pub mod templated;
pub mod templates;
pub mod tracking;
pub mod unsubscribe;
pub mod webhook_sender;
pub mod webhooks;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use posthorn_ratelimit::{AcceptBackoff, CapFull, ConnectionCap, ConnectionCounter, LogThrottle};
use posthorn_store::Store;
use posthorn_submit::Submitter;
use std::net::SocketAddr;
use std::sync::Arc;
use tower_http::timeout::TimeoutBody;

pub use metrics_exporter_prometheus::PrometheusHandle;

/// What `[http]` configures.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// A key with admin rights, from the config file (compared in constant
    /// time; keys made by `posthorn apikey create --admin` work too).
    pub admin_key: Option<String>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Webhook URLs may point at internal networks (loopback, private,
    /// link-local, ...: `posthorn_types::net::is_internal`). Off by
    /// default.
    pub allow_private_networks: bool,
    /// Seconds between webhook attempts, the last repeated until given up.
    pub webhook_retry_schedule: Vec<u64>,
    /// A webhook event is given up this many seconds after it happened.
    pub webhook_max_age: u64,
    /// How long one webhook POST may take.
    pub webhook_timeout: std::time::Duration,
    /// The name servers the domain check asks (`[delivery] nameservers`);
    /// empty: those of `/etc/resolv.conf`.
    pub nameservers: Vec<SocketAddr>,
    /// The AUTH lockout, applied to SMTP credentials given over HTTP
    /// (`Authorization: Basic`) as to SMTP AUTH.
    pub auth_lockout: posthorn_store::LockoutPolicy,
    /// `[cluster] node_timeout`: a node silent longer is shown dead.
    pub node_timeout: std::time::Duration,
    /// Connections to the API at once, on this node (0: no limit); past
    /// it 503 and close. The process's file descriptors may cap them lower
    /// ([`serve_capped`]).
    pub max_connections: u64,
    /// Connections from one client address at once (0: no limit); past it
    /// 429 and close.
    pub max_connections_per_ip: u64,
    /// How long a connection may take to send a request's head, counted
    /// from when it opens or its previous answer was sent: a kept-alive
    /// connection idle this long is closed too.
    pub header_read_timeout: std::time::Duration,
    /// The longest pause while a request body is read or an answer is
    /// written (a client that stops sending its body, or stops reading).
    pub idle_timeout: std::time::Duration,
    /// Whether an operator's bounce from the console sends a bounce
    /// notice, and the host name it is reported by (`[delivery] dsn` and
    /// `hostname`), as `posthorn queue bounce` does.
    pub bounce_notices: posthorn_admin::bounce::BounceNotices,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8025".parse().expect("address"),
            admin_key: None,
            max_body_bytes: 40 * 1024 * 1024,
            allow_private_networks: false,
            webhook_retry_schedule: vec![10, 60, 300, 900, 1800, 3600, 7200, 14400],
            webhook_max_age: 24 * 3600,
            webhook_timeout: std::time::Duration::from_secs(10),
            nameservers: Vec::new(),
            auth_lockout: posthorn_store::LockoutPolicy::default(),
            node_timeout: std::time::Duration::from_secs(30),
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            header_read_timeout: std::time::Duration::from_secs(10),
            idle_timeout: std::time::Duration::from_secs(60),
            bounce_notices: posthorn_admin::bounce::BounceNotices {
                enabled: true,
                hostname: "localhost".into(),
            },
        }
    }
}

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub submitter: Arc<Submitter>,
    pub store: Arc<dyn Store>,
    pub config: Arc<ApiConfig>,
    pub keys: Arc<auth::KeyCache>,
    /// Renders `/metrics`; `None` when no recorder was installed.
    pub metrics: Option<PrometheusHandle>,
    /// Woken when a webhook may have something to send.
    pub webhook_wake: Arc<tokio::sync::Notify>,
    /// The web console (`posthorn_console::router`), answering every path
    /// the API has no route for outside its `/v<n>` namespace; `None`:
    /// those get the JSON 404.
    pub console: Option<Router>,
}

impl AppState {
    pub fn new(submitter: Arc<Submitter>, config: ApiConfig) -> Self {
        Self {
            store: submitter.store().clone(),
            submitter,
            config: Arc::new(config),
            keys: Arc::new(auth::KeyCache::default()),
            metrics: None,
            webhook_wake: Arc::new(tokio::sync::Notify::new()),
            console: None,
        }
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let (router, doc) = openapi::routes().split_for_parts();
    let doc = Arc::new(doc);
    let max_body = state.config.max_body_bytes;
    let console = state.console.clone();
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json((*doc).clone()) }
            }),
        )
        // One-click unsubscribe, outside /v<n>, before the console.
        .merge(unsubscribe::routes())
        // Open and click tracking, likewise.
        .merge(tracking::routes())
        .fallback(move |req: Request| {
            let console = console.clone();
            async move {
                match console {
                    Some(console) if !is_api_path(req.uri().path()) => {
                        tower::ServiceExt::oneshot(console, req)
                            .await
                            .into_response()
                    }
                    _ => {
                        error::ApiError::new(error::NO_ROUTE, "no such endpoint; see /openapi.json")
                            .into_response()
                    }
                }
            }
        })
        .method_not_allowed_fallback(|| async {
            error::ApiError::new(error::METHOD, "this endpoint does not take this method")
        })
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            state.submitter.store_timeout(),
            send_deadline,
        ))
        .layer(axum::middleware::from_fn(request_id_layer))
        .with_state(state)
}

/// Whether `path` is in the API's namespace (`/v1`, `/v2/...`: any
/// `/v<digits>`), where an unknown path gets the JSON 404, never a page
/// of the console.
fn is_api_path(path: &str) -> bool {
    path.strip_prefix("/v")
        .map(|rest| rest.split('/').next().unwrap_or(""))
        .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
}

/// A send (`POST /v1/messages`, `/v1/messages/raw`) is answered within
/// `[smtp] store_timeout_secs`, its key check and recipient checks
/// included: a store that falls behind (or a pool whose connections all
/// wait on it) gets the client `503 InternalError.StoreBusy`, as SMTP gets
/// `451 4.3.2`, not a request that hangs. As there, a message already
/// handed to the store may still be committed.
async fn send_deadline(
    State(limit): State<std::time::Duration>,
    req: Request,
    next: Next,
) -> Response {
    let is_send = req.method() == axum::http::Method::POST
        && matches!(req.uri().path(), "/v1/messages" | "/v1/messages/raw");
    if !is_send || limit.is_zero() {
        return next.run(req).await;
    }
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            let busy = posthorn_submit::SubmitError::StoreBusy(limit);
            posthorn_submit::count_refusal(&busy);
            error::ApiError::from(busy).into_response()
        }
    }
}

/// Give each request an id (or keep a sane one the client sent), make it
/// known to handlers and logs, and return it in `X-Request-Id`.
async fn request_id_layer(req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_string);
    let id = given.unwrap_or_else(posthorn_types::new_request_id);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let mut response = error::REQUEST_ID
        .scope(id.clone(), next.run(req))
        .await
        .into_response();
    tracing::debug!(request_id = %id, %method, %path, status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64, "http request");
    metrics::counter!("posthorn_http_requests_total", "status" => response.status().as_u16().to_string())
        .increment(1);
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// Serve the API on `listener` until `shutdown` resolves, then finish the
/// requests in flight. Connections are capped by `[http] max_connections`
/// alone; [`serve_capped`] takes a cap drawn from the process's file
/// descriptors.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cap = ConnectionCap::new(state.config.max_connections);
    serve_capped(listener, state, cap, shutdown).await
}

/// [`serve`] with the connections held to `cap`.
///
/// hyper serves each connection (HTTP/1.1) with the header-read timeout;
/// a request body is read under `idle_timeout` between its frames
/// (tower-http's `TimeoutBody`), and an answer is written under it too
/// ([`Stalls`]). A connection past a cap is answered by [`refuse`] and
/// closed at once.
pub async fn serve_capped(
    listener: tokio::net::TcpListener,
    state: AppState,
    cap: ConnectionCap,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = state.config.clone();
    let app = router(state);
    let per_ip = ConnectionCounter::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = AcceptBackoff::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff.reset();
                a
            }
            Err(e) => {
                // Out of file descriptors and the like: the connection
                // waits in the backlog; wait briefly, then go on.
                let (wait, log) = backoff.failed();
                if log {
                    tracing::warn!(error = %e, "HTTP accept failed; backing off");
                }
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        let slot = match cap.try_acquire() {
            Ok(slot) => slot,
            Err(full) => {
                posthorn_ratelimit::count_refusal(match full {
                    CapFull::Cap => "http_connections",
                    CapFull::Budget => "open_files",
                });
                if CAP_WARNING.ready() {
                    tracing::warn!(%peer, limit = cap.limit(), "HTTP connection refused: too many connections (logged once per 10 s)");
                }
                refuse(
                    stream,
                    503,
                    error::TOO_MANY_CONNECTIONS,
                    "too many connections to this server; retry later",
                );
                continue;
            }
        };
        let Some(ip_slot) = per_ip.try_acquire(
            &peer.ip().to_canonical().to_string(),
            config.max_connections_per_ip,
        ) else {
            posthorn_ratelimit::count_refusal("http_connections_per_ip");
            refuse(
                stream,
                429,
                error::TOO_MANY_CONNECTIONS_PER_ADDRESS,
                &format!(
                    "more than {} connections from your address; reuse connections or retry later",
                    config.max_connections_per_ip
                ),
            );
            continue;
        };
        let _ = stream.set_nodelay(true);
        let idle = config.idle_timeout;
        let app = app.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let mut req = req.map(|b| Body::new(TimeoutBody::new(idle, b)));
            req.extensions_mut().insert(ConnectInfo(peer));
            tower::ServiceExt::oneshot(app.clone(), req)
        });
        let conn = http.serve_connection(TokioIo::new(Stalls::new(stream, idle)), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let open = metrics::gauge!("posthorn_http_connections_open");
            open.increment(1.0);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
            open.decrement(1.0);
            drop((slot, ip_slot));
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Refusals past a cap are logged at most once every 10 s.
static CAP_WARNING: LogThrottle = LogThrottle::new();

/// Answer a connection past a cap with `status` and the JSON error shape,
/// in one write the fresh socket's empty buffer takes at once, and close
/// it: the connection is never held. What the client already sent is read
/// off first, so closing does not reset the connection under the answer
/// (a request that arrives after the close may still see a reset).
fn refuse(stream: tokio::net::TcpStream, status: u16, code: &str, message: &str) {
    let reason = match status {
        429 => "Too Many Requests",
        _ => "Service Unavailable",
    };
    let body = serde_json::json!({
        "error": {
            "code": code,
            "message": message,
            "request_id": posthorn_types::new_request_id(),
        }
    })
    .to_string();
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(answer.as_bytes());
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match stream.try_read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}

/// A connection whose writes fail once they have made no progress for
/// `idle` (a client that stopped reading its answer), so it does not hold
/// its slot and descriptor for ever.
pub struct Stalls {
    stream: tokio::net::TcpStream,
    idle: std::time::Duration,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl Stalls {
    pub fn new(stream: tokio::net::TcpStream, idle: std::time::Duration) -> Self {
        Self {
            stream,
            idle,
            stalled: None,
        }
    }

    /// `polled` went through, or the stall timer: an error once it ran out.
    fn progress<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        polled: std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        use std::future::Future;
        use std::task::Poll;
        match polled {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let idle = self.idle;
                let timer = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client took nothing of the answer for the idle timeout",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl tokio::io::AsyncRead for Stalls {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Stalls {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.stream).poll_write(cx, buf);
        self.progress(cx, polled)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.progress(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let polled = std::pin::Pin::new(&mut self.stream).poll_flush(cx);
        self.progress(cx, polled)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let polled = std::pin::Pin::new(&mut self.stream).poll_shutdown(cx);
        self.progress(cx, polled)
    }
}
