//! The command-line side of the HTTP API: `apikey create|list|revoke` and
//! `status ID` (the same view as `GET /v1/messages/{id}`).

use crate::admin::{parse_id, print_message};
use crate::cli::ApiKeyCmd;
use posthorn_admin::{Admin, AdminError};
use posthorn_api::messages::MessageView;
use posthorn_store::Store;
use posthorn_types::time::rfc3339;

pub async fn apikey(admin: &Admin, cmd: ApiKeyCmd) -> anyhow::Result<()> {
    match cmd {
        ApiKeyCmd::Create {
            account,
            admin: _,
            description,
        } => {
            let key = admin
                .create_api_key(account.as_deref(), &description)
                .await?;
            let whose = account.map_or("admin".to_string(), |a| format!("account {a}"));
            eprintln!(
                "created API key {} for {whose}; it is shown only now:",
                key.record.id
            );
            out!("{}", key.key);
        }
        ApiKeyCmd::List { account, admin: _ } => {
            for k in admin.api_keys(account.as_deref()).await? {
                out!("{}\t{}\t{}", k.id, rfc3339(k.created_at), k.description);
            }
        }
        ApiKeyCmd::Revoke { id } => {
            let id = admin.revoke_api_key(None, &id).await.map_err(|e| match e {
                AdminError::NotFound(m) => anyhow::anyhow!("{m}; see posthorn apikey list"),
                e => e.into(),
            })?;
            out!(
                "revoked API key {id} (a running server may accept it for up to {} s more)",
                posthorn_api::auth::VERIFIED_TTL.as_secs()
            );
        }
    }
    Ok(())
}

pub async fn status(store: &dyn Store, id: &str, json: bool) -> anyhow::Result<()> {
    let m = store.message(parse_id(id)?).await?;
    if json {
        // As `GET /v1/messages/{id}` answers, opens and clicks included.
        let engagements = store.engagements(m.id).await?;
        let mut view = MessageView::from(m);
        for r in &mut view.recipients {
            r.engagement = Some(posthorn_api::messages::EngagementView::of(
                &r.address,
                &engagements,
            ));
        }
        out!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print_message(&m)?;
    }
    Ok(())
}
