//! `/v1/templates`: an account's stored message templates (create, list,
//! show, replace, delete). The rules (name shape, sizes, placeholder
//! syntax) are the admin service's (`posthorn_admin::templates`); sending
//! with one is `POST /v1/messages` with `template` and `template_data`
//! (`crate::templated`). See docs/templates.md.

use crate::admin::AdminPath;
use crate::auth::AccountAuth;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use posthorn_admin::templates::TemplateInput;
use posthorn_admin::Admin;
use posthorn_store::Template;
use posthorn_types::time::rfc3339;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A template as created or replaced.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateBody {
    /// Unique in the account: 1 to 64 ASCII letters, digits, `.`, `_` or
    /// `-`, beginning with a letter or digit, not with `tpl_`.
    #[schema(example = "welcome")]
    pub name: String,
    /// One line, at most 998 bytes, with `{{variable}}` placeholders.
    #[schema(example = "Welcome, {{name}}")]
    pub subject: String,
    /// The plain-text body (values written as given). `text` or `html`
    /// is needed; each at most 512 KiB.
    #[serde(default)]
    #[schema(example = "Hello {{name}}, your code is {{code}}.")]
    pub text: Option<String>,
    /// The HTML body (values HTML-escaped).
    #[serde(default)]
    #[schema(example = "<p>Hello {{name}}, your code is <b>{{code}}</b>.</p>")]
    pub html: Option<String>,
}

impl From<TemplateBody> for TemplateInput {
    fn from(b: TemplateBody) -> Self {
        TemplateInput {
            name: b.name,
            subject: b.subject,
            text: b.text,
            html: b.html,
        }
    }
}

/// A stored template.
#[derive(Serialize, ToSchema)]
pub struct TemplateView {
    /// Use it (or the name) as `template` in `POST /v1/messages`.
    #[schema(example = "tpl_01jdq8z6k3v9x2t5w7y4r1n0m8")]
    pub id: String,
    pub name: String,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    /// Every variable the template uses, sorted.
    pub variables: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<Template> for TemplateView {
    fn from(t: Template) -> Self {
        let mut variables = std::collections::BTreeSet::new();
        for part in [Some(&t.subject), t.text.as_ref(), t.html.as_ref()]
            .into_iter()
            .flatten()
        {
            if let Ok(v) = posthorn_template::variables(part) {
                variables.extend(v.into_iter().map(str::to_string));
            }
        }
        TemplateView {
            variables: variables.into_iter().collect(),
            id: t.id,
            name: t.name,
            subject: t.subject,
            text: t.text,
            html: t.html,
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(t.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TemplateList {
    pub templates: Vec<TemplateView>,
}

fn service(state: &AppState) -> Admin {
    Admin::new(state.store.clone())
}

/// Store a new template.
#[utoipa::path(post, path = "/v1/templates", tag = "templates",
    request_body = TemplateBody,
    responses(
        (status = 201, description = "stored", body = TemplateView),
        (status = 400, description = "not JSON of this shape (`InvalidParameter.Json`), or a bad name, subject, body or placeholder (`InvalidParameter.Value`)", body = ErrorBody),
        (status = 401, description = "no or a wrong API key", body = ErrorBody),
        (status = 403, description = "the admin key: this route acts as an account", body = ErrorBody),
        (status = 409, description = "the account has a template of this name (`ResourceInUse.Duplicate`)", body = ErrorBody),
        (status = 413, description = "the body is too large", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
        (status = 503, description = "the store is unreachable or out of space", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    AccountAuth(who): AccountAuth,
    ApiJson(body): ApiJson<TemplateBody>,
) -> ApiResult<(StatusCode, Json<TemplateView>)> {
    let t = service(&state)
        .add_template(who.account_id, body.into())
        .await?;
    Ok((StatusCode::CREATED, Json(t.into())))
}

/// The account's templates, by name.
#[utoipa::path(get, path = "/v1/templates", tag = "templates",
    responses(
        (status = 200, description = "the templates", body = TemplateList),
        (status = 401, description = "no or a wrong API key", body = ErrorBody),
        (status = 403, description = "the admin key: this route acts as an account", body = ErrorBody),
        (status = 503, description = "the store is unreachable", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    AccountAuth(who): AccountAuth,
) -> ApiResult<Json<TemplateList>> {
    let templates = service(&state).templates(who.account_id).await?;
    Ok(Json(TemplateList {
        templates: templates.into_iter().map(Into::into).collect(),
    }))
}

/// One template, by id (or name).
#[utoipa::path(get, path = "/v1/templates/{id}", tag = "templates",
    params(("id" = String, Path, description = "the template's id (`tpl_...`) or name")),
    responses(
        (status = 200, description = "the template", body = TemplateView),
        (status = 400, description = "the path does not decode (`InvalidParameter.Value`)", body = ErrorBody),
        (status = 401, description = "no or a wrong API key", body = ErrorBody),
        (status = 403, description = "the admin key: this route acts as an account", body = ErrorBody),
        (status = 404, description = "no such template of this account", body = ErrorBody),
        (status = 503, description = "the store is unreachable", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn show(
    State(state): State<AppState>,
    AccountAuth(who): AccountAuth,
    AdminPath(id): AdminPath<String>,
) -> ApiResult<Json<TemplateView>> {
    let t = service(&state).template(who.account_id, &id).await?;
    Ok(Json(t.into()))
}

/// Replace a template's name, subject and bodies (its id stays).
#[utoipa::path(put, path = "/v1/templates/{id}", tag = "templates",
    params(("id" = String, Path, description = "the template's id (`tpl_...`) or name")),
    request_body = TemplateBody,
    responses(
        (status = 200, description = "replaced", body = TemplateView),
        (status = 400, description = "not JSON of this shape (`InvalidParameter.Json`), or a bad name, subject, body or placeholder (`InvalidParameter.Value`)", body = ErrorBody),
        (status = 401, description = "no or a wrong API key", body = ErrorBody),
        (status = 403, description = "the admin key: this route acts as an account", body = ErrorBody),
        (status = 404, description = "no such template of this account", body = ErrorBody),
        (status = 409, description = "another template of the account has the new name", body = ErrorBody),
        (status = 413, description = "the body is too large", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
        (status = 503, description = "the store is unreachable or out of space", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn update(
    State(state): State<AppState>,
    AccountAuth(who): AccountAuth,
    AdminPath(id): AdminPath<String>,
    ApiJson(body): ApiJson<TemplateBody>,
) -> ApiResult<Json<TemplateView>> {
    let t = service(&state)
        .update_template(who.account_id, &id, body.into())
        .await?;
    Ok(Json(t.into()))
}

/// Remove a template.
#[utoipa::path(delete, path = "/v1/templates/{id}", tag = "templates",
    params(("id" = String, Path, description = "the template's id (`tpl_...`) or name")),
    responses(
        (status = 204, description = "removed"),
        (status = 400, description = "the path does not decode (`InvalidParameter.Value`)", body = ErrorBody),
        (status = 401, description = "no or a wrong API key", body = ErrorBody),
        (status = 403, description = "the admin key: this route acts as an account", body = ErrorBody),
        (status = 404, description = "no such template of this account", body = ErrorBody),
        (status = 503, description = "the store is unreachable", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    AccountAuth(who): AccountAuth,
    AdminPath(id): AdminPath<String>,
) -> ApiResult<StatusCode> {
    service(&state).remove_template(who.account_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
