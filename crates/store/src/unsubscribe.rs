//! A recipient's one-click unsubscribe (issue 22, RFC 8058), on both
//! backends: the address suppressed for the account with reason
//! [`UNSUBSCRIBED`] (and the message it came from), and in the same commit
//! an event of that kind with a delivery per webhook of the account that
//! subscribed to it (only when one did). A repeated unsubscribe changes
//! nothing and makes no second event.

use crate::Result;
use sqlx::{PgPool, SqlitePool};

/// The suppression reason and the event kind of an unsubscribe.
pub const UNSUBSCRIBED: &str = "unsubscribed";

/// Returns whether anything changed (false: already unsubscribed, or no
/// such account).
pub(crate) async fn sqlite(
    pool: &SqlitePool,
    account_id: i64,
    message_id: &str,
    recipient: &str,
    now: i64,
) -> Result<bool> {
    let mut tx = pool.begin().await?;
    // The write first, so the transaction takes the write lock at once.
    let changed = sqlx::query(
        "INSERT INTO suppressions (account_id, address, reason, message_id, created_at)
         SELECT id, ?, ?, ?, ? FROM accounts WHERE id = ?
         ON CONFLICT (account_id, address) DO UPDATE
             SET reason = excluded.reason, message_id = excluded.message_id
             WHERE suppressions.reason <> excluded.reason",
    )
    .bind(recipient)
    .bind(UNSUBSCRIBED)
    .bind(message_id)
    .bind(now)
    .bind(account_id)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    if changed {
        let event: Option<i64> = sqlx::query_scalar(
            "INSERT INTO events (account_id, kind, message_id, recipient, attempts, reply, remote_host, label, created_at)
             SELECT ?, ?, ?, ?, 0, NULL, NULL, (SELECT label FROM messages WHERE id = ?), ?
             WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.account_id = ?
                           AND instr(w.events, ',' || ? || ',') > 0)
             RETURNING id",
        )
        .bind(account_id)
        .bind(UNSUBSCRIBED)
        .bind(message_id)
        .bind(recipient)
        .bind(message_id)
        .bind(now)
        .bind(account_id)
        .bind(UNSUBSCRIBED)
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
            .bind(account_id)
            .bind(UNSUBSCRIBED)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(changed)
}

/// The same in one statement (so one commit), waking every node's webhook
/// sender when it added deliveries.
pub(crate) async fn postgres(
    pool: &PgPool,
    account_id: i64,
    message_id: &str,
    recipient: &str,
    now: i64,
) -> Result<bool> {
    let (changed, _woken): (bool, i64) = sqlx::query_as(
        "WITH sup AS (
             INSERT INTO suppressions (account_id, address, reason, message_id, created_at)
             SELECT id, $2, $3, $4, $5 FROM accounts WHERE id = $1
             ON CONFLICT (account_id, lower(address)) DO UPDATE
                 SET reason = excluded.reason, message_id = excluded.message_id
                 WHERE suppressions.reason <> excluded.reason
             RETURNING account_id),
         ev AS (
             INSERT INTO events (account_id, kind, message_id, recipient, attempts, reply, remote_host, label, created_at)
             SELECT s.account_id, $3, $4, $2, 0, NULL, NULL, (SELECT label FROM messages WHERE id = $4), $5
             FROM sup s
             WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.account_id = s.account_id AND $3 = ANY(w.events))
             RETURNING id, account_id),
         added AS (
             INSERT INTO webhook_deliveries (webhook_id, event_id, next_try)
             SELECT w.id, ev.id, $5 FROM ev JOIN webhooks w ON w.account_id = ev.account_id AND $3 = ANY(w.events)
             RETURNING event_id)
         SELECT EXISTS (SELECT 1 FROM sup),
             (SELECT count(*) FROM (SELECT pg_notify($6, 'w') FROM added LIMIT 1) n)",
    )
    .bind(account_id)
    .bind(recipient)
    .bind(UNSUBSCRIBED)
    .bind(message_id)
    .bind(now)
    .bind(crate::postgres_events::WAKE_CHANNEL)
    .fetch_one(pool)
    .await?;
    Ok(changed)
}
