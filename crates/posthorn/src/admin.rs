//! The admin commands. Output for people is plain lines; `--json` output is
//! for scripts and its field names are a contract.

use crate::cli::*;
use crate::config::Config;
use crate::dkim;
use anyhow::{bail, Context};
use posthorn_store::{MessageFilter, MessageRecord, NewDomain, SqliteStore, Store};
use posthorn_submit::{
    apply_settings, generate_secret, hash_secret, validate_setting, SETTING_KEYS,
};
use posthorn_types::time::rfc3339;
use posthorn_types::{MessageId, RecipientStatus};
use serde_json::json;

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
        Command::Domain(DomainCmd::Add { domain, account }) => {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            if !is_domain(&domain) {
                bail!("{domain:?} is not a domain name like example.com");
            }
            let acct = store.account(&account).await?;
            let (private, public) = dkim::generate_rsa()?;
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
                    limit: None,
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
    }
    Ok(())
}

fn parse_id(id: &str) -> anyhow::Result<MessageId> {
    id.parse()
        .with_context(|| format!("{id:?} is not a message id"))
}

fn check_name(what: &str, name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.len() > 128
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        bail!("{what} {name:?} must be 1 to 128 characters without spaces");
    }
    Ok(())
}

fn is_domain(d: &str) -> bool {
    d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn address_domain(address: &str) -> anyhow::Result<&str> {
    match address.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && local.len() <= 64
                && !domain.contains('@')
                && is_domain(&domain.to_ascii_lowercase())
                && !local
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>') =>
        {
            Ok(domain)
        }
        _ => bail!("{address:?} is not an email address like name@example.com"),
    }
}

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
        })).collect::<Vec<_>>(),
    })
}

fn status_summary(m: &MessageRecord) -> String {
    let mut counts: Vec<(RecipientStatus, usize)> = Vec::new();
    for r in &m.recipients {
        match counts.iter_mut().find(|(s, _)| *s == r.status) {
            Some((_, n)) => *n += 1,
            None => counts.push((r.status, 1)),
        }
    }
    counts
        .iter()
        .map(|(s, n)| format!("{s}:{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn message_line(m: &MessageRecord) -> String {
    format!(
        "{}  {}  from={}  rcpts={}  size={}  label={}  {}",
        m.id,
        rfc3339(m.received_at),
        m.mail_from,
        m.recipients.len(),
        m.size,
        m.label.as_deref().unwrap_or("-"),
        status_summary(m)
    )
}

fn print_message(m: &MessageRecord) {
    println!("id:          {}", m.id);
    println!("account:     {}", m.account);
    println!("received:    {}", rfc3339(m.received_at));
    println!("mail from:   {}", m.mail_from);
    println!("logged in:   {}", m.auth_user);
    println!("label:       {}", m.label.as_deref().unwrap_or("-"));
    println!("size:        {} bytes", m.size);
    println!("subject:     {}", m.subject);
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
            "  {}  {}  attempts={}  next_try={}  last_reply={}",
            r.address,
            r.status,
            r.attempts,
            r.next_try.map(rfc3339).as_deref().unwrap_or("-"),
            r.last_reply.as_deref().unwrap_or("-")
        );
    }
}
