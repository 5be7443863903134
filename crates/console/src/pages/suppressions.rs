//! Suppressions: search, add, remove.

use crate::web::{html_response, query_string, redirect, when, Ctx, Fields, PageResult};
use axum::extract::{RawForm, RawQuery};
use maud::html;
use posthorn_admin::Admin;

pub async fn list(ctx: Ctx, RawQuery(q): RawQuery) -> PageResult {
    ctx.signed_in()?;
    let q = Fields::query(q.as_deref());
    let chosen = q.get("account").trim();
    let search = q.get("q").trim().to_lowercase();
    let mut rows = Vec::new();
    for a in ctx.accounts(chosen).await? {
        let list = ctx
            .state
            .store
            .suppressions(a.id)
            .await
            .map_err(|e| ctx.internal(e))?;
        rows.extend(
            list.into_iter()
                .filter(|s| search.is_empty() || s.address.to_lowercase().contains(&search))
                .map(|s| (a.name.clone(), s)),
        );
    }
    let notice = match q.get("done") {
        "added" => Some(ctx.t("added")),
        "removed" => Some(ctx.t("removed")),
        _ => None,
    };
    let add_select = ctx.account_select(chosen, false).await?;
    let filter_select = ctx.account_select(chosen, true).await?;
    let body = html! {
        h1 { (ctx.t("suppressions")) }
        @if let Some(n) = notice { p.notice role="status" { (n) ": " (q.get("address")) } }
        form.search method="get" action="/suppressions" {
            (filter_select)
            label { (ctx.t("address")) input name="q" type="search" value=(q.get("q")); }
            button type="submit" { (ctx.t("search")) }
        }
        @if rows.is_empty() {
            p.empty { (ctx.t("no_suppressions")) }
        } @else {
            table.list #suppressions {
                thead { tr {
                    th { (ctx.t("address")) }
                    @if ctx.is_admin() { th { (ctx.t("account")) } }
                    th { (ctx.t("reason")) }
                    th { (ctx.t("created")) }
                    th {}
                } }
                tbody { @for (account, s) in &rows {
                    tr {
                        td { (s.address) }
                        @if ctx.is_admin() { td { (account) } }
                        td { (s.reason)
                            @if let Some(id) = &s.message_id { " " a href=(format!("/messages/{id}")) { (id) } }
                        }
                        td.nowrap { (when(s.created_at)) }
                        td {
                            form.inline method="post" action="/suppressions/remove" {
                                (ctx.csrf_field())
                                input type="hidden" name="account" value=(account);
                                input type="hidden" name="address" value=(s.address);
                                button type="submit" aria-label=(format!("{} {}", ctx.t("remove"), s.address)) { (ctx.t("remove")) }
                            }
                        }
                    }
                } }
            }
        }
        h2 { (ctx.t("add_suppression")) }
        form.add method="post" action="/suppressions" {
            (ctx.csrf_field())
            (add_select)
            label { (ctx.t("address")) input name="address" type="email" required; }
            label { (ctx.t("reason")) input name="reason"; }
            button type="submit" { (ctx.t("add_suppression")) }
        }
    };
    Ok(html_response(ctx.page(
        ctx.t("suppressions"),
        "suppressions",
        body,
    )))
}

pub async fn add(ctx: Ctx, RawForm(body): RawForm) -> PageResult {
    let form = Fields::parse(&body);
    ctx.check_csrf(&form)?;
    let account = ctx.target_account(&form)?;
    let address = form.get("address").trim();
    let reason = form.get("reason").trim();
    let (entry, _) = Admin::new(ctx.state.store.clone())
        .add_suppression(&account, address, (!reason.is_empty()).then_some(reason))
        .await
        .map_err(|e| ctx.admin_error(e))?;
    Ok(redirect(&format!(
        "/suppressions?{}",
        query_string(&[("done", "added"), ("address", &entry.address)])
    )))
}

pub async fn remove(ctx: Ctx, RawForm(body): RawForm) -> PageResult {
    let form = Fields::parse(&body);
    ctx.check_csrf(&form)?;
    let account = ctx.target_account(&form)?;
    let address = form.get("address").trim();
    Admin::new(ctx.state.store.clone())
        .remove_suppression(&account, address)
        .await
        .map_err(|e| ctx.admin_error(e))?;
    Ok(redirect(&format!(
        "/suppressions?{}",
        query_string(&[("done", "removed"), ("address", address)])
    )))
}
