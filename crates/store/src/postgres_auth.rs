//! Failed SMTP logins and AUTH lockouts in the PostgreSQL store: the rules
//! of `sqlite_auth`, shared by every node. Recording a failure is one
//! transaction holding an advisory lock on the client address, so two
//! nodes counting failures of one address take turns (the embedded store's
//! `BEGIN IMMEDIATE`).

use crate::shared::{ip_key, lockout, user_key};
use crate::*;
use sqlx::postgres::PgPool;
use sqlx::Row;
use std::net::IpAddr;

pub(crate) async fn record_failure(
    pool: &PgPool,
    ip: IpAddr,
    user: &str,
    tag: &str,
    now: i64,
    policy: &LockoutPolicy,
) -> Result<Option<Lockout>> {
    let (ip, user) = (ip_key(ip), user_key(user));
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('posthorn.auth.' || $1))")
        .bind(&ip)
        .execute(&mut *tx)
        .await?;
    let horizon = now - policy.user_window.max(policy.address_window) as i64;
    sqlx::query("DELETE FROM auth_failures WHERE at <= $1")
        .bind(horizon)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM auth_lockouts WHERE locked_until <= $1 AND locked_at <= $2")
        .bind(now)
        .bind(horizon)
        .execute(&mut *tx)
        .await?;
    let added: Option<i64> = sqlx::query_scalar(
        "INSERT INTO auth_failures (ip, user_name, tag, at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (ip, user_name, tag) DO NOTHING RETURNING id",
    )
    .bind(&ip)
    .bind(&user)
    .bind(tag)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = added else {
        // The same wrong secret again: already counted.
        tx.commit().await?;
        return Ok(None);
    };
    let mut started = None;
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
        let counted: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM auth_failures
             WHERE ip = $1 AND ($2 = '' OR user_name = $2) AND at > $3
               AND id > coalesce((SELECT last_failure FROM auth_lockouts WHERE ip = $1 AND user_name = $2), 0)",
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
            "INSERT INTO auth_lockouts (ip, user_name, locked_at, locked_until, failures, last_failure)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (ip, user_name) DO UPDATE SET locked_at = excluded.locked_at,
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

pub(crate) async fn lockout_of(
    pool: &PgPool,
    ip: IpAddr,
    user: &str,
    now: i64,
) -> Result<Option<Lockout>> {
    let (ip, user) = (ip_key(ip), user_key(user));
    let found = sqlx::query(
        "SELECT user_name, locked_at, locked_until, failures FROM auth_lockouts
         WHERE ip = $1 AND user_name IN ($2, '') AND locked_until > $3
         ORDER BY user_name = '' DESC LIMIT 1",
    )
    .bind(&ip)
    .bind(&user)
    .bind(now)
    .fetch_optional(pool)
    .await?;
    found
        .map(|r| {
            lockout(
                &ip,
                r.get("user_name"),
                r.get("locked_at"),
                r.get("locked_until"),
                r.get("failures"),
            )
        })
        .transpose()
}

pub(crate) async fn lockouts(pool: &PgPool, now: i64) -> Result<Vec<Lockout>> {
    let rows = sqlx::query(
        "SELECT ip, user_name, locked_at, locked_until, failures FROM auth_lockouts
         WHERE locked_until > $1 ORDER BY ip COLLATE \"C\", user_name COLLATE \"C\"",
    )
    .bind(now)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            lockout(
                r.get("ip"),
                r.get("user_name"),
                r.get("locked_at"),
                r.get("locked_until"),
                r.get("failures"),
            )
        })
        .collect()
}

pub(crate) async fn clear(pool: &PgPool, ip: IpAddr, user: Option<&str>, now: i64) -> Result<u64> {
    let ip = ip_key(ip);
    let user = user.map(user_key);
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('posthorn.auth.' || $1))")
        .bind(&ip)
        .execute(&mut *tx)
        .await?;
    let ended: Vec<i64> = sqlx::query_scalar(
        "DELETE FROM auth_lockouts WHERE ip = $1 AND ($2::text IS NULL OR user_name = $2)
         RETURNING locked_until",
    )
    .bind(&ip)
    .bind(user.as_deref())
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM auth_failures WHERE ip = $1 AND ($2::text IS NULL OR user_name = $2)")
        .bind(&ip)
        .bind(user.as_deref())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(ended.iter().filter(|&&until| until > now).count() as u64)
}
