//! Removing accounts, domains, sender addresses, API users and labels: the
//! admin service decides (a domain with senders stays, an account with
//! mail in the queue stays), these routes only translate.

use super::{service, AdminPath};
use crate::auth::AdminAuth;
use crate::error::{ApiResult, ErrorBody};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;

/// Remove an account with its domains, senders, API users, labels, keys,
/// webhooks, suppressions and finished messages; refused while one of its
/// messages is still in the queue.
#[utoipa::path(delete, path = "/v1/admin/accounts/{account}", tag = "admin",
    params(("account" = String, Path, description = "the account name")),
    responses(
        (status = 204, description = "removed"),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 404, description = "no such account", body = ErrorBody),
        (status = 409, description = "a message of the account is still in the queue", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn remove_account(
    _admin: AdminAuth,
    State(state): State<AppState>,
    AdminPath(name): AdminPath<String>,
) -> ApiResult<StatusCode> {
    service(&state).remove_account(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a domain and its DKIM key; refused while it has sender addresses.
#[utoipa::path(delete, path = "/v1/admin/accounts/{account}/domains/{domain}", tag = "admin",
    params(
        ("account" = String, Path, description = "the account name"),
        ("domain" = String, Path, description = "a domain of the account"),
    ),
    responses(
        (status = 204, description = "removed"),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 404, description = "no such account, or no such domain of it", body = ErrorBody),
        (status = 409, description = "the domain still has sender addresses", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn remove_domain(
    _admin: AdminAuth,
    State(state): State<AppState>,
    AdminPath((account, domain)): AdminPath<(String, String)>,
) -> ApiResult<StatusCode> {
    service(&state)
        .remove_domain(Some(&account), &domain)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a sender address: its SMTP login stops working at once.
#[utoipa::path(delete, path = "/v1/admin/accounts/{account}/senders/{address}", tag = "admin",
    params(
        ("account" = String, Path, description = "the account name"),
        ("address" = String, Path, description = "a sender address of the account"),
    ),
    responses(
        (status = 204, description = "removed"),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 404, description = "no such account, or no such sender of it", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn remove_sender(
    _admin: AdminAuth,
    State(state): State<AppState>,
    AdminPath((account, address)): AdminPath<(String, String)>,
) -> ApiResult<StatusCode> {
    service(&state)
        .remove_sender(Some(&account), &address)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove an API user: its SMTP login stops working at once.
#[utoipa::path(delete, path = "/v1/admin/accounts/{account}/api-users/{name}", tag = "admin",
    params(
        ("account" = String, Path, description = "the account name"),
        ("name" = String, Path, description = "an API user of the account"),
    ),
    responses(
        (status = 204, description = "removed"),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 404, description = "no such account, or no such API user of it", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn remove_api_user(
    _admin: AdminAuth,
    State(state): State<AppState>,
    AdminPath((account, name)): AdminPath<(String, String)>,
) -> ApiResult<StatusCode> {
    service(&state)
        .remove_api_user(Some(&account), &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a label: a login naming it is refused from then on.
#[utoipa::path(delete, path = "/v1/admin/accounts/{account}/labels/{label}", tag = "admin",
    params(
        ("account" = String, Path, description = "the account name"),
        ("label" = String, Path, description = "a label of the account"),
    ),
    responses(
        (status = 204, description = "removed"),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 404, description = "no such account, or no such label of it", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn remove_label(
    _admin: AdminAuth,
    State(state): State<AppState>,
    AdminPath((account, label)): AdminPath<(String, String)>,
) -> ApiResult<StatusCode> {
    service(&state).remove_label(&account, &label).await?;
    Ok(StatusCode::NO_CONTENT)
}
