//! Webhooks: the list, add (the API's own rules: events, URL checks, the
//! per-account maximum; the signing secret shown once), remove, send a
//! test event, and each webhook's recent deliveries with their HTTP status.

use crate::web::{html_response, query_string, redirect, when, Ctx, Fields, PageResult};
use axum::extract::{RawForm, RawQuery};
use maud::html;
use posthorn_api::webhooks::{add_webhook, CreatedWebhook, NewWebhook};
use posthorn_store::{StoreError, TestEvent, WebhookDeliveryRecord, EVENT_KINDS};

/// Deliveries listed per webhook.
const RECENT: u32 = 10;

/// What a test event says.
fn test_event() -> TestEvent {
    TestEvent {
        message_id: String::new(),
        recipient: "test@example.com".into(),
        reply: Some("This is a test event sent from the Posthorn console.".into()),
    }
}

fn delivery_state(ctx: &Ctx, d: &WebhookDeliveryRecord) -> maud::Markup {
    html! {
        @match (d.done_at, d.next_try) {
            (Some(_), _) if d.last_error.is_some() => span.st.bad { (ctx.t("gave_up")) },
            (Some(t), _) => span.st.ok title=(when(t)) { (ctx.t("done_ok")) },
            (None, Some(t)) => span.st.warn { (ctx.t("pending_at")) " " (when(t)) },
            (None, None) => span.st {},
        }
    }
}

async fn page(ctx: &Ctx, q: &Fields, created: Option<&CreatedWebhook>) -> PageResult {
    let chosen = q.get("account").trim();
    let mut rows = Vec::new();
    for a in ctx.accounts(chosen).await? {
        let hooks = ctx
            .state
            .store
            .webhooks(a.id)
            .await
            .map_err(|e| ctx.internal(e))?;
        for w in hooks {
            let recent = ctx
                .state
                .store
                .webhook_deliveries(a.id, &w.id, RECENT)
                .await
                .map_err(|e| ctx.internal(e))?;
            rows.push((a.name.clone(), w, recent));
        }
    }
    let add_select = ctx.account_select(chosen, false).await?;
    let body = html! {
        h1 { (ctx.t("webhooks")) }
        @if q.get("done") == "removed" { p.notice role="status" { (ctx.t("removed")) ": " (q.get("what")) } }
        @if q.get("done") == "tested" { p.notice role="status" { (ctx.t("test_event_queued")) " " code { (q.get("what")) } } }
        @if let Some(w) = created {
            div.notice role="status" #secret {
                p { (ctx.t("added")) ": " code { (w.id) } " → " (w.url) }
                p { (ctx.t("signing_secret")) ": " code #new-secret { (w.secret) }
                    " " button.copy type="button" data-copy="new-secret" { (ctx.t("copy")) } }
                p.help { (ctx.t("shown_once")) }
            }
        }
        p.help { (ctx.t("webhooks_help")) }
        table.list #webhooks {
            thead { tr {
                th { "ID" } th { "URL" } th { (ctx.t("events")) } th { (ctx.t("account")) } th { (ctx.t("created")) } th {}
            } }
            tbody { @for (account, w, _) in &rows {
                tr {
                    td { code { (w.id) } } td.value { (w.url) } td { (w.events.join(", ")) }
                    td { (account) } td.nowrap { (when(w.created_at)) }
                    td.nowrap {
                        form.inline method="post" action="/webhooks/test" {
                            (ctx.csrf_field())
                            input type="hidden" name="account" value=(account);
                            input type="hidden" name="id" value=(w.id);
                            button type="submit" aria-label=(format!("{} {}", ctx.t("send_test_event"), w.id)) { (ctx.t("send_test_event")) }
                        }
                        " "
                        form.inline method="post" action="/webhooks/remove" {
                            (ctx.csrf_field())
                            input type="hidden" name="account" value=(account);
                            input type="hidden" name="id" value=(w.id);
                            button type="submit" aria-label=(format!("{} {}", ctx.t("remove"), w.id)) { (ctx.t("remove")) }
                        }
                    }
                }
            } }
        }
        @for (_, w, recent) in &rows {
            section.deliveries {
                h2 { (ctx.t("recent_deliveries")) ": " code { (w.id) } }
                @if recent.is_empty() {
                    p.empty { (ctx.t("no_deliveries")) }
                } @else {
                    table.list id=(format!("deliveries-{}", w.id)) {
                        thead { tr {
                            th { (ctx.t("time")) } th { (ctx.t("event")) } th { (ctx.t("http_status")) }
                            th { (ctx.t("error_col")) } th.num { (ctx.t("attempts")) } th { (ctx.t("state")) }
                        } }
                        tbody { @for d in recent {
                            tr {
                                td.nowrap { (when(d.created_at)) }
                                td { (d.kind) " " small { "evt_" (d.event_id) } }
                                td.status { (d.last_status.map(|s| s.to_string()).unwrap_or_default()) }
                                td.reply { (d.last_error.as_deref().unwrap_or("")) }
                                td.num { (d.attempts) }
                                td.nowrap { (delivery_state(ctx, d)) }
                            }
                        } }
                    }
                }
            }
        }
        h2 { (ctx.t("add_webhook")) }
        form.add method="post" action="/webhooks" {
            (ctx.csrf_field())
            (add_select)
            label { "URL" input name="url" type="url" required size="40" placeholder="https://app.example.com/hooks/mail"; }
            fieldset.events {
                legend { (ctx.t("events")) }
                @for e in EVENT_KINDS {
                    label.check { input type="checkbox" name="events" value=(e) checked; " " (e) }
                }
            }
            button type="submit" { (ctx.t("add_webhook")) }
        }
    };
    Ok(html_response(ctx.page(ctx.t("webhooks"), "webhooks", body)))
}

pub async fn list(ctx: Ctx, RawQuery(q): RawQuery) -> PageResult {
    ctx.signed_in()?;
    page(&ctx, &Fields::query(q.as_deref()), None).await
}

/// The id of the account a change acts on.
async fn account_id(ctx: &Ctx, form: &Fields) -> Result<i64, crate::web::Fail> {
    let name = ctx.target_account(form)?;
    Ok(ctx.accounts(&name).await?[0].id)
}

pub async fn add(ctx: Ctx, RawForm(body): RawForm) -> PageResult {
    let form = Fields::parse(&body);
    ctx.check_csrf(&form)?;
    let account_id = account_id(&ctx, &form).await?;
    let req = NewWebhook {
        url: form.get("url").trim().to_string(),
        events: form.all("events").into_iter().map(str::to_string).collect(),
    };
    let created = match add_webhook(&ctx.state, account_id, req).await {
        Ok(c) => c,
        Err(e) if e.status.is_client_error() => return Err(ctx.invalid(e.message)),
        Err(e) => return Err(ctx.internal(e.message)),
    };
    page(&ctx, &Fields::query(None), Some(&created)).await
}

pub async fn remove(ctx: Ctx, RawForm(body): RawForm) -> PageResult {
    let form = Fields::parse(&body);
    ctx.check_csrf(&form)?;
    let account_id = account_id(&ctx, &form).await?;
    let id = form.get("id").trim();
    let removed = ctx
        .state
        .store
        .remove_webhook(account_id, id)
        .await
        .map_err(|e| ctx.internal(e))?;
    if !removed {
        return Err(ctx.not_found());
    }
    Ok(redirect(&format!(
        "/webhooks?{}",
        query_string(&[("done", "removed"), ("what", id)])
    )))
}

/// Queue a test event for one webhook of the account (the store's
/// `add_test_webhook_event`) and wake the webhook sender.
pub async fn test(ctx: Ctx, RawForm(body): RawForm) -> PageResult {
    let form = Fields::parse(&body);
    ctx.check_csrf(&form)?;
    let account_id = account_id(&ctx, &form).await?;
    let id = form.get("id").trim();
    match ctx
        .state
        .store
        .add_test_webhook_event(account_id, id, &test_event())
        .await
    {
        Ok(_) => {}
        Err(StoreError::NotFound(_)) => return Err(ctx.not_found()),
        Err(e) => return Err(ctx.internal(e)),
    }
    ctx.state.webhook_wake.notify_one();
    Ok(redirect(&format!(
        "/webhooks?{}",
        query_string(&[("done", "tested"), ("what", id)])
    )))
}
