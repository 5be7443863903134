//! The web console (issue 21): server-rendered pages on the HTTP
//! listener, every asset compiled into the binary.
//!
//! The console is a front end like the CLI and the HTTP API: it reads
//! through the [`posthorn_store::Store`] trait and changes things only
//! through [`posthorn_admin::Admin`] (and `Store::retry_now`, as
//! `posthorn queue retry` does, and `Store::add_test_webhook_event`, a
//! test event for one webhook), translating `AdminError` into a page.
//! Sign-in takes an API key and checks it with the API's own
//! [`posthorn_api::auth::authenticate`]; the session is a row in the store
//! (its token's SHA-256 only), so every node of a cluster reads it.
//!
//! - [`session`]: tokens, CSRF, cookies (no I/O; unit-tested).
//! - [`i18n`]: English and Simplified Chinese.
//! - [`web`]: the request context (language, session, who), pages and
//!   errors, the security headers.
//! - [`pages`]: the handlers.

pub mod i18n;
mod pages;
pub mod session;
mod web;

use axum::routing::{get, post};
use axum::Router;
use posthorn_api::AppState;

/// The console's routes, for the API's router to serve every path outside
/// `/v1/` with.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/signin", get(pages::signin_page).post(pages::signin))
        .route("/signout", post(pages::signout))
        .route("/lang", get(pages::set_lang))
        .route("/messages", get(pages::messages::list))
        .route("/messages/{id}", get(pages::messages::show))
        .route("/messages/{id}/html", get(pages::messages::html_frame))
        .route("/messages/{id}/retry", post(pages::messages::retry))
        .route("/messages/{id}/bounce", post(pages::messages::bounce))
        .route(
            "/domains",
            get(pages::domains::list).post(pages::domains::add),
        )
        .route("/domains/{name}", get(pages::domains::show))
        .route(
            "/senders",
            get(pages::senders::list).post(pages::senders::add),
        )
        .route("/senders/password", post(pages::senders::set_password))
        .route(
            "/suppressions",
            get(pages::suppressions::list).post(pages::suppressions::add),
        )
        .route("/suppressions/remove", post(pages::suppressions::remove))
        .route(
            "/keys",
            get(pages::keys::keys).post(pages::keys::create_key),
        )
        .route("/keys/revoke", post(pages::keys::revoke_key))
        .route(
            "/api-users",
            get(pages::keys::api_users).post(pages::keys::add_api_user),
        )
        .route("/api-users/remove", post(pages::keys::remove_api_user))
        .route(
            "/labels",
            get(pages::keys::labels).post(pages::keys::add_label),
        )
        .route("/labels/remove", post(pages::keys::remove_label))
        .route(
            "/webhooks",
            get(pages::webhooks::list).post(pages::webhooks::add),
        )
        .route("/webhooks/remove", post(pages::webhooks::remove))
        .route("/webhooks/test", post(pages::webhooks::test))
        .route("/statistics", get(pages::stats::page))
        .route("/statistics.csv", get(pages::stats::csv))
        .route(
            "/accounts",
            get(pages::stats::accounts).post(pages::stats::create_account),
        )
        .route("/accounts/{name}", get(pages::stats::account))
        .route("/accounts/{name}/settings", post(pages::stats::set_setting))
        .route("/assets/console.css", get(web::css))
        .route("/assets/console.js", get(web::js))
        .route("/assets/icon.svg", get(web::icon))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn(web::security_headers))
        .with_state(state)
}
