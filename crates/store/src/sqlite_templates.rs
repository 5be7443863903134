//! [`TemplateStore`] on the embedded store (schema v9), on the sqlx pool:
//! rare admin writes and point reads.

use crate::shared::duplicate;
use crate::templates::{not_found, Template, TemplateStore};
use crate::{Result, SqliteStore, StoreError};
use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

const COLUMNS: &str = "id, account_id, name, subject, text, html, created_at, updated_at";

fn from_row(r: &SqliteRow) -> Template {
    Template {
        id: r.get("id"),
        account_id: r.get("account_id"),
        name: r.get("name"),
        subject: r.get("subject"),
        text: r.get("text"),
        html: r.get("html"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    }
}

#[async_trait]
impl TemplateStore for SqliteStore {
    async fn add_template(&self, t: &Template) -> Result<()> {
        sqlx::query(
            "INSERT INTO templates (id, account_id, name, subject, text, html, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.id)
        .bind(t.account_id)
        .bind(&t.name)
        .bind(&t.subject)
        .bind(&t.text)
        .bind(&t.html)
        .bind(t.created_at)
        .bind(t.updated_at)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from)
        .map_err(duplicate("template", &t.name))?;
        Ok(())
    }

    async fn template(&self, account_id: i64, id: &str) -> Result<Template> {
        let sql = format!("SELECT {COLUMNS} FROM templates WHERE account_id = ? AND id = ?");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| from_row(&r))
            .ok_or_else(|| not_found(id))
    }

    async fn template_by_name(&self, account_id: i64, name: &str) -> Result<Template> {
        let sql = format!("SELECT {COLUMNS} FROM templates WHERE account_id = ? AND name = ?");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| from_row(&r))
            .ok_or_else(|| not_found(&format!("{name:?}")))
    }

    async fn templates(&self, account_id: i64) -> Result<Vec<Template>> {
        let sql = format!("SELECT {COLUMNS} FROM templates WHERE account_id = ? ORDER BY name");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(from_row).collect())
    }

    async fn update_template(&self, t: &Template) -> Result<()> {
        let done = sqlx::query(
            "UPDATE templates SET name = ?, subject = ?, text = ?, html = ?, updated_at = ?
             WHERE account_id = ? AND id = ?",
        )
        .bind(&t.name)
        .bind(&t.subject)
        .bind(&t.text)
        .bind(&t.html)
        .bind(t.updated_at)
        .bind(t.account_id)
        .bind(&t.id)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from)
        .map_err(duplicate("template", &t.name))?;
        if done.rows_affected() == 0 {
            return Err(not_found(&t.id));
        }
        Ok(())
    }

    async fn remove_template(&self, account_id: i64, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM templates WHERE account_id = ? AND id = ?")
            .bind(account_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
