//! Failed SMTP logins and AUTH lockouts in the embedded store (schema v5).
//!
//! Failures are rare and each already cost an argon2 check, so recording one
//! is a small `BEGIN IMMEDIATE` transaction on the sqlx pool; the check
//! before every AUTH is an inline point read (`sqlite_reader`). Rows that
//! no longer count are deleted by the next failure recorded.

use crate::shared::{ip_key, lockout, user_key};
use crate::sqlite_reader::PointReads;
use crate::*;
use rusqlite::OptionalExtension;
use sqlx::sqlite::SqlitePool;
use sqlx::Row;
use std::net::IpAddr;

pub(crate) async fn record_failure(
    pool: &SqlitePool,
    ip: IpAddr,
    user: &str,
    tag: &str,
    now: i64,
    policy: &LockoutPolicy,
) -> Result<Option<Lockout>> {
    let (ip, user) = (ip_key(ip), user_key(user));
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    // Forget what no longer counts: failures out of every window, and
    // lockouts that ended and whose failures are gone too.
    let horizon = now - policy.user_window.max(policy.address_window) as i64;
    sqlx::query("DELETE FROM auth_failures WHERE at <= ?")
        .bind(horizon)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM auth_lockouts WHERE locked_until <= ? AND locked_at <= ?")
        .bind(now)
        .bind(horizon)
        .execute(&mut *tx)
        .await?;
    let added = sqlx::query(
        "INSERT INTO auth_failures (ip, user, tag, at) VALUES (?, ?, ?, ?)
         ON CONFLICT (ip, user, tag) DO NOTHING RETURNING id",
    )
    .bind(&ip)
    .bind(&user)
    .bind(tag)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(added) = added else {
        // The same wrong secret again: already counted.
        tx.commit().await?;
        return Ok(None);
    };
    let id: i64 = added.get(0);
    let mut started = None;
    // The empty name stands for the whole address in auth_lockouts; a login
    // with an empty name counts only towards the address.
    let scopes = [
        (
            user.as_str(),
            !user.is_empty(),
            policy.user_failures,
            policy.user_window,
            policy.user_lockout,
        ),
        (
            "",
            true,
            policy.address_failures,
            policy.address_window,
            policy.address_lockout,
        ),
    ];
    for (scope, applies, limit, window, lasts) in scopes {
        if !applies || limit == 0 {
            continue;
        }
        // Failures in the window, after the ones that started this scope's
        // last lockout.
        let counted: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM auth_failures
             WHERE ip = ?1 AND (?2 = '' OR user = ?2) AND at > ?3
               AND id > coalesce((SELECT last_failure FROM auth_lockouts WHERE ip = ?1 AND user = ?2), 0)",
        )
        .bind(&ip)
        .bind(scope)
        .bind(now - window as i64)
        .fetch_one(&mut *tx)
        .await?;
        if counted < i64::from(limit) {
            continue;
        }
        let locked_until = now + lasts as i64;
        sqlx::query(
            "INSERT INTO auth_lockouts (ip, user, locked_at, locked_until, failures, last_failure)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (ip, user) DO UPDATE SET locked_at = excluded.locked_at,
                 locked_until = excluded.locked_until, failures = excluded.failures,
                 last_failure = excluded.last_failure",
        )
        .bind(&ip)
        .bind(scope)
        .bind(now)
        .bind(locked_until)
        .bind(counted)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        // The address's lockout, when both start, says more.
        started = Some(lockout(&ip, scope.to_string(), now, locked_until, counted)?);
    }
    tx.commit().await?;
    Ok(started)
}

pub(crate) fn lockout_of(
    reads: &PointReads,
    ip: IpAddr,
    user: &str,
    now: i64,
) -> Result<Option<Lockout>> {
    let (ip, user) = (ip_key(ip), user_key(user));
    let found = reads.read(|c| {
        c.prepare_cached(
            // The whole address's lockout (user '') first, then the user's
            // there: two lookups on the key, in that order (UNION ALL runs
            // its arms left to right), not `user IN (..) ORDER BY ..`, which
            // sorted in temporary b-trees on every login (2 % of the
            // server's samples in a burst of one-message connections with
            // AUTH).
            "SELECT user, locked_at, locked_until, failures FROM auth_lockouts
             WHERE ip = ?1 AND user = '' AND locked_until > ?3
             UNION ALL
             SELECT user, locked_at, locked_until, failures FROM auth_lockouts
             WHERE ip = ?1 AND user = ?2 AND locked_until > ?3
             LIMIT 1",
        )?
        .query_row(rusqlite::params![ip, user, now], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()
    })?;
    found
        .map(|(user, at, until, failures)| lockout(&ip, user, at, until, failures))
        .transpose()
}

pub(crate) async fn lockouts(pool: &SqlitePool, now: i64) -> Result<Vec<Lockout>> {
    let rows = sqlx::query(
        "SELECT ip, user, locked_at, locked_until, failures FROM auth_lockouts
         WHERE locked_until > ? ORDER BY ip, user",
    )
    .bind(now)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            lockout(
                r.get("ip"),
                r.get("user"),
                r.get("locked_at"),
                r.get("locked_until"),
                r.get("failures"),
            )
        })
        .collect()
}

pub(crate) async fn clear(
    pool: &SqlitePool,
    ip: IpAddr,
    user: Option<&str>,
    now: i64,
) -> Result<u64> {
    let ip = ip_key(ip);
    let user = user.map(user_key);
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let ended: Vec<i64> = sqlx::query_scalar(
        "DELETE FROM auth_lockouts WHERE ip = ?1 AND (?2 IS NULL OR user = ?2)
         RETURNING locked_until",
    )
    .bind(&ip)
    .bind(user.as_deref())
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM auth_failures WHERE ip = ?1 AND (?2 IS NULL OR user = ?2)")
        .bind(&ip)
        .bind(user.as_deref())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(ended.iter().filter(|&&until| until > now).count() as u64)
}
