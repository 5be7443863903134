//! HTTP API keys of an account: list, create (the key shown once), revoke.

use super::{account, AdminPath};
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
pub struct ApiKeyView {
    /// The public part of the key (`ph_<id>_<secret>`).
    #[schema(example = "k3x9m2p7q4r8")]
    pub id: String,
    pub description: String,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyList {
    pub keys: Vec<ApiKeyView>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// What the key is for; one line, at most 200 bytes.
    #[serde(default)]
    #[schema(example = "shop backend")]
    pub description: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedApiKey {
    pub id: String,
    /// Send as `Authorization: Bearer <key>`; shown only now.
    pub key: String,
    pub description: String,
    /// RFC 3339.
    pub created_at: String,
}

/// The account's HTTP API keys (without secrets).
#[utoipa::path(get, path = "/v1/admin/accounts/{account}/keys", tag = "admin",
    params(("account" = String, Path, description = "the account name")),
    responses(
        (status = 200, description = "the keys", body = ApiKeyList),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 404, description = "no such account", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn list_keys(
    _admin: AdminAuth,
    State(state): State<AppState>,
    AdminPath(name): AdminPath<String>,
) -> ApiResult<Json<ApiKeyList>> {
    let acct = account(&state, &name).await?;
    let keys = state.store.api_keys(Some(acct.id)).await?;
    Ok(Json(ApiKeyList {
        keys: keys
            .into_iter()
            .map(|k| ApiKeyView {
                id: k.id,
                description: k.description,
                created_at: rfc3339(k.created_at),
            })
            .collect(),
    }))
}

/// Make an HTTP API key acting as the account; the key is returned only
/// now (it is stored hashed).
#[utoipa::path(post, path = "/v1/admin/accounts/{account}/keys", tag = "admin",
    params(("account" = String, Path, description = "the account name")),
    request_body = NewApiKey,
    responses(
        (status = 201, description = "created; the key is shown only now", body = CreatedApiKey),
        (status = 400, description = "a bad description or body", body = ErrorBody),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 404, description = "no such account", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn create_key(
    _admin: AdminAuth,
    State(state): State<AppState>,
    AdminPath(name): AdminPath<String>,
    ApiJson(req): ApiJson<NewApiKey>,
) -> ApiResult<(StatusCode, Json<CreatedApiKey>)> {
    let new = super::service(&state)
        .create_api_key(Some(&name), req.description.as_deref().unwrap_or(""))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKey {
            id: new.record.id,
            key: new.key,
            description: new.record.description,
            created_at: rfc3339(new.record.created_at),
        }),
    ))
}

/// Revoke a key: it stops working at once on this server (others trust a
/// verified key for up to a minute).
#[utoipa::path(delete, path = "/v1/admin/accounts/{account}/keys/{id}", tag = "admin",
    params(
        ("account" = String, Path, description = "the account name"),
        ("id" = String, Path, description = "the key id"),
    ),
    responses(
        (status = 204, description = "revoked"),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 404, description = "no such account, or no such key of it", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn revoke_key(
    _admin: AdminAuth,
    State(state): State<AppState>,
    AdminPath((name, id)): AdminPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let id = super::service(&state)
        .revoke_api_key(Some(&name), &id)
        .await?;
    state.keys.forget(&id);
    Ok(StatusCode::NO_CONTENT)
}
