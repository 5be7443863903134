//! Open and click tracking (issue 22, docs/tracking.md): the public routes
//! the links the submitter writes into tracked HTML parts point at, on the
//! HTTP listener outside the API's `/v<n>` namespace.
//!
//! - `GET /t/o/{token}.gif`: records an `opened` (time, user agent, client
//!   address) and answers a 1×1 transparent GIF.
//! - `GET /t/c/{token}?u={url}&s={sig}`: records a `clicked` (and the URL)
//!   and answers `302` to `url`, only when `sig` is the HMAC of that URL
//!   for that token: no open redirect.
//!
//! A token or signature that does not verify is `404` with no detail and
//! no store read. At most [`MAX_IN_FLIGHT`] records at once on a node; past
//! it a fetch is still answered (the pixel, the redirect) but not
//! recorded, so a reader is never kept from the link. The store keeps at
//! most `posthorn_store::MAX_PER_RECIPIENT` per recipient of a message.

use crate::AppState;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use posthorn_store::{NewEngagement, CLICKED, OPENED};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Records being written at once on a node.
pub const MAX_IN_FLIGHT: usize = 64;
/// Bytes of a user agent kept.
const MAX_USER_AGENT: usize = 512;

/// A 1×1 transparent GIF.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

#[derive(Clone)]
struct Slots(Arc<Semaphore>);

/// The routes.
pub fn routes() -> Router<AppState> {
    let slots = Slots(Arc::new(Semaphore::new(MAX_IN_FLIGHT)));
    let open_slots = slots.clone();
    Router::new()
        .route(
            "/t/o/{file}",
            get(move |state, peer, headers, file| {
                open(state, peer, headers, file, open_slots.clone())
            }),
        )
        .route(
            "/t/c/{token}",
            get(move |state, peer, headers, token, query| {
                click(state, peer, headers, token, query, slots.clone())
            }),
        )
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        "not found\n",
    )
        .into_response()
}

fn user_agent(headers: &HeaderMap) -> Option<String> {
    let ua = headers.get(header::USER_AGENT)?.to_str().ok()?;
    let mut end = ua.len().min(MAX_USER_AGENT);
    while !ua.is_char_boundary(end) {
        end -= 1;
    }
    Some(ua[..end].to_string())
}

/// Store one open or click, if a slot is free; failures are logged, the
/// reader is answered all the same.
async fn record(state: &AppState, slots: &Slots, engagement: NewEngagement) {
    let Ok(_slot) = slots.0.try_acquire() else {
        metrics::counter!("posthorn_tracking_dropped_total").increment(1);
        return;
    };
    match state.store.record_engagement(&engagement).await {
        Ok(true) => {
            metrics::counter!("posthorn_tracking_total", "kind" => if engagement.kind == OPENED { OPENED } else { CLICKED }).increment(1);
            state.webhook_wake.notify_one();
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "open or click not recorded"),
    }
}

fn links(state: &AppState) -> Option<&posthorn_submit::links::Links> {
    state.submitter.config().links.as_ref()
}

async fn open(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(file): Path<String>,
    slots: Slots,
) -> Response {
    let Some(token) = file.strip_suffix(".gif") else {
        return not_found();
    };
    let Some(who) = links(&state).and_then(|l| l.verify_track(token)) else {
        return not_found();
    };
    record(
        &state,
        &slots,
        NewEngagement {
            account_id: who.account_id,
            message_id: who.message_id.to_string(),
            recipient: who.recipient,
            kind: OPENED.into(),
            user_agent: user_agent(&headers),
            ip: Some(peer.ip().to_canonical().to_string()),
            url: None,
        },
    )
    .await;
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CACHE_CONTROL, "no-store, no-cache, must-revalidate"),
        ],
        PIXEL,
    )
        .into_response()
}

#[derive(Deserialize)]
struct ClickQuery {
    u: String,
    s: String,
}

async fn click(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(token): Path<String>,
    query: Result<Query<ClickQuery>, axum::extract::rejection::QueryRejection>,
    slots: Slots,
) -> Response {
    let Ok(Query(q)) = query else {
        return not_found();
    };
    let Some(links) = links(&state) else {
        return not_found();
    };
    let Some(who) = links.verify_track(&token) else {
        return not_found();
    };
    let lower = q.u.to_ascii_lowercase();
    if !links.verify_click(&token, &q.u, &q.s)
        || !(lower.starts_with("http://") || lower.starts_with("https://"))
    {
        return not_found();
    }
    let Ok(location) = HeaderValue::from_str(&q.u) else {
        return not_found();
    };
    record(
        &state,
        &slots,
        NewEngagement {
            account_id: who.account_id,
            message_id: who.message_id.to_string(),
            recipient: who.recipient,
            kind: CLICKED.into(),
            user_agent: user_agent(&headers),
            ip: Some(peer.ip().to_canonical().to_string()),
            url: Some(q.u.clone()),
        },
    )
    .await;
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
    )
        .into_response()
}
