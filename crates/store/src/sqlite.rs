//! The embedded store: one SQLite database in the data directory, WAL
//! journal, `synchronous=FULL` (every commit is fsync'd).
//!
//! Reads go through a small pool. Enqueues go to one writer task that puts
//! every message waiting at that moment into a single transaction (group
//! commit), so many sessions share one fsync.

use crate::sqlite_api as api;
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
const MIGRATIONS: &[&str] = &[
    include_str!("schema_v1.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
];

/// Updates per statement when recording outcomes (7 parameters each).
const UPDATE_CHUNK: usize = 128;

/// Statuses after which nothing more happens to a recipient.
const NOT_FINAL: &str = "('queued', 'deferred', 'sending')";

/// Most messages one group commit carries.
const MAX_BATCH: usize = 512;

/// A write the writer task carries out inside its next group commit.
enum Op {
    Enqueue(NewMessage),
    Claim {
        owner: String,
        now: i64,
        lease_until: i64,
        limit: u32,
    },
    Record {
        owner: Option<String>,
        batch: OutcomeBatch,
    },
    Purge {
        bodies_before: i64,
        records_before: i64,
    },
    ClaimWebhooks {
        now: i64,
        lease_until: i64,
        limit: u32,
    },
    WebhookResults(Vec<WebhookResult>),
}

enum Done {
    Enqueued,
    Claimed(Vec<DueRecipient>),
    Recorded(Recorded),
    Purged(u64, u64),
    WebhooksClaimed(Vec<DueWebhookDelivery>),
    WebhooksRecorded,
}

struct WriteJob {
    op: Op,
    done: oneshot::Sender<Result<Done>>,
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

impl SqliteStore {
    /// Hand a write to the writer task and wait for its commit.
    async fn write(&self, op: Op) -> Result<Done> {
        let (done, wait) = oneshot::channel();
        let stopped = || StoreError::Backend("the store writer has stopped".into());
        self.writer
            .send(WriteJob { op, done })
            .await
            .map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?
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
        let enqueued = batch
            .iter()
            .filter(|j| matches!(j.op, Op::Enqueue(_)))
            .count();
        let result = write_batch(&mut conn, &mut batch).await;
        match &result {
            Ok(_) => {
                counters.commits.fetch_add(1, Ordering::Relaxed);
                counters
                    .messages
                    .fetch_add(enqueued as u64, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = batch.len(), "group commit failed")
            }
        }
        match result {
            Ok(results) => {
                for (job, done) in batch.drain(..).zip(results) {
                    let _ = job.done.send(Ok(done));
                }
            }
            Err(e) => {
                for job in batch.drain(..) {
                    let _ = job.done.send(Err(StoreError::Backend(e.to_string())));
                }
            }
        }
    }
}

/// Every job in one transaction; the results in the jobs' order.
async fn write_batch(conn: &mut SqliteConnection, batch: &mut [WriteJob]) -> Result<Vec<Done>> {
    let mut tx = conn.begin().await?;
    let mut results = Vec::with_capacity(batch.len());
    // Events only while some webhook may want them (see sqlite_api).
    let events_since = if api::webhooks_exist(&mut tx).await? {
        Some(api::last_event_id(&mut tx).await?)
    } else {
        None
    };
    let events = events_since.is_some();
    for job in batch.iter_mut() {
        let done = match &mut job.op {
            Op::Enqueue(m) => {
                insert_message(&mut tx, m, events).await?;
                Done::Enqueued
            }
            Op::Claim {
                owner,
                now,
                lease_until,
                limit,
            } => Done::Claimed(claim(&mut tx, owner, *now, *lease_until, *limit).await?),
            Op::Record { owner, batch } => Done::Recorded(
                record(&mut tx, owner.as_deref(), std::mem::take(batch), events).await?,
            ),
            Op::Purge {
                bodies_before,
                records_before,
            } => {
                let (b, r) = purge(&mut tx, *bodies_before, *records_before).await?;
                Done::Purged(b, r)
            }
            Op::ClaimWebhooks {
                now,
                lease_until,
                limit,
            } => Done::WebhooksClaimed(
                api::claim_webhook_deliveries(&mut tx, *now, *lease_until, *limit).await?,
            ),
            Op::WebhookResults(results) => {
                api::record_webhook_results(&mut tx, results, now()).await?;
                Done::WebhooksRecorded
            }
        };
        results.push(done);
    }
    if let Some(since) = events_since {
        api::fan_out(&mut tx, since, now()).await?;
    }
    tx.commit().await?;
    Ok(results)
}

async fn insert_message(tx: &mut SqliteConnection, m: &NewMessage, events: bool) -> Result<()> {
    let id = m.id.to_string();
    let all_suppressed = m.recipients.is_empty();
    sqlx::query(
        "INSERT INTO messages (id, account_id, mail_from, auth_user, label, size, received_at, subject, header_from, content, is_dsn, completed_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    .bind(m.is_dsn)
    .bind(all_suppressed.then_some(m.received_at))
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
    let queued = m.recipients.iter().map(|r| (r, RecipientStatus::Queued));
    let suppressed = m
        .suppressed
        .iter()
        .map(|r| (r, RecipientStatus::Suppressed));
    for (idx, (rcpt, status)) in queued.chain(suppressed).enumerate() {
        let (next_try, reply) = match status {
            RecipientStatus::Queued => (Some(m.received_at), None),
            _ => (
                None,
                Some("550 5.1.1 recipient is on the account's suppression list"),
            ),
        };
        sqlx::query(
            "INSERT INTO recipients (message_id, idx, address, status, next_try, last_reply, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(idx as i64)
        .bind(rcpt)
        .bind(status.as_str())
        .bind(next_try)
        .bind(reply)
        .bind(m.received_at)
        .execute(&mut *tx)
        .await?;
    }
    if events && !m.suppressed.is_empty() {
        let first = m.recipients.len() as i64;
        let suppressed: Vec<(String, i64)> = (first..first + m.suppressed.len() as i64)
            .map(|idx| (id.clone(), idx))
            .collect();
        api::record_events(tx, &suppressed, m.received_at).await?;
    }
    Ok(())
}

async fn claim(
    tx: &mut SqliteConnection,
    owner: &str,
    now: i64,
    lease_until: i64,
    limit: u32,
) -> Result<Vec<DueRecipient>> {
    // One statement marks what is due (leases that ran out first, then the
    // earliest planned), one reads its messages: two round trips to the
    // database thread whatever the batch size.
    let claimed = sqlx::query(
        "UPDATE recipients SET status = 'sending', lease_owner = ?3, lease_until = ?4, updated_at = ?1
         WHERE rowid IN (
             SELECT rowid FROM (SELECT rowid FROM recipients
                                WHERE status = 'sending' AND lease_until <= ?1
                                ORDER BY lease_until LIMIT ?2)
             UNION ALL
             SELECT rowid FROM (SELECT rowid FROM recipients
                                WHERE status IN ('queued', 'deferred') AND next_try <= ?1
                                ORDER BY next_try LIMIT ?2)
             LIMIT ?2)
         RETURNING message_id, idx, address, attempts",
    )
    .bind(now)
    .bind(i64::from(limit))
    .bind(owner)
    .bind(lease_until)
    .fetch_all(&mut *tx)
    .await?;
    if claimed.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids: Vec<String> = claimed.iter().map(|r| r.get("message_id")).collect();
    ids.sort_unstable();
    ids.dedup();
    let rows = sqlx::query(
        "SELECT id, account_id, mail_from, header_from, label, received_at, is_dsn
         FROM messages WHERE id IN (SELECT value FROM json_each(?))",
    )
    .bind(json_array(&ids))
    .fetch_all(&mut *tx)
    .await?;
    let messages: std::collections::HashMap<String, &sqlx::sqlite::SqliteRow> =
        rows.iter().map(|r| (r.get::<String, _>("id"), r)).collect();
    let mut out = Vec::with_capacity(claimed.len());
    for r in &claimed {
        let id: String = r.get("message_id");
        let Some(m) = messages.get(&id) else {
            return Err(StoreError::Backend(format!(
                "recipient of a missing message {id}"
            )));
        };
        out.push(DueRecipient {
            message_id: parse_id(&id)?,
            idx: r.get::<i64, _>("idx") as u32,
            address: r.get("address"),
            attempts: r.get::<i64, _>("attempts") as u32,
            account_id: m.get("account_id"),
            mail_from: m.get("mail_from"),
            header_from: m.get("header_from"),
            label: m.get("label"),
            received_at: m.get("received_at"),
            is_dsn: m.get("is_dsn"),
        });
    }
    // Oldest messages first, a message's recipients together and in order.
    out.sort_by_key(|r| (r.message_id, r.idx));
    Ok(out)
}

/// A JSON array of strings, for `json_each(?)`.
fn json_array<S: AsRef<str>>(items: &[S]) -> String {
    serde_json::to_string(&items.iter().map(AsRef::as_ref).collect::<Vec<&str>>())
        .expect("strings serialize")
}

async fn record(
    tx: &mut SqliteConnection,
    owner: Option<&str>,
    batch: OutcomeBatch,
    events: bool,
) -> Result<Recorded> {
    let now = now();
    let mut recorded = Recorded::default();
    if !batch.updates.is_empty() {
        // A statement per chunk of updates (rows of bound VALUES, no JSON
        // to parse); RETURNING says which applied.
        let guard = match owner {
            Some(_) => "r.status = 'sending' AND r.lease_owner = ?",
            None => "r.status IN ('queued', 'deferred', 'sending') AND ? IS NULL",
        };
        let mut applied_rows = Vec::with_capacity(batch.updates.len());
        for chunk in batch.updates.chunks(UPDATE_CHUNK) {
            let rows = vec!["(?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "WITH u(id, idx, status, attempts, last_reply, remote_host, next_try) AS (VALUES {rows})
                 UPDATE recipients AS r SET status = u.status, attempts = u.attempts,
                        last_reply = u.last_reply, remote_host = u.remote_host, next_try = u.next_try,
                        lease_owner = NULL, lease_until = NULL, updated_at = ?
                 FROM u
                 WHERE r.message_id = u.id AND r.idx = u.idx AND {guard}
                 RETURNING message_id, idx"
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for u in chunk {
                q = q
                    .bind(u.message_id.to_string())
                    .bind(i64::from(u.idx))
                    .bind(u.status.as_str())
                    .bind(i64::from(u.attempts))
                    .bind(u.last_reply.clone())
                    .bind(u.remote_host.clone())
                    .bind(u.next_try);
            }
            applied_rows.extend(q.bind(now).bind(owner).fetch_all(&mut *tx).await?);
        }
        let applied = applied_rows;
        recorded.applied = applied.len() as u64;
        let applied: std::collections::HashSet<(String, i64)> = applied
            .iter()
            .map(|r| (r.get("message_id"), r.get("idx")))
            .collect();
        if events {
            let changed: Vec<(String, i64)> = applied.iter().cloned().collect();
            api::record_events(&mut *tx, &changed, now).await?;
        }
        let mut touched: Vec<String> = applied.iter().map(|(id, _)| id.clone()).collect();
        touched.sort_unstable();
        touched.dedup();
        for u in &batch.updates {
            let Some(reason) = &u.suppress else { continue };
            let id = u.message_id.to_string();
            if !applied.contains(&(id.clone(), i64::from(u.idx))) {
                continue;
            }
            sqlx::query(
                "INSERT INTO suppressions (account_id, address, reason, message_id, created_at)
                 SELECT account_id, (SELECT address FROM recipients WHERE message_id = ?1 AND idx = ?2), ?3, ?1, ?4
                 FROM messages WHERE id = ?1
                 ON CONFLICT (account_id, address) DO UPDATE SET reason = excluded.reason,
                     message_id = excluded.message_id, created_at = excluded.created_at",
            )
            .bind(&id)
            .bind(i64::from(u.idx))
            .bind(reason)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        if !touched.is_empty() {
            let done = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE messages SET completed_at = ?1
                 WHERE id IN (SELECT value FROM json_each(?2)) AND completed_at IS NULL
                   AND NOT EXISTS (SELECT 1 FROM recipients WHERE message_id = messages.id AND status IN {NOT_FINAL})
                 RETURNING id"
            )))
            .bind(now)
            .bind(json_array(&touched))
            .fetch_all(&mut *tx)
            .await?;
            for row in &done {
                recorded
                    .completed
                    .push(parse_id(&row.get::<String, _>("id"))?);
            }
            recorded.completed.sort_unstable();
        }
    }
    for notice in &batch.notices {
        insert_message(&mut *tx, notice, events).await?;
    }
    Ok(recorded)
}

/// Bodies, then whole records, of messages final long enough. In the
/// writer, so it never waits on (or holds up) the group commit's lock.
async fn purge(
    tx: &mut SqliteConnection,
    bodies_before: i64,
    records_before: i64,
) -> Result<(u64, u64)> {
    let bodies = sqlx::query(
        "UPDATE messages SET content = x'', content_purged = 1
         WHERE completed_at IS NOT NULL AND completed_at <= ? AND content_purged = 0",
    )
    .bind(bodies_before)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let old = "SELECT id FROM messages WHERE completed_at IS NOT NULL AND completed_at <= ?";
    for table in ["attachments", "recipients"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE message_id IN ({old})"
        )))
        .bind(records_before)
        .execute(&mut *tx)
        .await?;
    }
    let records = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM messages WHERE id IN ({old})"
    )))
    .bind(records_before)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    api::purge_events(tx, records_before).await?;
    Ok((bodies, records))
}

fn parse_id(id: &str) -> Result<MessageId> {
    id.parse()
        .map_err(|e| StoreError::Backend(format!("stored id {id:?}: {e}")))
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
            "SELECT address, status, attempts, last_reply, next_try, remote_host, updated_at FROM recipients
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
                    remote_host: r.get("remote_host"),
                    updated_at: r.get("updated_at"),
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
            id: parse_id(&id)?,
            completed_at: row.get("completed_at"),
            is_dsn: row.get("is_dsn"),
            content_purged: row.get("content_purged"),
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

const MESSAGE_COLUMNS: &str = "m.id, m.account_id, a.name AS account, m.mail_from, m.auth_user, m.label, m.size, m.received_at, m.subject, m.header_from, m.completed_at, m.is_dsn, m.content_purged";

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
        self.write(Op::Enqueue(message)).await.map(|_| ())
    }

    async fn claim_due(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<DueRecipient>> {
        match self
            .write(Op::Claim {
                owner: owner.to_string(),
                now,
                lease_until,
                limit,
            })
            .await?
        {
            Done::Claimed(due) => Ok(due),
            _ => unreachable!("a claim answers with what it claimed"),
        }
    }

    async fn record_outcomes(&self, owner: Option<&str>, batch: OutcomeBatch) -> Result<Recorded> {
        match self
            .write(Op::Record {
                owner: owner.map(str::to_string),
                batch,
            })
            .await?
        {
            Done::Recorded(r) => Ok(r),
            _ => unreachable!("a record answers with what it recorded"),
        }
    }

    async fn release_leases(&self, owner: &str, now: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE recipients SET status = CASE WHEN attempts = 0 THEN 'queued' ELSE 'deferred' END,
                    lease_owner = NULL, lease_until = NULL, next_try = ?, updated_at = ?
             WHERE status = 'sending' AND lease_owner = ?",
        )
        .bind(now)
        .bind(now)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn next_due(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(t) FROM (
                 SELECT MIN(next_try) AS t FROM recipients WHERE status IN ('queued', 'deferred')
                 UNION ALL
                 SELECT MIN(lease_until) AS t FROM recipients WHERE status = 'sending')",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    async fn retry_now(&self, id: MessageId, now: i64) -> Result<u64> {
        self.message(id).await?;
        let done = sqlx::query(
            "UPDATE recipients SET next_try = ?, updated_at = ?
             WHERE message_id = ? AND status IN ('queued', 'deferred')",
        )
        .bind(now)
        .bind(now)
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn purge(&self, bodies_before: i64, records_before: i64) -> Result<(u64, u64)> {
        match self
            .write(Op::Purge {
                bodies_before,
                records_before,
            })
            .await?
        {
            Done::Purged(bodies, records) => Ok((bodies, records)),
            _ => unreachable!("a purge answers with what it purged"),
        }
    }

    async fn add_suppression(&self, account_id: i64, address: &str, reason: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO suppressions (account_id, address, reason, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (account_id, address) DO UPDATE SET reason = excluded.reason",
        )
        .bind(account_id)
        .bind(address)
        .bind(reason)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn remove_suppression(&self, account_id: i64, address: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM suppressions WHERE account_id = ? AND address = ?")
            .bind(account_id)
            .bind(address)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn suppressions(&self, account_id: i64) -> Result<Vec<Suppression>> {
        let rows = sqlx::query(
            "SELECT address, reason, message_id, created_at FROM suppressions
             WHERE account_id = ? ORDER BY address",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| Suppression {
                address: r.get("address"),
                reason: r.get("reason"),
                message_id: r.get("message_id"),
                created_at: r.get("created_at"),
            })
            .collect())
    }

    async fn is_suppressed(&self, account_id: i64, address: &str) -> Result<bool> {
        let found = sqlx::query("SELECT 1 FROM suppressions WHERE account_id = ? AND address = ?")
            .bind(account_id)
            .bind(address)
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
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

    async fn add_api_key(&self, key: ApiKey) -> Result<()> {
        let id = key.id.clone();
        api::add_api_key(&self.pool, &key)
            .await
            .map_err(duplicate("API key", &id))
    }

    async fn api_key(&self, id: &str) -> Result<ApiKey> {
        api::api_key(&self.pool, id).await
    }

    async fn api_keys(&self, account_id: Option<i64>) -> Result<Vec<ApiKey>> {
        api::api_keys(&self.pool, account_id).await
    }

    async fn remove_api_key(&self, id: &str) -> Result<bool> {
        api::remove_api_key(&self.pool, id).await
    }

    async fn daily_stats(
        &self,
        account_id: i64,
        from: MessageId,
        before: MessageId,
        label: Option<&str>,
    ) -> Result<Vec<DayStats>> {
        api::daily_stats(&self.pool, account_id, from, before, label).await
    }

    async fn status_counts(&self) -> Result<Vec<(RecipientStatus, u64)>> {
        api::status_counts(&self.pool).await
    }

    async fn add_webhook(&self, webhook: Webhook) -> Result<()> {
        api::add_webhook(&self.pool, &webhook).await
    }

    async fn webhooks(&self, account_id: i64) -> Result<Vec<Webhook>> {
        api::webhooks(&self.pool, account_id).await
    }

    async fn remove_webhook(&self, account_id: i64, id: &str) -> Result<bool> {
        api::remove_webhook(&self.pool, account_id, id).await
    }

    async fn claim_webhook_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<DueWebhookDelivery>> {
        match self
            .write(Op::ClaimWebhooks {
                now,
                lease_until,
                limit,
            })
            .await?
        {
            Done::WebhooksClaimed(d) => Ok(d),
            _ => unreachable!("a webhook claim answers with what it claimed"),
        }
    }

    async fn record_webhook_results(&self, results: Vec<WebhookResult>) -> Result<()> {
        self.write(Op::WebhookResults(results)).await.map(|_| ())
    }

    async fn next_webhook_due(&self) -> Result<Option<i64>> {
        api::next_webhook_due(&self.pool).await
    }

    async fn senders(&self, account_id: i64) -> Result<Vec<ListedName>> {
        api::listed_names(&self.pool, api::ListedTable::Senders, account_id).await
    }

    async fn api_users(&self, account_id: i64) -> Result<Vec<ListedName>> {
        api::listed_names(&self.pool, api::ListedTable::ApiUsers, account_id).await
    }

    async fn labels(&self, account_id: i64) -> Result<Vec<ListedName>> {
        api::listed_names(&self.pool, api::ListedTable::Labels, account_id).await
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
        let row = sqlx::query("SELECT content, content_purged FROM messages WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no message {id}")))?;
        if row.get::<bool, _>("content_purged") {
            return Err(StoreError::NotFound(format!(
                "the content of message {id} was deleted after its retention time (every recipient is final)"
            )));
        }
        Ok(row.get("content"))
    }

    async fn messages(&self, filter: &MessageFilter) -> Result<Vec<MessageRecord>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN accounts a ON a.id = m.account_id
             WHERE (?1 IS NULL OR m.account_id = ?1)
               AND (?2 IS NULL OR EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id AND r.status = ?2))
               AND (?4 IS NULL OR m.id > ?4)
               AND (?5 IS NULL OR m.id < ?5)
               AND (?6 IS NULL OR m.id IN (SELECT message_id FROM recipients WHERE address = ?6 COLLATE NOCASE))
               AND (?7 IS NULL OR m.label = ?7)
             ORDER BY m.id LIMIT ?3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(filter.account_id)
            .bind(filter.status.map(|s| s.as_str()))
            .bind(filter.limit.map_or(-1, i64::from))
            .bind(filter.after.map(|id| id.to_string()))
            .bind(filter.before.map(|id| id.to_string()))
            .bind(filter.recipient.as_deref())
            .bind(filter.label.as_deref())
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
            suppressed: Vec::new(),
            is_dsn: false,
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

    fn update(id: MessageId, idx: u32, status: RecipientStatus) -> RecipientUpdate {
        RecipientUpdate {
            message_id: id,
            idx,
            status,
            attempts: 1,
            last_reply: Some("250 2.0.0 ok".into()),
            remote_host: Some("mx.test[127.0.0.1]".into()),
            next_try: None,
            suppress: None,
        }
    }

    #[tokio::test]
    async fn claims_leases_outcomes_suppression_and_purge() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let acct = store.create_account("shop").await.unwrap();
        let mut m = message(acct.id, &["a@x.test", "b@y.test"]);
        m.suppressed = vec!["gone@x.test".into()];
        let id = m.id;
        store.enqueue(m).await.unwrap();
        let t = now();
        assert_eq!(
            store.next_due().await.unwrap(),
            Some(t.min(store.message(id).await.unwrap().received_at))
        );

        // Two recipients are due; the suppressed one is final already.
        let due = store.claim_due("n1", t, t + 60, 10).await.unwrap();
        assert_eq!(due.len(), 2);
        assert_eq!(due[0].address, "a@x.test");
        assert_eq!(due[0].header_from, "a@example.com");
        // Leased: not claimed again, by this node or another, until the lease ends.
        assert!(store
            .claim_due("n2", t, t + 60, 10)
            .await
            .unwrap()
            .is_empty());
        let again = store.claim_due("n2", t + 61, t + 120, 10).await.unwrap();
        assert_eq!(again.len(), 2, "an expired lease is picked up again");
        // n1's late outcome no longer applies; n2's does.
        let r = store
            .record_outcomes(
                Some("n1"),
                OutcomeBatch {
                    updates: vec![update(id, 0, RecipientStatus::Delivered)],
                    notices: vec![],
                },
            )
            .await
            .unwrap();
        assert_eq!(r.applied, 0);
        let mut bounce = update(id, 1, RecipientStatus::Bounced);
        bounce.last_reply = Some("550 5.1.1 user unknown".into());
        bounce.suppress = Some("550 5.1.1 user unknown".into());
        let mut notice = message(acct.id, &["a@example.com"]);
        notice.mail_from = String::new();
        notice.is_dsn = true;
        let notice_id = notice.id;
        let r = store
            .record_outcomes(
                Some("n2"),
                OutcomeBatch {
                    updates: vec![update(id, 0, RecipientStatus::Delivered), bounce],
                    notices: vec![notice],
                },
            )
            .await
            .unwrap();
        assert_eq!(r.applied, 2);
        assert_eq!(r.completed, vec![id]);
        let rec = store.message(id).await.unwrap();
        assert_eq!(
            rec.recipients.iter().map(|r| r.status).collect::<Vec<_>>(),
            [
                RecipientStatus::Delivered,
                RecipientStatus::Bounced,
                RecipientStatus::Suppressed
            ]
        );
        assert!(rec.completed_at.is_some());
        assert!(store.is_suppressed(acct.id, "B@y.test").await.unwrap());
        assert!(store.message(notice_id).await.unwrap().is_dsn);
        // An operator's update applies to what is not final only.
        let r = store
            .record_outcomes(
                None,
                OutcomeBatch {
                    updates: vec![update(id, 0, RecipientStatus::Bounced)],
                    notices: vec![],
                },
            )
            .await
            .unwrap();
        assert_eq!(r.applied, 0);

        // The notice is due; a crash leaves it leased; release gives it back.
        let due = store.claim_due("n1", t, t + 600, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert!(due[0].is_dsn);
        assert_eq!(store.release_leases("n1", t).await.unwrap(), 1);
        assert_eq!(
            store.message(notice_id).await.unwrap().recipients[0].status,
            RecipientStatus::Queued
        );
        assert_eq!(store.retry_now(notice_id, t).await.unwrap(), 1);

        // Suppression list by hand.
        store
            .add_suppression(acct.id, "c@z.test", "added by operator")
            .await
            .unwrap();
        assert_eq!(store.suppressions(acct.id).await.unwrap().len(), 2);
        assert!(store.remove_suppression(acct.id, "c@z.test").await.unwrap());
        assert!(!store.remove_suppression(acct.id, "c@z.test").await.unwrap());

        // Bodies go first, then records; the pending notice stays.
        assert_eq!(store.purge(t + 10, 0).await.unwrap(), (1, 0));
        assert!(matches!(
            store.message_content(id).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(store.message(id).await.unwrap().content_purged);
        assert_eq!(store.purge(t + 10, t + 10).await.unwrap(), (0, 1));
        assert!(store.message(id).await.is_err());
        assert!(store.message_content(notice_id).await.is_ok());
    }
}
