//! The embedded store: one SQLite database in the data directory, WAL
//! journal, `synchronous=FULL` (every commit is fsync'd).
//!
//! Reads go through a small pool. Enqueues go to one writer task that puts
//! every message waiting at that moment into a single transaction (group
//! commit), so many sessions share one fsync.

use crate::*;
use posthorn_types::RecipientStatus;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Row};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Schema migrations, applied in order; `PRAGMA user_version` records how
/// many have run.
const MIGRATIONS: &[&str] = &[include_str!("schema_v1.sql")];

/// Most messages one group commit carries.
const MAX_BATCH: usize = 512;

struct WriteJob {
    message: NewMessage,
    done: oneshot::Sender<Result<()>>,
}

/// See the module documentation.
pub struct SqliteStore {
    pool: SqlitePool,
    writer: mpsc::Sender<WriteJob>,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    messages: AtomicU64,
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                return StoreError::Duplicate(db.message().to_string());
            }
        }
        StoreError::Backend(e.to_string())
    }
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn duplicate(what: &str, name: &str) -> impl FnOnce(StoreError) -> StoreError {
    let msg = format!("{what} {name:?} already exists");
    move |e| match e {
        StoreError::Duplicate(_) => StoreError::Duplicate(msg),
        e => e,
    }
}

impl SqliteStore {
    /// Open (creating if needed) `posthorn.db` in `dir` and migrate it.
    pub async fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Backend(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let options = SqliteConnectOptions::new()
            .filename(dir.join("posthorn.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let mut writer_conn = options.connect().await?;
        migrate(&mut writer_conn).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        let (tx, rx) = mpsc::channel(4096);
        let counters = Arc::new(Counters::default());
        tokio::spawn(writer_loop(writer_conn, rx, counters.clone()));
        Ok(Self {
            pool,
            writer: tx,
            counters,
        })
    }
}

async fn migrate(conn: &mut SqliteConnection) -> Result<()> {
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *conn)
        .await?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let mut tx = conn.begin().await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
            .execute(&mut *tx)
            .await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "PRAGMA user_version = {}",
            i + 1
        )))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    Ok(())
}

async fn writer_loop(
    mut conn: SqliteConnection,
    mut rx: mpsc::Receiver<WriteJob>,
    counters: Arc<Counters>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let result = write_batch(&mut conn, &batch).await;
        if result.is_ok() {
            counters.commits.fetch_add(1, Ordering::Relaxed);
            counters
                .messages
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, messages = batch.len(), "group commit failed");
        }
        for job in batch.drain(..) {
            let _ = job.done.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Backend(e.to_string())),
            });
        }
    }
}

async fn write_batch(conn: &mut SqliteConnection, batch: &[WriteJob]) -> Result<()> {
    let mut tx = conn.begin().await?;
    for job in batch {
        let m = &job.message;
        let id = m.id.to_string();
        sqlx::query(
            "INSERT INTO messages (id, account_id, mail_from, auth_user, label, size, received_at, subject, header_from, content)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(m.account_id)
        .bind(&m.mail_from)
        .bind(&m.auth_user)
        .bind(&m.label)
        .bind(m.content.len() as i64)
        .bind(m.received_at)
        .bind(&m.subject)
        .bind(&m.header_from)
        .bind(&m.content)
        .execute(&mut *tx)
        .await?;
        for (idx, a) in m.attachments.iter().enumerate() {
            sqlx::query(
                "INSERT INTO attachments (message_id, idx, filename, content_type, size) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&id)
            .bind(idx as i64)
            .bind(&a.filename)
            .bind(&a.content_type)
            .bind(a.size as i64)
            .execute(&mut *tx)
            .await?;
        }
        for (idx, rcpt) in m.recipients.iter().enumerate() {
            sqlx::query(
                "INSERT INTO recipients (message_id, idx, address, status, updated_at)
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&id)
            .bind(idx as i64)
            .bind(rcpt)
            .bind(RecipientStatus::Queued.as_str())
            .bind(m.received_at)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

fn account_from_row(row: &sqlx::sqlite::SqliteRow) -> Account {
    Account {
        id: row.get("id"),
        name: row.get("name"),
        created_at: row.get("created_at"),
    }
}

fn domain_from_row(row: &sqlx::sqlite::SqliteRow) -> Domain {
    Domain {
        id: row.get("id"),
        account_id: row.get("account_id"),
        name: row.get("name"),
        dkim_selector: row.get("dkim_selector"),
        dkim_private_key: row.get("dkim_private_key"),
        dkim_public_key: row.get("dkim_public_key"),
        created_at: row.get("created_at"),
    }
}

impl SqliteStore {
    async fn recipients_of(&self, id: &str) -> Result<Vec<RecipientRecord>> {
        let rows = sqlx::query(
            "SELECT address, status, attempts, last_reply, next_try FROM recipients
             WHERE message_id = ? ORDER BY idx",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let status: String = r.get("status");
                Ok(RecipientRecord {
                    address: r.get("address"),
                    status: status.parse().map_err(StoreError::Backend)?,
                    attempts: r.get::<i64, _>("attempts") as u32,
                    last_reply: r.get("last_reply"),
                    next_try: r.get("next_try"),
                })
            })
            .collect()
    }

    async fn attachments_of(&self, id: &str) -> Result<Vec<AttachmentRecord>> {
        let rows = sqlx::query(
            "SELECT filename, content_type, size FROM attachments WHERE message_id = ? ORDER BY idx",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| AttachmentRecord {
                filename: r.get("filename"),
                content_type: r.get("content_type"),
                size: r.get::<i64, _>("size") as u64,
            })
            .collect())
    }

    async fn message_from_row(&self, row: &sqlx::sqlite::SqliteRow) -> Result<MessageRecord> {
        let id: String = row.get("id");
        Ok(MessageRecord {
            id: id
                .parse()
                .map_err(|e| StoreError::Backend(format!("stored id {id:?}: {e}")))?,
            account_id: row.get("account_id"),
            account: row.get("account"),
            mail_from: row.get("mail_from"),
            auth_user: row.get("auth_user"),
            label: row.get("label"),
            size: row.get::<i64, _>("size") as u64,
            received_at: row.get("received_at"),
            subject: row.get("subject"),
            header_from: row.get("header_from"),
            attachments: self.attachments_of(&id).await?,
            recipients: self.recipients_of(&id).await?,
        })
    }
}

const MESSAGE_COLUMNS: &str = "m.id, m.account_id, a.name AS account, m.mail_from, m.auth_user, m.label, m.size, m.received_at, m.subject, m.header_from";

#[async_trait]
impl Store for SqliteStore {
    async fn create_account(&self, name: &str) -> Result<Account> {
        let row = sqlx::query(
            "INSERT INTO accounts (name, created_at) VALUES (?, ?) RETURNING id, name, created_at",
        )
        .bind(name)
        .bind(now())
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::from)
        .map_err(duplicate("account", name))?;
        Ok(account_from_row(&row))
    }

    async fn account_by_id(&self, id: i64) -> Result<Account> {
        sqlx::query("SELECT id, name, created_at FROM accounts WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| account_from_row(&r))
            .ok_or_else(|| StoreError::NotFound(format!("no account with id {id}")))
    }

    async fn account(&self, name: &str) -> Result<Account> {
        sqlx::query("SELECT id, name, created_at FROM accounts WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| account_from_row(&r))
            .ok_or_else(|| StoreError::NotFound(format!("no account named {name:?}")))
    }

    async fn accounts(&self) -> Result<Vec<Account>> {
        let rows = sqlx::query("SELECT id, name, created_at FROM accounts ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(account_from_row).collect())
    }

    async fn add_domain(&self, d: NewDomain) -> Result<Domain> {
        let row = sqlx::query(
            "INSERT INTO domains (account_id, name, dkim_selector, dkim_private_key, dkim_public_key, created_at)
             VALUES (?, ?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(d.account_id)
        .bind(&d.name)
        .bind(&d.dkim_selector)
        .bind(&d.dkim_private_key)
        .bind(&d.dkim_public_key)
        .bind(now())
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::from)
        .map_err(duplicate("domain", &d.name))?;
        Ok(domain_from_row(&row))
    }

    async fn domain(&self, name: &str) -> Result<Domain> {
        sqlx::query("SELECT * FROM domains WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| domain_from_row(&r))
            .ok_or_else(|| StoreError::NotFound(format!("no domain named {name:?}")))
    }

    async fn domains(&self, account_id: i64) -> Result<Vec<Domain>> {
        let rows = sqlx::query("SELECT * FROM domains WHERE account_id = ? ORDER BY name")
            .bind(account_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(domain_from_row).collect())
    }

    async fn add_sender(&self, account_id: i64, address: &str, password_hash: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO senders (address, account_id, password_hash, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(address)
        .bind(account_id)
        .bind(password_hash)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(StoreError::from)
        .map_err(duplicate("sender address", address))?;
        Ok(())
    }

    async fn set_sender_password(&self, address: &str, password_hash: &str) -> Result<()> {
        let done = sqlx::query("UPDATE senders SET password_hash = ? WHERE address = ?")
            .bind(password_hash)
            .bind(address)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "no sender address {address:?}"
            )));
        }
        Ok(())
    }

    async fn sender(&self, address: &str) -> Result<Sender> {
        sqlx::query("SELECT address, account_id, password_hash FROM senders WHERE address = ?")
            .bind(address)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Sender {
                account_id: r.get("account_id"),
                address: r.get("address"),
                password_hash: r.get("password_hash"),
            })
            .ok_or_else(|| StoreError::NotFound(format!("no sender address {address:?}")))
    }

    async fn add_api_user(&self, account_id: i64, name: &str, key_hash: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_users (name, account_id, key_hash, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(name)
        .bind(account_id)
        .bind(key_hash)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(StoreError::from)
        .map_err(duplicate("API user", name))?;
        Ok(())
    }

    async fn api_user(&self, name: &str) -> Result<ApiUser> {
        sqlx::query("SELECT name, account_id, key_hash FROM api_users WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| ApiUser {
                account_id: r.get("account_id"),
                name: r.get("name"),
                key_hash: r.get("key_hash"),
            })
            .ok_or_else(|| StoreError::NotFound(format!("no API user {name:?}")))
    }

    async fn set_account_setting(
        &self,
        account_id: i64,
        key: &str,
        value: Option<&str>,
    ) -> Result<()> {
        match value {
            Some(v) => {
                sqlx::query(
                    "INSERT INTO account_settings (account_id, key, value) VALUES (?, ?, ?)
                     ON CONFLICT (account_id, key) DO UPDATE SET value = excluded.value",
                )
                .bind(account_id)
                .bind(key)
                .bind(v)
                .execute(&self.pool)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM account_settings WHERE account_id = ? AND key = ?")
                    .bind(account_id)
                    .bind(key)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }

    async fn account_settings(&self, account_id: i64) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT key, value FROM account_settings WHERE account_id = ? ORDER BY key",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get("key"), r.get("value")))
            .collect())
    }

    async fn add_label(&self, account_id: i64, label: &str) -> Result<()> {
        sqlx::query("INSERT INTO labels (account_id, label, created_at) VALUES (?, ?, ?)")
            .bind(account_id)
            .bind(label)
            .bind(now())
            .execute(&self.pool)
            .await
            .map_err(StoreError::from)
            .map_err(duplicate("label", label))?;
        Ok(())
    }

    async fn has_label(&self, account_id: i64, label: &str) -> Result<bool> {
        let found = sqlx::query("SELECT 1 FROM labels WHERE account_id = ? AND label = ?")
            .bind(account_id)
            .bind(label)
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    async fn enqueue(&self, message: NewMessage) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.writer
            .send(WriteJob { message, done })
            .await
            .map_err(|_| StoreError::Backend("the store writer has stopped".into()))?;
        wait.await
            .map_err(|_| StoreError::Backend("the store writer has stopped".into()))?
    }

    async fn count_messages_since(&self, account_id: i64, since: i64) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages WHERE account_id = ? AND received_at >= ?",
        )
        .bind(account_id)
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }

    fn commit_stats(&self) -> CommitStats {
        CommitStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            messages: self.counters.messages.load(Ordering::Relaxed),
        }
    }

    async fn message(&self, id: MessageId) -> Result<MessageRecord> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN accounts a ON a.id = m.account_id WHERE m.id = ?"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no message {id}")))?;
        self.message_from_row(&row).await
    }

    async fn message_content(&self, id: MessageId) -> Result<Vec<u8>> {
        sqlx::query_scalar("SELECT content FROM messages WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no message {id}")))
    }

    async fn messages(&self, filter: &MessageFilter) -> Result<Vec<MessageRecord>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN accounts a ON a.id = m.account_id
             WHERE (?1 IS NULL OR m.account_id = ?1)
               AND (?2 IS NULL OR EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id AND r.status = ?2))
             ORDER BY m.id LIMIT ?3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(filter.account_id)
            .bind(filter.status.map(|s| s.as_str()))
            .bind(filter.limit.map_or(-1, i64::from))
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.message_from_row(row).await?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(account_id: i64, rcpts: &[&str]) -> NewMessage {
        NewMessage {
            id: MessageId::generate(),
            account_id,
            mail_from: "a@example.com".into(),
            recipients: rcpts.iter().map(|s| s.to_string()).collect(),
            auth_user: "a@example.com".into(),
            label: Some("7".into()),
            received_at: now(),
            subject: "x".into(),
            header_from: "a@example.com".into(),
            attachments: vec![AttachmentRecord {
                filename: Some("a.pdf".into()),
                content_type: "application/pdf".into(),
                size: 3,
            }],
            content: b"Subject: x\r\n\r\nhi\r\n".to_vec(),
        }
    }

    #[tokio::test]
    async fn accounts_credentials_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let acct = store.create_account("shop").await.unwrap();
        assert!(matches!(
            store.create_account("shop").await,
            Err(StoreError::Duplicate(_))
        ));
        store
            .add_sender(acct.id, "a@example.com", "h")
            .await
            .unwrap();
        assert_eq!(
            store.sender("A@Example.com").await.unwrap().account_id,
            acct.id
        );
        store
            .set_sender_password("a@example.com", "h2")
            .await
            .unwrap();
        assert_eq!(
            store.sender("a@example.com").await.unwrap().password_hash,
            "h2"
        );
        assert!(matches!(
            store.set_sender_password("b@example.com", "x").await,
            Err(StoreError::NotFound(_))
        ));
        store
            .set_account_setting(acct.id, "max_attachments", Some("3"))
            .await
            .unwrap();
        store
            .set_account_setting(acct.id, "max_attachments", Some("4"))
            .await
            .unwrap();
        assert_eq!(
            store.account_settings(acct.id).await.unwrap(),
            [("max_attachments".to_string(), "4".to_string())]
        );
        store
            .set_account_setting(acct.id, "max_attachments", None)
            .await
            .unwrap();
        assert!(store.account_settings(acct.id).await.unwrap().is_empty());
        store.add_label(acct.id, "7").await.unwrap();
        assert!(store.has_label(acct.id, "7").await.unwrap());
        assert!(!store.has_label(acct.id, "8").await.unwrap());
    }

    #[tokio::test]
    async fn concurrent_enqueues_are_all_stored_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SqliteStore::open(dir.path()).await.unwrap());
        let acct = store.create_account("shop").await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..50 {
            let store = store.clone();
            let rcpt = format!("r{i}@example.net");
            tasks.push(tokio::spawn(async move {
                let m = message(acct.id, &[&rcpt, "x@example.org"]);
                let id = m.id;
                store.enqueue(m).await.map(|_| id)
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap().unwrap());
        }
        // Messages that were ready together shared commits.
        let stats = store.commit_stats();
        assert_eq!(stats.messages, 50);
        assert!(stats.commits < 50, "{stats:?}");
        drop(store);
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let all = store.messages(&MessageFilter::default()).await.unwrap();
        assert_eq!(all.len(), 50);
        assert_eq!(
            store
                .count_messages_since(acct.id, now() - 60)
                .await
                .unwrap(),
            50
        );
        assert_eq!(
            store
                .count_messages_since(acct.id, now() + 60)
                .await
                .unwrap(),
            0
        );
        let one = store.message(ids[3]).await.unwrap();
        assert_eq!(one.recipients.len(), 2);
        assert_eq!(one.recipients[0].status, RecipientStatus::Queued);
        assert_eq!(one.label.as_deref(), Some("7"));
        assert_eq!(one.account, "shop");
        assert_eq!(one.subject, "x");
        assert_eq!(one.attachments[0].filename.as_deref(), Some("a.pdf"));
        let queued = store
            .messages(&MessageFilter {
                status: Some(RecipientStatus::Delivered),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(queued.is_empty());
        assert_eq!(
            store.message_content(ids[0]).await.unwrap(),
            b"Subject: x\r\n\r\nhi\r\n"
        );
    }
}
