//! The parts of the embedded store the HTTP API reads and writes: API keys,
//! statistics, webhooks and the events they are sent.
//!
//! Events are written in the same commit as the status change they report
//! (see `record_events` and `fan_out`, called by the writer), and only
//! while some webhook of the account subscribed to their kind, so an
//! account without webhooks pays one `EXISTS` per commit.

use crate::*;
use posthorn_types::RecipientStatus;
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::Row;

/// Event kinds a webhook may subscribe to, in the order documented.
pub const EVENT_KINDS: &[&str] = &["delivered", "deferred", "bounced", "expired", "suppressed"];

/// Whether any webhook exists (once per commit: no events otherwise).
pub(crate) async fn webhooks_exist(tx: &mut SqliteConnection) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM webhooks)")
        .fetch_one(&mut *tx)
        .await?)
}

/// The highest event id so far (events after it are this commit's).
pub(crate) async fn last_event_id(tx: &mut SqliteConnection) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM events")
            .fetch_one(&mut *tx)
            .await?,
    )
}

/// Write an event for each of these recipients (`(message id, idx)`) whose
/// account has a webhook for its new status. Bounce notices Posthorn made
/// have none: the bounce itself was the event.
pub(crate) async fn record_events(
    tx: &mut SqliteConnection,
    recipients: &[(String, i64)],
    now: i64,
) -> Result<()> {
    for chunk in recipients.chunks(256) {
        let rows = vec!["(?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "WITH t(id, idx) AS (VALUES {rows})
             INSERT INTO events (account_id, kind, message_id, recipient, attempts, reply, remote_host, label, created_at)
             SELECT m.account_id, r.status, r.message_id, r.address, r.attempts, r.last_reply, r.remote_host, m.label, ?
             FROM t JOIN recipients r ON r.message_id = t.id AND r.idx = t.idx
                    JOIN messages m ON m.id = r.message_id
             WHERE r.status IN ('delivered', 'deferred', 'bounced', 'expired', 'suppressed')
               AND m.is_dsn = 0
               AND EXISTS (SELECT 1 FROM webhooks w WHERE w.account_id = m.account_id
                           AND instr(w.events, ',' || r.status || ',') > 0)"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (id, idx) in chunk {
            q = q.bind(id).bind(idx);
        }
        q.bind(now).execute(&mut *tx).await?;
    }
    Ok(())
}

/// A delivery row for every event after `since` and every webhook that
/// wants it: one statement per commit.
pub(crate) async fn fan_out(tx: &mut SqliteConnection, since: i64, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO webhook_deliveries (webhook_id, event_id, next_try)
         SELECT w.id, e.id, ? FROM events e
         JOIN webhooks w ON w.account_id = e.account_id AND instr(w.events, ',' || e.kind || ',') > 0
         WHERE e.id > ?",
    )
    .bind(now)
    .bind(since)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub(crate) async fn claim_webhook_deliveries(
    tx: &mut SqliteConnection,
    now: i64,
    lease_until: i64,
    limit: u32,
) -> Result<Vec<DueWebhookDelivery>> {
    let claimed = sqlx::query(
        "UPDATE webhook_deliveries SET next_try = ?3
         WHERE rowid IN (SELECT rowid FROM webhook_deliveries
                         WHERE done_at IS NULL AND next_try <= ?1 ORDER BY next_try LIMIT ?2)
         RETURNING webhook_id, event_id, attempts",
    )
    .bind(now)
    .bind(i64::from(limit))
    .bind(lease_until)
    .fetch_all(&mut *tx)
    .await?;
    let mut out = Vec::with_capacity(claimed.len());
    for c in &claimed {
        let webhook_id: String = c.get("webhook_id");
        let event_id: i64 = c.get("event_id");
        let row = sqlx::query(
            "SELECT w.url, w.secret, e.id, e.account_id, e.kind, e.message_id, e.recipient, e.attempts,
                    e.reply, e.remote_host, e.label, e.created_at
             FROM webhooks w, events e WHERE w.id = ? AND e.id = ?",
        )
        .bind(&webhook_id)
        .bind(event_id)
        .fetch_one(&mut *tx)
        .await?;
        out.push(DueWebhookDelivery {
            webhook_id,
            url: row.get("url"),
            secret: row.get("secret"),
            attempts: c.get::<i64, _>("attempts") as u32,
            event: event_from_row(&row),
        });
    }
    out.sort_by_key(|d| d.event.id);
    Ok(out)
}

pub(crate) async fn record_webhook_results(
    tx: &mut SqliteConnection,
    results: &[WebhookResult],
    now: i64,
) -> Result<()> {
    for r in results {
        sqlx::query(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, last_error = ?1,
                    next_try = COALESCE(?2, next_try),
                    done_at = CASE WHEN ?2 IS NULL THEN ?3 ELSE NULL END
             WHERE webhook_id = ?4 AND event_id = ?5 AND done_at IS NULL",
        )
        .bind(&r.error)
        .bind(r.retry_at)
        .bind(now)
        .bind(&r.webhook_id)
        .bind(r.event_id)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Webhook deliveries and events older than `before` that nothing waits
/// for any more.
pub(crate) async fn purge_events(tx: &mut SqliteConnection, before: i64) -> Result<()> {
    sqlx::query("DELETE FROM webhook_deliveries WHERE done_at IS NOT NULL AND done_at <= ?")
        .bind(before)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "DELETE FROM events WHERE created_at <= ?
         AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = events.id)",
    )
    .bind(before)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn event_from_row(row: &SqliteRow) -> Event {
    Event {
        id: row.get("id"),
        account_id: row.get("account_id"),
        kind: row.get("kind"),
        message_id: row.get("message_id"),
        recipient: row.get("recipient"),
        attempts: row.get::<i64, _>("attempts") as u32,
        reply: row.get("reply"),
        remote_host: row.get("remote_host"),
        label: row.get("label"),
        created_at: row.get("created_at"),
    }
}

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
