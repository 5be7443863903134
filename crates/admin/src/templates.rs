//! Message templates (issue 22): the rules for storing them, decided once
//! for the CLI (`posthorn template ...`), the HTTP API (`/v1/templates`)
//! and the console. Rendering is `posthorn_template`'s.
//!
//! - A name is 1 to [`MAX_NAME`] characters of ASCII letters, digits, `.`,
//!   `_` and `-`, beginning with a letter or digit, unique in its account,
//!   and not beginning with `tpl_` (the prefix of ids, so a template is
//!   found by either).
//! - The subject is one line of at most [`MAX_SUBJECT`] bytes, not blank.
//! - Text and HTML are each at most [`MAX_BODY`] bytes; at least one is
//!   given (an empty one counts as not given).
//! - Subject, text and HTML must parse as templates (`{{ name }}`
//!   placeholders, `\{{` for a literal `{{`): checked here, so a stored
//!   template always renders once its variables are given.

use crate::{Admin, AdminError, AdminResult};
use posthorn_store::{StoreError, Template};
use posthorn_types::MessageId;

/// The longest template name.
pub const MAX_NAME: usize = 64;
/// The longest subject, in bytes (a header line).
pub const MAX_SUBJECT: usize = 998;
/// The longest text or HTML, in bytes.
pub const MAX_BODY: usize = 512 * 1024;
/// What every template id begins with.
pub const ID_PREFIX: &str = "tpl_";

/// What a template is made of, as given to create or replace one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TemplateInput {
    pub name: String,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
}

fn invalid(m: impl Into<String>) -> AdminError {
    AdminError::Invalid(m.into())
}

/// Check a template name.
pub fn check_template_name(name: &str) -> AdminResult<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return Err(invalid(format!(
            "template name {name:?}: 1 to {MAX_NAME} ASCII letters, digits, '.', '_' or '-', beginning with a letter or digit"
        )));
    }
    if name.starts_with(ID_PREFIX) {
        return Err(invalid(format!(
            "template name {name:?} may not begin with {ID_PREFIX:?} (template ids do)"
        )));
    }
    Ok(())
}

fn check_syntax(what: &str, src: &str) -> AdminResult<()> {
    posthorn_template::validate(src).map_err(|e| invalid(format!("{what}: {e}")))
}

/// The input checked, with empty bodies as none.
pub fn checked_input(input: TemplateInput) -> AdminResult<TemplateInput> {
    check_template_name(&input.name)?;
    let subject = input.subject;
    if subject.trim().is_empty() {
        return Err(invalid("a template needs a subject"));
    }
    if subject.len() > MAX_SUBJECT {
        return Err(invalid(format!(
            "the subject is {} bytes; at most {MAX_SUBJECT}",
            subject.len()
        )));
    }
    if subject.chars().any(|c| c.is_control() && c != '\t') {
        return Err(invalid(
            "the subject is one line: no line breaks or control characters",
        ));
    }
    check_syntax("subject", &subject)?;
    let text = input.text.filter(|t| !t.is_empty());
    let html = input.html.filter(|t| !t.is_empty());
    if text.is_none() && html.is_none() {
        return Err(invalid("a template needs a text or an HTML body (or both)"));
    }
    for (what, body) in [("text", &text), ("html", &html)] {
        if let Some(body) = body {
            if body.len() > MAX_BODY {
                return Err(invalid(format!(
                    "the {what} is {} bytes; at most {MAX_BODY}",
                    body.len()
                )));
            }
            if body.contains('\0') {
                return Err(invalid(format!("the {what} contains a NUL character")));
            }
            check_syntax(what, body)?;
        }
    }
    Ok(TemplateInput {
        name: input.name,
        subject,
        text,
        html,
    })
}

impl Admin {
    /// Store a new template for the account; its id is made here.
    pub async fn add_template(
        &self,
        account_id: i64,
        input: TemplateInput,
    ) -> AdminResult<Template> {
        let input = checked_input(input)?;
        let now = self.store().now();
        let template = Template {
            id: format!(
                "{ID_PREFIX}{}",
                MessageId::generate().to_string().to_ascii_lowercase()
            ),
            account_id,
            name: input.name,
            subject: input.subject,
            text: input.text,
            html: input.html,
            created_at: now,
            updated_at: now,
        };
        self.store().add_template(&template).await?;
        Ok(template)
    }

    /// The account's templates, by name.
    pub async fn templates(&self, account_id: i64) -> AdminResult<Vec<Template>> {
        Ok(self.store().templates(account_id).await?)
    }

    /// The account's template with this id (`tpl_...`) or name.
    pub async fn template(&self, account_id: i64, id_or_name: &str) -> AdminResult<Template> {
        let not_found =
            || AdminError::NotFound(format!("no template {id_or_name:?} in this account"));
        // What can be neither an id nor a name is not looked up (a NUL, say,
        // which PostgreSQL text cannot hold).
        let is_id = id_or_name.len() == ID_PREFIX.len() + 26
            && id_or_name.starts_with(ID_PREFIX)
            && id_or_name
                .bytes()
                .skip(ID_PREFIX.len())
                .all(|b| b.is_ascii_alphanumeric());
        if !is_id && check_template_name(id_or_name).is_err() {
            return Err(not_found());
        }
        let found = if is_id {
            self.store().template(account_id, id_or_name).await
        } else {
            self.store().template_by_name(account_id, id_or_name).await
        };
        found.map_err(|e| match e {
            StoreError::NotFound(_) => not_found(),
            e => e.into(),
        })
    }

    /// Replace a template's name, subject and bodies (found by id or name).
    pub async fn update_template(
        &self,
        account_id: i64,
        id_or_name: &str,
        input: TemplateInput,
    ) -> AdminResult<Template> {
        let input = checked_input(input)?;
        let old = self.template(account_id, id_or_name).await?;
        let template = Template {
            name: input.name,
            subject: input.subject,
            text: input.text,
            html: input.html,
            updated_at: self.store().now(),
            ..old
        };
        self.store().update_template(&template).await?;
        Ok(template)
    }

    /// Remove a template (found by id or name).
    pub async fn remove_template(
        &self,
        account_id: i64,
        id_or_name: &str,
    ) -> AdminResult<Template> {
        let old = self.template(account_id, id_or_name).await?;
        if !self.store().remove_template(account_id, &old.id).await? {
            return Err(AdminError::NotFound(format!(
                "no template {id_or_name:?} in this account"
            )));
        }
        Ok(old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, subject: &str, text: Option<&str>, html: Option<&str>) -> TemplateInput {
        TemplateInput {
            name: name.into(),
            subject: subject.into(),
            text: text.map(Into::into),
            html: html.map(Into::into),
        }
    }

    #[test]
    fn names_subjects_bodies_and_syntax_are_checked() {
        assert!(checked_input(input("welcome-1.v2", "Hi {{ name }}", Some("x"), None)).is_ok());
        for bad in ["", "-x", "a b", "é", "tpl_x", &"a".repeat(MAX_NAME + 1)] {
            assert!(
                checked_input(input(bad, "s", Some("x"), None)).is_err(),
                "{bad:?}"
            );
        }
        assert!(checked_input(input("n", " ", Some("x"), None)).is_err());
        assert!(checked_input(input("n", "a\r\nBcc: x", Some("x"), None)).is_err());
        assert!(checked_input(input("n", "s", Some(""), Some(""))).is_err());
        assert!(checked_input(input("n", "s {{", Some("x"), None)).is_err());
        assert!(checked_input(input("n", "s", None, Some("<p>{{ 1x }}</p>"))).is_err());
        assert!(checked_input(input("n", "s", Some("a\0b"), None)).is_err());
        let big = "x".repeat(MAX_BODY + 1);
        assert!(checked_input(input("n", "s", Some(&big), None)).is_err());
        let ok = checked_input(input("n", "s", Some(""), Some("<p>\\{{literal}}</p>"))).unwrap();
        assert_eq!(ok.text, None);
    }
}
