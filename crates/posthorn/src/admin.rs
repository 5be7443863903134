//! The admin commands. Output for people is plain lines; `--json` output is
//! for scripts and its field names are a contract.

use crate::cli::*;
use crate::config::Config;
use anyhow::{bail, Context};
use posthorn_admin::bounce::BounceNotices;
use posthorn_admin::{check, dkim, Admin};
use posthorn_store::{Domain, MessageFilter, MessageRecord, SqliteStore, Store, Suppression};
use posthorn_submit::{apply_settings, SETTING_KEYS};
use posthorn_types::time::rfc3339;
use posthorn_types::{MessageId, RecipientStatus};
use serde_json::json;
use std::sync::Arc;

pub async fn run(config: &Config, command: Command) -> anyhow::Result<()> {
    // Every command goes through the backend-neutral contract; only the
    // backup is the embedded store's own.
    let opened = crate::stores::open(config, crate::stores::Opener::Admin).await?;
    let store: Arc<dyn Store> = opened.store.clone();
    let admin = Admin::new(store.clone());
    match command {
        Command::Serve(_) => unreachable!("handled by serve"),
        Command::Account(AccountCmd::Create { name }) => {
            admin.create_account(&name).await?;
            out!("created account {name}");
        }
        Command::Account(AccountCmd::Remove { name, yes }) => {
            admin.account(&name).await?;
            if !yes {
                bail!("this removes account {name} with its domains, senders, API users, labels, keys, webhooks, suppressions and message history, and cannot be undone; add --yes to confirm");
            }
            admin.remove_account(&name).await?;
            out!("removed account {name}");
        }
        Command::Account(AccountCmd::List) => {
            for a in store.accounts().await? {
                out!("{}\t{}", a.name, rfc3339(a.created_at));
            }
        }
        Command::Account(AccountCmd::Set { name, key, value }) => {
            admin.set_setting(&name, &key, Some(&value)).await?;
            let overrides = store
                .account_settings(admin.account(&name).await?.id)
                .await?;
            let value = overrides
                .iter()
                .find(|(k, _)| *k == key)
                .map_or(value.clone(), |(_, v)| v.clone());
            out!("account {name}: {key} = {value}");
        }
        Command::Account(AccountCmd::Unset { name, key }) => {
            admin.set_setting(&name, &key, None).await?;
            out!("account {name}: {key} is back to the default");
        }
        Command::Account(AccountCmd::Show { name }) => {
            let acct = store.account(&name).await?;
            let overrides = store.account_settings(acct.id).await?;
            let limits = apply_settings(config.submit_config().limits, &overrides);
            out!("account:  {}", acct.name);
            out!("created:  {}", rfc3339(acct.created_at));
            let domains = store.domains(acct.id).await?;
            let names: Vec<&str> = domains.iter().map(|d| d.name.as_str()).collect();
            out!(
                "domains:  {}",
                if names.is_empty() {
                    "-".to_string()
                } else {
                    names.join(", ")
                }
            );
            let now = store.now();
            let mut usage = Vec::new();
            for (label, secs) in [
                ("last minute", 60),
                ("last hour", 3600),
                ("last day", 86400),
            ] {
                let n = store.count_messages_since(acct.id, now - secs).await?;
                usage.push(format!("{n} in the {label}"));
            }
            out!("accepted: {}", usage.join(", "));
            out!("settings:");
            for k in SETTING_KEYS {
                let set = overrides.iter().any(|(key, _)| key == k.key);
                out!(
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
            let d = admin.add_domain(&account, &domain, dkim.parse()?).await?;
            out!(
                "added domain {} to account {account}; publish these DNS records:",
                d.name
            );
            out_raw!("{}", records_of(config, &d));
        }
        Command::Domain(DomainCmd::Records { domain }) => {
            let d = admin.domain(None, &domain).await?;
            out_raw!("{}", records_of(config, &d));
        }
        Command::Domain(DomainCmd::List { account }) => {
            let accounts = match account {
                Some(name) => vec![admin.account(&name).await?],
                None => store.accounts().await?,
            };
            for a in accounts {
                for d in store.domains(a.id).await? {
                    out!(
                        "{}\t{}\t{}\t{}",
                        d.name,
                        a.name,
                        dkim::key_type(&d.dkim_public_key),
                        rfc3339(d.created_at)
                    );
                }
            }
        }
        Command::Domain(DomainCmd::Check { domain }) => {
            check_domain(config, &admin, &domain).await?;
        }
        Command::Domain(DomainCmd::Remove { domain }) => {
            admin.remove_domain(None, &domain).await?;
            out!(
                "removed domain {} and its DKIM key; take its DNS records down too",
                posthorn_admin::names::normalize_domain(&domain)
            );
        }
        Command::Sender(SenderCmd::Add {
            address,
            account,
            password,
        }) => {
            let creds = admin.add_sender(&account, &address, password).await?;
            out!("added sender {address} to account {account}");
            if let Some(password) = creds.generated_secret {
                out!("password: {password}");
                out!("(shown once; set a new one with: posthorn sender set-password {address})");
            }
        }
        Command::Sender(SenderCmd::SetPassword { address, password }) => {
            let creds = admin.set_sender_password(None, &address, password).await?;
            out!("password of {} changed", creds.login);
            if let Some(password) = creds.generated_secret {
                out!("password: {password}");
            }
        }
        Command::Sender(SenderCmd::List { account }) => {
            let acct = admin.account(&account).await?;
            for s in store.senders(acct.id).await? {
                out!("{}\t{}", s.name, rfc3339(s.created_at));
            }
        }
        Command::Sender(SenderCmd::Remove { address }) => {
            let address = admin.remove_sender(None, &address).await?;
            out!("removed sender {address}");
        }
        Command::Apiuser(ApiUserCmd::Add { name, account, key }) => {
            let creds = admin.add_api_user(&account, &name, key).await?;
            out!("added API user {name} to account {account}");
            if let Some(key) = creds.generated_secret {
                out!("key: {key}");
                out!("(shown once)");
            }
        }
        Command::Apiuser(ApiUserCmd::List { account }) => {
            let acct = admin.account(&account).await?;
            for u in store.api_users(acct.id).await? {
                out!("{}\t{}", u.name, rfc3339(u.created_at));
            }
        }
        Command::Apiuser(ApiUserCmd::Remove { name }) => {
            admin.remove_api_user(None, &name).await?;
            out!("removed API user {name}");
        }
        Command::Label(LabelCmd::Add { label_id, account }) => {
            admin.add_label(&account, &label_id).await?;
            out!("added label {label_id} to account {account}");
        }
        Command::Label(LabelCmd::List { account }) => {
            let acct = admin.account(&account).await?;
            for l in store.labels(acct.id).await? {
                out!("{}\t{}", l.name, rfc3339(l.created_at));
            }
        }
        Command::Label(LabelCmd::Remove { label_id, account }) => {
            admin.remove_label(&account, &label_id).await?;
            out!("removed label {label_id} from account {account}");
        }
        Command::Backup { dest } => {
            let Some(sqlite) = &opened.sqlite else {
                bail!("posthorn backup copies the embedded store; this configuration uses {}: back it up with pg_dump (docs/cluster.md)", opened.choice);
            };
            sqlite.backup(&dest).await?;
            out!(
                "wrote a consistent copy of {} to {}",
                SqliteStore::database_path(&config.data_dir).display(),
                dest.display()
            );
        }
        Command::Config => unreachable!("answered before the store is opened"),
        Command::Migrate => {
            // Opening applied what was missing.
            out!("{}: schema up to date", opened.choice);
        }
        Command::Cluster(ClusterCmd::Status { json }) => {
            let timeout = config.node_timeout()?.as_secs() as i64;
            let view = posthorn_api::admin::cluster::ClusterView::from(
                admin.cluster_status(timeout).await?,
            );
            if json {
                out!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                out!("store: {}", opened.choice);
                out!("node timeout: {}s", view.node_timeout_secs);
                for n in &view.nodes {
                    out!(
                        "{}\t{}\tlast seen {}s ago\t{} leases\t{}\t{}",
                        n.id,
                        if n.alive { "alive" } else { "DEAD" },
                        n.last_seen_secs_ago,
                        n.leases,
                        n.version,
                        n.address
                    );
                }
                if view.nodes.is_empty() {
                    out!("no node has sent a heartbeat yet");
                }
                let queue: Vec<String> =
                    view.queue.iter().map(|(s, n)| format!("{s} {n}")).collect();
                out!("queue: {}", queue.join(", "));
            }
        }
        Command::Store(_) => unreachable!("store_cmds: it must not create a store"),
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
                out!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for m in &messages {
                    out!("{}", message_line(m));
                }
            }
        }
        Command::Queue(QueueCmd::Retry { id }) => {
            let id = parse_id(&id)?;
            let n = store.retry_now(id, store.now()).await?;
            if n == 0 {
                out!("message {id} has no queued or deferred recipient: nothing to retry");
            } else {
                out!("message {id}: {} due now", recipients(n));
            }
        }
        Command::Queue(QueueCmd::Destinations { json }) => {
            let timeout = config.node_timeout()?.as_secs() as i64;
            let view = posthorn_api::admin::destinations::DestinationsView::from(
                admin.destinations(timeout).await?,
            );
            if json {
                out!("{}", serde_json::to_string_pretty(&view)?);
            } else if view.destinations.is_empty() {
                out!("no destination has mail waiting or in flight on a running node");
            } else {
                out!("DESTINATION\tWAITING\tIN FLIGHT\tCONNECTIONS\tSUSPENDED UNTIL\tLAST ERROR\tDOMAINS");
                for d in &view.destinations {
                    out!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        d.destination,
                        d.queued,
                        d.in_flight,
                        d.open_connections,
                        d.suspended_until.as_deref().unwrap_or("-"),
                        d.last_error.as_deref().unwrap_or("-"),
                        d.domains.join(",")
                    );
                }
            }
        }
        Command::Queue(QueueCmd::Bounce { id }) => bounce(config, &admin, parse_id(&id)?).await?,
        Command::Suppression(SuppressionCmd::List { account, json }) => {
            let acct = store.account(&account).await?;
            let list = store.suppressions(acct.id).await?;
            if json {
                let all: Vec<_> = list.iter().map(suppression_json).collect();
                out!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for s in &list {
                    out!(
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
            let (entry, _) = admin
                .add_suppression(&account, &address, Some(&reason))
                .await?;
            out!(
                "suppressed {address} for account {account} ({})",
                entry.reason
            );
        }
        Command::Suppression(SuppressionCmd::Remove { address, account }) => {
            admin.remove_suppression(&account, &address).await?;
            out!("removed {address} from the suppression list of account {account}");
        }
        Command::Message(MessageCmd::Show { id, json }) => {
            let m = store.message(parse_id(&id)?).await?;
            // Opens and clicks of a tracked message (docs/tracking.md).
            let engagements = store.engagements(m.id).await?;
            if json {
                let mut v = message_json(&m);
                v["engagements"] = engagements
                    .iter()
                    .map(|e| {
                        json!({
                            "recipient": e.recipient,
                            "kind": e.kind,
                            "count": e.count,
                            "first_at": rfc3339(e.first_at),
                            "last_at": rfc3339(e.last_at),
                        })
                    })
                    .collect();
                out!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_message(&m)?;
                for e in &engagements {
                    out!(
                        "{:<12} {}  {}x, first {}, last {}",
                        format!("{}:", e.kind),
                        e.recipient,
                        e.count,
                        rfc3339(e.first_at),
                        rfc3339(e.last_at)
                    );
                }
            }
        }
        Command::Message(MessageCmd::Content { id }) => {
            use std::io::Write;
            let bytes = store.message_content(parse_id(&id)?).await?;
            std::io::stdout().write_all(&bytes)?;
        }
        Command::Apikey(cmd) => crate::api_cmds::apikey(&admin, cmd).await?,
        Command::Template(cmd) => crate::template_cmds::run(&admin, cmd).await?,
        Command::Lockout(cmd) => crate::lockout_cmds::run(store.as_ref(), cmd).await?,
        Command::Status { id, json } => crate::api_cmds::status(store.as_ref(), &id, json).await?,
    }
    Ok(())
}

/// `queue bounce`: every recipient not yet final becomes bounced, in one
/// commit with the bounce notice (when one is due); the rules are
/// `Admin::bounce_message`'s.
async fn bounce(config: &Config, admin: &Admin, id: MessageId) -> anyhow::Result<()> {
    let notices = BounceNotices {
        enabled: config.delivery.dsn,
        hostname: config
            .delivery
            .hostname
            .clone()
            .unwrap_or_else(|| config.hostname()),
    };
    let done = admin.bounce_message(id, None, &notices).await?;
    if done.bounced.is_empty() {
        out!("message {id} has no recipient left to bounce: every one is final");
        return Ok(());
    }
    out!(
        "message {id}: bounced {}{}",
        recipients(done.applied),
        if done.applied < done.bounced.len() as u64 {
            " (the others became final meanwhile)"
        } else {
            ""
        }
    );
    match (done.notice, done.no_notice) {
        (Some((nid, to)), _) => out!("queued bounce notice {nid} to {to}"),
        (None, Some(why)) => out!("no bounce notice: {why}"),
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

/// The DNS records of a domain, zone-file style, with the SPF name this
/// server sends as; a warning first when that name is not one DNS knows.
fn records_of(config: &Config, d: &Domain) -> String {
    let hostname = outbound_hostname(config);
    if !Config::hostname_is_qualified(&hostname) {
        eprintln!(
            "warning: the host name {hostname:?} is not a fully qualified domain name, so the SPF record below names a host no receiver can look up; set hostname = \"mail.example.com\" (the name this server's address resolves to) in the configuration, or [delivery] hostname"
        );
    }
    dkim::dns_records(&d.name, &d.dkim_selector, &d.dkim_public_key, &hostname)
}

/// The name this server sends as: `[delivery] hostname`, else `hostname`.
fn outbound_hostname(config: &Config) -> String {
    config
        .delivery
        .hostname
        .clone()
        .unwrap_or_else(|| config.hostname())
}

/// `domain check`: each record as DNS has it; fails when the DKIM record
/// is not found (mail would not verify).
async fn check_domain(config: &Config, admin: &Admin, domain: &str) -> anyhow::Result<()> {
    let d = admin.domain(None, domain).await?;
    let hostname = outbound_hostname(config);
    let expected = dkim::records(&d.name, &d.dkim_selector, &d.dkim_public_key, &hostname);
    let nameservers = config.api_config()?.nameservers;
    let verdicts = check::check(&nameservers, &expected, &hostname).await;
    let mut dkim_ok = false;
    for (r, v) in expected.iter().zip(&verdicts) {
        if r.purpose == dkim::Purpose::Dkim && v.status == check::Status::Found {
            dkim_ok = true;
        }
        out!(
            "{:<6} {:<8} {}",
            r.purpose.as_str(),
            v.status.as_str(),
            r.name
        );
        if v.status != check::Status::Found {
            out!("       expected:  {}", r.value);
            for p in &v.published {
                out!("       published: {p}");
            }
        }
        if !v.detail.is_empty() {
            out!("       {}", v.detail);
        }
    }
    if !dkim_ok {
        bail!(
            "the DKIM record of {} is not published as expected; receivers cannot verify its mail",
            d.name
        );
    }
    Ok(())
}

fn message_json(m: &MessageRecord) -> serde_json::Value {
    json!({
        "id": m.id.to_string(),
        "account": m.account,
        "mail_from": m.mail_from,
        "auth_user": m.auth_user,
        "client_ip": m.client_ip,
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

pub(crate) fn print_message(m: &MessageRecord) -> std::io::Result<()> {
    out!("id:          {}", m.id);
    out!("account:     {}", m.account);
    out!("received:    {}", rfc3339(m.received_at));
    out!("mail from:   {}", sender(&m.mail_from));
    out!("logged in:   {}", m.auth_user);
    out!("client:      {}", m.client_ip.as_deref().unwrap_or("-"));
    out!("label:       {}", m.label.as_deref().unwrap_or("-"));
    out!("size:        {} bytes", m.size);
    out!("subject:     {}", m.subject);
    out!(
        "completed:   {}",
        m.completed_at.map(rfc3339).as_deref().unwrap_or("-")
    );
    out!(
        "kind:        {}",
        if m.is_dsn {
            "bounce notice (generated by Posthorn)"
        } else {
            "message"
        }
    );
    out!(
        "content:     {}",
        if m.content_purged {
            "purged after the retention time"
        } else {
            "stored"
        }
    );
    for a in &m.attachments {
        out!(
            "attachment:  {} ({}, {} bytes)",
            a.filename.as_deref().unwrap_or("(unnamed)"),
            a.content_type,
            a.size
        );
    }
    out!("recipients:");
    for r in &m.recipients {
        out!(
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
    Ok(())
}
