//! Domains: the list, add (with a new DKIM key), the records to publish
//! with copy buttons, and a live check of each.

use crate::web::{html_response, redirect, when, Ctx, Fields, PageResult};
use axum::extract::{Path, RawForm, RawQuery};
use maud::html;
use posthorn_admin::{check, dkim, DkimAlgorithm};

pub async fn list(ctx: Ctx, RawQuery(q): RawQuery) -> PageResult {
    ctx.signed_in()?;
    let q = Fields::query(q.as_deref());
    let chosen = q.get("account").trim();
    let mut rows = Vec::new();
    for a in ctx.accounts(chosen).await? {
        let domains = ctx
            .state
            .store
            .domains(a.id)
            .await
            .map_err(|e| ctx.internal(e))?;
        rows.extend(domains.into_iter().map(|d| (a.name.clone(), d)));
    }
    let add_select = ctx.account_select(chosen, false).await?;
    let filter_select = ctx.account_select(chosen, true).await?;
    let body = html! {
        h1 { (ctx.t("domains")) }
        @if ctx.is_admin() {
            form.search method="get" action="/domains" {
                (filter_select)
                button type="submit" { (ctx.t("filter")) }
            }
        }
        @if rows.is_empty() {
            p.empty { (ctx.t("no_domains")) }
        } @else {
            table.list #domains {
                thead { tr {
                    th { (ctx.t("domain")) }
                    @if ctx.is_admin() { th { (ctx.t("account")) } }
                    th { "DKIM" }
                    th { (ctx.t("created")) }
                } }
                tbody { @for (account, d) in &rows {
                    tr {
                        td { a href=(format!("/domains/{}", d.name)) { (d.name) } }
                        @if ctx.is_admin() { td { (account) } }
                        td { (d.dkim_selector) " · " (dkim::key_type(&d.dkim_public_key)) }
                        td.nowrap { (when(d.created_at)) }
                    }
                } }
            }
        }
        h2 { (ctx.t("add_domain")) }
        form.add method="post" action="/domains" {
            (ctx.csrf_field())
            (add_select)
            label { (ctx.t("domain")) input name="domain" required placeholder="example.com"; }
            label { "DKIM"
                select name="algorithm" {
                    option value="rsa" { "RSA-2048" }
                    option value="ed25519" { "Ed25519" }
                }
            }
            button type="submit" { (ctx.t("add_domain")) }
        }
    };
    Ok(html_response(ctx.page(ctx.t("domains"), "domains", body)))
}

pub async fn add(ctx: Ctx, RawForm(body): RawForm) -> PageResult {
    let form = Fields::parse(&body);
    ctx.check_csrf(&form)?;
    let account = ctx.target_account(&form)?;
    let algorithm = match form.get("algorithm") {
        "" => DkimAlgorithm::Rsa,
        a => a.parse().map_err(|e| ctx.admin_error(e))?,
    };
    let admin = posthorn_admin::Admin::new(ctx.state.store.clone());
    let d = admin
        .add_domain(&account, form.get("domain").trim(), algorithm)
        .await
        .map_err(|e| ctx.admin_error(e))?;
    Ok(redirect(&format!("/domains/{}", d.name)))
}

pub async fn show(ctx: Ctx, Path(name): Path<String>, RawQuery(q): RawQuery) -> PageResult {
    ctx.signed_in()?;
    let q = Fields::query(q.as_deref());
    let admin = posthorn_admin::Admin::new(ctx.state.store.clone());
    let account = ctx.own_account().map(|(_, n)| n.to_string());
    let d = admin
        .domain(account.as_deref(), &name)
        .await
        .map_err(|_| ctx.not_found())?;
    let hostname = &ctx.state.submitter.config().hostname;
    let records = dkim::records(&d.name, &d.dkim_selector, &d.dkim_public_key, hostname);
    let checked = if q.get("check") == "1" {
        Some(check::check(&ctx.state.config.nameservers, &records, hostname).await)
    } else {
        None
    };
    let body = html! {
        h1 { (ctx.t("domain")) " " code { (d.name) } }
        h2 { (ctx.t("dns_records")) }
        table.list #records {
            thead { tr {
                th { (ctx.t("purpose")) } th { (ctx.t("name")) } th { "TXT " (ctx.t("value")) }
                @if checked.is_some() { th { (ctx.t("check")) } }
            } }
            tbody { @for (i, r) in records.iter().enumerate() {
                tr data-purpose=(r.purpose.as_str()) {
                    td { (r.purpose.as_str().to_uppercase()) }
                    td {
                        code #(format!("name-{i}")) { (r.name) }
                        " " button.copy type="button" data-copy=(format!("name-{i}")) { (ctx.t("copy")) }
                    }
                    td.value {
                        code #(format!("value-{i}")) { (r.value) }
                        " " button.copy type="button" data-copy=(format!("value-{i}")) { (ctx.t("copy")) }
                    }
                    @if let Some(v) = checked.as_ref().and_then(|c| c.get(i)) {
                        td {
                            span class=(if v.status == check::Status::Found { "st ok" } else { "st warn" }) { (v.status.as_str()) }
                            br; small { (v.detail) }
                        }
                    }
                }
            } }
        }
        p { a.button href=(format!("/domains/{}?check=1", d.name)) { (ctx.t("check_dns")) } }
        h3 { "Zone" }
        pre #zone { @for r in &records { (dkim::zone_line(r)) "\n" } }
    };
    Ok(html_response(ctx.page(&d.name, "domains", body)))
}
