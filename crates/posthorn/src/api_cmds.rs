//! The command-line side of the HTTP API: `apikey create|list|revoke` and
//! `status ID` (the same view as `GET /v1/messages/{id}`).

use crate::admin::{parse_id, print_message};
use crate::cli::ApiKeyCmd;
use anyhow::bail;
use posthorn_api::messages::MessageView;
use posthorn_store::{SqliteStore, Store};
use posthorn_types::time::rfc3339;

pub async fn apikey(store: &SqliteStore, cmd: ApiKeyCmd) -> anyhow::Result<()> {
    match cmd {
        ApiKeyCmd::Create {
            account,
            admin,
            description,
        } => {
            let account_id = match (&account, admin) {
                (Some(name), false) => Some(store.account(name).await?.id),
                (None, true) => None,
                _ => bail!("give --account NAME or --admin"),
            };
            let key = posthorn_api::auth::new_key(account_id, &description);
            store.add_api_key(key.record.clone()).await?;
            let whose = account.map_or("admin".to_string(), |a| format!("account {a}"));
            eprintln!(
                "created API key {} for {whose}; it is shown only now:",
                key.record.id
            );
            out!("{}", key.key);
        }
        ApiKeyCmd::List { account, admin } => {
            let account_id = match (&account, admin) {
                (Some(name), false) => Some(store.account(name).await?.id),
                (None, true) => None,
                _ => bail!("give --account NAME or --admin"),
            };
            for k in store.api_keys(account_id).await? {
                out!("{}\t{}\t{}", k.id, rfc3339(k.created_at), k.description);
            }
        }
        ApiKeyCmd::Revoke { id } => {
            let id = id
                .strip_prefix("ph_")
                .map(|rest| rest.split('_').next().unwrap_or(rest))
                .unwrap_or(&id)
                .to_string();
            if !store.remove_api_key(&id).await? {
                bail!("no API key {id}; see posthorn apikey list");
            }
            out!(
                "revoked API key {id} (a running server may accept it for up to {} s more)",
                posthorn_api::auth::VERIFIED_TTL.as_secs()
            );
        }
    }
    Ok(())
}

pub async fn status(store: &SqliteStore, id: &str, json: bool) -> anyhow::Result<()> {
    let m = store.message(parse_id(id)?).await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&MessageView::from(m))?);
    } else {
        print_message(&m)?;
    }
    Ok(())
}
