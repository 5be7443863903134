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
pub mod webhook_sender;
pub mod webhooks;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use posthorn_store::Store;
use posthorn_submit::Submitter;
use std::net::SocketAddr;
use std::sync::Arc;

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
        }
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let (router, doc) = openapi::routes().split_for_parts();
    let doc = Arc::new(doc);
    let max_body = state.config.max_body_bytes;
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json((*doc).clone()) }
            }),
        )
        .fallback(|| async {
            error::ApiError::new(error::NO_ROUTE, "no such endpoint; see /openapi.json")
        })
        .method_not_allowed_fallback(|| async {
            error::ApiError::new(error::METHOD, "this endpoint does not take this method")
        })
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(request_id_layer))
        .with_state(state)
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
/// requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
