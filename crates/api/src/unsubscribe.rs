//! One-click unsubscribe (issue 22, RFC 8058; docs/unsubscribe.md): the
//! public routes the `List-Unsubscribe` URLs the submitter writes point at,
//! on the HTTP listener outside the API's `/v<n>` namespace.
//!
//! - `POST /u/{token}` (what a mailbox provider sends for the one-click
//!   button, body `List-Unsubscribe=One-Click` in any content type):
//!   suppresses the recipient for the account with reason `unsubscribed`
//!   and records an `unsubscribed` event for the account's webhooks;
//!   `200` with a short text, the same whether or not it was already done.
//! - `GET /u/{token}`: a confirmation page whose button POSTs; it changes
//!   nothing (link scanners fetch every URL of a message).
//!
//! A token whose HMAC tag is wrong is `404` with no detail, never a
//! store read, so these routes tell nothing about addresses; a valid one
//! is answered alike whatever the store holds. Bounds: bodies of at most
//! [`MAX_BODY`] bytes, at most [`MAX_IN_FLIGHT`] unsubscribes at once on a
//! node (past it `503`, which a provider retries), tokens of at most
//! `posthorn_submit::links::MAX_TOKEN` bytes; the listener's per-address
//! connection cap and timeouts apply as to every route.

use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The largest request body accepted (a provider sends 26 bytes).
pub const MAX_BODY: usize = 4096;
/// Unsubscribes handled at once on a node.
pub const MAX_IN_FLIGHT: usize = 64;

/// The routes, with their own body limit.
pub fn routes() -> Router<AppState> {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    Router::new()
        .route(
            "/u/{token}",
            get(confirm_page).post(move |state, token, body| {
                let slots = slots.clone();
                async move {
                    let Ok(_slot) = slots.try_acquire() else {
                        return text(StatusCode::SERVICE_UNAVAILABLE, "busy; try again\n");
                    };
                    unsubscribe(state, token, body).await
                }
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "not found\n")
}

/// What the token names, if the server makes links and its tag is right.
fn verify(state: &AppState, token: &str) -> Option<posthorn_submit::links::Unsubscribe> {
    state
        .submitter
        .config()
        .links
        .as_ref()?
        .verify_unsubscribe(token)
}

async fn unsubscribe(
    State(state): State<AppState>,
    Path(token): Path<String>,
    _body: Bytes,
) -> Response {
    // The body is not required to say `List-Unsubscribe=One-Click`: the
    // signed URL is the authority, and providers differ in how they send
    // it (urlencoded, multipart).
    let Some(u) = verify(&state, &token) else {
        return not_found();
    };
    match state
        .store
        .record_unsubscribe(u.account_id, &u.message_id.to_string(), &u.recipient)
        .await
    {
        Ok(changed) => {
            if changed {
                metrics::counter!("posthorn_unsubscribes_total").increment(1);
                state.webhook_wake.notify_one();
            }
            text(StatusCode::OK, "You are unsubscribed.\n")
        }
        Err(e) => {
            tracing::warn!(error = %e, "unsubscribe not recorded");
            text(StatusCode::SERVICE_UNAVAILABLE, "try again later\n")
        }
    }
}

/// The page behind the link: one button that POSTs the one-click body to
/// the same URL. No script, nothing from the message, nothing changed.
async fn confirm_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    if verify(&state, &token).is_none() {
        return not_found();
    }
    let page = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"robots\" content=\"noindex\"><title>Unsubscribe</title></head>\
<body><h1>Unsubscribe</h1><p>Stop receiving email from this sender at this address?</p>\
<form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
<button type=\"submit\">Unsubscribe</button></form></body></html>\n";
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        page,
    )
        .into_response()
}
