//! `GET /v1/stats`: per-day counts of an account's recipients.

use crate::auth::AccountAuth;
use crate::error::{ApiError, ApiResult, ErrorBody, INVALID_QUERY};
use crate::extract::ApiQuery;
use crate::AppState;
use axum::extract::State;
use axum::Json;
use posthorn_types::time::parse_date;
use posthorn_types::MessageId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Longest window one request may ask for, in days.
pub const MAX_DAYS: i64 = 366;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// First UTC day, `YYYY-MM-DD` (default: 29 days before `to`).
    pub from: Option<String>,
    /// Last UTC day, inclusive (default: today).
    pub to: Option<String>,
    pub label: Option<String>,
}

/// One day's counts, by where its recipients stand now.
#[derive(Serialize, ToSchema)]
pub struct DayView {
    #[schema(example = "2026-12-02")]
    pub date: String,
    /// Messages accepted.
    pub messages: u64,
    /// Recipients of those messages: each is one requested email.
    pub requests: u64,
    pub delivered: u64,
    /// Not final yet: queued, being sent, or waiting for another attempt.
    pub deferred: u64,
    pub bounced: u64,
    pub expired: u64,
    pub suppressed: u64,
    /// Recipients that opened a tracked message at least once
    /// (docs/tracking.md).
    pub opened: u64,
    /// Recipients that clicked a link of a tracked message at least once.
    pub clicked: u64,
}

#[derive(Serialize, ToSchema)]
pub struct StatsResponse {
    /// Days with at least one message, in order.
    pub days: Vec<DayView>,
}

/// Daily statistics.
#[utoipa::path(get, path = "/v1/stats", tag = "stats",
    params(StatsQuery),
    responses(
        (status = 200, description = "one row per day with messages", body = StatsResponse),
        (status = 400, description = "a malformed date or a window too long", body = ErrorBody),
        (status = 401, description = "no or a wrong API key", body = ErrorBody),
        (status = 403, description = "the admin key: this route acts as an account", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn stats(
    State(state): State<AppState>,
    AccountAuth(who): AccountAuth,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> ApiResult<Json<StatsResponse>> {
    let bad = |m: String| ApiError::new(INVALID_QUERY, m);
    let day = |name: &str, v: &Option<String>| -> ApiResult<Option<i64>> {
        v.as_deref()
            .map(|d| parse_date(d).ok_or_else(|| bad(format!("{name} {d:?} is not YYYY-MM-DD"))))
            .transpose()
    };
    let today = state.store.now().div_euclid(86_400) * 86_400;
    let to = day("to", &q.to)?.unwrap_or(today);
    let from = day("from", &q.from)?.unwrap_or(to - 29 * 86_400);
    if from > to {
        return Err(bad("from is after to".into()));
    }
    if (to - from) / 86_400 >= MAX_DAYS {
        return Err(bad(format!("at most {MAX_DAYS} days at once")));
    }
    let ms = |s: i64| (s as u64).saturating_mul(1000);
    let rows = state
        .store
        .daily_stats(
            who.account_id,
            MessageId::first_at(ms(from)),
            MessageId::first_at(ms(to + 86_400)),
            q.label.as_deref(),
        )
        .await?;
    let engaged = state
        .store
        .daily_engagements(
            who.account_id,
            MessageId::first_at(ms(from)),
            MessageId::first_at(ms(to + 86_400)),
            q.label.as_deref(),
        )
        .await?;
    let of = |day: &str| engaged.iter().find(|e| e.day == day);
    Ok(Json(StatsResponse {
        days: rows
            .into_iter()
            .map(|r| DayView {
                opened: of(&r.day).map_or(0, |e| e.opened),
                clicked: of(&r.day).map_or(0, |e| e.clicked),
                date: r.day,
                messages: r.messages,
                requests: r.requests,
                delivered: r.delivered,
                deferred: r.deferred,
                bounced: r.bounced,
                expired: r.expired,
                suppressed: r.suppressed,
            })
            .collect(),
    }))
}
