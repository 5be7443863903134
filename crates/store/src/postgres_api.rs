//! The HTTP API's tables in the PostgreSQL store: API keys, statistics,
//! webhooks and the deliveries of their events (events themselves are
//! written with the status change, `postgres_events::record_events`).

use crate::*;
use posthorn_types::RecipientStatus;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::Row;

fn api_key_from_row(row: &PgRow) -> ApiKey {
    ApiKey {
        id: row.get("id"),
        account_id: row.get("account_id"),
        secret_hash: row.get("secret_hash"),
        description: row.get("description"),
        created_at: row.get("created_at"),
    }
}

pub(crate) async fn add_api_key(pool: &PgPool, key: &ApiKey) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_keys (id, account_id, secret_hash, description, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&key.id)
    .bind(key.account_id)
    .bind(&key.secret_hash)
    .bind(&key.description)
    .bind(key.created_at)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn api_key(pool: &PgPool, id: &str) -> Result<ApiKey> {
    sqlx::query("SELECT * FROM api_keys WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .map(|r| api_key_from_row(&r))
        .ok_or_else(|| StoreError::NotFound(format!("no API key {id}")))
}

pub(crate) async fn api_keys(pool: &PgPool, account_id: Option<i64>) -> Result<Vec<ApiKey>> {
    let rows = sqlx::query(
        "SELECT * FROM api_keys WHERE account_id IS NOT DISTINCT FROM $1 ORDER BY created_at, id COLLATE \"C\"",
    )
    .bind(account_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(api_key_from_row).collect())
}

pub(crate) async fn remove_api_key(pool: &PgPool, id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM api_keys WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn daily_stats(
    pool: &PgPool,
    account_id: i64,
    from: MessageId,
    before: MessageId,
    label: Option<&str>,
) -> Result<Vec<DayStats>> {
    let rows = sqlx::query(
        "SELECT to_char(to_timestamp(m.received_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day,
                COUNT(DISTINCT m.id) AS messages,
                COUNT(r.idx) AS requests,
                COUNT(*) FILTER (WHERE r.status = 'delivered') AS delivered,
                COUNT(*) FILTER (WHERE r.status IN ('deferred', 'queued', 'sending')) AS deferred,
                COUNT(*) FILTER (WHERE r.status = 'bounced') AS bounced,
                COUNT(*) FILTER (WHERE r.status = 'expired') AS expired,
                COUNT(*) FILTER (WHERE r.status = 'suppressed') AS suppressed
         FROM messages m JOIN recipients r ON r.message_id = m.id
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
    let n = |r: &PgRow, c: &str| r.get::<i64, _>(c) as u64;
    Ok(rows
        .iter()
        .map(|r| DayStats {
            day: r.get("day"),
            messages: n(r, "messages"),
            requests: n(r, "requests"),
            delivered: n(r, "delivered"),
            deferred: n(r, "deferred"),
            bounced: n(r, "bounced"),
            expired: n(r, "expired"),
            suppressed: n(r, "suppressed"),
        })
        .collect())
}

pub(crate) async fn status_counts(pool: &PgPool) -> Result<Vec<(RecipientStatus, u64)>> {
    let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM recipients GROUP BY status")
        .fetch_all(pool)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let status: String = r.get("status");
        out.push((
            status.parse().map_err(StoreError::Backend)?,
            r.get::<i64, _>("n") as u64,
        ));
    }
    Ok(out)
}

pub(crate) async fn add_webhook(pool: &PgPool, w: &Webhook) -> Result<()> {
    sqlx::query(
        "INSERT INTO webhooks (id, account_id, url, events, secret, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&w.id)
    .bind(w.account_id)
    .bind(&w.url)
    .bind(&w.events)
    .bind(&w.secret)
    .bind(w.created_at)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn webhooks(pool: &PgPool, account_id: i64) -> Result<Vec<Webhook>> {
    let rows = sqlx::query(
        "SELECT * FROM webhooks WHERE account_id = $1 ORDER BY created_at, id COLLATE \"C\"",
    )
    .bind(account_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| Webhook {
            id: r.get("id"),
            account_id: r.get("account_id"),
            url: r.get("url"),
            events: r.get("events"),
            secret: r.get("secret"),
            created_at: r.get("created_at"),
        })
        .collect())
}

pub(crate) async fn remove_webhook(pool: &PgPool, account_id: i64, id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM webhooks WHERE account_id = $1 AND id = $2")
        .bind(account_id)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// The latest deliveries of one webhook of the account, newest event
/// first.
pub(crate) async fn webhook_deliveries(
    pool: &PgPool,
    account_id: i64,
    webhook_id: &str,
    limit: u32,
) -> Result<Vec<WebhookDeliveryRecord>> {
    let rows = sqlx::query(
        "SELECT e.id, e.kind, e.message_id, e.recipient, e.created_at, d.attempts, d.last_status,
                d.last_error, d.done_at, d.next_try
         FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
              JOIN events e ON e.id = d.event_id
         WHERE d.webhook_id = $1 AND w.account_id = $2
         ORDER BY d.event_id DESC LIMIT $3",
    )
    .bind(webhook_id)
    .bind(account_id)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let done_at: Option<i64> = r.get("done_at");
            WebhookDeliveryRecord {
                event_id: r.get("id"),
                kind: r.get("kind"),
                message_id: r.get("message_id"),
                recipient: r.get("recipient"),
                created_at: r.get("created_at"),
                attempts: r.get::<i64, _>("attempts") as u32,
                last_status: r
                    .get::<Option<i32>, _>("last_status")
                    .and_then(|s| u16::try_from(s).ok()),
                last_error: r.get("last_error"),
                next_try: done_at.is_none().then(|| r.get("next_try")),
                done_at,
            }
        })
        .collect())
}

/// A test event and its one delivery, one statement (so one commit) that
/// also wakes every node's webhook sender.
pub(crate) async fn add_test_webhook_event(
    pool: &PgPool,
    account_id: i64,
    webhook_id: &str,
    event: &TestEvent,
    now: i64,
) -> Result<i64> {
    let id: Option<i64> = sqlx::query_scalar(
        "WITH ins AS (
             INSERT INTO events (account_id, kind, message_id, recipient, attempts, reply, remote_host, label, created_at)
             SELECT account_id, $1, $2, $3, 0, $4, NULL, NULL, $5 FROM webhooks WHERE id = $6 AND account_id = $7
             RETURNING id),
         added AS (
             INSERT INTO webhook_deliveries (webhook_id, event_id, next_try)
             SELECT $6, id, $5 FROM ins
             RETURNING event_id)
         SELECT a.event_id FROM added a CROSS JOIN LATERAL (SELECT pg_notify($8, 'w')) n",
    )
    .bind(TEST_EVENT_KIND)
    .bind(&event.message_id)
    .bind(&event.recipient)
    .bind(&event.reply)
    .bind(now)
    .bind(webhook_id)
    .bind(account_id)
    .bind(crate::postgres_events::WAKE_CHANNEL)
    .fetch_optional(pool)
    .await?;
    id.ok_or_else(|| StoreError::NotFound(format!("no webhook {webhook_id}")))
}

pub(crate) async fn next_webhook_due(pool: &PgPool) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT MIN(next_try) FROM webhook_deliveries WHERE done_at IS NULL")
            .fetch_one(pool)
            .await?,
    )
}

/// One statement: the due deliveries (skipping those another sender is
/// claiming this instant), pushed past the lease, with their webhook and
/// event.
pub(crate) async fn claim_webhook_deliveries(
    pool: &PgPool,
    now: i64,
    lease_until: i64,
    limit: u32,
) -> Result<Vec<DueWebhookDelivery>> {
    let rows = sqlx::query(
        "WITH due AS (
             SELECT webhook_id, event_id FROM webhook_deliveries
             WHERE done_at IS NULL AND next_try <= $1
             ORDER BY next_try LIMIT $2 FOR UPDATE SKIP LOCKED)
         UPDATE webhook_deliveries d SET next_try = $3
         FROM due JOIN webhooks w ON w.id = due.webhook_id JOIN events e ON e.id = due.event_id
         WHERE d.webhook_id = due.webhook_id AND d.event_id = due.event_id
         RETURNING d.webhook_id, d.attempts AS delivery_attempts, w.url, w.secret, e.id, e.account_id,
                   e.kind, e.message_id, e.recipient, e.attempts, e.reply, e.remote_host, e.label,
                   e.created_at, e.url AS event_url",
    )
    .bind(now)
    .bind(i64::from(limit))
    .bind(lease_until)
    .fetch_all(pool)
    .await?;
    let mut out: Vec<DueWebhookDelivery> = rows
        .iter()
        .map(|r| DueWebhookDelivery {
            webhook_id: r.get("webhook_id"),
            url: r.get("url"),
            secret: r.get("secret"),
            attempts: r.get::<i64, _>("delivery_attempts") as u32,
            event: Event {
                id: r.get("id"),
                account_id: r.get("account_id"),
                kind: r.get("kind"),
                message_id: r.get("message_id"),
                recipient: r.get("recipient"),
                attempts: r.get::<i64, _>("attempts") as u32,
                reply: r.get("reply"),
                remote_host: r.get("remote_host"),
                label: r.get("label"),
                created_at: r.get("created_at"),
                url: r.get("event_url"),
            },
        })
        .collect();
    out.sort_by_key(|d| d.event.id);
    Ok(out)
}

pub(crate) async fn record_webhook_results(
    pool: &PgPool,
    results: &[WebhookResult],
    now: i64,
) -> Result<()> {
    if results.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE webhook_deliveries d SET attempts = d.attempts + 1, last_error = u.error,
                next_try = COALESCE(u.retry_at, d.next_try),
                done_at = CASE WHEN u.retry_at IS NULL THEN $5 ELSE NULL END,
                last_status = u.status
         FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $6::int[])
              AS u(webhook_id, event_id, retry_at, error, status)
         WHERE d.webhook_id = u.webhook_id AND d.event_id = u.event_id AND d.done_at IS NULL",
    )
    .bind(
        results
            .iter()
            .map(|r| r.webhook_id.clone())
            .collect::<Vec<_>>(),
    )
    .bind(results.iter().map(|r| r.event_id).collect::<Vec<_>>())
    .bind(results.iter().map(|r| r.retry_at).collect::<Vec<_>>())
    .bind(results.iter().map(|r| r.error.clone()).collect::<Vec<_>>())
    .bind(now)
    .bind(
        results
            .iter()
            .map(|r| r.status.map(i32::from))
            .collect::<Vec<_>>(),
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// `(name, created_at)` rows of one of the admin listings, in name order.
pub(crate) async fn listed_names(
    pool: &PgPool,
    table: ListedTable,
    account_id: i64,
) -> Result<Vec<ListedName>> {
    let sql = match table {
        ListedTable::Senders => {
            "SELECT address AS name, created_at FROM senders WHERE account_id = $1 ORDER BY lower(address) COLLATE \"C\""
        }
        ListedTable::ApiUsers => {
            "SELECT name, created_at FROM api_users WHERE account_id = $1 ORDER BY name COLLATE \"C\""
        }
        ListedTable::Labels => {
            "SELECT label AS name, created_at FROM labels WHERE account_id = $1 ORDER BY label COLLATE \"C\""
        }
    };
    let rows = sqlx::query(sql).bind(account_id).fetch_all(pool).await?;
    Ok(rows
        .iter()
        .map(|r| ListedName {
            name: r.get("name"),
            created_at: r.get("created_at"),
        })
        .collect())
}

#[derive(Clone, Copy)]
pub(crate) enum ListedTable {
    Senders,
    ApiUsers,
    Labels,
}
