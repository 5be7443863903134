//! The parts of the embedded store the HTTP API reads and writes: API keys,
//! statistics, webhooks and the events they are sent.
//!
//! Events are written in the same commit as the status change they report
//! (see `record_events` and `fan_out` in `sqlite_writer`), and only
//! while some webhook of the account subscribed to their kind, so an
//! account without webhooks pays one `EXISTS` per commit.

use crate::*;
use posthorn_types::RecipientStatus;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::Row;

/// Event kinds a webhook may subscribe to, in the order documented.
pub const EVENT_KINDS: &[&str] = &[
    "delivered",
    "deferred",
    "bounced",
    "expired",
    "suppressed",
    crate::UNSUBSCRIBED,
    crate::OPENED,
    crate::CLICKED,
];

fn api_key_from_row(row: &SqliteRow) -> ApiKey {
    ApiKey {
        id: row.get("id"),
        account_id: row.get("account_id"),
        secret_hash: row.get("secret_hash"),
        description: row.get("description"),
        created_at: row.get("created_at"),
    }
}

pub(crate) async fn add_api_key(pool: &SqlitePool, key: &ApiKey) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_keys (id, account_id, secret_hash, description, created_at) VALUES (?, ?, ?, ?, ?)",
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

pub(crate) async fn api_key(pool: &SqlitePool, id: &str) -> Result<ApiKey> {
    sqlx::query("SELECT * FROM api_keys WHERE id = ?")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .map(|r| api_key_from_row(&r))
        .ok_or_else(|| StoreError::NotFound(format!("no API key {id}")))
}

pub(crate) async fn api_keys(pool: &SqlitePool, account_id: Option<i64>) -> Result<Vec<ApiKey>> {
    let rows = sqlx::query("SELECT * FROM api_keys WHERE account_id IS ? ORDER BY created_at, id")
        .bind(account_id)
        .fetch_all(pool)
        .await?;
    Ok(rows.iter().map(api_key_from_row).collect())
}

pub(crate) async fn remove_api_key(pool: &SqlitePool, id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM api_keys WHERE id = ?")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn daily_stats(
    pool: &SqlitePool,
    account_id: i64,
    from: MessageId,
    before: MessageId,
    label: Option<&str>,
) -> Result<Vec<DayStats>> {
    // The id range walks the (account_id, id) index: ids are time-ordered.
    let rows = sqlx::query(
        "SELECT date(m.received_at, 'unixepoch') AS day,
                COUNT(DISTINCT m.id) AS messages,
                COUNT(r.idx) AS requests,
                COALESCE(SUM(r.status = 'delivered'), 0) AS delivered,
                COALESCE(SUM(r.status IN ('deferred', 'queued', 'sending')), 0) AS deferred,
                COALESCE(SUM(r.status = 'bounced'), 0) AS bounced,
                COALESCE(SUM(r.status = 'expired'), 0) AS expired,
                COALESCE(SUM(r.status = 'suppressed'), 0) AS suppressed
         FROM messages m JOIN recipients r ON r.message_id = m.id
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
    let n = |r: &SqliteRow, c: &str| r.get::<i64, _>(c) as u64;
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

pub(crate) async fn status_counts(pool: &SqlitePool) -> Result<Vec<(RecipientStatus, u64)>> {
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

pub(crate) async fn add_webhook(pool: &SqlitePool, w: &Webhook) -> Result<()> {
    sqlx::query(
        "INSERT INTO webhooks (id, account_id, url, events, secret, created_at) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&w.id)
    .bind(w.account_id)
    .bind(&w.url)
    .bind(format!(",{},", w.events.join(",")))
    .bind(&w.secret)
    .bind(w.created_at)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn webhooks(pool: &SqlitePool, account_id: i64) -> Result<Vec<Webhook>> {
    let rows = sqlx::query("SELECT * FROM webhooks WHERE account_id = ? ORDER BY created_at, id")
        .bind(account_id)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .iter()
        .map(|r| Webhook {
            id: r.get("id"),
            account_id: r.get("account_id"),
            url: r.get("url"),
            events: r
                .get::<String, _>("events")
                .split(',')
                .filter(|e| !e.is_empty())
                .map(str::to_string)
                .collect(),
            secret: r.get("secret"),
            created_at: r.get("created_at"),
        })
        .collect())
}

pub(crate) async fn remove_webhook(pool: &SqlitePool, account_id: i64, id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM webhooks WHERE account_id = ? AND id = ?")
        .bind(account_id)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// The latest deliveries of one webhook of the account, newest event
/// first.
pub(crate) async fn webhook_deliveries(
    pool: &SqlitePool,
    account_id: i64,
    webhook_id: &str,
    limit: u32,
) -> Result<Vec<WebhookDeliveryRecord>> {
    let rows = sqlx::query(
        "SELECT e.id, e.kind, e.message_id, e.recipient, e.created_at, d.attempts, d.last_status,
                d.last_error, d.done_at, d.next_try
         FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
              JOIN events e ON e.id = d.event_id
         WHERE d.webhook_id = ? AND w.account_id = ?
         ORDER BY d.event_id DESC LIMIT ?",
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
                    .get::<Option<i64>, _>("last_status")
                    .and_then(|s| u16::try_from(s).ok()),
                last_error: r.get("last_error"),
                next_try: done_at.is_none().then(|| r.get("next_try")),
                done_at,
            }
        })
        .collect())
}

/// A test event and its one delivery, in one transaction (on the pool, as
/// other admin writes; the writer's fan-out never matches its kind, which
/// no webhook subscribes to).
pub(crate) async fn add_test_webhook_event(
    pool: &SqlitePool,
    account_id: i64,
    webhook_id: &str,
    event: &TestEvent,
    now: i64,
) -> Result<i64> {
    let mut tx = pool.begin().await?;
    // The insert first, so the transaction takes the write lock at once.
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO events (account_id, kind, message_id, recipient, attempts, reply, remote_host, label, created_at)
         SELECT account_id, ?, ?, ?, 0, ?, NULL, NULL, ? FROM webhooks WHERE id = ? AND account_id = ?
         RETURNING id",
    )
    .bind(TEST_EVENT_KIND)
    .bind(&event.message_id)
    .bind(&event.recipient)
    .bind(&event.reply)
    .bind(now)
    .bind(webhook_id)
    .bind(account_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = id else {
        return Err(StoreError::NotFound(format!("no webhook {webhook_id}")));
    };
    sqlx::query("INSERT INTO webhook_deliveries (webhook_id, event_id, next_try) VALUES (?, ?, ?)")
        .bind(webhook_id)
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(id)
}

pub(crate) async fn next_webhook_due(pool: &SqlitePool) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT MIN(next_try) FROM webhook_deliveries WHERE done_at IS NULL")
            .fetch_one(pool)
            .await?,
    )
}

/// `(name, created_at)` rows of one of the admin listings, in name order.
pub(crate) async fn listed_names(
    pool: &SqlitePool,
    table: ListedTable,
    account_id: i64,
) -> Result<Vec<ListedName>> {
    let sql = match table {
        ListedTable::Senders => {
            "SELECT address AS name, created_at FROM senders WHERE account_id = ? ORDER BY address"
        }
        ListedTable::ApiUsers => {
            "SELECT name, created_at FROM api_users WHERE account_id = ? ORDER BY name"
        }
        ListedTable::Labels => {
            "SELECT label AS name, created_at FROM labels WHERE account_id = ? ORDER BY label"
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
