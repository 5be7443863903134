//! Accounts: list, create, show (effective limits and usage), and the
//! per-account settings of `posthorn account set` / `unset`.

use super::{account, AdminPath};
use crate::auth::AdminAuth;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use posthorn_submit::{apply_settings, AccountLimits, SettingKey, SETTING_KEYS};
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
    /// 1 to 128 characters without spaces.
    #[schema(example = "shop")]
    pub name: String,
}

/// Messages accepted for the account lately.
#[derive(Serialize, ToSchema)]
pub struct Usage {
    pub last_minute: u64,
    pub last_hour: u64,
    pub last_day: u64,
}

/// One setting as it applies to the account.
#[derive(Serialize, ToSchema)]
pub struct SettingView {
    #[schema(example = "messages_per_second")]
    pub key: String,
    /// The value in force (0 where a rate allows it means no limit).
    pub value: u64,
    /// The configured default.
    pub default: u64,
    /// Whether the account has its own value (else the default applies).
    pub overridden: bool,
    pub meaning: String,
}

/// An account with what `posthorn account show` prints.
#[derive(Serialize, ToSchema)]
pub struct AccountDetail {
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    /// Its sending domains.
    pub domains: Vec<String>,
    pub usage: Usage,
    /// Every setting key, in the order `account show` prints them.
    pub settings: Vec<SettingView>,
}

/// A setting's value: a whole number, as a JSON number or a string.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum SettingInput {
    Number(u64),
    Text(String),
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetSetting {
    #[schema(example = "100")]
    pub value: SettingInput,
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
    _admin: AdminAuth,
    State(state): State<AppState>,
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
        (status = 400, description = "a bad name or body", body = ErrorBody),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 409, description = "it exists", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn create_account(
    _admin: AdminAuth,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<NewAccount>,
) -> ApiResult<(StatusCode, Json<AccountView>)> {
    let a = super::service(&state).create_account(&req.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(AccountView {
            name: a.name,
            created_at: rfc3339(a.created_at),
        }),
    ))
}

fn setting_view(
    k: &SettingKey,
    limits: &AccountLimits,
    defaults: &AccountLimits,
    overrides: &[(String, String)],
) -> SettingView {
    SettingView {
        key: k.key.to_string(),
        value: k.value(limits),
        default: k.value(defaults),
        overridden: overrides.iter().any(|(key, _)| key == k.key),
        meaning: k.meaning.to_string(),
    }
}

/// One account: its domains, the messages it had accepted lately, and
/// every setting in force (the configured default or its own).
#[utoipa::path(get, path = "/v1/admin/accounts/{account}", tag = "admin",
    params(("account" = String, Path, description = "the account name")),
    responses(
        (status = 200, description = "the account", body = AccountDetail),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 404, description = "no such account", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn show_account(
    _admin: AdminAuth,
    State(state): State<AppState>,
    AdminPath(name): AdminPath<String>,
) -> ApiResult<Json<AccountDetail>> {
    let acct = account(&state, &name).await?;
    let overrides = state.store.account_settings(acct.id).await?;
    let defaults = state.submitter.config().limits;
    let limits = apply_settings(defaults, &overrides);
    let domains = state.store.domains(acct.id).await?;
    let now = state.store.now();
    let mut counts = [0u64; 3];
    for (n, secs) in counts.iter_mut().zip([60, 3600, 86400]) {
        *n = state
            .store
            .count_messages_since(acct.id, now - secs)
            .await?;
    }
    Ok(Json(AccountDetail {
        name: acct.name,
        created_at: rfc3339(acct.created_at),
        domains: domains.into_iter().map(|d| d.name).collect(),
        usage: Usage {
            last_minute: counts[0],
            last_hour: counts[1],
            last_day: counts[2],
        },
        settings: SETTING_KEYS
            .iter()
            .map(|k| setting_view(k, &limits, &defaults, &overrides))
            .collect(),
    }))
}

/// The view of one setting after a change (caches of this node dropped,
/// so it applies from the next message on).
async fn after_change(
    state: &AppState,
    account_id: i64,
    k: &SettingKey,
) -> ApiResult<Json<SettingView>> {
    state.submitter.forget_limits(account_id);
    let overrides = state.store.account_settings(account_id).await?;
    let defaults = state.submitter.config().limits;
    let limits = apply_settings(defaults, &overrides);
    Ok(Json(setting_view(k, &limits, &defaults, &overrides)))
}

/// Set one of the account's own limits or settings (the keys of
/// `posthorn account set`).
#[utoipa::path(put, path = "/v1/admin/accounts/{account}/settings/{key}", tag = "admin",
    params(
        ("account" = String, Path, description = "the account name"),
        ("key" = String, Path, description = "a setting key, e.g. messages_per_second"),
    ),
    request_body = SetSetting,
    responses(
        (status = 200, description = "set; the setting as it now applies", body = SettingView),
        (status = 400, description = "a bad value or body", body = ErrorBody),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 404, description = "no such account or setting key", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn set_setting(
    _admin: AdminAuth,
    State(state): State<AppState>,
    AdminPath((name, key)): AdminPath<(String, String)>,
    ApiJson(req): ApiJson<SetSetting>,
) -> ApiResult<Json<SettingView>> {
    let acct = account(&state, &name).await?;
    let text = match req.value {
        SettingInput::Number(n) => n.to_string(),
        SettingInput::Text(t) => t,
    };
    let k = super::service(&state)
        .set_setting(&name, &key, Some(&text))
        .await?;
    after_change(&state, acct.id, k).await
}

/// Remove the account's own value: the configured default applies again.
#[utoipa::path(delete, path = "/v1/admin/accounts/{account}/settings/{key}", tag = "admin",
    params(
        ("account" = String, Path, description = "the account name"),
        ("key" = String, Path, description = "a setting key, e.g. messages_per_second"),
    ),
    responses(
        (status = 200, description = "cleared; the setting as it now applies", body = SettingView),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 404, description = "no such account or setting key", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn clear_setting(
    _admin: AdminAuth,
    State(state): State<AppState>,
    AdminPath((name, key)): AdminPath<(String, String)>,
) -> ApiResult<Json<SettingView>> {
    let acct = account(&state, &name).await?;
    let k = super::service(&state)
        .set_setting(&name, &key, None)
        .await?;
    after_change(&state, acct.id, k).await
}
