//! Admin routes (the admin key only): accounts, domains, senders, API
//! users, labels, limits, suppressions, API keys.

use crate::auth::AdminAuth;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use posthorn_types::time::rfc3339;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct AccountView {
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct AccountList {
    pub accounts: Vec<AccountView>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    #[schema(example = "shop")]
    pub name: String,
}

/// Every account.
#[utoipa::path(get, path = "/v1/admin/accounts", tag = "admin",
    responses(
        (status = 200, description = "the accounts", body = AccountList),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn list_accounts(
    State(state): State<AppState>,
    _admin: AdminAuth,
) -> ApiResult<Json<AccountList>> {
    let accounts = state.store.accounts().await?;
    Ok(Json(AccountList {
        accounts: accounts
            .into_iter()
            .map(|a| AccountView {
                name: a.name,
                created_at: rfc3339(a.created_at),
            })
            .collect(),
    }))
}

/// Create an account.
#[utoipa::path(post, path = "/v1/admin/accounts", tag = "admin",
    request_body = NewAccount,
    responses(
        (status = 201, description = "created", body = AccountView),
        (status = 400, description = "a bad name", body = ErrorBody),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 409, description = "it exists", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn create_account(
    State(state): State<AppState>,
    _admin: AdminAuth,
    ApiJson(req): ApiJson<NewAccount>,
) -> ApiResult<(StatusCode, Json<AccountView>)> {
    let a = state.store.create_account(&req.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(AccountView {
            name: a.name,
            created_at: rfc3339(a.created_at),
        }),
    ))
}
