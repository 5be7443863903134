//! API keys (create, shown once; revoke), API users (add with a key shown
//! once; remove) and labels (add, remove): each a list per account and
//! the admin service's operations.

use crate::web::{html_response, query_string, redirect, when, Ctx, Fields, PageResult};
use axum::extract::{RawForm, RawQuery};
use maud::{html, Markup};
use posthorn_admin::Admin;

/// A secret just made, shown once.
fn shown_once(ctx: &Ctx, label: &str, secret: &str) -> Markup {
    html! {
        div.notice role="status" #secret {
            p { (label) ": " code #new-secret { (secret) }
                " " button.copy type="button" data-copy="new-secret" { (ctx.t("copy")) } }
            p.help { (ctx.t("shown_once")) }
        }
    }
}

/// A `done=...&what=...` notice.
fn notice(ctx: &Ctx, q: &Fields) -> Markup {
    let word = match q.get("done") {
        "added" => ctx.t("added"),
        "removed" => ctx.t("removed"),
        _ => return html! {},
    };
    html! { p.notice role="status" { (word) ": " (q.get("what")) } }
}

fn done(path: &str, what: &str, name: &str) -> PageResult {
    Ok(redirect(&format!(
        "{path}?{}",
        query_string(&[("done", what), ("what", name)])
    )))
}

// --- API keys --------------------------------------------------------------

async fn keys_page(ctx: &Ctx, q: &Fields, new_key: Option<&str>) -> PageResult {
    let chosen = q.get("account").trim();
    let admin = Admin::new(ctx.state.store.clone());
    // (account shown, keys): admin keys first for admin.
    let mut groups = Vec::new();
    if ctx.is_admin() && chosen.is_empty() {
        let keys = admin.api_keys(None).await.map_err(|e| ctx.admin_error(e))?;
        groups.push((ctx.t("admin").to_string(), keys));
    }
    for a in ctx.accounts(chosen).await? {
        let keys = admin
            .api_keys(Some(&a.name))
            .await
            .map_err(|e| ctx.admin_error(e))?;
        groups.push((a.name, keys));
    }
    // Admin makes admin keys (no account) or an account's.
    let add_select = if ctx.is_admin() {
        let all = ctx
            .state
            .store
            .accounts()
            .await
            .map_err(|e| ctx.internal(e))?;
        html! {
            label { (ctx.t("account"))
                select name="account" {
                    option value="" { (ctx.t("admin_key_option")) }
                    @for a in &all { option value=(a.name) selected[a.name == chosen] { (a.name) } }
                }
            }
        }
    } else {
        html! {}
    };
    let body = html! {
        h1 { (ctx.t("api_keys")) }
        (notice(ctx, q))
        @if let Some(k) = new_key { (shown_once(ctx, ctx.t("new_key"), k)) }
        table.list #keys {
            thead { tr {
                th { "ID" } th { (ctx.t("account")) } th { (ctx.t("description")) } th { (ctx.t("created")) } th {}
            } }
            tbody { @for (owner, keys) in &groups { @for k in keys {
                tr {
                    td { code { (k.id) } }
                    td { (owner) }
                    td { (k.description) }
                    td.nowrap { (when(k.created_at)) }
                    td {
                        form.inline method="post" action="/keys/revoke" {
                            (ctx.csrf_field())
                            input type="hidden" name="id" value=(k.id);
                            button type="submit" aria-label=(format!("{} {}", ctx.t("revoke"), k.id)) { (ctx.t("revoke")) }
                        }
                    }
                }
            } } }
        }
        h2 { (ctx.t("create_key")) }
        form.add method="post" action="/keys" {
            (ctx.csrf_field())
            (add_select)
            label { (ctx.t("description")) input name="description" maxlength="200"; }
            button type="submit" { (ctx.t("create_key")) }
        }
        @if ctx.is_admin() { p.help { (ctx.t("admin_key_help")) } }
    };
    Ok(html_response(ctx.page(ctx.t("api_keys"), "api_keys", body)))
}

pub async fn keys(ctx: Ctx, RawQuery(q): RawQuery) -> PageResult {
    ctx.signed_in()?;
    let q = Fields::query(q.as_deref());
    keys_page(&ctx, &q, None).await
}

pub async fn create_key(ctx: Ctx, RawForm(body): RawForm) -> PageResult {
    let form = Fields::parse(&body);
    ctx.check_csrf(&form)?;
    // An account session makes keys for its account only; admin names
    // one, or none for an admin key.
    let account = match ctx.own_account() {
        Some((_, name)) => Some(name.to_string()),
        None => Some(form.get("account").trim().to_string()).filter(|a| !a.is_empty()),
    };
    let new = Admin::new(ctx.state.store.clone())
        .create_api_key(account.as_deref(), form.get("description").trim())
        .await
        .map_err(|e| ctx.admin_error(e))?;
    keys_page(&ctx, &Fields::query(None), Some(&new.key)).await
}

pub async fn revoke_key(ctx: Ctx, RawForm(body): RawForm) -> PageResult {
    let form = Fields::parse(&body);
    ctx.check_csrf(&form)?;
    let admin = Admin::new(ctx.state.store.clone());
    let given = form.get("id").trim();
    let id = match ctx.own_account() {
        Some((_, name)) => admin.revoke_api_key(Some(name), given).await,
        None => admin.revoke_api_key(None, given).await,
    }
    .map_err(|e| ctx.admin_error(e))?;
    ctx.state.keys.forget(&id);
    done("/keys", "removed", &id)
}

// --- API users ----------------------------------------------------------------

pub async fn api_users(ctx: Ctx, RawQuery(q): RawQuery) -> PageResult {
    ctx.signed_in()?;
    let q = Fields::query(q.as_deref());
    users_page(&ctx, &q, None).await
}

async fn users_page(ctx: &Ctx, q: &Fields, new: Option<(&str, &str)>) -> PageResult {
    let chosen = q.get("account").trim();
    let mut rows = Vec::new();
    for a in ctx.accounts(chosen).await? {
        let users = ctx
            .state
            .store
            .api_users(a.id)
            .await
            .map_err(|e| ctx.internal(e))?;
        rows.extend(users.into_iter().map(|u| (a.name.clone(), u)));
    }
    let add_select = ctx.account_select(chosen, false).await?;
    let body = html! {
        h1 { (ctx.t("api_users")) }
        (notice(ctx, q))
        @if let Some((login, secret)) = new {
            (shown_once(ctx, &format!("{} {login}", ctx.t("new_user_key")), secret))
        }
        p.help { (ctx.t("api_users_help")) }
        table.list #api-users {
            thead { tr { th { (ctx.t("name")) } th { (ctx.t("account")) } th { (ctx.t("created")) } th {} } }
            tbody { @for (account, u) in &rows {
                tr {
                    td { (u.name) } td { (account) } td.nowrap { (when(u.created_at)) }
                    td { form.inline method="post" action="/api-users/remove" {
                        (ctx.csrf_field())
                        input type="hidden" name="name" value=(u.name);
                        button type="submit" aria-label=(format!("{} {}", ctx.t("remove"), u.name)) { (ctx.t("remove")) }
                    } }
                }
            } }
        }
        h2 { (ctx.t("add_api_user")) }
        form.add method="post" action="/api-users" {
            (ctx.csrf_field())
            (add_select)
            label { (ctx.t("name")) input name="name" required; }
            label { (ctx.t("key")) input name="key" type="password" autocomplete="new-password" placeholder=(ctx.t("password_help")); }
            button type="submit" { (ctx.t("add_api_user")) }
        }
    };
    Ok(html_response(ctx.page(
        ctx.t("api_users"),
        "api_users",
        body,
    )))
}

pub async fn add_api_user(ctx: Ctx, RawForm(body): RawForm) -> PageResult {
    let form = Fields::parse(&body);
    ctx.check_csrf(&form)?;
    let account = ctx.target_account(&form)?;
    let key = Some(form.get("key").to_string()).filter(|k| !k.is_empty());
    let c = Admin::new(ctx.state.store.clone())
        .add_api_user(&account, form.get("name").trim(), key)
        .await
        .map_err(|e| ctx.admin_error(e))?;
    match &c.generated_secret {
        Some(secret) => users_page(&ctx, &Fields::query(None), Some((&c.login, secret))).await,
        None => done("/api-users", "added", &c.login),
    }
}

pub async fn remove_api_user(ctx: Ctx, RawForm(body): RawForm) -> PageResult {
    let form = Fields::parse(&body);
    ctx.check_csrf(&form)?;
    let account = ctx.own_account().map(|(_, n)| n.to_string());
    let name = form.get("name").trim();
    Admin::new(ctx.state.store.clone())
        .remove_api_user(account.as_deref(), name)
        .await
        .map_err(|e| ctx.admin_error(e))?;
    done("/api-users", "removed", name)
}

// --- labels -------------------------------------------------------------------

pub async fn labels(ctx: Ctx, RawQuery(q): RawQuery) -> PageResult {
    ctx.signed_in()?;
    let q = Fields::query(q.as_deref());
    let chosen = q.get("account").trim();
    let mut rows = Vec::new();
    for a in ctx.accounts(chosen).await? {
        let labels = ctx
            .state
            .store
            .labels(a.id)
            .await
            .map_err(|e| ctx.internal(e))?;
        rows.extend(labels.into_iter().map(|l| (a.name.clone(), l)));
    }
    let add_select = ctx.account_select(chosen, false).await?;
    let body = html! {
        h1 { (ctx.t("labels")) }
        (notice(&ctx, &q))
        p.help { (ctx.t("labels_help")) }
        table.list #labels {
            thead { tr { th { (ctx.t("label")) } th { (ctx.t("account")) } th { (ctx.t("created")) } th {} } }
            tbody { @for (account, l) in &rows {
                tr {
                    td { a href=(format!("/messages?{}", query_string(&[("label", &l.name), ("account", if ctx.is_admin() { account } else { "" })]))) { (l.name) } }
                    td { (account) } td.nowrap { (when(l.created_at)) }
                    td { form.inline method="post" action="/labels/remove" {
                        (ctx.csrf_field())
                        input type="hidden" name="account" value=(account);
                        input type="hidden" name="label" value=(l.name);
                        button type="submit" aria-label=(format!("{} {}", ctx.t("remove"), l.name)) { (ctx.t("remove")) }
                    } }
                }
            } }
        }
        h2 { (ctx.t("add_label")) }
        form.add method="post" action="/labels" {
            (ctx.csrf_field())
            (add_select)
            label { (ctx.t("label")) input name="label" required; }
            button type="submit" { (ctx.t("add_label")) }
        }
    };
    Ok(html_response(ctx.page(ctx.t("labels"), "labels", body)))
}

pub async fn add_label(ctx: Ctx, RawForm(body): RawForm) -> PageResult {
    let form = Fields::parse(&body);
    ctx.check_csrf(&form)?;
    let account = ctx.target_account(&form)?;
    let label = form.get("label").trim();
    Admin::new(ctx.state.store.clone())
        .add_label(&account, label)
        .await
        .map_err(|e| ctx.admin_error(e))?;
    done("/labels", "added", label)
}

pub async fn remove_label(ctx: Ctx, RawForm(body): RawForm) -> PageResult {
    let form = Fields::parse(&body);
    ctx.check_csrf(&form)?;
    let account = ctx.target_account(&form)?;
    let label = form.get("label").trim();
    Admin::new(ctx.state.store.clone())
        .remove_label(&account, label)
        .await
        .map_err(|e| ctx.admin_error(e))?;
    done("/labels", "removed", label)
}
