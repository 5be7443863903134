//! `posthorn lockout list|clear`: the AUTH lockouts that failed SMTP logins
//! started (kept in the store, so this process sees the server's).

use crate::cli::LockoutCmd;
use anyhow::Context;
use posthorn_store::{Lockout, Store};
use posthorn_types::time::rfc3339;
use serde_json::json;
use std::net::IpAddr;

pub async fn run(store: &dyn Store, cmd: LockoutCmd) -> anyhow::Result<()> {
    match cmd {
        LockoutCmd::List { json } => {
            let lockouts = store.auth_lockouts(store.now()).await?;
            if json {
                let all: Vec<_> = lockouts.iter().map(lockout_json).collect();
                out!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for l in &lockouts {
                    out!(
                        "{}\t{}\t{}\t{}",
                        l.ip,
                        l.user.as_deref().unwrap_or("*"),
                        rfc3339(l.locked_until),
                        l.failures
                    );
                }
            }
        }
        LockoutCmd::Clear { address, user } => {
            let ip: IpAddr = address
                .trim()
                .parse()
                .ok()
                .with_context(|| format!("{address:?} is not an IP address"))?;
            let cleared = store.clear_auth_lockouts(ip, user.as_deref()).await?;
            let whose = match &user {
                Some(u) => format!("{ip} for {u}"),
                None => ip.to_string(),
            };
            out!(
                "cleared {cleared} lockout{} of {whose}",
                if cleared == 1 { "" } else { "s" }
            );
        }
    }
    Ok(())
}

/// The `--json` shape (field names are a contract).
fn lockout_json(l: &Lockout) -> serde_json::Value {
    json!({
        "address": l.ip.to_string(),
        "user": l.user,
        "locked_at": rfc3339(l.locked_at),
        "locked_until": rfc3339(l.locked_until),
        "failures": l.failures,
    })
}
