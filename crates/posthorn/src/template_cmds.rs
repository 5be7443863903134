//! `posthorn template add|list|show|remove`: an account's stored message
//! templates, through the admin service (the same rules as
//! `/v1/templates`; docs/templates.md).

use crate::cli::TemplateCmd;
use anyhow::Context;
use posthorn_admin::templates::TemplateInput;
use posthorn_admin::Admin;
use posthorn_types::time::rfc3339;
use serde_json::json;

/// `--text` or the contents of `--text-file` (the same for HTML).
fn body(
    inline: Option<String>,
    file: Option<std::path::PathBuf>,
) -> anyhow::Result<Option<String>> {
    match (inline, file) {
        (Some(text), None) => Ok(Some(text)),
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map(Some)
            .with_context(|| format!("reading {}", path.display())),
        (None, None) => Ok(None),
        (Some(_), Some(_)) => anyhow::bail!("give the body inline or as a file, not both"),
    }
}

pub async fn run(admin: &Admin, cmd: TemplateCmd) -> anyhow::Result<()> {
    match cmd {
        TemplateCmd::Add {
            name,
            account,
            subject,
            text,
            text_file,
            html,
            html_file,
        } => {
            let acct = admin.account(&account).await?;
            let t = admin
                .add_template(
                    acct.id,
                    TemplateInput {
                        name,
                        subject,
                        text: body(text, text_file)?,
                        html: body(html, html_file)?,
                    },
                )
                .await?;
            out!("added template {} ({}) to account {account}", t.name, t.id);
        }
        TemplateCmd::List { account } => {
            let acct = admin.account(&account).await?;
            for t in admin.templates(acct.id).await? {
                out!(
                    "{}\t{}\t{}\t{}",
                    t.id,
                    t.name,
                    rfc3339(t.updated_at),
                    t.subject
                );
            }
        }
        TemplateCmd::Show {
            template,
            account,
            json,
        } => {
            let acct = admin.account(&account).await?;
            let t = admin.template(acct.id, &template).await?;
            if json {
                let shown = json!({
                    "id": t.id,
                    "name": t.name,
                    "subject": t.subject,
                    "text": t.text,
                    "html": t.html,
                    "created_at": rfc3339(t.created_at),
                    "updated_at": rfc3339(t.updated_at),
                });
                out!("{}", serde_json::to_string_pretty(&shown)?);
            } else {
                out!("id:       {}", t.id);
                out!("name:     {}", t.name);
                out!("subject:  {}", t.subject);
                out!("updated:  {}", rfc3339(t.updated_at));
                if let Some(text) = &t.text {
                    out!("--- text\n{text}");
                }
                if let Some(html) = &t.html {
                    out!("--- html\n{html}");
                }
            }
        }
        TemplateCmd::Remove { template, account } => {
            let acct = admin.account(&account).await?;
            let t = admin.remove_template(acct.id, &template).await?;
            out!(
                "removed template {} ({}) from account {account}",
                t.name,
                t.id
            );
        }
    }
    Ok(())
}
