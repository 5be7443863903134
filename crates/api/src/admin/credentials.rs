//! Sender addresses (SMTP logins that send as themselves), API users (SMTP
//! logins that may send as any sender of the account) and labels.

use super::{account, service, AdminPath};
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
pub struct SenderView {
    #[schema(example = "app@example.com")]
    pub address: String,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct SenderList {
    pub senders: Vec<SenderView>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSender {
    /// An address at one of the account's domains.
    #[schema(example = "app@example.com")]
    pub address: String,
    /// At least 8 characters; omitted: one is generated and returned once.
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct SetPassword {
    /// At least 8 characters; omitted: one is generated and returned once.
    #[serde(default)]
    pub password: Option<String>,
}

/// A sender's SMTP credentials.
#[derive(Serialize, ToSchema)]
pub struct SenderCredentials {
    /// The SMTP user name.
    pub address: String,
    /// The generated password, shown only now (absent when one was given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ApiUserView {
    #[schema(example = "api1")]
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct ApiUserList {
    pub api_users: Vec<ApiUserView>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiUser {
    /// 1 to 128 characters without spaces, '#' or '@'.
    #[schema(example = "api1")]
    pub name: String,
    /// At least 8 characters; omitted: one is generated and returned once.
    #[serde(default)]
    pub key: Option<String>,
}

/// An API user's SMTP credentials.
#[derive(Serialize, ToSchema)]
pub struct ApiUserCredentials {
    /// The SMTP user name (`name#label` picks a label at login).
    pub name: String,
    /// The generated key (the SMTP password), shown only now (absent when
    /// one was given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LabelView {
    #[schema(example = "42")]
    pub label: String,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct LabelList {
    pub labels: Vec<LabelView>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLabel {
    /// 1 to 128 characters without spaces or '#'.
    #[schema(example = "42")]
    pub label: String,
}

/// The account's sender addresses.
#[utoipa::path(get, path = "/v1/admin/accounts/{account}/senders", tag = "admin",
    params(("account" = String, Path, description = "the account name")),
    responses(
        (status = 200, description = "the senders", body = SenderList),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 404, description = "no such account", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn list_senders(
    _admin: AdminAuth,
    State(state): State<AppState>,
    AdminPath(name): AdminPath<String>,
) -> ApiResult<Json<SenderList>> {
    let acct = account(&state, &name).await?;
    let senders = state.store.senders(acct.id).await?;
    Ok(Json(SenderList {
        senders: senders
            .into_iter()
            .map(|s| SenderView {
                address: s.name,
                created_at: rfc3339(s.created_at),
            })
            .collect(),
    }))
}

/// Add a sender address (an SMTP login); a password is generated and
/// returned once unless one is given.
#[utoipa::path(post, path = "/v1/admin/accounts/{account}/senders", tag = "admin",
    params(("account" = String, Path, description = "the account name")),
    request_body = NewSender,
    responses(
        (status = 201, description = "added", body = SenderCredentials),
        (status = 400, description = "a bad address or password, or its domain is not the account's", body = ErrorBody),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 404, description = "no such account", body = ErrorBody),
        (status = 409, description = "the address exists", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn create_sender(
    _admin: AdminAuth,
    State(state): State<AppState>,
    AdminPath(name): AdminPath<String>,
    ApiJson(req): ApiJson<NewSender>,
) -> ApiResult<(StatusCode, Json<SenderCredentials>)> {
    let creds = service(&state)
        .add_sender(&name, &req.address, req.password)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(SenderCredentials {
            address: creds.login,
            password: creds.generated_secret,
        }),
    ))
}

/// Set a sender's SMTP password: the one given, or a generated one
/// returned once. Send `{}` to generate.
#[utoipa::path(post, path = "/v1/admin/accounts/{account}/senders/{address}/password", tag = "admin",
    params(
        ("account" = String, Path, description = "the account name"),
        ("address" = String, Path, description = "a sender address of the account"),
    ),
    request_body = SetPassword,
    responses(
        (status = 200, description = "changed", body = SenderCredentials),
        (status = 400, description = "a bad password or body", body = ErrorBody),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 404, description = "no such account, or no such sender of it", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn set_sender_password(
    _admin: AdminAuth,
    State(state): State<AppState>,
    AdminPath((name, address)): AdminPath<(String, String)>,
    ApiJson(req): ApiJson<SetPassword>,
) -> ApiResult<Json<SenderCredentials>> {
    let creds = service(&state)
        .set_sender_password(Some(&name), &address, req.password)
        .await?;
    Ok(Json(SenderCredentials {
        address: creds.login,
        password: creds.generated_secret,
    }))
}

/// The account's API users.
#[utoipa::path(get, path = "/v1/admin/accounts/{account}/api-users", tag = "admin",
    params(("account" = String, Path, description = "the account name")),
    responses(
        (status = 200, description = "the API users", body = ApiUserList),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 404, description = "no such account", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn list_api_users(
    _admin: AdminAuth,
    State(state): State<AppState>,
    AdminPath(name): AdminPath<String>,
) -> ApiResult<Json<ApiUserList>> {
    let acct = account(&state, &name).await?;
    let users = state.store.api_users(acct.id).await?;
    Ok(Json(ApiUserList {
        api_users: users
            .into_iter()
            .map(|u| ApiUserView {
                name: u.name,
                created_at: rfc3339(u.created_at),
            })
            .collect(),
    }))
}

/// Add an API user (an SMTP login that may send as any sender address of
/// the account); its key is generated and returned once unless given.
#[utoipa::path(post, path = "/v1/admin/accounts/{account}/api-users", tag = "admin",
    params(("account" = String, Path, description = "the account name")),
    request_body = NewApiUser,
    responses(
        (status = 201, description = "added", body = ApiUserCredentials),
        (status = 400, description = "a bad name or key", body = ErrorBody),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 404, description = "no such account", body = ErrorBody),
        (status = 409, description = "the name exists", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn create_api_user(
    _admin: AdminAuth,
    State(state): State<AppState>,
    AdminPath(name): AdminPath<String>,
    ApiJson(req): ApiJson<NewApiUser>,
) -> ApiResult<(StatusCode, Json<ApiUserCredentials>)> {
    let creds = service(&state)
        .add_api_user(&name, &req.name, req.key)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ApiUserCredentials {
            name: creds.login,
            key: creds.generated_secret,
        }),
    ))
}

/// The account's labels.
#[utoipa::path(get, path = "/v1/admin/accounts/{account}/labels", tag = "admin",
    params(("account" = String, Path, description = "the account name")),
    responses(
        (status = 200, description = "the labels", body = LabelList),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 404, description = "no such account", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn list_labels(
    _admin: AdminAuth,
    State(state): State<AppState>,
    AdminPath(name): AdminPath<String>,
) -> ApiResult<Json<LabelList>> {
    let acct = account(&state, &name).await?;
    let labels = state.store.labels(acct.id).await?;
    Ok(Json(LabelList {
        labels: labels
            .into_iter()
            .map(|l| LabelView {
                label: l.name,
                created_at: rfc3339(l.created_at),
            })
            .collect(),
    }))
}

/// Add a label (messages may then carry it: `label` in `POST
/// /v1/messages`, or `user#label` at SMTP login).
#[utoipa::path(post, path = "/v1/admin/accounts/{account}/labels", tag = "admin",
    params(("account" = String, Path, description = "the account name")),
    request_body = NewLabel,
    responses(
        (status = 201, description = "added", body = LabelView),
        (status = 400, description = "a bad label", body = ErrorBody),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 404, description = "no such account", body = ErrorBody),
        (status = 409, description = "the label exists", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn create_label(
    _admin: AdminAuth,
    State(state): State<AppState>,
    AdminPath(name): AdminPath<String>,
    ApiJson(req): ApiJson<NewLabel>,
) -> ApiResult<(StatusCode, Json<LabelView>)> {
    service(&state).add_label(&name, &req.label).await?;
    Ok((
        StatusCode::CREATED,
        Json(LabelView {
            label: req.label,
            created_at: rfc3339(state.store.now()),
        }),
    ))
}
