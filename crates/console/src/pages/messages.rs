//! Messages: the search (id, recipient, status, label, date; newest first,
//! paged), a message's page, its HTML shown inert, retry and bounce.

use crate::web::{
    html_response, query_string, redirect, size, when, Ctx, Fail, Fields, PageResult, FRAME_CSP,
};
use axum::extract::{Path, RawForm, RawQuery};
use axum::http::header;
use axum::response::IntoResponse;
use maud::{html, Markup};
use posthorn_admin::bounce::OPERATOR_BOUNCE_REPLY;
use posthorn_admin::Admin;
use posthorn_store::{MessageFilter, MessageRecord, StoreError};
use posthorn_types::{MessageId, RecipientStatus};

/// Messages per page.
const PAGE: u32 = 50;

fn status_class(s: RecipientStatus) -> &'static str {
    match s {
        RecipientStatus::Delivered => "st ok",
        RecipientStatus::Bounced | RecipientStatus::Expired | RecipientStatus::Suppressed => {
            "st bad"
        }
        RecipientStatus::Deferred => "st warn",
        RecipientStatus::Queued | RecipientStatus::Sending => "st",
    }
}

/// A message of the session's, or the 404 page (also for another
/// account's message: its existence is not told).
async fn visible(ctx: &Ctx, id: &str) -> Result<MessageRecord, Fail> {
    ctx.signed_in()?;
    let Ok(id) = id.parse::<MessageId>() else {
        return Err(ctx.not_found());
    };
    match ctx.state.store.message(id).await {
        Ok(m) if ctx.may_see(m.account_id) => Ok(m),
        Ok(_) | Err(StoreError::NotFound(_)) => Err(ctx.not_found()),
        Err(e) => Err(ctx.internal(e)),
    }
}

pub async fn list(ctx: Ctx, RawQuery(q): RawQuery) -> PageResult {
    ctx.signed_in()?;
    let q = Fields::query(q.as_deref());
    let (id, rcpt, status, label, date, account, before) = (
        q.get("id").trim(),
        q.get("recipient").trim(),
        q.get("status").trim(),
        q.get("label").trim(),
        q.get("date").trim(),
        q.get("account").trim(),
        q.get("before").trim(),
    );
    let mut problems = Vec::new();
    let messages: Vec<MessageRecord> = if !id.is_empty() {
        match id.parse::<MessageId>() {
            Ok(mid) => match ctx.state.store.message(mid).await {
                Ok(m) if ctx.may_see(m.account_id) => vec![m],
                Ok(_) | Err(StoreError::NotFound(_)) => Vec::new(),
                Err(e) => return Err(ctx.internal(e)),
            },
            Err(e) => {
                problems.push(format!("{}: {e}", ctx.t("message_id")));
                Vec::new()
            }
        }
    } else {
        let mut filter = MessageFilter {
            limit: Some(PAGE),
            newest_first: true,
            ..Default::default()
        };
        match ctx.own_account() {
            Some((aid, _)) => filter.account_id = Some(aid),
            None if !account.is_empty() => {
                filter.account_id = Some(ctx.accounts(account).await?[0].id);
            }
            None => {}
        }
        if !status.is_empty() {
            match status.parse::<RecipientStatus>() {
                Ok(s) => filter.status = Some(s),
                Err(_) => problems.push(format!("{}: {status:?}", ctx.t("status"))),
            }
        }
        if !rcpt.is_empty() {
            filter.recipient = Some(rcpt.to_string());
        }
        if !label.is_empty() {
            filter.label = Some(label.to_string());
        }
        if !date.is_empty() {
            match posthorn_types::time::parse_date(date) {
                Some(day) => {
                    let ms = |s: i64| (s.max(0) as u64) * 1000;
                    filter.after = Some(MessageId::first_at(ms(day)));
                    filter.before = Some(MessageId::first_at(ms(day + 86_400)));
                }
                None => problems.push(format!("{}: YYYY-MM-DD", ctx.t("date"))),
            }
        }
        if !before.is_empty() {
            if let Ok(b) = before.parse::<MessageId>() {
                filter.before = Some(filter.before.map_or(b, |d| d.min(b)));
            }
        }
        if problems.is_empty() {
            ctx.state
                .store
                .messages(&filter)
                .await
                .map_err(|e| ctx.internal(e))?
        } else {
            Vec::new()
        }
    };
    let more = id.is_empty() && messages.len() == PAGE as usize;
    let next = messages.last().map(|m| {
        query_string(&[
            ("recipient", rcpt),
            ("status", status),
            ("label", label),
            ("date", date),
            ("account", account),
            ("before", &m.id.to_string()),
        ])
    });
    let account_select = ctx.account_select(account, true).await?;
    let body = html! {
        h1 { (ctx.t("messages")) }
        form.search method="get" action="/messages" {
            (account_select)
            label { (ctx.t("message_id")) input name="id" value=(id) size="28"; }
            label { (ctx.t("recipient")) input name="recipient" type="search" value=(rcpt); }
            label { (ctx.t("status"))
                select name="status" {
                    option value="" { (ctx.t("any")) }
                    @for s in RecipientStatus::ALL {
                        option value=(s.as_str()) selected[s.as_str() == status] { (s.as_str()) }
                    }
                }
            }
            label { (ctx.t("label")) input name="label" value=(label) size="8"; }
            label { (ctx.t("date")) input name="date" type="date" value=(date); }
            button type="submit" { (ctx.t("search")) }
        }
        @for p in &problems { p.error role="alert" { (p) } }
        @if messages.is_empty() {
            p.empty { (ctx.t("no_messages")) }
        } @else {
            table.list #messages {
                thead { tr {
                    th { (ctx.t("received")) }
                    @if ctx.is_admin() { th { (ctx.t("account")) } }
                    th { (ctx.t("from")) }
                    th { (ctx.t("recipients")) }
                    th { (ctx.t("subject")) }
                    th { (ctx.t("label")) }
                    th.num { (ctx.t("size")) }
                } }
                tbody {
                    @for m in &messages {
                        tr {
                            td.nowrap { a href=(format!("/messages/{}", m.id)) { (when(m.received_at)) } }
                            @if ctx.is_admin() { td { (m.account) } }
                            td { (m.mail_from) }
                            td { @for r in &m.recipients {
                                span.rcpt { (r.address) " " span class=(status_class(r.status)) { (r.status.as_str()) } }
                            } }
                            td.subject { a href=(format!("/messages/{}", m.id)) { (m.subject) } }
                            td { (m.label.as_deref().unwrap_or("")) }
                            td.num { (size(m.size)) }
                        }
                    }
                }
            }
        }
        nav.pager {
            @if !before.is_empty() {
                a href=(format!("/messages?{}", query_string(&[("recipient", rcpt), ("status", status), ("label", label), ("date", date), ("account", account)]))) { (ctx.t("newest")) }
            }
            @if more { @if let Some(n) = &next { a href=(format!("/messages?{n}")) { (ctx.t("older")) " →" } } }
        }
    };
    Ok(html_response(ctx.page(ctx.t("messages"), "messages", body)))
}

/// The parts of a stored message the page shows.
struct Content {
    headers: String,
    text: Option<String>,
    has_html: bool,
}

fn parse_content(raw: &[u8]) -> Content {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |p| p + 2);
    let headers = String::from_utf8_lossy(&raw[..end.min(64 * 1024)]).into_owned();
    let parsed = mail_parser::MessageParser::default().parse(raw);
    let text = parsed
        .as_ref()
        .and_then(|m| m.body_text(0))
        .map(|t| t.chars().take(200_000).collect());
    let has_html = parsed
        .as_ref()
        .is_some_and(|m| !m.html_body.is_empty() && m.body_html(0).is_some());
    Content {
        headers,
        text,
        has_html,
    }
}

fn timeline(ctx: &Ctx, m: &MessageRecord) -> Vec<(i64, String)> {
    let mut events = vec![(m.received_at, ctx.t("accepted_event").to_string())];
    for r in &m.recipients {
        if r.updated_at > m.received_at || r.status != RecipientStatus::Queued {
            let mut what = format!("{}: {}", r.address, r.status.as_str());
            if let Some(reply) = &r.last_reply {
                what.push_str(" — ");
                what.push_str(reply);
            }
            events.push((r.updated_at, what));
        }
    }
    if let Some(done) = m.completed_at {
        events.push((done, ctx.t("completed_event").to_string()));
    }
    events.sort_by_key(|(t, _)| *t);
    events
}

pub async fn show(ctx: Ctx, Path(id): Path<String>, RawQuery(q): RawQuery) -> PageResult {
    let m = visible(&ctx, &id).await?;
    let q = Fields::query(q.as_deref());
    let content = match ctx.state.store.message_content(m.id).await {
        Ok(raw) => Some(parse_content(&raw)),
        Err(StoreError::NotFound(_)) => None,
        Err(e) => return Err(ctx.internal(e)),
    };
    let retryable = m
        .recipients
        .iter()
        .any(|r| r.status == RecipientStatus::Deferred);
    let pending = m
        .recipients
        .iter()
        .filter(|r| {
            matches!(
                r.status,
                RecipientStatus::Queued | RecipientStatus::Deferred | RecipientStatus::Sending
            )
        })
        .count();
    // The recipients an operator bounced (the page after the Bounce button
    // names them).
    let bounced: Vec<&str> = m
        .recipients
        .iter()
        .filter(|r| {
            r.status == RecipientStatus::Bounced
                && r.last_reply.as_deref() == Some(OPERATOR_BOUNCE_REPLY)
        })
        .map(|r| r.address.as_str())
        .collect();
    let title = format!("{} {}", ctx.t("message"), m.id);
    let body = html! {
        h1 { (ctx.t("message")) " " code { (m.id) } }
        @if q.get("done") == "retried" { p.notice role="status" { (ctx.t("retried")) } }
        @if q.get("done") == "bounced" {
            div.notice role="status" #bounced {
                @if bounced.is_empty() {
                    p { (ctx.t("nothing_to_bounce")) }
                } @else {
                    p { (ctx.t("bounced_by_operator")) ": " (bounced.join(", ")) }
                }
                @if !q.get("dsn").is_empty() {
                    p { (ctx.t("bounce_notice_queued")) ": "
                        a href=(format!("/messages/{}", q.get("dsn"))) { code { (q.get("dsn")) } } }
                }
            }
        }
        section {
            h2 { (ctx.t("envelope")) }
            table.kv #envelope {
                tr { th { (ctx.t("subject")) } td { (m.subject) } }
                tr { th { (ctx.t("account")) } td { (m.account) } }
                tr { th { (ctx.t("mail_from")) } td { (m.mail_from) } }
                tr { th { (ctx.t("from")) } td { (m.header_from) } }
                tr { th { (ctx.t("login")) } td { (m.auth_user) } }
                tr { th { (ctx.t("client")) } td { (m.client_ip.as_deref().unwrap_or("")) } }
                tr { th { (ctx.t("label")) } td { (m.label.as_deref().unwrap_or("")) } }
                tr { th { (ctx.t("size")) } td { (size(m.size)) } }
                tr { th { (ctx.t("received")) } td { (when(m.received_at)) } }
            }
        }
        section {
            h2 { (ctx.t("recipients")) }
            table.list #recipients {
                thead { tr {
                    th { (ctx.t("recipient")) } th { (ctx.t("status")) } th.num { (ctx.t("attempts")) }
                    th { (ctx.t("last_reply")) } th { (ctx.t("next_try")) } th { (ctx.t("updated")) }
                } }
                tbody { @for r in &m.recipients {
                    tr {
                        td { (r.address) }
                        td { span class=(status_class(r.status)) { (r.status.as_str()) } }
                        td.num { (r.attempts) }
                        td.reply {
                            (r.last_reply.as_deref().unwrap_or(""))
                            @if let Some(h) = &r.remote_host { br; small { (h) } }
                        }
                        td.nowrap { (r.next_try.map(when).unwrap_or_default()) }
                        td.nowrap { (when(r.updated_at)) }
                    }
                } }
            }
            div.actions {
                @if retryable {
                    form method="post" action=(format!("/messages/{}/retry", m.id)) {
                        (ctx.csrf_field())
                        button type="submit" { (ctx.t("retry_now")) }
                    }
                }
                @if pending > 0 {
                    form #bounce method="post" action=(format!("/messages/{}/bounce", m.id)) {
                        (ctx.csrf_field())
                        label.check {
                            input type="checkbox" name="confirm" value="yes" required;
                            " " (ctx.t("bounce_confirm")) " (" (pending) ")"
                        }
                        " "
                        button.danger type="submit" { (ctx.t("bounce")) }
                    }
                }
            }
        }
        section {
            h2 { (ctx.t("timeline")) }
            ol.timeline { @for (t, what) in timeline(&ctx, &m) {
                li { time { (when(t)) } " " (what) }
            } }
        }
        section {
            h2 { (ctx.t("content")) }
            @match &content {
                None => p.empty { (ctx.t("no_content")) },
                Some(c) => (content_view(&ctx, &m, c)),
            }
        }
    };
    Ok(html_response(ctx.page(&title, "messages", body)))
}

fn content_view(ctx: &Ctx, m: &MessageRecord, c: &Content) -> Markup {
    html! {
        h3 { (ctx.t("headers")) }
        pre.headers { (c.headers) }
        @if let Some(t) = &c.text {
            h3 { (ctx.t("text_part")) }
            pre.text { (t) }
        }
        @if c.has_html {
            h3 { (ctx.t("html_part")) }
            // No allow-scripts, no allow-same-origin: the frame is an
            // opaque origin that runs nothing; its answer has its own
            // sandboxing CSP too.
            iframe.html sandbox="" src=(format!("/messages/{}/html", m.id)) title=(ctx.t("html_part")) {}
        }
    }
}

/// A message's HTML body, for the sandboxed frame only.
pub async fn html_frame(ctx: Ctx, Path(id): Path<String>) -> PageResult {
    let m = visible(&ctx, &id).await?;
    let raw = match ctx.state.store.message_content(m.id).await {
        Ok(raw) => raw,
        Err(StoreError::NotFound(_)) => return Err(ctx.not_found()),
        Err(e) => return Err(ctx.internal(e)),
    };
    let Some(html) = mail_parser::MessageParser::default()
        .parse(&raw)
        .and_then(|p| p.body_html(0).map(|h| h.into_owned()))
    else {
        return Err(ctx.not_found());
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, FRAME_CSP),
            (header::X_FRAME_OPTIONS, "SAMEORIGIN"),
        ],
        html,
    )
        .into_response())
}

pub async fn retry(ctx: Ctx, Path(id): Path<String>, RawForm(body): RawForm) -> PageResult {
    ctx.check_csrf(&Fields::parse(&body))?;
    let m = visible(&ctx, &id).await?;
    let store = &ctx.state.store;
    store
        .retry_now(m.id, store.now())
        .await
        .map_err(|e| ctx.internal(e))?;
    Ok(redirect(&format!("/messages/{}?done=retried", m.id)))
}

/// Bounce every recipient not yet final (the admin service's
/// `bounce_message`, as `posthorn queue bounce`), once the form's box is
/// ticked; an account session only its own account's message.
pub async fn bounce(ctx: Ctx, Path(id): Path<String>, RawForm(body): RawForm) -> PageResult {
    let form = Fields::parse(&body);
    ctx.check_csrf(&form)?;
    let m = visible(&ctx, &id).await?;
    if form.get("confirm") != "yes" {
        return Err(ctx.invalid(ctx.t("bounce_unconfirmed").to_string()));
    }
    let done = Admin::new(ctx.state.store.clone())
        .bounce_message(
            m.id,
            ctx.own_account().map(|(a, _)| a),
            &ctx.state.config.bounce_notices,
        )
        .await
        .map_err(|e| ctx.admin_error(e))?;
    let dsn = done.notice.map(|(n, _)| n.to_string()).unwrap_or_default();
    Ok(redirect(&format!(
        "/messages/{}?{}",
        m.id,
        query_string(&[("done", "bounced"), ("dsn", &dsn)])
    )))
}
