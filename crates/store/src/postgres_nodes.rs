//! Node heartbeats and takeover in the shared database (schema v2): every
//! node of the cluster writes its own row and any node reads them all;
//! `posthorn cluster status` reads the same on either backend. Two nodes
//! taking over the same dead node at once both run the update; the second
//! finds nothing left (row locks), so each lease is given back once.

use crate::*;
use sqlx::postgres::PgPool;
use sqlx::Row;

pub(crate) async fn heartbeat(pool: &PgPool, node: &NodeInfo, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO nodes (id, address, version, started_at, last_seen) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO UPDATE SET address = excluded.address, version = excluded.version,
             started_at = excluded.started_at, last_seen = excluded.last_seen",
    )
    .bind(&node.id)
    .bind(&node.address)
    .bind(&node.version)
    .bind(node.started_at)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn nodes(pool: &PgPool) -> Result<Vec<NodeRecord>> {
    let rows = sqlx::query(
        "SELECT n.id, n.address, n.version, n.started_at, n.last_seen, n.report,
                (SELECT COUNT(*) FROM recipients r WHERE r.status = 'sending' AND r.lease_owner = n.id) AS leases
         FROM nodes n ORDER BY n.id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| NodeRecord {
            info: NodeInfo {
                id: r.get("id"),
                address: r.get("address"),
                version: r.get("version"),
                started_at: r.get("started_at"),
            },
            last_seen: r.get("last_seen"),
            leases: r.get::<i64, _>("leases") as u64,
            report: r.get("report"),
        })
        .collect())
}

pub(crate) async fn report(pool: &PgPool, id: &str, report: &str) -> Result<()> {
    sqlx::query("UPDATE nodes SET report = $1 WHERE id = $2")
        .bind(report)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

pub(crate) async fn take_over(pool: &PgPool, now: i64, timeout: i64) -> Result<Vec<TakenOver>> {
    let mut tx = pool.begin().await?;
    let dead = sqlx::query(
        "SELECT id, last_seen FROM nodes n WHERE last_seen < $1
           AND EXISTS (SELECT 1 FROM recipients r WHERE r.status = 'sending' AND r.lease_owner = n.id)
         ORDER BY id",
    )
    .bind(now - timeout)
    .fetch_all(&mut *tx)
    .await?;
    let mut out = Vec::new();
    for row in dead {
        let node: String = row.get("id");
        let leases = release(&mut *tx, &node, now).await?;
        out.push(TakenOver {
            node,
            last_seen: row.get("last_seen"),
            leases,
        });
    }
    if out.iter().any(|t| t.leases > 0) {
        sqlx::query("SELECT pg_notify($1, 'q')")
            .bind(crate::postgres_events::WAKE_CHANNEL)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(out)
}

pub(crate) async fn forget(pool: &PgPool, before: i64) -> Result<u64> {
    let done = sqlx::query(
        "DELETE FROM nodes WHERE last_seen < $1
           AND NOT EXISTS (SELECT 1 FROM recipients r WHERE r.status = 'sending' AND r.lease_owner = nodes.id)",
    )
    .bind(before)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Give back every lease `owner` holds: its recipients are due again at
/// `now` (`queued` if never tried, else `deferred`). The one statement
/// behind [`Store::release_leases`] (a node restarting) and the takeover
/// of a dead node. Returns how many.
pub(crate) async fn release<'c>(
    conn: impl sqlx::Executor<'c, Database = sqlx::Postgres>,
    owner: &str,
    now: i64,
) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE recipients SET status = CASE WHEN attempts = 0 THEN 'queued' ELSE 'deferred' END,
                lease_owner = NULL, lease_until = NULL, next_try = $1, updated_at = $1
             WHERE status = 'sending' AND lease_owner = $2",
    )
    .bind(now)
    .bind(owner)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
