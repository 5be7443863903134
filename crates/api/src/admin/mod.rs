//! Admin routes (the admin key only), all under `/v1/admin/accounts`:
//! accounts and their limits ([`accounts`]), domains with their DKIM DNS
//! records and a check that resolves them ([`domains`], [`check`]), sender
//! addresses, API users and labels ([`credentials`]), the suppression list
//! ([`suppressions`]) and HTTP API keys ([`keys`]).
//!
//! Every route names its account in the path; an unknown account, or a
//! domain, sender or key of another account, is `404
//! ResourceNotFound.Object`. Names follow the same rules as the CLI's
//! (`posthorn account create` etc.), and bad ones are `400
//! InvalidParameter.Value`. Secrets are generated here, shown once in the
//! answer, and stored only as argon2id hashes (computed on the blocking
//! pool).

pub mod accounts;
pub mod check;
pub mod credentials;
pub mod dkim;
pub mod domains;
pub mod keys;
pub mod suppressions;

use crate::error::{ApiError, ApiResult, INTERNAL, INVALID_VALUE};
use crate::AppState;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use posthorn_store::Account;
use serde::de::DeserializeOwned;

/// Path parameters, refused with the API's own error code when they do not
/// decode (percent-encoding that is not UTF-8).
pub struct AdminPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for AdminPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(AdminPath(v)),
            Err(e) => Err(ApiError::new(INVALID_VALUE, e.body_text())),
        }
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(INVALID_VALUE, message)
}

/// The account named in the path (404 when there is none).
pub(crate) async fn account(state: &AppState, name: &str) -> ApiResult<Account> {
    Ok(state.store.account(name).await?)
}

/// A name (account, API user, label): 1 to 128 characters, no spaces or
/// control characters (as the CLI's).
pub fn check_name(what: &str, name: &str) -> ApiResult<()> {
    if name.is_empty()
        || name.len() > 128
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid(format!(
            "{what} {name:?} must be 1 to 128 characters without spaces"
        )));
    }
    Ok(())
}

/// A domain name like `example.com` (ASCII labels, at least two).
pub fn is_domain(d: &str) -> bool {
    d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A domain as stored: lower case, no trailing dot.
pub fn normalize_domain(d: &str) -> String {
    d.trim_end_matches('.').to_ascii_lowercase()
}

/// The domain of a sender address (as `posthorn sender add` checks it).
pub fn address_domain(address: &str) -> ApiResult<&str> {
    match address.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && local.len() <= 64
                && !domain.contains('@')
                && is_domain(&domain.to_ascii_lowercase())
                && !local
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>') =>
        {
            Ok(domain)
        }
        _ => Err(invalid(format!(
            "{address:?} is not an email address like name@example.com"
        ))),
    }
}

/// An address for the suppression list: one '@' with something on both
/// sides, no spaces, no angle brackets.
pub fn check_address(address: &str) -> ApiResult<()> {
    let ok = match address.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && address.len() <= 320
                && !address
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
        }
        None => false,
    };
    if !ok {
        return Err(invalid(format!(
            "{address:?} is not an email address like name@example.com"
        )));
    }
    Ok(())
}

/// The secret given (at least 8 characters), or a generated one; `true`
/// when generated (and so to be shown once).
pub fn secret_or_generated(what: &str, given: Option<String>) -> ApiResult<(String, bool)> {
    match given {
        Some(p) if p.chars().count() < 8 => {
            Err(invalid(format!("the {what} must be at least 8 characters")))
        }
        Some(p) if p.len() > 1024 || p.chars().any(char::is_control) => Err(invalid(format!(
            "the {what} must be at most 1024 bytes without control characters"
        ))),
        Some(p) => Ok((p, false)),
        None => Ok((posthorn_submit::generate_secret(), true)),
    }
}

/// Run slow work (argon2, RSA key generation) on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::new(INTERNAL, format!("a background task failed: {e}")))
}

/// The argon2id hash of a secret, computed on the blocking pool.
pub(crate) async fn hash(secret: String) -> ApiResult<String> {
    blocking(move || posthorn_submit::hash_secret(&secret)).await
}

/// One line of text an operator gives (a reason, a description).
pub(crate) fn one_line(what: &str, text: &str, max: usize) -> ApiResult<String> {
    let text = text.trim();
    if text.len() > max || text.chars().any(char::is_control) {
        return Err(invalid(format!(
            "the {what} must be at most {max} bytes on one line"
        )));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_domains_and_addresses() {
        assert!(check_name("x", "shop").is_ok());
        assert!(check_name("x", "").is_err());
        assert!(check_name("x", "a b").is_err());
        assert!(check_name("x", &"a".repeat(129)).is_err());
        assert!(is_domain("mail.example.com"));
        assert!(!is_domain("example"));
        assert!(!is_domain("-a.example"));
        assert!(!is_domain("a_b.example"));
        assert_eq!(normalize_domain("Example.COM."), "example.com");
        assert_eq!(address_domain("a@Example.com").unwrap(), "Example.com");
        assert!(address_domain("no-at").is_err());
        assert!(address_domain("<a>@example.com").is_err());
        assert!(check_address("a@b").is_ok());
        assert!(check_address("a b@c").is_err());
        assert!(secret_or_generated("password", Some("short".into())).is_err());
        let (p, generated) = secret_or_generated("password", None).unwrap();
        assert!(generated && p.len() >= 20);
    }
}
