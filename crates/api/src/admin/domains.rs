//! Sending domains of an account: list, add (a DKIM key is generated), show
//! with the DNS records to publish, and check those records in DNS.

use super::check::{self, Status};
use super::dkim::{self, TxtRecord};
use super::{account, service, AdminPath};
use crate::auth::AdminAuth;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use posthorn_store::Domain;
use posthorn_types::time::rfc3339;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The DKIM key type of a new domain.
#[derive(Deserialize, ToSchema, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
pub enum DkimAlgorithm {
    /// RSA-2048, rsa-sha256: verified everywhere.
    #[default]
    Rsa,
    /// Ed25519 (RFC 8463): cheaper to sign; not every receiver verifies it.
    Ed25519,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDomainRequest {
    #[schema(example = "example.com")]
    pub domain: String,
    /// `rsa` (the default) or `ed25519`.
    #[serde(default)]
    pub dkim: DkimAlgorithm,
}

#[derive(Serialize, ToSchema)]
pub struct DomainView {
    #[schema(example = "example.com")]
    pub domain: String,
    /// The DKIM selector (`s=`).
    #[schema(example = "posthorn")]
    pub selector: String,
    /// `rsa` or `ed25519`.
    pub algorithm: String,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct DomainList {
    pub domains: Vec<DomainView>,
}

/// A DNS record to publish.
#[derive(Serialize, ToSchema)]
pub struct DnsRecordView {
    /// `dkim`, `spf` or `dmarc`.
    pub purpose: String,
    /// Without the trailing dot.
    #[schema(example = "posthorn._domainkey.example.com")]
    pub name: String,
    /// Always `TXT`.
    #[serde(rename = "type")]
    #[schema(example = "TXT")]
    pub kind: String,
    /// The whole value, as a resolver returns it.
    pub value: String,
    /// DKIM is needed; SPF and DMARC are suggestions.
    pub required: bool,
    /// The record as a zone-file line (long values split in quoted strings).
    pub zone_line: String,
}

/// A domain with the DNS records to publish.
#[derive(Serialize, ToSchema)]
pub struct DomainDetail {
    #[serde(flatten)]
    pub domain: DomainView,
    pub records: Vec<DnsRecordView>,
    /// Every record, zone-file style (what `posthorn domain records` prints).
    pub zone: String,
}

/// How one record looks in DNS.
#[derive(Serialize, ToSchema)]
pub struct RecordCheck {
    /// `dkim`, `spf` or `dmarc`.
    pub purpose: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub required: bool,
    /// `found`, `missing`, `different`, or `unresolved` (the lookup failed:
    /// SERVFAIL or a timeout; try again).
    #[schema(example = "found")]
    pub status: String,
    /// The value to publish.
    pub expected: String,
    /// The records of this kind found at the name.
    pub published: Vec<String>,
    /// What to do, or why this status.
    pub detail: String,
}

#[derive(Serialize, ToSchema)]
pub struct DomainCheck {
    pub domain: String,
    /// Every record is found.
    pub all_found: bool,
    /// The DKIM key is found (mail is then verifiably signed).
    pub dkim_ok: bool,
    pub records: Vec<RecordCheck>,
}

fn view(d: &Domain) -> DomainView {
    DomainView {
        domain: d.name.clone(),
        selector: d.dkim_selector.clone(),
        algorithm: dkim::key_type(&d.dkim_public_key).to_string(),
        created_at: rfc3339(d.created_at),
    }
}

fn expected(state: &AppState, d: &Domain) -> Vec<TxtRecord> {
    dkim::records(
        &d.name,
        &d.dkim_selector,
        &d.dkim_public_key,
        &state.submitter.config().hostname,
    )
}

fn detail(state: &AppState, d: &Domain) -> DomainDetail {
    let records = expected(state, d);
    DomainDetail {
        domain: view(d),
        zone: records.iter().map(|r| dkim::zone_line(r) + "\n").collect(),
        records: records
            .iter()
            .map(|r| DnsRecordView {
                purpose: r.purpose.as_str().to_string(),
                name: r.name.clone(),
                kind: "TXT".to_string(),
                value: r.value.clone(),
                required: r.purpose == dkim::Purpose::Dkim,
                zone_line: dkim::zone_line(r),
            })
            .collect(),
    }
}

/// The domain named in the path, which must be the account's.
async fn domain_of(state: &AppState, account: &str, domain: &str) -> ApiResult<Domain> {
    Ok(service(state).domain(Some(account), domain).await?)
}

/// The account's sending domains.
#[utoipa::path(get, path = "/v1/admin/accounts/{account}/domains", tag = "admin",
    params(("account" = String, Path, description = "the account name")),
    responses(
        (status = 200, description = "the domains", body = DomainList),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 404, description = "no such account", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn list_domains(
    _admin: AdminAuth,
    State(state): State<AppState>,
    AdminPath(name): AdminPath<String>,
) -> ApiResult<Json<DomainList>> {
    let acct = account(&state, &name).await?;
    let domains = state.store.domains(acct.id).await?;
    Ok(Json(DomainList {
        domains: domains.iter().map(view).collect(),
    }))
}

/// Add a sending domain: its DKIM key is generated (RSA-2048 unless
/// `ed25519` is asked for) and the DNS records to publish are returned.
#[utoipa::path(post, path = "/v1/admin/accounts/{account}/domains", tag = "admin",
    params(("account" = String, Path, description = "the account name")),
    request_body = NewDomainRequest,
    responses(
        (status = 201, description = "added; publish the records", body = DomainDetail),
        (status = 400, description = "not a domain name, or a bad body", body = ErrorBody),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 404, description = "no such account", body = ErrorBody),
        (status = 409, description = "the domain exists (in this or another account)", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn add_domain(
    _admin: AdminAuth,
    State(state): State<AppState>,
    AdminPath(name): AdminPath<String>,
    ApiJson(req): ApiJson<NewDomainRequest>,
) -> ApiResult<(StatusCode, Json<DomainDetail>)> {
    let algorithm = match req.dkim {
        DkimAlgorithm::Rsa => posthorn_admin::DkimAlgorithm::Rsa,
        DkimAlgorithm::Ed25519 => posthorn_admin::DkimAlgorithm::Ed25519,
    };
    let d = service(&state)
        .add_domain(&name, &req.domain, algorithm)
        .await?;
    Ok((StatusCode::CREATED, Json(detail(&state, &d))))
}

/// One domain with the DNS records to publish: the DKIM key, and suggested
/// SPF and DMARC records.
#[utoipa::path(get, path = "/v1/admin/accounts/{account}/domains/{domain}", tag = "admin",
    params(
        ("account" = String, Path, description = "the account name"),
        ("domain" = String, Path, description = "a domain of the account"),
    ),
    responses(
        (status = 200, description = "the domain and its records", body = DomainDetail),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 404, description = "no such account, or no such domain of it", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn show_domain(
    _admin: AdminAuth,
    State(state): State<AppState>,
    AdminPath((account, domain)): AdminPath<(String, String)>,
) -> ApiResult<Json<DomainDetail>> {
    let d = domain_of(&state, &account, &domain).await?;
    Ok(Json(detail(&state, &d)))
}

/// Look the domain's records up in DNS (the `[delivery] nameservers`, else
/// the system's) and say for each whether it is found, missing or
/// different from what is expected.
#[utoipa::path(get, path = "/v1/admin/accounts/{account}/domains/{domain}/check", tag = "admin",
    params(
        ("account" = String, Path, description = "the account name"),
        ("domain" = String, Path, description = "a domain of the account"),
    ),
    responses(
        (status = 200, description = "how each record looks in DNS", body = DomainCheck),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
        (status = 404, description = "no such account, or no such domain of it", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn check_domain(
    _admin: AdminAuth,
    State(state): State<AppState>,
    AdminPath((account, domain)): AdminPath<(String, String)>,
) -> ApiResult<Json<DomainCheck>> {
    let d = domain_of(&state, &account, &domain).await?;
    let records = expected(&state, &d);
    let hostname = &state.submitter.config().hostname;
    let verdicts = check::check(&state.config.nameservers, &records, hostname).await;
    let checks: Vec<RecordCheck> = records
        .iter()
        .zip(verdicts)
        .map(|(r, v)| RecordCheck {
            purpose: r.purpose.as_str().to_string(),
            name: r.name.clone(),
            kind: "TXT".to_string(),
            required: r.purpose == dkim::Purpose::Dkim,
            status: v.status.as_str().to_string(),
            expected: r.value.clone(),
            published: v.published,
            detail: v.detail,
        })
        .collect();
    Ok(Json(DomainCheck {
        domain: d.name,
        all_found: checks.iter().all(|c| c.status == Status::Found.as_str()),
        dkim_ok: checks
            .iter()
            .any(|c| c.purpose == "dkim" && c.status == Status::Found.as_str()),
        records: checks,
    }))
}
