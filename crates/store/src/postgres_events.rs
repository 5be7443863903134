//! What a PostgreSQL commit tells others: the webhook events (and their
//! deliveries) a status change makes, and the NOTIFY channel that wakes
//! every node's delivery and webhook sender.

use crate::Result;
use sqlx::postgres::PgConnection;

/// The channel every node LISTENs on and commits NOTIFY to: payload `q`
/// when recipients became due, `w` when webhook deliveries were added.
pub(crate) const WAKE_CHANNEL: &str = "posthorn_wake";

/// The `WITH` items that store an event for each row of `changed` (a
/// relation of recipient rows after their change: `message_id`, `idx`,
/// `status`, `address`, `attempts`, `last_reply`, `remote_host`) whose
/// account has a webhook for its new status, stamped `at`, and a delivery
/// row per such webhook, due at `now` (`at` and `now` are SQL expressions,
/// parameters). They end in `added`, one row per delivery row; see
/// [`WAKE_IF_ADDED`]. Bounce notices Posthorn made have none (the bounce
/// itself was the event).
pub(crate) fn event_ctes(changed: &str, at: &str, now: &str) -> String {
    format!(
        "ins AS (
             INSERT INTO events (account_id, kind, message_id, recipient, attempts, reply, remote_host, label, created_at)
             SELECT m.account_id, c.status, c.message_id, c.address, c.attempts, c.last_reply, c.remote_host, m.label, {at}
             FROM {changed} c JOIN messages m ON m.id = c.message_id
             WHERE c.status IN ('delivered', 'deferred', 'bounced', 'expired', 'suppressed')
               AND NOT m.is_dsn
               AND EXISTS (SELECT 1 FROM webhooks w WHERE w.account_id = m.account_id AND c.status = ANY(w.events))
             ORDER BY c.message_id, c.idx
             RETURNING id, account_id, kind),
         added AS (
             INSERT INTO webhook_deliveries (webhook_id, event_id, next_try)
             SELECT w.id, ins.id, {now} FROM ins JOIN webhooks w ON w.account_id = ins.account_id AND ins.kind = ANY(w.events)
             RETURNING 1)"
    )
}

/// After [`event_ctes`]: a query that wakes the webhook senders of every
/// node (NOTIFY on the channel, parameter `$CH`, replaced by the caller)
/// when it added any delivery row.
pub(crate) const WAKE_IF_ADDED: &str =
    "SELECT pg_notify($CH, 'w') FROM (SELECT COUNT(*) AS n FROM added) c WHERE c.n > 0";

/// An event for each of these recipients (ids and indexes side by side)
/// whose account has a webhook for its new status, stamped `at`, and a
/// delivery row per such webhook, due at `now` ([`event_ctes`]): one
/// statement, which also wakes the webhook senders of every node when it
/// added any.
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
    let sql = format!(
        "WITH t AS (SELECT * FROM unnest($1::text[], $2::bigint[]) AS t(id, idx)),
         changed AS (
             SELECT r.message_id, r.idx, r.status, r.address, r.attempts, r.last_reply, r.remote_host
             FROM t JOIN recipients r ON r.message_id = t.id AND r.idx = t.idx),
         {}
         {}",
        event_ctes("changed", "$3", "$4"),
        WAKE_IF_ADDED.replace("$CH", "$5")
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(ids)
        .bind(idx)
        .bind(at)
        .bind(now)
        .bind(WAKE_CHANNEL)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
