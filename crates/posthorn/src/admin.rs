//! The admin commands. Output for people is plain lines; `--json` output is
//! for scripts and its field names are a contract.

use crate::cli::*;
use crate::config::Config;
use crate::dkim;
use anyhow::{bail, Context};
use posthorn_delivery::dsn::{DsnAction, DsnRecipient};
use posthorn_delivery::engine::{bounce_notice, bounce_notices_on, Bounced};
use posthorn_store::{
    MessageFilter, MessageRecord, NewDomain, OutcomeBatch, RecipientRecord, RecipientUpdate,
    SqliteStore, Store, Suppression,
};
use posthorn_submit::{
    apply_settings, generate_secret, hash_secret, validate_setting, SETTING_KEYS,
};
use posthorn_types::time::{rfc3339, unix_now};
use posthorn_types::{MessageId, RecipientStatus};
use serde_json::json;

/// The reply recorded for a recipient an operator bounced.
const OPERATOR_BOUNCE_REPLY: &str = "550 5.0.0 bounced by the operator";

pub async fn run(config: &Config, command: Command) -> anyhow::Result<()> {
    let store = SqliteStore::open(&config.data_dir)
        .await
        .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?;
    match command {
        Command::Serve(_) => unreachable!("handled by serve"),
        Command::Account(AccountCmd::Create { name }) => {
            check_name("account name", &name)?;
            store.create_account(&name).await?;
            println!("created account {name}");
        }
        Command::Account(AccountCmd::List) => {
            for a in store.accounts().await? {
                println!("{}\t{}", a.name, rfc3339(a.created_at));
            }
        }
        Command::Account(AccountCmd::Set { name, key, value }) => {
            let acct = store.account(&name).await?;
            let value = validate_setting(&key, &value).map_err(|e| anyhow::anyhow!(e))?;
            store
                .set_account_setting(acct.id, &key, Some(&value))
                .await?;
            println!("account {name}: {key} = {value}");
        }
        Command::Account(AccountCmd::Unset { name, key }) => {
            let acct = store.account(&name).await?;
            validate_setting(&key, "0").map_err(|e| anyhow::anyhow!(e))?;
            store.set_account_setting(acct.id, &key, None).await?;
            println!("account {name}: {key} is back to the default");
        }
        Command::Account(AccountCmd::Show { name }) => {
            let acct = store.account(&name).await?;
            let overrides = store.account_settings(acct.id).await?;
            let limits = apply_settings(config.submit_config().limits, &overrides);
            println!("account:  {}", acct.name);
            println!("created:  {}", rfc3339(acct.created_at));
            let domains = store.domains(acct.id).await?;
            let names: Vec<&str> = domains.iter().map(|d| d.name.as_str()).collect();
            println!(
                "domains:  {}",
                if names.is_empty() {
                    "-".to_string()
                } else {
                    names.join(", ")
                }
            );
            let now = posthorn_types::time::unix_now();
            let mut usage = Vec::new();
            for (label, secs) in [
                ("last minute", 60),
                ("last hour", 3600),
                ("last day", 86400),
            ] {
                let n = store.count_messages_since(acct.id, now - secs).await?;
                usage.push(format!("{n} in the {label}"));
            }
            println!("accepted: {}", usage.join(", "));
            println!("settings:");
            for k in SETTING_KEYS {
                let set = overrides.iter().any(|(key, _)| key == k.key);
                println!(
                    "  {:<24} {:>10}  {}{}",
                    k.key,
                    k.value(&limits),
                    k.meaning,
                    if set { " (set for this account)" } else { "" }
                );
            }
        }
        Command::Domain(DomainCmd::Add {
            domain,
            account,
            dkim,
        }) => {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            if !is_domain(&domain) {
                bail!("{domain:?} is not a domain name like example.com");
            }
            let acct = store.account(&account).await?;
            let (private, public) = match dkim.as_str() {
                "rsa" => dkim::generate_rsa()?,
                "ed25519" => dkim::generate_ed25519()?,
                other => bail!("--dkim {other:?}: use rsa (rsa-sha256, the default) or ed25519"),
            };
            let d = store
                .add_domain(NewDomain {
                    account_id: acct.id,
                    name: domain.clone(),
                    dkim_selector: dkim::SELECTOR.into(),
                    dkim_private_key: private,
                    dkim_public_key: public,
                })
                .await?;
            println!("added domain {domain} to account {account}; publish these DNS records:");
            print!(
                "{}",
                dkim::dns_records(
                    &d.name,
                    &d.dkim_selector,
                    &d.dkim_public_key,
                    &config.hostname()
                )
            );
        }
        Command::Domain(DomainCmd::Records { domain }) => {
            let d = store.domain(&domain).await?;
            print!(
                "{}",
                dkim::dns_records(
                    &d.name,
                    &d.dkim_selector,
                    &d.dkim_public_key,
                    &config.hostname()
                )
            );
        }
        Command::Sender(SenderCmd::Add {
            address,
            account,
            password,
        }) => {
            let acct = store.account(&account).await?;
            let domain = address_domain(&address)?;
            match store.domain(domain).await {
                Ok(d) if d.account_id == acct.id => {}
                _ => bail!(
                    "domain {domain} is not a domain of account {account}; add it first with: posthorn domain add {domain} --account {account}"
                ),
            }
            let (password, generated) = password_or_generated(password)?;
            store
                .add_sender(acct.id, &address, &hash_secret(&password))
                .await?;
            println!("added sender {address} to account {account}");
            if generated {
                println!("password: {password}");
                println!(
                    "(shown once; set a new one with: posthorn sender set-password {address})"
                );
            }
        }
        Command::Sender(SenderCmd::SetPassword { address, password }) => {
            let (password, generated) = password_or_generated(password)?;
            store
                .set_sender_password(&address, &hash_secret(&password))
                .await?;
            println!("password of {address} changed");
            if generated {
                println!("password: {password}");
            }
        }
        Command::Apiuser(ApiUserCmd::Add { name, account, key }) => {
            check_name("API user name", &name)?;
            if name.contains('#') || name.contains('@') {
                bail!("API user name {name:?} may not contain '#' or '@' ('#' separates a label at login)");
            }
            let acct = store.account(&account).await?;
            let (key, generated) = password_or_generated(key)?;
            store
                .add_api_user(acct.id, &name, &hash_secret(&key))
                .await?;
            println!("added API user {name} to account {account}");
            if generated {
                println!("key: {key}");
                println!("(shown once)");
            }
        }
        Command::Label(LabelCmd::Add { label_id, account }) => {
            check_name("label id", &label_id)?;
            if label_id.contains('#') {
                bail!("label id {label_id:?} may not contain '#'");
            }
            let acct = store.account(&account).await?;
            store.add_label(acct.id, &label_id).await?;
            println!("added label {label_id} to account {account}");
        }
        Command::Queue(QueueCmd::List {
            status,
            account,
            json,
        }) => {
            let status = status
                .map(|s| s.parse::<RecipientStatus>())
                .transpose()
                .map_err(|e| anyhow::anyhow!(e))?;
            let account_id = match account {
                Some(name) => Some(store.account(&name).await?.id),
                None => None,
            };
            let messages = store
                .messages(&MessageFilter {
                    status,
                    account_id,
                    ..Default::default()
                })
                .await?;
            if json {
                let all: Vec<_> = messages.iter().map(message_json).collect();
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for m in &messages {
                    println!("{}", message_line(m));
                }
            }
        }
        Command::Queue(QueueCmd::Retry { id }) => {
            let id = parse_id(&id)?;
            let n = store.retry_now(id, unix_now()).await?;
            if n == 0 {
                println!("message {id} has no queued or deferred recipient: nothing to retry");
            } else {
                println!("message {id}: {} due now", recipients(n));
            }
        }
        Command::Queue(QueueCmd::Bounce { id }) => bounce(config, &store, parse_id(&id)?).await?,
        Command::Suppression(SuppressionCmd::List { account, json }) => {
            let acct = store.account(&account).await?;
            let list = store.suppressions(acct.id).await?;
            if json {
                let all: Vec<_> = list.iter().map(suppression_json).collect();
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for s in &list {
                    println!(
                        "{}\t{}\t{}\t{}",
                        s.address,
                        one_line(&s.reason),
                        rfc3339(s.created_at),
                        s.message_id.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        Command::Suppression(SuppressionCmd::Add {
            address,
            account,
            reason,
        }) => {
            check_address(&address)?;
            let reason = reason.trim();
            if reason.is_empty() || reason.len() > 512 || reason.chars().any(|c| c.is_control()) {
                bail!("the reason must be 1 to 512 characters on one line");
            }
            let acct = store.account(&account).await?;
            store.add_suppression(acct.id, &address, reason).await?;
            println!("suppressed {address} for account {account} ({reason})");
        }
        Command::Suppression(SuppressionCmd::Remove { address, account }) => {
            let acct = store.account(&account).await?;
            if !store.remove_suppression(acct.id, &address).await? {
                bail!("{address} is not on the suppression list of account {account}");
            }
            println!("removed {address} from the suppression list of account {account}");
        }
        Command::Message(MessageCmd::Show { id, json }) => {
            let m = store.message(parse_id(&id)?).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&message_json(&m))?);
            } else {
                print_message(&m);
            }
        }
        Command::Message(MessageCmd::Content { id }) => {
            use std::io::Write;
            let bytes = store.message_content(parse_id(&id)?).await?;
            std::io::stdout().write_all(&bytes)?;
        }
        Command::Apikey(cmd) => crate::api_cmds::apikey(&store, cmd).await?,
        Command::Status { id, json } => crate::api_cmds::status(&store, &id, json).await?,
    }
    Ok(())
}

/// `queue bounce`: every recipient not yet final becomes bounced, in one
/// commit with the bounce notice (when one is due).
async fn bounce(config: &Config, store: &SqliteStore, id: MessageId) -> anyhow::Result<()> {
    let m = store.message(id).await?;
    let now = unix_now();
    let pending: Vec<(usize, &RecipientRecord)> = m
        .recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            matches!(
                r.status,
                RecipientStatus::Queued | RecipientStatus::Deferred | RecipientStatus::Sending
            )
        })
        .collect();
    if pending.is_empty() {
        println!("message {id} has no recipient left to bounce: every one is final");
        return Ok(());
    }
    let updates: Vec<RecipientUpdate> = pending
        .iter()
        .map(|(idx, r)| RecipientUpdate {
            message_id: id,
            idx: *idx as u32,
            status: RecipientStatus::Bounced,
            attempts: r.attempts,
            last_reply: Some(OPERATOR_BOUNCE_REPLY.to_string()),
            remote_host: None,
            next_try: None,
            suppress: None,
        })
        .collect();
    let failed: Vec<DsnRecipient> = pending
        .iter()
        .map(|(_, r)| DsnRecipient {
            address: r.address.clone(),
            action: DsnAction::Failed,
            status: "5.0.0".to_string(),
            diagnostic: Some("bounced by the operator".to_string()),
            remote_mta: None,
            last_attempt: Some(now),
        })
        .collect();
    let mut no_notice = None;
    let notice = if !config.delivery.dsn {
        no_notice = Some("bounce notices are off ([delivery] dsn = false)");
        None
    } else if !bounce_notices_on(&store.account_settings(m.account_id).await?) {
        no_notice = Some("bounce notices are off for this account (bounce_notices = 0)");
        None
    } else {
        let content = store.message_content(id).await.unwrap_or_default();
        let hostname = config
            .delivery
            .hostname
            .clone()
            .unwrap_or_else(|| config.hostname());
        let about = Bounced {
            message_id: id,
            account_id: m.account_id,
            mail_from: &m.mail_from,
            label: m.label.as_deref(),
            received_at: m.received_at,
            is_dsn: m.is_dsn,
        };
        let notice = bounce_notice(&hostname, &about, &failed, &content, now);
        if notice.is_none() {
            no_notice = Some(if m.is_dsn {
                "the message is itself a bounce notice"
            } else {
                "the message has the null sender"
            });
        }
        notice
    };
    let notice_id = notice.as_ref().map(|n| (n.id, n.recipients.join(", ")));
    let recorded = store
        .record_outcomes(
            None,
            OutcomeBatch {
                updates,
                notices: notice.into_iter().collect(),
            },
        )
        .await?;
    println!(
        "message {id}: bounced {}{}",
        recipients(recorded.applied),
        if recorded.applied < pending.len() as u64 {
            " (the others became final meanwhile)"
        } else {
            ""
        }
    );
    match (notice_id, no_notice) {
        (Some((nid, to)), _) => println!("queued bounce notice {nid} to {to}"),
        (None, Some(why)) => println!("no bounce notice: {why}"),
        (None, None) => {}
    }
    Ok(())
}

/// The envelope sender for people: `<>` for the null sender (a bounce
/// notice's).
fn sender(mail_from: &str) -> &str {
    if mail_from.is_empty() {
        "<>"
    } else {
        mail_from
    }
}

/// `1 recipient`, `2 recipients`.
fn recipients(n: u64) -> String {
    format!("{n} recipient{}", if n == 1 { "" } else { "s" })
}

/// Stored text (a remote reply, a reason) on one line for people.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn suppression_json(s: &Suppression) -> serde_json::Value {
    json!({
        "address": s.address,
        "reason": s.reason,
        "created_at": rfc3339(s.created_at),
        "message_id": s.message_id,
    })
}

pub(crate) fn parse_id(id: &str) -> anyhow::Result<MessageId> {
    id.parse()
        .with_context(|| format!("{id:?} is not a message id"))
}

// The name and address rules are the admin API's, so the CLI and the API
// accept the same things; these only turn its errors into the CLI's.
fn checked<T>(r: posthorn_api::error::ApiResult<T>) -> anyhow::Result<T> {
    r.map_err(|e| anyhow::anyhow!(e.message))
}

fn check_name(what: &str, name: &str) -> anyhow::Result<()> {
    checked(posthorn_api::admin::check_name(what, name))
}

fn check_address(address: &str) -> anyhow::Result<()> {
    checked(posthorn_api::admin::check_address(address))
}

fn address_domain(address: &str) -> anyhow::Result<&str> {
    checked(posthorn_api::admin::address_domain(address))
}

use posthorn_api::admin::is_domain;

fn password_or_generated(given: Option<String>) -> anyhow::Result<(String, bool)> {
    match given {
        Some(p) if p.len() < 8 => bail!("the password must be at least 8 characters"),
        Some(p) => Ok((p, false)),
        None => Ok((generate_secret(), true)),
    }
}

fn message_json(m: &MessageRecord) -> serde_json::Value {
    json!({
        "id": m.id.to_string(),
        "account": m.account,
        "mail_from": m.mail_from,
        "auth_user": m.auth_user,
        "label": m.label,
        "size": m.size,
        "received_at": rfc3339(m.received_at),
        "completed_at": m.completed_at.map(rfc3339),
        "is_dsn": m.is_dsn,
        "content_purged": m.content_purged,
        "subject": m.subject,
        "header_from": m.header_from,
        "attachments": m.attachments.iter().map(|a| json!({
            "filename": a.filename,
            "content_type": a.content_type,
            "size": a.size,
        })).collect::<Vec<_>>(),
        "recipients": m.recipients.iter().map(|r| json!({
            "address": r.address,
            "status": r.status.as_str(),
            "attempts": r.attempts,
            "last_reply": r.last_reply,
            "next_try": r.next_try.map(rfc3339),
            "remote_host": r.remote_host,
            "updated_at": rfc3339(r.updated_at),
        })).collect::<Vec<_>>(),
    })
}

/// `delivered=2 deferred=1`: how many recipients are in each status, in
/// the order of [`RecipientStatus::ALL`].
fn status_summary(m: &MessageRecord) -> String {
    RecipientStatus::ALL
        .iter()
        .filter_map(|s| {
            let n = m.recipients.iter().filter(|r| r.status == *s).count();
            (n > 0).then(|| format!("{s}={n}"))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn message_line(m: &MessageRecord) -> String {
    format!(
        "{}  {}  from={}  rcpts={}  size={}  label={}  {}",
        m.id,
        rfc3339(m.received_at),
        sender(&m.mail_from),
        m.recipients.len(),
        m.size,
        m.label.as_deref().unwrap_or("-"),
        status_summary(m)
    )
}

pub(crate) fn print_message(m: &MessageRecord) {
    println!("id:          {}", m.id);
    println!("account:     {}", m.account);
    println!("received:    {}", rfc3339(m.received_at));
    println!("mail from:   {}", sender(&m.mail_from));
    println!("logged in:   {}", m.auth_user);
    println!("label:       {}", m.label.as_deref().unwrap_or("-"));
    println!("size:        {} bytes", m.size);
    println!("subject:     {}", m.subject);
    println!(
        "completed:   {}",
        m.completed_at.map(rfc3339).as_deref().unwrap_or("-")
    );
    println!(
        "kind:        {}",
        if m.is_dsn {
            "bounce notice (generated by Posthorn)"
        } else {
            "message"
        }
    );
    println!(
        "content:     {}",
        if m.content_purged {
            "purged after the retention time"
        } else {
            "stored"
        }
    );
    for a in &m.attachments {
        println!(
            "attachment:  {} ({}, {} bytes)",
            a.filename.as_deref().unwrap_or("(unnamed)"),
            a.content_type,
            a.size
        );
    }
    println!("recipients:");
    for r in &m.recipients {
        println!(
            "  {}  {}  attempts={}  next_try={}  updated={}  remote_host={}  last_reply={}",
            r.address,
            r.status,
            r.attempts,
            r.next_try.map(rfc3339).as_deref().unwrap_or("-"),
            rfc3339(r.updated_at),
            r.remote_host
                .as_deref()
                .map(one_line)
                .as_deref()
                .unwrap_or("-"),
            r.last_reply
                .as_deref()
                .map(one_line)
                .as_deref()
                .unwrap_or("-")
        );
    }
}
