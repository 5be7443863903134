//! Overview: today's counts, a 14-day chart (SVG drawn here, no script),
//! and for admin the queue by status and the delivery destinations.

use crate::web::{html_response, when, Ctx, PageResult};
use maud::{html, Markup, PreEscaped};
use posthorn_admin::destinations::DestinationRow;
use posthorn_store::DayStats;
use posthorn_types::MessageId;
use std::collections::BTreeMap;

const DAYS: i64 = 14;

/// One day's totals over the accounts shown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Day {
    pub day: String,
    pub accepted: u64,
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
}

/// The last `days` days ending `today` (Unix seconds of its midnight),
/// every day present (zero when nothing happened), `rows` summed by day.
pub fn fill_days(today: i64, days: i64, rows: &[DayStats]) -> Vec<Day> {
    let mut by_day: BTreeMap<String, Day> = (0..days)
        .map(|i| {
            let day =
                posthorn_types::time::rfc3339(today - (days - 1 - i) * 86_400)[..10].to_string();
            (
                day.clone(),
                Day {
                    day,
                    ..Day::default()
                },
            )
        })
        .collect();
    for r in rows {
        if let Some(d) = by_day.get_mut(&r.day) {
            d.accepted += r.requests;
            d.delivered += r.delivered;
            d.deferred += r.deferred;
            d.bounced += r.bounced + r.expired;
        }
    }
    by_day.into_values().collect()
}

/// A bar chart of accepted (outline) and delivered (filled) per day, with
/// bounced stacked in red: plain SVG, drawn on the server.
pub fn chart(days: &[Day], caption: &str) -> Markup {
    let (w, h, pad) = (700.0_f64, 180.0_f64, 24.0_f64);
    let max = days.iter().map(|d| d.accepted).max().unwrap_or(0).max(1) as f64;
    let slot = (w - 2.0 * pad) / days.len().max(1) as f64;
    let bar = slot * 0.7;
    let y = |n: u64| h - pad - (n as f64 / max) * (h - 2.0 * pad);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" class="chart" role="img" aria-label="{}">"#,
        maud::html! { (caption) }.into_string()
    );
    svg.push_str(&format!(
        r#"<line x1="{pad}" y1="{b}" x2="{x2}" y2="{b}" class="axis"/>"#,
        b = h - pad,
        x2 = w - pad
    ));
    svg.push_str(&format!(
        r#"<text x="{pad}" y="{t}" class="lbl">{}</text>"#,
        max as u64,
        t = pad - 8.0
    ));
    for (i, d) in days.iter().enumerate() {
        let x = pad + i as f64 * slot + (slot - bar) / 2.0;
        let top = y(d.accepted);
        svg.push_str(&format!(
            r#"<rect x="{x:.1}" y="{top:.1}" width="{bar:.1}" height="{:.1}" class="acc"><title>{} accepted {}</title></rect>"#,
            h - pad - top,
            d.day,
            d.accepted
        ));
        let dtop = y(d.delivered);
        svg.push_str(&format!(
            r#"<rect x="{x:.1}" y="{dtop:.1}" width="{bar:.1}" height="{:.1}" class="del"><title>{} delivered {}</title></rect>"#,
            h - pad - dtop,
            d.day,
            d.delivered
        ));
        let btop = y(d.bounced);
        svg.push_str(&format!(
            r#"<rect x="{x:.1}" y="{:.1}" width="{bar:.1}" height="{:.1}" class="bnc"><title>{} bounced {}</title></rect>"#,
            btop - (h - pad - dtop),
            h - pad - btop,
            d.day,
            d.bounced
        ));
        if i % 2 == 1 || days.len() <= 7 {
            svg.push_str(&format!(
                r#"<text x="{:.1}" y="{:.1}" class="lbl" text-anchor="middle">{}</text>"#,
                x + bar / 2.0,
                h - 6.0,
                &d.day[5..]
            ));
        }
    }
    svg.push_str("</svg>");
    // Every interpolated value above is a number or a YYYY-MM-DD day;
    // the caption is escaped.
    PreEscaped(svg)
}

fn destinations_table(ctx: &Ctx, rows: &[DestinationRow]) -> Markup {
    html! {
        table.list #destinations {
            thead { tr {
                th { (ctx.t("destination")) } th.num { (ctx.t("queued")) } th.num { (ctx.t("in_flight")) }
                th.num { (ctx.t("connections")) } th { (ctx.t("suspended_until")) } th { (ctx.t("last_error")) }
            } }
            tbody { @for d in rows {
                tr {
                    td { (d.destination) br; small { (d.domains.join(", ")) } }
                    td.num { (d.queued) } td.num { (d.in_flight) } td.num { (d.open_connections) }
                    td.nowrap { (d.suspended_until.map(when).unwrap_or_default()) }
                    td.reply { (d.last_error.as_deref().unwrap_or("")) }
                }
            } }
        }
    }
}

pub async fn page(ctx: Ctx) -> PageResult {
    ctx.signed_in()?;
    let store = &ctx.state.store;
    let now = store.now();
    let today = now - now.rem_euclid(86_400);
    let from = MessageId::first_at(((today - (DAYS - 1) * 86_400).max(0) as u64) * 1000);
    let before = MessageId::first_at(((today + 86_400) as u64) * 1000);
    let mut rows = Vec::new();
    for a in ctx.accounts("").await? {
        rows.extend(
            store
                .daily_stats(a.id, from, before, None)
                .await
                .map_err(|e| ctx.internal(e))?,
        );
    }
    let days = fill_days(today, DAYS, &rows);
    let last = days.last().cloned().unwrap_or_default();
    let (queue, destinations) = if ctx.is_admin() {
        let queue = store.status_counts().await.map_err(|e| ctx.internal(e))?;
        let timeout = ctx.state.config.node_timeout.as_secs() as i64;
        let dest = posthorn_admin::Admin::new(store.clone())
            .destinations(timeout)
            .await
            .map_err(|e| ctx.admin_error(e))?;
        (Some(queue), Some(dest))
    } else {
        (None, None)
    };
    let body = html! {
        h1 { (ctx.t("overview")) }
        h2 { (ctx.t("today")) " (UTC " (last.day) ")" }
        div.cards #today {
            div.card { span.n { (last.accepted) } span { (ctx.t("accepted")) } }
            div.card.ok { span.n { (last.delivered) } span { (ctx.t("delivered")) } }
            div.card.warn { span.n { (last.deferred) } span { (ctx.t("deferred")) } }
            div.card.bad { span.n { (last.bounced) } span { (ctx.t("bounced")) } }
        }
        h2 { (ctx.t("last_14_days")) }
        figure {
            (chart(&days, ctx.t("last_14_days")))
            figcaption.legend {
                span.key.acc {} (ctx.t("accepted")) " "
                span.key.del {} (ctx.t("delivered")) " "
                span.key.bnc {} (ctx.t("bounced"))
            }
        }
        @if let Some(queue) = &queue {
            h2 { (ctx.t("queue")) }
            table.kv #queue { @for (status, n) in queue {
                tr { th { (status.as_str()) } td.num { (n) } }
            } }
        }
        @if let Some(dest) = &destinations {
            h2 { (ctx.t("destinations")) }
            @if dest.is_empty() { p.empty { (ctx.t("no_destinations")) } }
            @else { (destinations_table(&ctx, dest)) }
        }
    };
    Ok(html_response(ctx.page(ctx.t("overview"), "overview", body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(day: &str, requests: u64, delivered: u64, bounced: u64) -> DayStats {
        DayStats {
            day: day.into(),
            messages: requests,
            requests,
            delivered,
            deferred: 0,
            bounced,
            expired: 0,
            suppressed: 0,
        }
    }

    #[test]
    fn every_day_is_present_and_accounts_are_summed() {
        let today = posthorn_types::time::parse_date("2026-12-06").unwrap();
        let days = fill_days(
            today,
            DAYS,
            &[
                row("2026-12-06", 3, 2, 1),
                row("2026-12-06", 4, 4, 0),
                row("2026-11-30", 1, 1, 0),
                row("2026-11-01", 9, 9, 9),
            ],
        );
        assert_eq!(days.len(), 14);
        assert_eq!(days[0].day, "2026-11-23");
        assert_eq!(days[13].day, "2026-12-06");
        assert_eq!(
            (days[13].accepted, days[13].delivered, days[13].bounced),
            (7, 6, 1)
        );
        assert_eq!(days[7].accepted, 1);
        assert_eq!(days.iter().map(|d| d.accepted).sum::<u64>(), 8);
    }

    #[test]
    fn the_chart_is_svg_with_a_bar_per_day_and_an_escaped_caption() {
        let today = posthorn_types::time::parse_date("2026-12-06").unwrap();
        let days = fill_days(today, DAYS, &[row("2026-12-06", 5, 4, 1)]);
        let svg = chart(&days, "<b>&").into_string();
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("class=\"acc\"").count(), 14);
        assert!(svg.contains("aria-label=\"&lt;b&gt;&amp;\""));
        assert!(!svg.contains("<script"));
    }
}
