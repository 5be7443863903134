//! What every page shares: the request context (language, session, who is
//! signed in), the layout, error pages, form fields, the embedded assets
//! and the security headers.

use crate::i18n::Lang;
use crate::session::{self, LANG_COOKIE, SESSION_COOKIE};
use axum::extract::{FromRequestParts, Request};
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};
use posthorn_admin::AdminError;
use posthorn_api::AppState;
use posthorn_store::{Account, StoreError};
use std::collections::HashMap;

/// The console's own policy: no inline script or style, nothing from
/// elsewhere; frames only from itself (the inert HTML view).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The policy of a message's HTML, shown in a sandboxed frame: no script
/// at all, no requests out (remote images stay unloaded), only inline
/// style and data: images.
pub const FRAME_CSP: &str = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'";

/// Who a session acts as.
#[derive(Clone, Debug)]
pub enum Who {
    Admin,
    Account { id: i64, name: String },
}

/// A signed-in session.
#[derive(Clone, Debug)]
pub struct Session {
    pub token: String,
    pub csrf: String,
    pub who: Who,
}

/// Every request's context.
pub struct Ctx {
    pub state: AppState,
    pub lang: Lang,
    /// Served over TLS (a proxy in front says `X-Forwarded-Proto: https`):
    /// cookies get `Secure`.
    pub secure: bool,
    pub session: Option<Session>,
    /// The pre-sign-in CSRF cookie, when sent.
    pub pre: Option<String>,
    /// Path and query of this request (for the language switch).
    pub here: String,
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = Fail;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Fail> {
        let cookies = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join("; ");
        let lang = session::cookie_value(&cookies, LANG_COOKIE)
            .and_then(Lang::from_code)
            .unwrap_or_else(|| {
                Lang::from_accept(
                    parts
                        .headers
                        .get(header::ACCEPT_LANGUAGE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or(""),
                )
            });
        let secure = parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"));
        let here = parts
            .uri
            .path_and_query()
            .map_or("/".to_string(), |p| p.as_str().to_string());
        let mut ctx = Ctx {
            state: state.clone(),
            lang,
            secure,
            session: None,
            pre: session::cookie_value(&cookies, session::PRE_COOKIE).map(str::to_string),
            here,
        };
        if let Some(token) = session::cookie_value(&cookies, SESSION_COOKIE) {
            ctx.session = load_session(state, token)
                .await
                .map_err(|e| ctx.internal(e))?;
        }
        Ok(ctx)
    }
}

/// The session of `token`, when it is alive and its key still exists.
async fn load_session(state: &AppState, token: &str) -> Result<Option<Session>, StoreError> {
    if !session::is_token(token) {
        return Ok(None);
    }
    let store = &state.store;
    let hash = session::token_hash(token);
    let s = match store.console_session(&hash).await {
        Ok(s) => s,
        Err(StoreError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let now = store.now();
    if !session::alive(s.created_at, s.expires_at, now) {
        store.remove_console_session(&hash).await?;
        return Ok(None);
    }
    // A revoked key (or a removed account, whose keys go with it) ends
    // its sessions at once.
    if let Some(key_id) = &s.api_key_id {
        match store.api_key(key_id).await {
            Ok(k) if k.account_id == s.account_id => {}
            Ok(_) | Err(StoreError::NotFound(_)) => {
                store.remove_console_session(&hash).await?;
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
    } else if state.config.admin_key.is_none() {
        // Made with the configured admin key, which is gone now.
        store.remove_console_session(&hash).await?;
        return Ok(None);
    }
    let who = match s.account_id {
        None => Who::Admin,
        Some(id) => match store.account_by_id(id).await {
            Ok(a) => Who::Account { id, name: a.name },
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        },
    };
    if let Some(expires_at) = session::touched_expiry(s.created_at, s.expires_at, now) {
        store.touch_console_session(&hash, expires_at).await?;
    }
    Ok(Some(Session {
        csrf: session::csrf_for(token),
        token: token.to_string(),
        who,
    }))
}

/// A page that could not be shown: its error page, ready.
pub struct Fail(pub Box<Response>);

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        *self.0
    }
}

pub type PageResult = Result<Response, Fail>;

impl Ctx {
    pub fn t(&self, key: &'static str) -> &'static str {
        self.lang.t(key)
    }

    /// The session, or a redirect to the sign-in page.
    pub fn signed_in(&self) -> Result<&Session, Fail> {
        self.session
            .as_ref()
            .ok_or_else(|| Fail(Box::new(redirect("/signin"))))
    }

    pub fn is_admin(&self) -> bool {
        matches!(self.session.as_ref().map(|s| &s.who), Some(Who::Admin))
    }

    /// The account of an account session; `None` for admin.
    pub fn own_account(&self) -> Option<(i64, &str)> {
        match self.session.as_ref().map(|s| &s.who) {
            Some(Who::Account { id, name }) => Some((*id, name.as_str())),
            _ => None,
        }
    }

    /// Whether the session may see the account with this id.
    pub fn may_see(&self, account_id: i64) -> bool {
        match self.session.as_ref().map(|s| &s.who) {
            Some(Who::Admin) => true,
            Some(Who::Account { id, .. }) => *id == account_id,
            None => false,
        }
    }

    /// A form must carry the session's CSRF token.
    pub fn check_csrf(&self, form: &Fields) -> Result<&Session, Fail> {
        let s = self.signed_in()?;
        if session::csrf_ok(&s.token, form.get("csrf")) {
            Ok(s)
        } else {
            Err(self.error_page(
                StatusCode::FORBIDDEN,
                self.t("bad_request"),
                self.t("expired_form"),
            ))
        }
    }

    /// The accounts a listing covers: an account session's own; for admin
    /// every account, or the one `chosen` names.
    pub async fn accounts(&self, chosen: &str) -> Result<Vec<Account>, Fail> {
        match self.own_account() {
            Some((id, _)) => Ok(vec![self
                .state
                .store
                .account_by_id(id)
                .await
                .map_err(|e| self.internal(e))?]),
            None if !chosen.is_empty() => match self.state.store.account(chosen).await {
                Ok(a) => Ok(vec![a]),
                Err(StoreError::NotFound(_)) => Err(self.invalid(format!("no account {chosen:?}"))),
                Err(e) => Err(self.internal(e)),
            },
            None => self
                .state
                .store
                .accounts()
                .await
                .map_err(|e| self.internal(e)),
        }
    }

    /// The account name a change acts on: an account session's own
    /// whatever the form says; for admin the form's `account`.
    pub fn target_account(&self, form: &Fields) -> Result<String, Fail> {
        match self.own_account() {
            Some((_, name)) => Ok(name.to_string()),
            None => {
                let chosen = form.get("account").trim();
                if chosen.is_empty() {
                    Err(self.invalid(self.t("account_required").to_string()))
                } else {
                    Ok(chosen.to_string())
                }
            }
        }
    }

    pub fn error_page(&self, status: StatusCode, title: &str, text: &str) -> Fail {
        let body = html! {
            h1 { (title) }
            p.error { (text) }
            p { a href="/messages" { (self.t("back")) } }
        };
        Fail(Box::new(
            (status, html_response(self.page(title, "", body))).into_response(),
        ))
    }

    pub fn not_found(&self) -> Fail {
        self.error_page(
            StatusCode::NOT_FOUND,
            self.t("not_found"),
            self.t("not_found_text"),
        )
    }

    pub fn invalid(&self, text: String) -> Fail {
        self.error_page(StatusCode::BAD_REQUEST, self.t("bad_request"), &text)
    }

    pub fn internal(&self, e: impl std::fmt::Display) -> Fail {
        tracing::warn!(error = %e, "console: the store failed");
        self.error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            self.t("error"),
            &e.to_string(),
        )
    }

    /// An admin service refusal as a page: its words, its status.
    pub fn admin_error(&self, e: AdminError) -> Fail {
        match e {
            AdminError::NotFound(m) => {
                self.error_page(StatusCode::NOT_FOUND, self.t("not_found"), &m)
            }
            AdminError::Invalid(m) | AdminError::Duplicate(m) | AdminError::InUse(m) => {
                self.invalid(m)
            }
            AdminError::Internal(m) => self.internal(m),
        }
    }

    /// A whole page: header with the navigation, `body`.
    pub fn page(&self, title: &str, active: &str, body: Markup) -> Markup {
        let other = match self.lang {
            Lang::En => "zh",
            Lang::Zh => "en",
        };
        let switch = format!(
            "/lang?to={other}&next={}",
            form_urlencoded::byte_serialize(self.here.as_bytes()).collect::<String>()
        );
        html! {
            (DOCTYPE)
            html lang=(self.lang.code()) {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · Posthorn" }
                    link rel="icon" href="/assets/icon.svg";
                    link rel="stylesheet" href="/assets/console.css";
                    script src="/assets/console.js" defer {}
                }
                body {
                    header.top {
                        a.brand href="/" { "Posthorn" }
                        @if let Some(s) = &self.session {
                            nav {
                                @for (href, key) in NAV.iter().filter(|(_, k)| *k != "accounts" || self.is_admin()) {
                                    a href=(href) class=[(*key == active).then_some("active")] { (self.t(key)) }
                                }
                            }
                            span.who {
                                (self.t("signed_in_as")) " "
                                @match &s.who {
                                    Who::Admin => strong { (self.t("admin")) },
                                    Who::Account { name, .. } => strong { (name) },
                                }
                            }
                            form.signout method="post" action="/signout" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button type="submit" { (self.t("sign_out")) }
                            }
                        }
                        a.lang href=(switch) { (self.t("language")) }
                    }
                    main { (body) }
                }
            }
        }
    }

    /// A hidden CSRF field for a form.
    pub fn csrf_field(&self) -> Markup {
        let value = self.session.as_ref().map_or("", |s| s.csrf.as_str());
        html! { input type="hidden" name="csrf" value=(value); }
    }

    /// For admin: a select of every account (`selected` chosen); for an
    /// account: nothing (the server uses the session's account).
    pub async fn account_select(&self, selected: &str, allow_all: bool) -> Result<Markup, Fail> {
        if !self.is_admin() {
            return Ok(html! {});
        }
        let all = self
            .state
            .store
            .accounts()
            .await
            .map_err(|e| self.internal(e))?;
        Ok(html! {
            label {
                (self.t("account"))
                select name="account" {
                    @if allow_all {
                        option value="" { (self.t("all_accounts")) }
                    }
                    @for a in &all {
                        option value=(a.name) selected[a.name == selected] { (a.name) }
                    }
                }
            }
        })
    }
}

/// The navigation: only pages that exist.
const NAV: &[(&str, &str)] = &[
    ("/", "overview"),
    ("/messages", "messages"),
    ("/domains", "domains"),
    ("/senders", "senders"),
    ("/api-users", "api_users"),
    ("/labels", "labels"),
    ("/keys", "api_keys"),
    ("/suppressions", "suppressions"),
    ("/webhooks", "webhooks"),
    ("/statistics", "statistics"),
    ("/accounts", "accounts"),
];

/// A `303 See Other` to `to`.
pub fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Form or query fields (the last of a repeated name wins); a missing one
/// reads as empty. Never fails: bad input is judged by the page.
pub struct Fields(HashMap<String, String>, Vec<(String, String)>);

impl Fields {
    pub fn parse(bytes: &[u8]) -> Self {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(bytes).into_owned().collect();
        Fields(pairs.iter().cloned().collect(), pairs)
    }

    /// Every value of a repeated name (checkboxes), in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.1
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn query(q: Option<&str>) -> Self {
        Self::parse(q.unwrap_or("").as_bytes())
    }

    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }
}

/// The query string for `pairs`, empty values left out.
pub fn query_string(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    s.finish()
}

/// The console's headers on every answer that has not set its own.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    let mut set = |name: HeaderName, value: &'static str| {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    };
    set(header::CONTENT_SECURITY_POLICY, CSP);
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::REFERRER_POLICY, "no-referrer");
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::CACHE_CONTROL, "no-store");
    r
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

pub async fn css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../assets/console.css"),
    )
}

pub async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../assets/console.js"),
    )
}

pub async fn icon() -> Response {
    asset("image/svg+xml", include_str!("../assets/icon.svg"))
}

/// A page as an answer.
pub fn html_response(m: Markup) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        m.into_string(),
    )
        .into_response()
}

/// `2026-12-06 13:08:50` (UTC) for Unix seconds.
pub fn when(unix: i64) -> String {
    posthorn_types::time::rfc3339(unix)
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_string()
}

/// A size for people.
pub fn size(bytes: u64) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else if bytes < 1024 * 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_never_fail_and_queries_skip_empty_values() {
        let f = Fields::parse(b"a=1&b=%E4%B8%AD&c&a=2&%ZZ=x");
        assert_eq!(f.get("a"), "2");
        assert_eq!(f.get("b"), "中");
        assert_eq!(f.get("c"), "");
        assert_eq!(f.get("missing"), "");
        assert_eq!(f.all("a"), ["1", "2"]);
        assert_eq!(
            query_string(&[("x", "a b"), ("y", ""), ("z", "&")]),
            "x=a+b&z=%26"
        );
    }

    #[test]
    fn the_policy_forbids_inline_script_and_framing() {
        assert!(CSP.contains("script-src 'self'"));
        assert!(!CSP.contains("unsafe-inline"));
        assert!(CSP.contains("frame-ancestors 'none'"));
        assert!(FRAME_CSP.starts_with("sandbox;"));
        assert!(!FRAME_CSP.contains("script-src"));
    }
}
