//! What a PostgreSQL commit tells others: the webhook events (and their
//! deliveries) a status change makes, and the NOTIFY channel that wakes
//! every node's delivery and webhook sender.

use crate::Result;
use sqlx::postgres::PgConnection;

/// The channel every node LISTENs on and commits NOTIFY to: payload `q`
/// when recipients became due, `w` when webhook deliveries were added.
pub(crate) const WAKE_CHANNEL: &str = "posthorn_wake";

/// An event for each of these recipients (ids and indexes side by side)
/// whose account has a webhook for its new status, stamped `at`, and a
/// delivery row per such webhook, due at `now`: one statement, which
/// also wakes the webhook senders of every node when it added any. Bounce
/// notices Posthorn made have none (the bounce itself was the event).
pub(crate) async fn record_events(
    tx: &mut PgConnection,
    ids: Vec<String>,
    idx: Vec<i64>,
    at: i64,
    now: i64,
) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "WITH t AS (SELECT * FROM unnest($1::text[], $2::bigint[]) AS t(id, idx)),
         ins AS (
             INSERT INTO events (account_id, kind, message_id, recipient, attempts, reply, remote_host, label, created_at)
             SELECT m.account_id, r.status, r.message_id, r.address, r.attempts, r.last_reply, r.remote_host, m.label, $3
             FROM t JOIN recipients r ON r.message_id = t.id AND r.idx = t.idx
                    JOIN messages m ON m.id = r.message_id
             WHERE r.status IN ('delivered', 'deferred', 'bounced', 'expired', 'suppressed')
               AND NOT m.is_dsn
               AND EXISTS (SELECT 1 FROM webhooks w WHERE w.account_id = m.account_id AND r.status = ANY(w.events))
             ORDER BY r.message_id, r.idx
             RETURNING id, account_id, kind),
         added AS (
             INSERT INTO webhook_deliveries (webhook_id, event_id, next_try)
             SELECT w.id, ins.id, $4 FROM ins JOIN webhooks w ON w.account_id = ins.account_id AND ins.kind = ANY(w.events)
             RETURNING 1)
         SELECT pg_notify($5, 'w') FROM (SELECT COUNT(*) AS n FROM added) c WHERE c.n > 0",
    )
    .bind(ids)
    .bind(idx)
    .bind(at)
    .bind(now)
    .bind(WAKE_CHANNEL)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
