//! The console's sign-in sessions on the embedded store (schema v10).

use crate::*;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::Row;

fn session_from_row(r: &SqliteRow) -> ConsoleSession {
    ConsoleSession {
        token_hash: r.get("token_hash"),
        api_key_id: r.get("api_key_id"),
        account_id: r.get("account_id"),
        created_at: r.get("created_at"),
        expires_at: r.get("expires_at"),
    }
}

/// Insert a session; sessions that ran out before `s.created_at` go.
pub(crate) async fn add(pool: &SqlitePool, s: &ConsoleSession) -> Result<()> {
    sqlx::query("DELETE FROM console_sessions WHERE expires_at < ?")
        .bind(s.created_at)
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO console_sessions (token_hash, api_key_id, account_id, created_at, expires_at)
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&s.token_hash)
    .bind(&s.api_key_id)
    .bind(s.account_id)
    .bind(s.created_at)
    .bind(s.expires_at)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn get(pool: &SqlitePool, token_hash: &str) -> Result<ConsoleSession> {
    sqlx::query("SELECT * FROM console_sessions WHERE token_hash = ?")
        .bind(token_hash)
        .fetch_optional(pool)
        .await?
        .map(|r| session_from_row(&r))
        .ok_or_else(|| StoreError::NotFound("no such console session".into()))
}

pub(crate) async fn touch(pool: &SqlitePool, token_hash: &str, expires_at: i64) -> Result<()> {
    sqlx::query("UPDATE console_sessions SET expires_at = ? WHERE token_hash = ?")
        .bind(expires_at)
        .bind(token_hash)
        .execute(pool)
        .await?;
    Ok(())
}

pub(crate) async fn remove(pool: &SqlitePool, token_hash: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM console_sessions WHERE token_hash = ?")
        .bind(token_hash)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}
