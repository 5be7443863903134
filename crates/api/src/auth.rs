//! API keys: `ph_<id>_<secret>`, the secret kept only as an argon2id hash,
//! sent as `Authorization: Bearer <key>`.
//!
//! A verified key is remembered (by a SHA-256 digest of the whole key) for
//! [`VERIFIED_TTL`], so the argon2 work is paid once per key and minute,
//! not per request; revoking a key through this server forgets it at once.

use crate::error::{ApiError, ADMIN_ONLY, INVALID_KEY, MISSING_KEY};
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use posthorn_store::StoreError;
use posthorn_types::{Identity, LoginKind};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a verified key is trusted without asking the store again.
pub const VERIFIED_TTL: Duration = Duration::from_secs(60);
const CACHE_CAP: usize = 10_000;

/// Who a request acts as.
#[derive(Clone, Debug)]
pub enum Principal {
    Account(Identity),
    Admin,
}

pub use posthorn_admin::keys::{new_key, parse_key, NewKey};

/// Keys verified lately.
#[derive(Default)]
pub struct KeyCache {
    verified: Mutex<HashMap<[u8; 32], (Instant, String, Principal)>>,
}

impl KeyCache {
    fn get(&self, digest: &[u8; 32]) -> Option<Principal> {
        let map = self.verified.lock().expect("key cache");
        map.get(digest)
            .filter(|(at, _, _)| at.elapsed() < VERIFIED_TTL)
            .map(|(_, _, p)| p.clone())
    }

    fn put(&self, digest: [u8; 32], id: String, p: Principal) {
        let mut map = self.verified.lock().expect("key cache");
        if map.len() >= CACHE_CAP {
            map.retain(|_, (at, _, _)| at.elapsed() < VERIFIED_TTL);
            if map.len() >= CACHE_CAP {
                map.clear();
            }
        }
        map.insert(digest, (Instant::now(), id, p));
    }

    /// Forget a revoked key.
    pub fn forget(&self, id: &str) {
        self.verified
            .lock()
            .expect("key cache")
            .retain(|_, (_, kid, _)| kid != id);
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who the bearer of `key` is.
pub async fn authenticate(state: &AppState, key: &str) -> Result<Principal, ApiError> {
    let invalid = || ApiError::new(INVALID_KEY, "the API key is not valid");
    if let Some(admin) = &state.config.admin_key {
        if constant_time_eq(admin.as_bytes(), key.as_bytes()) {
            return Ok(Principal::Admin);
        }
    }
    let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    if let Some(p) = state.keys.get(&digest) {
        return Ok(p);
    }
    let Some((id, secret)) = parse_key(key) else {
        return Err(invalid());
    };
    let record = match state.store.api_key(id).await {
        Ok(r) => r,
        Err(StoreError::NotFound(_)) => {
            // The same work as a real check, so timing says nothing.
            posthorn_submit::burn_time(secret.into()).await;
            return Err(invalid());
        }
        Err(e) => return Err(e.into()),
    };
    if !posthorn_submit::verify_secret(secret.into(), record.secret_hash.clone()).await {
        return Err(invalid());
    }
    let principal = match record.account_id {
        None => Principal::Admin,
        Some(account_id) => {
            let account = state.store.account_by_id(account_id).await?;
            Principal::Account(Identity {
                account_id,
                account: account.name,
                login: LoginKind::ApiKey {
                    id: record.id.clone(),
                },
                label: None,
            })
        }
    };
    state.keys.put(digest, record.id, principal.clone());
    Ok(principal)
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::new(MISSING_KEY, "send `Authorization: Bearer <API key>`"))?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::new(INVALID_KEY, "the API key is not valid"))?;
    let (scheme, key) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::new(MISSING_KEY, "send `Authorization: Bearer <API key>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::new(
            MISSING_KEY,
            "send `Authorization: Bearer <API key>`",
        ));
    }
    Ok(key.trim())
}

/// A request made with an account's key, or with SMTP credentials as
/// `Authorization: Basic base64(user:password)` (an API user and its key,
/// SendCloud style, `#label_id` included; or a sender address and its
/// password). Each one counts against `api_calls_per_minute`: an API user's
/// HTTP calls and SMTP transactions share one budget.
pub struct AccountAuth(pub Identity);

/// SMTP credentials given as `Authorization: Basic`, when they are.
fn basic(parts: &Parts) -> Option<Result<(String, String), ApiError>> {
    use base64::Engine;
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let malformed = || {
        ApiError::new(
            INVALID_KEY,
            "`Authorization: Basic` takes base64 of user:password",
        )
    };
    let decoded = match base64::engine::general_purpose::STANDARD.decode(encoded.trim()) {
        Ok(d) => d,
        Err(_) => return Some(Err(malformed())),
    };
    let Ok(text) = String::from_utf8(decoded) else {
        return Some(Err(malformed()));
    };
    match text.split_once(':') {
        Some((user, password)) if !user.is_empty() => {
            Some(Ok((user.to_string(), password.to_string())))
        }
        _ => Some(Err(malformed())),
    }
}

/// A login with SMTP credentials over HTTP, under the same AUTH lockout.
async fn smtp_login(
    parts: &Parts,
    state: &AppState,
    user: &str,
    password: &str,
) -> Result<Identity, ApiError> {
    use posthorn_submit::AuthError;
    let ip = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    match state
        .submitter
        .login(ip, user, password, &state.config.auth_lockout)
        .await
    {
        Ok(who) => Ok(who),
        Err(AuthError::LockedOut) => Err(ApiError::new(
            crate::error::LOCKED_OUT,
            "too many failed logins from your address, try again later",
        )),
        Err(AuthError::Temporary(m)) => Err(ApiError::new(crate::error::TEMPORARY, m)),
        Err(e @ AuthError::UnknownLabel(_)) => Err(ApiError::new(
            INVALID_KEY,
            format!("the password is right, but: {e}"),
        )),
        Err(AuthError::Invalid) => Err(ApiError::new(
            INVALID_KEY,
            "the SMTP user or password is wrong",
        )),
    }
}

impl FromRequestParts<AppState> for AccountAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(creds) = basic(parts) {
            let (user, password) = creds?;
            let who = smtp_login(parts, state, &user, &password).await?;
            state.submitter.api_call(&who).await?;
            return Ok(AccountAuth(who));
        }
        match authenticate(state, bearer(parts)?).await? {
            Principal::Account(who) => {
                state.submitter.api_call(&who).await?;
                Ok(AccountAuth(who))
            }
            Principal::Admin => Err(ApiError::new(
                crate::error::ACCOUNT_ONLY,
                "this route acts as an account: use one of its API keys (posthorn apikey create --account NAME)",
            )),
        }
    }
}

/// A request made with the admin key.
pub struct AdminAuth;

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match authenticate(state, bearer(parts)?).await? {
            Principal::Admin => Ok(AdminAuth),
            Principal::Account(_) => Err(ApiError::new(
                ADMIN_ONLY,
                "admin routes need the admin key ([http] admin_key, or posthorn apikey create --admin)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_refuse_garbage() {
        let k = new_key(Some(1), "t");
        let (id, secret) = parse_key(&k.key).expect("own key parses");
        assert_eq!(id, k.record.id);
        assert_eq!(secret.len(), 32);
        assert!(k.record.secret_hash.starts_with("$argon2id$"));
        for bad in [
            "",
            "ph_",
            "ph_abc_def",
            "xx_aaaaaaaaaaaa_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(parse_key(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
