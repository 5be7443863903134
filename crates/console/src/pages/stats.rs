//! Statistics (per day and label: a chart, a table, CSV) and, for admin,
//! accounts (create; each account's limits and policy settings).

use super::overview::{chart, fill_days};
use crate::web::{html_response, query_string, redirect, when, Ctx, Fields, PageResult};
use axum::extract::{Path, RawForm, RawQuery};
use axum::http::header;
use axum::response::IntoResponse;
use maud::html;
use posthorn_admin::Admin;
use posthorn_store::DayStats;
use posthorn_submit::{apply_settings, SETTING_KEYS};
use posthorn_types::MessageId;
use std::collections::BTreeMap;

/// The windows offered, in days.
const WINDOWS: [i64; 3] = [7, 14, 30];

/// The rows of the query's window, summed over its accounts, one per day
/// (every day present); with the window's length and the day of its end.
async fn rows(ctx: &Ctx, q: &Fields) -> Result<(i64, Vec<DayStats>), crate::web::Fail> {
    let days = q
        .get("days")
        .parse()
        .ok()
        .filter(|d| WINDOWS.contains(d))
        .unwrap_or(14);
    let label = q.get("label").trim();
    let store = &ctx.state.store;
    let now = store.now();
    let today = now - now.rem_euclid(86_400);
    let first = today - (days - 1) * 86_400;
    let from = MessageId::first_at((first.max(0) as u64) * 1000);
    let before = MessageId::first_at(((today + 86_400) as u64) * 1000);
    let mut by_day: BTreeMap<String, DayStats> = (0..days)
        .map(|i| {
            let day = posthorn_types::time::rfc3339(first + i * 86_400)[..10].to_string();
            (
                day.clone(),
                DayStats {
                    day,
                    ..DayStats::default()
                },
            )
        })
        .collect();
    for a in ctx.accounts(q.get("account").trim()).await? {
        let stats = store
            .daily_stats(a.id, from, before, (!label.is_empty()).then_some(label))
            .await
            .map_err(|e| ctx.internal(e))?;
        for r in stats {
            if let Some(d) = by_day.get_mut(&r.day) {
                d.messages += r.messages;
                d.requests += r.requests;
                d.delivered += r.delivered;
                d.deferred += r.deferred;
                d.bounced += r.bounced;
                d.expired += r.expired;
                d.suppressed += r.suppressed;
            }
        }
    }
    Ok((days, by_day.into_values().collect()))
}

pub async fn page(ctx: Ctx, RawQuery(q): RawQuery) -> PageResult {
    ctx.signed_in()?;
    let q = Fields::query(q.as_deref());
    let (days, rows) = rows(&ctx, &q).await?;
    let today = rows
        .last()
        .and_then(|r| posthorn_types::time::parse_date(&r.day))
        .unwrap_or(0);
    let drawn = fill_days(today, days, &rows);
    let account_select = ctx.account_select(q.get("account").trim(), true).await?;
    let csv = format!(
        "/statistics.csv?{}",
        query_string(&[
            ("account", q.get("account").trim()),
            ("label", q.get("label").trim()),
            ("days", &days.to_string()),
        ])
    );
    let body = html! {
        h1 { (ctx.t("statistics")) }
        form.search method="get" action="/statistics" {
            (account_select)
            label { (ctx.t("label")) input name="label" value=(q.get("label")) size="8"; }
            label { (ctx.t("days"))
                select name="days" { @for w in WINDOWS {
                    option value=(w) selected[w == days] { (w) }
                } }
            }
            button type="submit" { (ctx.t("search")) }
        }
        figure {
            (chart(&drawn, ctx.t("statistics")))
            figcaption.legend {
                span.key.acc {} (ctx.t("accepted")) " "
                span.key.del {} (ctx.t("delivered")) " "
                span.key.bnc {} (ctx.t("bounced"))
            }
        }
        p { a.button href=(csv) download="posthorn-statistics.csv" { (ctx.t("download_csv")) } }
        table.list #stats {
            thead { tr {
                th { (ctx.t("date")) } th.num { (ctx.t("messages")) } th.num { (ctx.t("recipients")) }
                th.num { (ctx.t("delivered")) } th.num { (ctx.t("deferred")) } th.num { (ctx.t("bounced")) }
                th.num { (ctx.t("expired")) } th.num { (ctx.t("suppressed")) }
            } }
            tbody { @for r in rows.iter().rev() {
                tr {
                    td { (r.day) } td.num { (r.messages) } td.num { (r.requests) }
                    td.num { (r.delivered) } td.num { (r.deferred) } td.num { (r.bounced) }
                    td.num { (r.expired) } td.num { (r.suppressed) }
                }
            } }
        }
    };
    Ok(html_response(ctx.page(
        ctx.t("statistics"),
        "statistics",
        body,
    )))
}

/// The same rows as CSV (oldest first).
pub fn to_csv(rows: &[DayStats]) -> String {
    let mut out =
        String::from("day,messages,recipients,delivered,deferred,bounced,expired,suppressed\r\n");
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{}\r\n",
            r.day,
            r.messages,
            r.requests,
            r.delivered,
            r.deferred,
            r.bounced,
            r.expired,
            r.suppressed
        ));
    }
    out
}

pub async fn csv(ctx: Ctx, RawQuery(q): RawQuery) -> PageResult {
    ctx.signed_in()?;
    let q = Fields::query(q.as_deref());
    let (_, rows) = rows(&ctx, &q).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"posthorn-statistics.csv\"",
            ),
        ],
        to_csv(&rows),
    )
        .into_response())
}

// --- accounts (admin only) -----------------------------------------------------

/// Admin only: an account session gets the 404 page.
fn admin_only(ctx: &Ctx) -> Result<(), crate::web::Fail> {
    ctx.signed_in()?;
    if ctx.is_admin() {
        Ok(())
    } else {
        Err(ctx.not_found())
    }
}

pub async fn accounts(ctx: Ctx, RawQuery(q): RawQuery) -> PageResult {
    admin_only(&ctx)?;
    let q = Fields::query(q.as_deref());
    let all = ctx
        .state
        .store
        .accounts()
        .await
        .map_err(|e| ctx.internal(e))?;
    let body = html! {
        h1 { (ctx.t("accounts")) }
        @if q.get("done") == "added" { p.notice role="status" { (ctx.t("added")) ": " (q.get("what")) } }
        table.list #accounts {
            thead { tr { th { (ctx.t("name")) } th { (ctx.t("created")) } } }
            tbody { @for a in &all {
                tr {
                    td { a href=(format!("/accounts/{}", a.name)) { (a.name) } }
                    td.nowrap { (when(a.created_at)) }
                }
            } }
        }
        h2 { (ctx.t("add_account")) }
        form.add method="post" action="/accounts" {
            (ctx.csrf_field())
            label { (ctx.t("name")) input name="name" required; }
            button type="submit" { (ctx.t("add_account")) }
        }
    };
    Ok(html_response(ctx.page(ctx.t("accounts"), "accounts", body)))
}

pub async fn create_account(ctx: Ctx, RawForm(body): RawForm) -> PageResult {
    admin_only(&ctx)?;
    let form = Fields::parse(&body);
    ctx.check_csrf(&form)?;
    let a = Admin::new(ctx.state.store.clone())
        .create_account(form.get("name").trim())
        .await
        .map_err(|e| ctx.admin_error(e))?;
    Ok(redirect(&format!(
        "/accounts?{}",
        query_string(&[("done", "added"), ("what", &a.name)])
    )))
}

pub async fn account(ctx: Ctx, Path(name): Path<String>, RawQuery(q): RawQuery) -> PageResult {
    admin_only(&ctx)?;
    let q = Fields::query(q.as_deref());
    let admin = Admin::new(ctx.state.store.clone());
    let a = admin.account(&name).await.map_err(|_| ctx.not_found())?;
    let overrides = ctx
        .state
        .store
        .account_settings(a.id)
        .await
        .map_err(|e| ctx.internal(e))?;
    let defaults = ctx.state.submitter.config().limits;
    let limits = apply_settings(defaults, &overrides);
    let body = html! {
        h1 { (ctx.t("account")) " " code { (a.name) } }
        @if q.get("done") == "set" { p.notice role="status" { (ctx.t("setting_saved")) ": " (q.get("what")) } }
        p.help { (ctx.t("settings_help")) }
        table.list #settings {
            thead { tr {
                th { (ctx.t("setting")) } th.num { (ctx.t("in_force")) } th.num { (ctx.t("default")) } th { (ctx.t("change")) }
            } }
            tbody { @for k in SETTING_KEYS {
                @let own = overrides.iter().find(|(key, _)| key == k.key);
                tr {
                    td { code { (k.key) } br; small { (k.meaning) } }
                    td.num { (k.value(&limits)) @if own.is_some() { " *" } }
                    td.num { (k.value(&defaults)) }
                    td {
                        form.inline method="post" action=(format!("/accounts/{}/settings", a.name)) {
                            (ctx.csrf_field())
                            input type="hidden" name="key" value=(k.key);
                            input name="value" size="10" value=(own.map(|(_, v)| v.as_str()).unwrap_or("")) aria-label=(k.key);
                            button type="submit" { (ctx.t("save")) }
                        }
                    }
                }
            } }
        }
    };
    Ok(html_response(ctx.page(&a.name, "accounts", body)))
}

/// Set one setting, or with an empty value take it back to the default.
pub async fn set_setting(ctx: Ctx, Path(name): Path<String>, RawForm(body): RawForm) -> PageResult {
    admin_only(&ctx)?;
    let form = Fields::parse(&body);
    ctx.check_csrf(&form)?;
    let value = form.get("value").trim();
    let admin = Admin::new(ctx.state.store.clone());
    let k = admin
        .set_setting(&name, form.get("key"), (!value.is_empty()).then_some(value))
        .await
        .map_err(|e| ctx.admin_error(e))?;
    let a = admin.account(&name).await.map_err(|e| ctx.admin_error(e))?;
    // This node applies it from the next message on (others within their
    // cache's few seconds), as after the API's change.
    ctx.state.submitter.forget_limits(a.id);
    Ok(redirect(&format!(
        "/accounts/{}?{}",
        a.name,
        query_string(&[("done", "set"), ("what", k.key)])
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_has_a_header_and_a_row_per_day() {
        let rows = vec![
            DayStats {
                day: "2026-12-05".into(),
                messages: 2,
                requests: 3,
                delivered: 3,
                ..DayStats::default()
            },
            DayStats {
                day: "2026-12-06".into(),
                bounced: 1,
                ..DayStats::default()
            },
        ];
        let csv = to_csv(&rows);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(
            lines[0],
            "day,messages,recipients,delivered,deferred,bounced,expired,suppressed"
        );
        assert_eq!(lines[1], "2026-12-05,2,3,3,0,0,0,0");
        assert_eq!(lines[2], "2026-12-06,0,0,0,0,1,0,0");
        assert_eq!(lines.len(), 4);
    }
}
