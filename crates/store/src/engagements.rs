//! Opens and clicks of tracked messages (issue 22, docs/tracking.md), on
//! both backends: a row per fetch in `engagements` (schema v12 / PG v9),
//! at most [`MAX_PER_RECIPIENT`] per recipient of a message, and in the
//! same commit an event of its kind (with the URL of a click) and a
//! delivery per webhook of the account that subscribed to it.

use crate::model::{DayEngagements, EngagementSummary, NewEngagement};
use crate::Result;
use posthorn_types::MessageId;
use sqlx::{PgPool, Row, SqlitePool};

/// The event kind and `engagements.kind` of an open.
pub const OPENED: &str = "opened";
/// The event kind and `engagements.kind` of a click.
pub const CLICKED: &str = "clicked";
/// Rows kept per recipient of a message: past it a fetch is answered but
/// not recorded (image proxies and scanners fetch again and again).
pub const MAX_PER_RECIPIENT: i64 = 100;

pub(crate) async fn record_sqlite(pool: &SqlitePool, e: &NewEngagement, now: i64) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let added = sqlx::query(
        "INSERT INTO engagements (account_id, message_id, recipient, kind, created_at, user_agent, ip, url)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8
         WHERE (SELECT COUNT(*) FROM engagements WHERE message_id = ?2 AND recipient = ?3) < ?9",
    )
    .bind(e.account_id)
    .bind(&e.message_id)
    .bind(&e.recipient)
    .bind(&e.kind)
    .bind(now)
    .bind(&e.user_agent)
    .bind(&e.ip)
    .bind(&e.url)
    .bind(MAX_PER_RECIPIENT)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    if added {
        let event: Option<i64> = sqlx::query_scalar(
            "INSERT INTO events (account_id, kind, message_id, recipient, attempts, reply, remote_host, label, created_at, url)
             SELECT ?1, ?2, ?3, ?4, 0, NULL, NULL, (SELECT label FROM messages WHERE id = ?3), ?5, ?6
             WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.account_id = ?1
                           AND instr(w.events, ',' || ?2 || ',') > 0)
             RETURNING id",
        )
        .bind(e.account_id)
        .bind(&e.kind)
        .bind(&e.message_id)
        .bind(&e.recipient)
        .bind(now)
        .bind(&e.url)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(event) = event {
            sqlx::query(
                "INSERT INTO webhook_deliveries (webhook_id, event_id, next_try)
                 SELECT id, ?, ? FROM webhooks
                 WHERE account_id = ? AND instr(events, ',' || ? || ',') > 0",
            )
            .bind(event)
            .bind(now)
            .bind(e.account_id)
            .bind(&e.kind)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(added)
}

pub(crate) async fn record_postgres(pool: &PgPool, e: &NewEngagement, now: i64) -> Result<bool> {
    let (added, _woken): (bool, i64) = sqlx::query_as(
        "WITH ins AS (
             INSERT INTO engagements (account_id, message_id, recipient, kind, created_at, user_agent, ip, url)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8
             WHERE (SELECT COUNT(*) FROM engagements
                    WHERE message_id = $2 AND lower(recipient) = lower($3)) < $9
             RETURNING account_id),
         ev AS (
             INSERT INTO events (account_id, kind, message_id, recipient, attempts, reply, remote_host, label, created_at, url)
             SELECT i.account_id, $4, $2, $3, 0, NULL, NULL, (SELECT label FROM messages WHERE id = $2), $5, $8
             FROM ins i
             WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.account_id = i.account_id AND $4 = ANY(w.events))
             RETURNING id, account_id),
         added AS (
             INSERT INTO webhook_deliveries (webhook_id, event_id, next_try)
             SELECT w.id, ev.id, $5 FROM ev JOIN webhooks w ON w.account_id = ev.account_id AND $4 = ANY(w.events)
             RETURNING event_id)
         SELECT EXISTS (SELECT 1 FROM ins),
             (SELECT count(*) FROM (SELECT pg_notify($10, 'w') FROM added LIMIT 1) n)",
    )
    .bind(e.account_id)
    .bind(&e.message_id)
    .bind(&e.recipient)
    .bind(&e.kind)
    .bind(now)
    .bind(&e.user_agent)
    .bind(&e.ip)
    .bind(&e.url)
    .bind(MAX_PER_RECIPIENT)
    .bind(crate::postgres_events::WAKE_CHANNEL)
    .fetch_one(pool)
    .await?;
    Ok(added)
}

pub(crate) async fn summary_sqlite(
    pool: &SqlitePool,
    message_id: &str,
) -> Result<Vec<EngagementSummary>> {
    let rows = sqlx::query(
        "SELECT recipient, kind, COUNT(*) AS n, MIN(created_at) AS first, MAX(created_at) AS last
         FROM engagements WHERE message_id = ? GROUP BY lower(recipient), kind ORDER BY recipient, kind",
    )
    .bind(message_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| EngagementSummary {
            recipient: r.get("recipient"),
            kind: r.get("kind"),
            count: r.get::<i64, _>("n") as u64,
            first_at: r.get("first"),
            last_at: r.get("last"),
        })
        .collect())
}

pub(crate) async fn summary_postgres(
    pool: &PgPool,
    message_id: &str,
) -> Result<Vec<EngagementSummary>> {
    let rows = sqlx::query(
        "SELECT MIN(recipient) AS recipient, kind, COUNT(*) AS n, MIN(created_at) AS first, MAX(created_at) AS last
         FROM engagements WHERE message_id = $1 GROUP BY lower(recipient), kind ORDER BY 1, 2",
    )
    .bind(message_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| EngagementSummary {
            recipient: r.get("recipient"),
            kind: r.get("kind"),
            count: r.get::<i64, _>("n") as u64,
            first_at: r.get("first"),
            last_at: r.get("last"),
        })
        .collect())
}

/// Recipients of the day's messages that opened / clicked at least once.
pub(crate) async fn daily_sqlite(
    pool: &SqlitePool,
    account_id: i64,
    from: MessageId,
    before: MessageId,
    label: Option<&str>,
) -> Result<Vec<DayEngagements>> {
    let rows = sqlx::query(
        "SELECT date(m.received_at, 'unixepoch') AS day,
                COUNT(DISTINCT CASE WHEN g.kind = 'opened' THEN g.message_id || ' ' || lower(g.recipient) END) AS opened,
                COUNT(DISTINCT CASE WHEN g.kind = 'clicked' THEN g.message_id || ' ' || lower(g.recipient) END) AS clicked
         FROM messages m JOIN engagements g ON g.message_id = m.id
         WHERE m.account_id = ? AND m.id >= ? AND m.id < ? AND m.is_dsn = 0
           AND (? IS NULL OR m.label = ?)
         GROUP BY day ORDER BY day",
    )
    .bind(account_id)
    .bind(from.to_string())
    .bind(before.to_string())
    .bind(label)
    .bind(label)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| DayEngagements {
            day: r.get("day"),
            opened: r.get::<i64, _>("opened") as u64,
            clicked: r.get::<i64, _>("clicked") as u64,
        })
        .collect())
}

pub(crate) async fn daily_postgres(
    pool: &PgPool,
    account_id: i64,
    from: MessageId,
    before: MessageId,
    label: Option<&str>,
) -> Result<Vec<DayEngagements>> {
    let rows = sqlx::query(
        "SELECT to_char(to_timestamp(m.received_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day,
                COUNT(DISTINCT (g.message_id, lower(g.recipient))) FILTER (WHERE g.kind = 'opened') AS opened,
                COUNT(DISTINCT (g.message_id, lower(g.recipient))) FILTER (WHERE g.kind = 'clicked') AS clicked
         FROM messages m JOIN engagements g ON g.message_id = m.id
         WHERE m.account_id = $1 AND m.id >= $2 AND m.id < $3 AND NOT m.is_dsn
           AND ($4::text IS NULL OR m.label = $4)
         GROUP BY day ORDER BY day",
    )
    .bind(account_id)
    .bind(from.to_string())
    .bind(before.to_string())
    .bind(label)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| DayEngagements {
            day: r.get("day"),
            opened: r.get::<i64, _>("opened") as u64,
            clicked: r.get::<i64, _>("clicked") as u64,
        })
        .collect())
}
