//! The handlers: sign-in and the pages.

pub mod domains;
pub mod keys;
pub mod messages;
pub mod overview;
pub mod senders;
pub mod stats;
pub mod suppressions;
pub mod webhooks;

use crate::session::{self, LANG_COOKIE, PRE_COOKIE, SESSION_COOKIE};
use crate::web::{html_response, redirect, Ctx, Fields, PageResult};
use axum::extract::{RawForm, RawQuery};
use axum::http::header::{HeaderValue, SET_COOKIE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use posthorn_api::auth::{authenticate, parse_key, Principal};
use posthorn_store::ConsoleSession;

/// The overview when signed in, else the sign-in page.
pub async fn home(ctx: Ctx) -> PageResult {
    if ctx.session.is_none() {
        return Ok(redirect("/signin"));
    }
    overview::page(ctx).await
}

pub async fn not_found(ctx: Ctx) -> Response {
    ctx.not_found().into_response()
}

fn with_cookie(mut r: Response, cookie: String) -> Response {
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().append(SET_COOKIE, v);
    }
    r
}

/// The sign-in form, with a fresh pre-sign-in CSRF cookie.
fn signin_form(ctx: &Ctx, status: StatusCode, error: Option<&str>) -> Response {
    let pre = session::new_token();
    let body = html! {
        section.signin {
            h1 { (ctx.t("sign_in")) }
            p.help { (ctx.t("sign_in_help")) }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/signin" {
                input type="hidden" name="pre" value=(pre);
                label for="key" { (ctx.t("api_key")) }
                input id="key" type="password" name="key" autocomplete="off" required;
                button type="submit" { (ctx.t("sign_in")) }
            }
        }
    };
    let r = (status, html_response(ctx.page(ctx.t("sign_in"), "", body))).into_response();
    with_cookie(r, session::cookie(PRE_COOKIE, &pre, 1800, ctx.secure, true))
}

pub async fn signin_page(ctx: Ctx) -> Response {
    if ctx.session.is_some() {
        return redirect("/");
    }
    signin_form(&ctx, StatusCode::OK, None)
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    session::same(a, b)
}

pub async fn signin(ctx: Ctx, RawForm(body): RawForm) -> PageResult {
    let form = Fields::parse(&body);
    if !session::pre_ok(ctx.pre.as_deref(), form.get("pre")) {
        return Ok(signin_form(
            &ctx,
            StatusCode::FORBIDDEN,
            Some(ctx.t("expired_form")),
        ));
    }
    let key = form.get("key").trim();
    let principal = match authenticate(&ctx.state, key).await {
        Ok(p) => p,
        Err(_) => {
            return Ok(signin_form(
                &ctx,
                StatusCode::UNAUTHORIZED,
                Some(ctx.t("bad_key")),
            ))
        }
    };
    let configured = ctx
        .state
        .config
        .admin_key
        .as_deref()
        .is_some_and(|k| constant_time_eq(k, key));
    let api_key_id = if configured {
        None
    } else {
        parse_key(key).map(|(id, _)| id.to_string())
    };
    let account_id = match principal {
        Principal::Admin => None,
        Principal::Account(who) => Some(who.account_id),
    };
    let token = session::new_token();
    let now = ctx.state.store.now();
    ctx.state
        .store
        .add_console_session(&ConsoleSession {
            token_hash: session::token_hash(&token),
            api_key_id,
            account_id,
            created_at: now,
            expires_at: now + session::IDLE_SECS,
        })
        .await
        .map_err(|e| ctx.internal(e))?;
    let r = with_cookie(
        redirect("/"),
        session::cookie(SESSION_COOKIE, &token, session::MAX_SECS, ctx.secure, true),
    );
    Ok(with_cookie(
        r,
        session::cookie(PRE_COOKIE, "", 0, ctx.secure, true),
    ))
}

pub async fn signout(ctx: Ctx, RawForm(body): RawForm) -> PageResult {
    let form = Fields::parse(&body);
    let s = ctx.check_csrf(&form)?;
    ctx.state
        .store
        .remove_console_session(&session::token_hash(&s.token))
        .await
        .map_err(|e| ctx.internal(e))?;
    Ok(with_cookie(
        redirect("/signin"),
        session::cookie(SESSION_COOKIE, "", 0, ctx.secure, true),
    ))
}

/// `/lang?to=zh&next=/messages`: remember the language, go back.
pub async fn set_lang(ctx: Ctx, RawQuery(q): RawQuery) -> Response {
    let q = Fields::query(q.as_deref());
    let next = q.get("next");
    // Only a path of this site: no `//host` or `/\host`.
    let next = if next.starts_with('/') && !next.starts_with("//") && !next.starts_with("/\\") {
        next
    } else {
        "/"
    };
    match crate::i18n::Lang::from_code(q.get("to")) {
        Some(l) => with_cookie(
            redirect(next),
            session::cookie(
                LANG_COOKIE,
                if l == crate::i18n::Lang::Zh {
                    "zh"
                } else {
                    "en"
                },
                365 * 86_400,
                ctx.secure,
                true,
            ),
        ),
        None => redirect(next),
    }
}
