//! Senders: the list, add, and set or reset an SMTP password (a generated
//! one is shown once, in the answer to the form, never stored in clear).

use crate::web::{html_response, when, Ctx, Fields, PageResult};
use axum::extract::{RawForm, RawQuery};
use maud::{html, Markup};
use posthorn_admin::{Admin, Credentials};

async fn page(ctx: &Ctx, chosen: &str, shown: Option<(&Credentials, &str)>) -> PageResult {
    let mut rows = Vec::new();
    for a in ctx.accounts(chosen).await? {
        let senders = ctx
            .state
            .store
            .senders(a.id)
            .await
            .map_err(|e| ctx.internal(e))?;
        rows.extend(senders.into_iter().map(|s| (a.name.clone(), s)));
    }
    let add_select = ctx.account_select(chosen, false).await?;
    let filter_select = ctx.account_select(chosen, true).await?;
    let body = html! {
        h1 { (ctx.t("senders")) }
        @if let Some((c, what)) = shown { (secret_box(ctx, c, what)) }
        @if ctx.is_admin() {
            form.search method="get" action="/senders" {
                (filter_select)
                button type="submit" { (ctx.t("filter")) }
            }
        }
        @if rows.is_empty() {
            p.empty { (ctx.t("no_senders")) }
        } @else {
            table.list #senders {
                thead { tr {
                    th { (ctx.t("address")) }
                    @if ctx.is_admin() { th { (ctx.t("account")) } }
                    th { (ctx.t("created")) }
                    th { (ctx.t("password")) }
                } }
                tbody { @for (account, s) in &rows {
                    tr {
                        td { (s.name) }
                        @if ctx.is_admin() { td { (account) } }
                        td.nowrap { (when(s.created_at)) }
                        td {
                            form.inline method="post" action="/senders/password" {
                                (ctx.csrf_field())
                                input type="hidden" name="address" value=(s.name);
                                input type="password" name="password" autocomplete="new-password"
                                    placeholder=(ctx.t("password_help")) aria-label=(ctx.t("new_password"));
                                button type="submit" { (ctx.t("reset_password")) }
                            }
                        }
                    }
                } }
            }
        }
        h2 { (ctx.t("add_sender")) }
        form.add method="post" action="/senders" {
            (ctx.csrf_field())
            (add_select)
            label { (ctx.t("address")) input name="address" type="email" required placeholder="app@example.com"; }
            label { (ctx.t("password"))
                input name="password" type="password" autocomplete="new-password" placeholder=(ctx.t("password_help"));
            }
            button type="submit" { (ctx.t("add_sender")) }
        }
    };
    Ok(html_response(ctx.page(ctx.t("senders"), "senders", body)))
}

/// What was just set: the login, and a generated secret once.
fn secret_box(ctx: &Ctx, c: &Credentials, what: &str) -> Markup {
    html! {
        div.notice role="status" #secret {
            p { (what) " " strong #login { (c.login) } }
            @if let Some(secret) = &c.generated_secret {
                p { (ctx.t("new_password")) ": "
                    code #new-secret { (secret) }
                    " " button.copy type="button" data-copy="new-secret" { (ctx.t("copy")) }
                }
                p.help { (ctx.t("shown_once")) }
            }
        }
    }
}

/// A password field left empty means "generate one".
fn given(form: &Fields) -> Option<String> {
    let p = form.get("password");
    (!p.is_empty()).then(|| p.to_string())
}

pub async fn list(ctx: Ctx, RawQuery(q): RawQuery) -> PageResult {
    ctx.signed_in()?;
    let q = Fields::query(q.as_deref());
    page(&ctx, q.get("account").trim(), None).await
}

pub async fn add(ctx: Ctx, RawForm(body): RawForm) -> PageResult {
    let form = Fields::parse(&body);
    ctx.check_csrf(&form)?;
    let account = ctx.target_account(&form)?;
    let c = Admin::new(ctx.state.store.clone())
        .add_sender(&account, form.get("address").trim(), given(&form))
        .await
        .map_err(|e| ctx.admin_error(e))?;
    let chosen = if ctx.is_admin() { "" } else { &account };
    page(&ctx, chosen, Some((&c, ctx.t("added")))).await
}

pub async fn set_password(ctx: Ctx, RawForm(body): RawForm) -> PageResult {
    let form = Fields::parse(&body);
    ctx.check_csrf(&form)?;
    let account = ctx.own_account().map(|(_, n)| n.to_string());
    let c = Admin::new(ctx.state.store.clone())
        .set_sender_password(account.as_deref(), form.get("address").trim(), given(&form))
        .await
        .map_err(|e| ctx.admin_error(e))?;
    page(&ctx, "", Some((&c, ctx.t("password_set")))).await
}
