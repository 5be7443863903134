//! Stored message templates (issue 22): per account, a unique name, a
//! subject and text and/or HTML with `{{variable}}` placeholders. The
//! store keeps them as given; their rules (name shape, sizes, placeholder
//! syntax) are the admin service's, rendering is `posthorn-template`'s.
//!
//! [`TemplateStore`] is a role trait every [`crate::Store`] has (a
//! supertrait), so `Arc<dyn Store>` reaches it; implemented in
//! `sqlite_templates.rs` and `postgres_templates.rs`, checked on both by
//! the conformance suite (`tests/conformance/templates.rs`).

use crate::Result;
use async_trait::async_trait;

/// One stored template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// `tpl_` and 26 characters; made by the admin service.
    pub id: String,
    pub account_id: i64,
    /// Unique within the account.
    pub name: String,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The templates of accounts. Removing an account removes its templates
/// (a foreign key `ON DELETE CASCADE` on both backends).
#[async_trait]
pub trait TemplateStore: Send + Sync {
    /// Store a new template; [`crate::StoreError::Duplicate`] when the
    /// account has one of that name (or the id exists).
    async fn add_template(&self, template: &Template) -> Result<()>;
    /// The account's template with this id ([`crate::StoreError::NotFound`]
    /// when none, or another account's).
    async fn template(&self, account_id: i64, id: &str) -> Result<Template>;
    /// The account's template of this name.
    async fn template_by_name(&self, account_id: i64, name: &str) -> Result<Template>;
    /// The account's templates, by name.
    async fn templates(&self, account_id: i64) -> Result<Vec<Template>>;
    /// Replace name, subject, text, html and `updated_at` of the template
    /// with `template.id` of `template.account_id`: `NotFound` when there
    /// is none, `Duplicate` when the new name is another template's.
    async fn update_template(&self, template: &Template) -> Result<()>;
    /// Remove one; false when the account has no template with this id.
    async fn remove_template(&self, account_id: i64, id: &str) -> Result<bool>;
}

pub(crate) fn not_found(what: &str) -> crate::StoreError {
    crate::StoreError::NotFound(format!("no template {what}"))
}
