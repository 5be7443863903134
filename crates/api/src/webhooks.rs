//! `POST /v1/webhooks`, `GET /v1/webhooks`, `DELETE /v1/webhooks/{id}`.

use crate::auth::AccountAuth;
use crate::error::{ApiError, ApiResult, ErrorBody, INVALID_EVENT, INVALID_URL};
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
    /// Any of `delivered`, `deferred`, `bounced`, `expired`, `suppressed`.
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

/// Whether an address is loopback, private, link-local or otherwise not
/// on the public internet.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

/// The host and port of an http(s) URL, or why it is not one.
pub fn url_host(url: &str) -> Result<(String, u16), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("the URL has no scheme (http:// or https://)")?;
    let port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err(format!("scheme {scheme:?}: only http and https")),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err("user information in the URL is not allowed".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, tail) = v6.split_once(']').ok_or("unclosed [ in the host")?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| "bad port")?,
            None if tail.is_empty() => port,
            None => return Err("junk after the host".into()),
        };
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().map_err(|_| "bad port")?),
            None => (authority.to_string(), port),
        }
    };
    if host.is_empty() || url.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err("the URL has no host, or has spaces or control characters".into());
    }
    Ok((host, port))
}

/// Check a URL may receive webhooks; with private networks forbidden, every
/// address its host resolves to must be public.
pub async fn check_url(url: &str, allow_private: bool) -> Result<(), String> {
    let (host, port) = url_host(url)?;
    if allow_private {
        return Ok(());
    }
    let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .map(|a| a.ip())
            .collect(),
    };
    if addrs.is_empty() || addrs.iter().any(|ip| is_private(*ip)) {
        return Err(format!(
            "{host} is (or resolves to) a private or loopback address, and [webhooks] allow_private_networks is false"
        ));
    }
    Ok(())
}

/// Subscribe a URL to events.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks",
    request_body = NewWebhook,
    responses(
        (status = 201, description = "created; the secret is shown only now", body = CreatedWebhook),
        (status = 400, description = "a bad URL or event kind", body = ErrorBody),
        (status = 401, description = "no or a wrong API key", body = ErrorBody),
        (status = 403, description = "the admin key: this route acts as an account", body = ErrorBody),
        (status = 413, description = "the body is too large", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    AccountAuth(who): AccountAuth,
    ApiJson(req): ApiJson<NewWebhook>,
) -> ApiResult<(StatusCode, Json<CreatedWebhook>)> {
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
    let id = format!("wh_{}", posthorn_types::new_request_id());
    let secret = format!("whsec_{}", posthorn_submit::generate_secret());
    state
        .store
        .add_webhook(Webhook {
            id: id.clone(),
            account_id: who.account_id,
            url: req.url.clone(),
            events: events.clone(),
            secret: secret.clone(),
            created_at: state.store.now(),
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            id,
            secret,
            url: req.url,
            events,
        }),
    ))
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
    fn urls_and_private_addresses() {
        assert_eq!(
            url_host("http://127.0.0.1:8080/x").unwrap(),
            ("127.0.0.1".into(), 8080)
        );
        assert_eq!(
            url_host("https://hooks.example.com/a?b").unwrap(),
            ("hooks.example.com".into(), 443)
        );
        assert_eq!(url_host("http://[::1]:9/").unwrap(), ("::1".into(), 9));
        for bad in [
            "ftp://x/",
            "http://",
            "x",
            "http://u:p@h/",
            "http://h:99999/",
            "http://a b/",
        ] {
            assert!(url_host(bad).is_err(), "{bad}");
        }
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "2606:4700::1111"] {
            assert!(!is_private(public.parse().unwrap()), "{public}");
        }
    }
}
