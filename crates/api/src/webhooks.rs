//! `POST /v1/webhooks`, `GET /v1/webhooks`, `DELETE /v1/webhooks/{id}`.
//!
//! A URL is checked when a webhook is created ([`check_url`]): http or
//! https, at most [`MAX_URL_BYTES`], no user information, and unless
//! `[webhooks] allow_private_networks` its host must not be, or resolve to,
//! an internal address (`posthorn_types::net::is_internal`, the classifier
//! delivery uses too). The sender checks again at each POST, and its
//! resolver leaves internal addresses out of what it connects to, so a
//! name that resolves elsewhere later does not reach inside either. An
//! account has at most [`MAX_WEBHOOKS_PER_ACCOUNT`] webhooks.

use crate::auth::AccountAuth;
use crate::error::{ApiError, ApiResult, ErrorBody, INVALID_EVENT, INVALID_URL, TOO_MANY_WEBHOOKS};
use crate::extract::ApiJson;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use posthorn_store::{Webhook, EVENT_KINDS};
use posthorn_types::time::rfc3339;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// Where events are POSTed (http or https).
    #[schema(example = "https://app.example.com/hooks/mail")]
    pub url: String,
    /// Any of `delivered`, `deferred`, `bounced`, `expired`, `suppressed`,
    /// `unsubscribed` (a one-click unsubscribe, docs/unsubscribe.md),
    /// `opened`, `clicked` (tracking, docs/tracking.md).
    #[schema(example = json!(["delivered", "bounced"]))]
    pub events: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedWebhook {
    pub id: String,
    /// The HMAC-SHA256 signing secret; shown only now.
    pub secret: String,
    pub url: String,
    pub events: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

/// The longest webhook URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// The most webhooks one account may have.
pub const MAX_WEBHOOKS_PER_ACCOUNT: usize = 20;

/// How an internal address is refused, for the URL check and the
/// sender's resolver alike.
pub fn internal_refusal(host: &str, ip: IpAddr, why: posthorn_types::net::Internal) -> String {
    let is = if host.parse::<IpAddr>().is_ok() {
        format!("{host} is an internal address ({why})")
    } else {
        format!("{host} resolves to an internal address ({ip}: {why})")
    };
    format!("{is}, and [webhooks] allow_private_networks is false")
}

/// The host and port of an http(s) URL, or why it is not one. The host is
/// what the HTTP client will connect to, parsed the way it parses it
/// (`http://2130706433/` is `127.0.0.1`); an IPv6 address comes without
/// brackets.
pub fn url_host(url: &str) -> Result<(String, u16), String> {
    if url.len() > MAX_URL_BYTES {
        return Err(format!(
            "the URL is {} bytes long; at most {MAX_URL_BYTES}",
            url.len()
        ));
    }
    let (scheme, _) = url
        .split_once("://")
        .ok_or("the URL has no scheme (http:// or https://)")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(format!("scheme {scheme:?}: only http and https"));
    }
    if url.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err("the URL has spaces or control characters".into());
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("user information in the URL is not allowed".into());
    }
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("the URL has no host")?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = parsed
        .port_or_known_default()
        .ok_or("the URL has no port")?;
    Ok((host.to_string(), port))
}

/// The URL's host and port, checked without DNS: the shape (see
/// [`url_host`]), and unless `allow_private`, a host that is an address
/// must not be internal. What a name resolves to is checked by
/// [`check_url`] at creation and by the sender's resolver at each POST.
pub fn check_url_host(url: &str, allow_private: bool) -> Result<(String, u16), String> {
    let (host, port) = url_host(url)?;
    if !allow_private {
        if let Ok(ip) = host.parse::<IpAddr>() {
            if let Some(why) = posthorn_types::net::is_internal(ip) {
                return Err(internal_refusal(&host, ip, why));
            }
        }
    }
    Ok((host, port))
}

/// Check a URL may receive webhooks: [`check_url_host`], and unless
/// `allow_private`, every address its host resolves to must be public.
pub async fn check_url(url: &str, allow_private: bool) -> Result<(), String> {
    let (host, port) = check_url_host(url, allow_private)?;
    if allow_private || host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let addrs: Vec<IpAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .map(|a| a.ip())
        .collect();
    if addrs.is_empty() {
        return Err(format!("{host} has no address"));
    }
    for ip in addrs {
        if let Some(why) = posthorn_types::net::is_internal(ip) {
            return Err(internal_refusal(&host, ip, why));
        }
    }
    Ok(())
}

/// Creations under way on this node, one at a time, so two at once cannot
/// both see room for the last webhook (nodes of a cluster could each add
/// one at the same moment: the cap may be passed by one per node then).
static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Subscribe a URL to events.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks",
    request_body = NewWebhook,
    responses(
        (status = 201, description = "created; the secret is shown only now", body = CreatedWebhook),
        (status = 400, description = "a bad URL (not http(s), too long, or internal) or event kind", body = ErrorBody),
        (status = 401, description = "no or a wrong API key", body = ErrorBody),
        (status = 403, description = "the admin key: this route acts as an account", body = ErrorBody),
        (status = 409, description = "the account already has the most webhooks it may have (20)", body = ErrorBody),
        (status = 413, description = "the body is too large", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    AccountAuth(who): AccountAuth,
    ApiJson(req): ApiJson<NewWebhook>,
) -> ApiResult<(StatusCode, Json<CreatedWebhook>)> {
    let created = add_webhook(&state, who.account_id, req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Add a webhook for the account, under every rule (events, URL, the
/// per-account maximum): the route above and the console both call it.
pub async fn add_webhook(
    state: &AppState,
    account_id: i64,
    req: NewWebhook,
) -> ApiResult<CreatedWebhook> {
    if req.events.is_empty() {
        return Err(ApiError::new(
            INVALID_EVENT,
            format!("name at least one event: {}", EVENT_KINDS.join(", ")),
        ));
    }
    let mut events = Vec::new();
    for e in &req.events {
        if !EVENT_KINDS.contains(&e.as_str()) {
            return Err(ApiError::new(
                INVALID_EVENT,
                format!("unknown event {e:?}; one of: {}", EVENT_KINDS.join(", ")),
            ));
        }
        if !events.contains(e) {
            events.push(e.clone());
        }
    }
    check_url(&req.url, state.config.allow_private_networks)
        .await
        .map_err(|m| ApiError::new(INVALID_URL, m))?;
    let _creating = CREATING.lock().await;
    let existing = state.store.webhooks(account_id).await?.len();
    if existing >= MAX_WEBHOOKS_PER_ACCOUNT {
        return Err(ApiError::new(
            TOO_MANY_WEBHOOKS,
            format!("the account has {existing} webhooks, the most it may have is {MAX_WEBHOOKS_PER_ACCOUNT}: delete one first (a webhook takes several event kinds)"),
        ));
    }
    let id = format!("wh_{}", posthorn_types::new_request_id());
    let secret = format!("whsec_{}", posthorn_submit::generate_secret());
    state
        .store
        .add_webhook(Webhook {
            id: id.clone(),
            account_id,
            url: req.url.clone(),
            events: events.clone(),
            secret: secret.clone(),
            created_at: state.store.now(),
        })
        .await?;
    Ok(CreatedWebhook {
        id,
        secret,
        url: req.url,
        events,
    })
}

/// The account's webhooks (without secrets).
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks",
    responses(
        (status = 200, description = "the webhooks", body = WebhookList),
        (status = 401, description = "no or a wrong API key", body = ErrorBody),
        (status = 403, description = "the admin key: this route acts as an account", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    AccountAuth(who): AccountAuth,
) -> ApiResult<Json<WebhookList>> {
    let hooks = state.store.webhooks(who.account_id).await?;
    Ok(Json(WebhookList {
        webhooks: hooks
            .into_iter()
            .map(|w| WebhookView {
                id: w.id,
                url: w.url,
                events: w.events,
                created_at: rfc3339(w.created_at),
            })
            .collect(),
    }))
}

/// Remove a webhook; events not yet sent to it are dropped.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "the webhook id")),
    responses(
        (status = 204, description = "removed"),
        (status = 401, description = "no or a wrong API key", body = ErrorBody),
        (status = 403, description = "the admin key: this route acts as an account", body = ErrorBody),
        (status = 404, description = "no such webhook of this account", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    AccountAuth(who): AccountAuth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if state.store.remove_webhook(who.account_id, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no webhook {id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            url_host("http://127.0.0.1:8080/x").unwrap(),
            ("127.0.0.1".into(), 8080)
        );
        assert_eq!(
            url_host("https://hooks.example.com/a?b").unwrap(),
            ("hooks.example.com".into(), 443)
        );
        assert_eq!(
            url_host("HTTPS://Hooks.Example.COM:8443").unwrap(),
            ("hooks.example.com".into(), 8443)
        );
        assert_eq!(url_host("http://[::1]:9/").unwrap(), ("::1".into(), 9));
        // The host as the HTTP client reads it.
        assert_eq!(
            url_host("http://2130706433/").unwrap(),
            ("127.0.0.1".into(), 80)
        );
        assert_eq!(
            url_host("http://0x7f.1/").unwrap(),
            ("127.0.0.1".into(), 80)
        );
        for bad in [
            "ftp://x/",
            "http://",
            "x",
            "http://u:p@h/",
            "http://u@h/",
            "http://h:99999/",
            "http://a b/",
            "http://h/\tx",
            "file:///etc/passwd",
        ] {
            assert!(url_host(bad).is_err(), "{bad}");
        }
        let long = format!("https://hooks.example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert!(url_host(&long).unwrap_err().contains("at most 2048"));
        let longest = format!(
            "https://hooks.example.com/{}",
            "a".repeat(MAX_URL_BYTES - "https://hooks.example.com/".len())
        );
        assert_eq!(longest.len(), MAX_URL_BYTES);
        assert!(url_host(&longest).is_ok());
    }

    #[test]
    fn internal_addresses_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.1.2.3/",
            "http://100.64.0.1/",
            "http://198.18.0.1/",
            "http://198.19.255.255/",
            "http://[::1]/",
            "http://[::127.0.0.1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://[64:ff9b::a00:1]/",
            "http://[64:ff9b::7f00:1]/",
            "http://[2002:7f00:1::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://0.0.0.0/",
            "http://2130706433/",
        ] {
            let err = check_url_host(url, false).unwrap_err();
            assert!(err.contains("is an internal address"), "{url}: {err}");
            assert!(err.contains("allow_private_networks"), "{url}: {err}");
            assert!(check_url_host(url, true).is_ok(), "{url}");
        }
        assert_eq!(
            check_url_host("http://[64:ff9b::a00:1]/", false).unwrap_err(),
            "64:ff9b::a00:1 is an internal address (private via NAT64), and [webhooks] allow_private_networks is false"
        );
        for url in [
            "http://8.8.8.8/",
            "https://[2606:4700::1111]/",
            "https://hooks.example.com/",
        ] {
            assert!(check_url_host(url, false).is_ok(), "{url}");
        }
    }

    #[tokio::test]
    async fn names_are_resolved_at_creation() {
        // /etc/hosts says localhost is loopback.
        let err = check_url("http://localhost:9/", false).await.unwrap_err();
        assert!(
            err.contains("localhost resolves to an internal address"),
            "{err}"
        );
        assert!(check_url("http://localhost:9/", true).await.is_ok());
    }
}
