//! The OpenAPI 3.1 document, generated from the handlers' annotations:
//! every route is registered together with its documentation (utoipa-axum),
//! so the two cannot drift.

use crate::AppState;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Posthorn HTTP API",
        description = "Send mail, follow every recipient's status, get statistics and webhooks, administer accounts. Errors are `{\"error\": {\"code\", \"message\", \"request_id\"}}` with stable codes (docs/errors.md).",
    ),
    modifiers(&BearerKey),
    tags(
        (name = "messages", description = "send and status"),
        (name = "stats", description = "daily statistics"),
        (name = "webhooks", description = "event subscriptions"),
        (name = "templates", description = "stored message templates"),
        (name = "admin", description = "the admin key only"),
        (name = "operations", description = "health and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("ph_<id>_<secret>")
                    .build(),
            ),
        );
        // Every route that acts as an account also takes the account's SMTP
        // credentials (an API user and its key, `#label_id` allowed, or a
        // sender address and its password), under the AUTH lockout.
        components.add_security_scheme(
            "smtp_login",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "SMTP credentials on the routes that act as an account: an API user and its key (with #label_id), or a sender address and its password",
                    ))
                    .build(),
            ),
        );
    }
}

/// Every documented route.
pub fn routes() -> OpenApiRouter<AppState> {
    use crate::{admin, health, messages, stats, templates, webhooks};
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(messages::send, messages::list_messages))
        .routes(routes!(messages::send_raw))
        .routes(routes!(messages::get_message))
        .routes(routes!(stats::stats))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::delete))
        .routes(routes!(templates::create, templates::list))
        .routes(routes!(
            templates::show,
            templates::update,
            templates::delete
        ))
        .routes(routes!(admin::cluster::cluster))
        .routes(routes!(admin::destinations::destinations))
        .routes(routes!(
            admin::accounts::list_accounts,
            admin::accounts::create_account
        ))
        .routes(routes!(
            admin::accounts::show_account,
            admin::removals::remove_account
        ))
        .routes(routes!(
            admin::accounts::set_setting,
            admin::accounts::clear_setting
        ))
        .routes(routes!(
            admin::domains::list_domains,
            admin::domains::add_domain
        ))
        .routes(routes!(
            admin::domains::show_domain,
            admin::removals::remove_domain
        ))
        .routes(routes!(admin::removals::remove_sender))
        .routes(routes!(admin::removals::remove_api_user))
        .routes(routes!(admin::removals::remove_label))
        .routes(routes!(admin::domains::check_domain))
        .routes(routes!(
            admin::credentials::list_senders,
            admin::credentials::create_sender
        ))
        .routes(routes!(admin::credentials::set_sender_password))
        .routes(routes!(
            admin::credentials::list_api_users,
            admin::credentials::create_api_user
        ))
        .routes(routes!(
            admin::credentials::list_labels,
            admin::credentials::create_label
        ))
        .routes(routes!(
            admin::suppressions::list_suppressions,
            admin::suppressions::add_suppression
        ))
        .routes(routes!(admin::suppressions::remove_suppression))
        .routes(routes!(admin::suppressions::export_suppressions))
        .routes(routes!(admin::keys::list_keys, admin::keys::create_key))
        .routes(routes!(admin::keys::revoke_key))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
}

/// The document as served at `/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

#[cfg(test)]
mod tests {
    /// The fields a business rule governs are optional in the document (the
    /// server answers their absence with a business code, not a schema
    /// error), and the send's refusals say which codes they carry.
    #[test]
    fn send_request_documents_business_rules() {
        let doc = serde_json::to_value(super::document()).unwrap();
        let schema = &doc["components"]["schemas"]["SendRequest"];
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        for field in ["from", "subject", "to", "cc", "text", "html", "attachments"] {
            assert!(schema["properties"].get(field).is_some(), "{field}");
            assert!(!required.contains(&field), "{field} is required: {schema}");
        }
        let responses = &doc["paths"]["/v1/messages"]["post"]["responses"];
        let refused = responses["422"]["description"].as_str().unwrap();
        for code in [
            "FailedOperation.MissingFrom",
            ".MissingSubject",
            ".MissingRecipient",
        ] {
            assert!(refused.contains(code), "{refused}");
        }
        assert!(responses["400"]["description"]
            .as_str()
            .unwrap()
            .contains("InvalidParameter.Json"));
    }
}
