//! The suppression list of an account: list (JSON), add, remove, and
//! export as CSV.

use super::{account, AdminPath};
use crate::auth::AdminAuth;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::AppState;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use posthorn_store::Suppression;
use posthorn_types::time::rfc3339;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The reason recorded when none is given (as `posthorn suppression add`).
pub const DEFAULT_REASON: &str = posthorn_admin::service::OPERATOR_REASON;

#[derive(Serialize, ToSchema)]
pub struct SuppressionView {
    #[schema(example = "gone@example.net")]
    pub address: String,
    /// The remote server's reply for a hard bounce, or the operator's text.
    pub reason: String,
    /// The message whose bounce put it there, if any.
    pub message_id: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct SuppressionList {
    pub suppressions: Vec<SuppressionView>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSuppression {
    #[schema(example = "gone@example.net")]
    pub address: String,
    /// One line, at most 512 bytes; default "added by operator".
    #[serde(default)]
    pub reason: Option<String>,
}

fn view(s: Suppression) -> SuppressionView {
    SuppressionView {
        address: s.address,
        reason: s.reason,
        message_id: s.message_id,
        created_at: rfc3339(s.created_at),
    }
}

/// The account's suppressed recipients, by address.
#[utoipa::path(get, path = "/v1/admin/accounts/{account}/suppressions", tag = "admin",
    params(("account" = String, Path, description = "the account name")),
    responses(
        (status = 200, description = "the suppression list", body = SuppressionList),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 404, description = "no such account", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn list_suppressions(
    _admin: AdminAuth,
    State(state): State<AppState>,
    AdminPath(name): AdminPath<String>,
) -> ApiResult<Json<SuppressionList>> {
    let acct = account(&state, &name).await?;
    let list = state.store.suppressions(acct.id).await?;
    Ok(Json(SuppressionList {
        suppressions: list.into_iter().map(view).collect(),
    }))
}

/// Suppress an address: the account's messages to it are refused. An
/// address already on the list gets the new reason.
#[utoipa::path(post, path = "/v1/admin/accounts/{account}/suppressions", tag = "admin",
    params(("account" = String, Path, description = "the account name")),
    request_body = NewSuppression,
    responses(
        (status = 201, description = "added", body = SuppressionView),
        (status = 200, description = "it was on the list: its reason is updated", body = SuppressionView),
        (status = 400, description = "a bad address or reason", body = ErrorBody),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 404, description = "no such account", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn add_suppression(
    _admin: AdminAuth,
    State(state): State<AppState>,
    AdminPath(name): AdminPath<String>,
    ApiJson(req): ApiJson<NewSuppression>,
) -> ApiResult<(StatusCode, Json<SuppressionView>)> {
    let (entry, existed) = super::service(&state)
        .add_suppression(&name, &req.address, req.reason.as_deref())
        .await?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(view(entry))))
}

/// Take an address off the list: the account may send to it again.
#[utoipa::path(delete, path = "/v1/admin/accounts/{account}/suppressions/{address}", tag = "admin",
    params(
        ("account" = String, Path, description = "the account name"),
        ("address" = String, Path, description = "a suppressed address"),
    ),
    responses(
        (status = 204, description = "removed"),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 404, description = "no such account, or the address is not on its list", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn remove_suppression(
    _admin: AdminAuth,
    State(state): State<AppState>,
    AdminPath((name, address)): AdminPath<(String, String)>,
) -> ApiResult<StatusCode> {
    super::service(&state)
        .remove_suppression(&name, &address)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One CSV field (RFC 4180): quoted when it holds a comma, quote, CR or
/// LF, quotes doubled.
pub fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// The list as CSV with a header line, CRLF line ends.
pub fn to_csv(list: &[Suppression]) -> String {
    let mut out = String::from("address,reason,message_id,created_at\r\n");
    for s in list {
        let fields = [
            csv_field(&s.address),
            csv_field(&s.reason),
            csv_field(s.message_id.as_deref().unwrap_or("")),
            csv_field(&rfc3339(s.created_at)),
        ];
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

/// The suppression list as CSV: `address,reason,message_id,created_at`.
#[utoipa::path(get, path = "/v1/admin/accounts/{account}/suppressions.csv", tag = "admin",
    params(("account" = String, Path, description = "the account name")),
    responses(
        (status = 200, description = "the suppression list, RFC 4180 CSV with a header line", body = String, content_type = "text/csv"),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 404, description = "no such account", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn export_suppressions(
    _admin: AdminAuth,
    State(state): State<AppState>,
    AdminPath(name): AdminPath<String>,
) -> ApiResult<Response> {
    let acct = account(&state, &name).await?;
    let list = state.store.suppressions(acct.id).await?;
    let file: String = acct
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let disposition =
        HeaderValue::from_str(&format!("attachment; filename=\"suppressions-{file}.csv\""))
            .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        to_csv(&list),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        let csv = to_csv(&[Suppression {
            address: "a@b.c".into(),
            reason: "550 no, \"gone\"".into(),
            message_id: None,
            created_at: 0,
        }]);
        assert_eq!(
            csv,
            "address,reason,message_id,created_at\r\na@b.c,\"550 no, \"\"gone\"\"\",,1970-01-01T00:00:00Z\r\n"
        );
    }
}
