//! Admin routes (the admin key only), under `/v1/admin/accounts` and
//! `/v1/admin/cluster`; the
//! rules are the admin service's (`posthorn_admin::Admin`), these translate:
//! accounts and their limits ([`accounts`]), domains with their DKIM DNS
//! records and a check that resolves them ([`domains`], [`check`]), sender
//! addresses, API users and labels ([`credentials`]), the suppression list
//! ([`suppressions`]), HTTP API keys ([`keys`]), removing accounts,
//! domains, senders, API users and labels ([`removals`]), and the cluster's
//! nodes ([`cluster`], `/v1/admin/cluster`) and the delivery destinations
//! they report ([`destinations`], `/v1/admin/destinations`).
//!
//! Every route names its account in the path; an unknown account, or a
//! domain, sender or key of another account, is `404
//! ResourceNotFound.Object`. Names follow the same rules as the CLI's
//! (`posthorn account create` etc.), and bad ones are `400
//! InvalidParameter.Value`. Secrets are generated here, shown once in the
//! answer, and stored only as argon2id hashes (computed on the blocking
//! pool).

pub mod accounts;
pub mod cluster;
pub mod credentials;
pub mod destinations;
pub mod domains;
pub mod keys;
pub mod removals;
pub mod suppressions;

use crate::error::{ApiError, ApiResult, DUPLICATE, INVALID_VALUE, IN_USE, NOT_FOUND, TEMPORARY};
use crate::AppState;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
pub use posthorn_admin::{check, dkim};
use posthorn_admin::{Admin, AdminError};
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

/// The account named in the path (404 when there is none).
pub(crate) async fn account(state: &AppState, name: &str) -> ApiResult<Account> {
    Ok(state.store.account(name).await?)
}

/// The admin service on this server's store: the rules live there, the
/// handlers here only translate.
pub(crate) fn service(state: &AppState) -> Admin {
    Admin::new(state.store.clone())
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Invalid(m) => ApiError::new(INVALID_VALUE, m),
            AdminError::NotFound(m) => ApiError::new(NOT_FOUND, m),
            AdminError::Duplicate(m) => ApiError::new(DUPLICATE, m),
            AdminError::InUse(m) => ApiError::new(IN_USE, m),
            AdminError::Internal(m) => ApiError::new(TEMPORARY, m),
        }
    }
}
