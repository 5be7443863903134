//! The shared store: one PostgreSQL database (or one schema of it) that
//! every node of a cluster uses (issue 18).
//!
//! Everything goes through one sqlx pool. Writes are ordinary
//! transactions (`synchronous_commit` as the server has it, on by
//! default, so an enqueue has been flushed when its future resolves);
//! enqueues are one transaction per call for now: group commit belongs in
//! [`PostgresStore::enqueue`] (a task taking every message waiting, as
//! `sqlite_writer` does, into one transaction of `unnest` inserts).
//!
//! Nodes never work on the same recipient: claims take rows with
//! `FOR UPDATE SKIP LOCKED`, and an outcome applies only to a recipient
//! its node still leases. Time is the database's ([`Clock`]).
//!
//! Layout: this file has opening, migrations, the clock, accounts and the
//! queue; `postgres_api.rs` the HTTP API's tables and webhooks;
//! `postgres_auth.rs` the AUTH lockouts.

use crate::fresh::FreshContents;
use crate::postgres_clock::Clock;
use crate::postgres_enqueue::{insert_messages, Enqueuer};
use crate::postgres_events::{event_ctes, WAKE_CHANNEL, WAKE_IF_ADDED};
use crate::postgres_nodes as nodes;
use crate::postgres_stash::{OwnBackends, Stash};
use crate::postgres_suppressed::SuppressionChecks;
use crate::shared::duplicate;
use crate::*;
use posthorn_types::RecipientStatus;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Row};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use crate::postgres_api as api;
pub(crate) use crate::postgres_auth as auth;

/// Schema migrations, applied in order; the table `posthorn_migrations`
/// records which have run.
const MIGRATIONS: &[&str] = &[
    include_str!("pg_schema_v1.sql"),
    include_str!("pg_schema_v2.sql"),
    include_str!("pg_schema_v3.sql"),
    include_str!("pg_schema_v4.sql"),
    include_str!("pg_schema_v5.sql"),
    include_str!("pg_schema_v6.sql"),
    // Console sessions (issue 21).
    include_str!("pg_schema_v7.sql"),
    // The HTTP status of webhook deliveries (the console's webhook page).
    include_str!("pg_schema_v8.sql"),
    // Opens and clicks of tracked messages (issue 22).
    include_str!("pg_schema_v9.sql"),
    // A message's other rows without foreign keys to it (the accept path).
    include_str!("pg_schema_v10.sql"),
];

/// Enqueue batches committing at once (`postgres_enqueue.rs`): while one
/// waits for its flush the next fills, so sessions finishing together
/// share a commit (five at once, with 20 sessions, made batches of 2.5
/// messages and a flush queue; bench/cluster.sh).
const COMMITS_AT_ONCE: usize = 2;

/// The connections of the accept path, beside `[store] max_connections`:
/// the batches committing at once, the NOTIFY that follows them, and the
/// RCPT-time suppression check (`PostgresStore::open`).
pub const ACCEPT_CONNECTIONS: u32 = COMMITS_AT_ONCE as u32 + 2;

/// `persistent(..)` of delivery's statements over the queue (claims,
/// outcomes, completion, the next due time): not prepared once per
/// connection but planned at each execution, for the table as it is then
/// and the arrays it is given. A prepared statement's plan is kept until
/// the table is analyzed again; one planned while the queue was nearly
/// empty (a new database under load at once, as in bench/cluster.sh, where
/// autovacuum had not run within the minute) scanned the whole table per
/// touched message: the completion check of 677 messages took 1.8 s. The
/// planning costs less than a millisecond a batch.
const PLANNED_EACH_TIME: bool = false;

/// Statuses after which nothing more happens to a recipient.
const NOT_FINAL: &str = "('queued', 'deferred', 'sending')";

/// See the module documentation.
pub struct PostgresStore {
    pub(crate) pool: PgPool,
    clock: Arc<Clock>,
    enqueuer: Enqueuer,
    /// What this node just committed, for its own delivery (`fresh.rs`).
    fresh: Arc<FreshContents>,
    wakeups: Wakeups,
    /// Whether the LISTEN task runs (started by the first `wakeups()`).
    listening: std::sync::Once,
    /// The RCPT-time suppression check, coalesced (`postgres_suppressed.rs`).
    suppressed: SuppressionChecks,
    /// Connections kept for delivery's claims and records (`postgres_stash.rs`).
    delivery: Arc<Stash>,
    /// The backends this node's enqueues NOTIFY from.
    own_backends: OwnBackends,
    /// Whether enqueues fail for lack of space (`Store::out_of_space`).
    space: crate::space::SpaceWatch,
}

/// `"name"`, quoted as an SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl PostgresStore {
    /// Keep up to `bytes` of contents this node just committed in memory
    /// for its own delivery (`fresh.rs`), as the embedded store does; 0,
    /// the default, keeps none. Another node delivering a message reads
    /// it from the database.
    pub fn keep_fresh_contents(&self, bytes: usize) {
        self.fresh.set_cap(bytes);
    }

    /// Wake every node's delivery when `changed` recipients became due.
    async fn wake_queue(&self, changed: u64) -> Result<()> {
        if changed > 0 {
            sqlx::query("SELECT pg_notify($1, 'q')")
                .bind(WAKE_CHANNEL)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}

impl PostgresStore {
    /// Connect to `url` with a pool of up to `max_connections`, working in
    /// `schema` (created if missing; every connection's `search_path`) or
    /// in the user's default search path, and migrate the schema. Several
    /// nodes may open together: migrations run under an advisory lock.
    pub async fn open(url: &str, schema: Option<&str>, max_connections: u32) -> Result<Self> {
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Backend(format!("PostgreSQL URL: {e}")))?
            .application_name("posthorn");
        if let Some(schema) = schema {
            options = options.options([("search_path", quote_ident(schema))]);
        }
        let mut conn = PgConnection::connect_with(&options).await?;
        migrate(&mut conn, schema).await?;
        conn.close().await?;
        // The hot paths keep connections taken, sparing the pool's two
        // pings per use (`postgres_stash.rs`): delivery up to two of the
        // pool's (at most a third of it; the rest, and whatever delivery
        // needs beyond, come and go through the pool), and the accept path
        // the [`ACCEPT_CONNECTIONS`] of its own.
        let delivery = (max_connections as usize / 3).min(2);
        // The accept path's connections (group commit, the suppression
        // check) are a pool of their own, beside `max_connections`, so
        // acceptance never waits for a connection behind other work, and
        // a lock that holds the commits up cannot take the RCPT checks'
        // connection too. Its statements keep one generic plan each:
        // they are the same few statements thousands of times a second,
        // and re-planning each execution, as PostgreSQL chose to for their
        // array parameters, was an eighth of the accept rate
        // (bench/cluster.sh). Their plans cannot go stale: the insert
        // reads no table, and the check can only look its index up
        // (`postgres_suppressed.rs`). Everything else, delivery's queue
        // statements above all, keeps being planned for the table as it is.
        let wait = |o: PgPoolOptions| {
            // Callers wait for a connection rather than fail when the
            // database is busy (5,000 enqueues at once).
            o.acquire_timeout(Duration::from_secs(60))
        };
        let pool = wait(PgPoolOptions::new())
            .max_connections(max_connections.max(1))
            .connect_with(options.clone())
            .await?;
        let accept_pool = wait(PgPoolOptions::new())
            .max_connections(ACCEPT_CONNECTIONS)
            .connect_with(options.options([("plan_cache_mode", "force_generic_plan")]))
            .await?;
        let clock = Clock::open(&pool).await?;
        let fresh = Arc::new(FreshContents::default());
        let own_backends = OwnBackends::default();
        let enqueuer = Enqueuer::start(
            pool.clone(),
            Arc::new(Stash::new(
                accept_pool.clone(),
                COMMITS_AT_ONCE + 1,
                Some(own_backends.clone()),
            )),
            clock.clone(),
            COMMITS_AT_ONCE,
            fresh.clone(),
        );
        let suppressed = SuppressionChecks::start(Arc::new(Stash::new(accept_pool, 1, None)));
        let delivery = Arc::new(Stash::new(pool.clone(), delivery, None));
        Ok(Self {
            pool,
            clock,
            enqueuer,
            fresh,
            wakeups: Wakeups::default(),
            listening: std::sync::Once::new(),
            suppressed,
            delivery,
            own_backends,
            space: Default::default(),
        })
    }
}

/// LISTEN on [`WAKE_CHANNEL`] and raise `wakeups` for what other nodes
/// (and this one) commit. After (re)connecting both are raised: what was
/// sent meanwhile is unknown. Runs as long as the process (one task, made
/// by the first [`Store::wakeups`] call).
async fn listen(pool: PgPool, wakeups: Wakeups, own: OwnBackends) {
    use sqlx::postgres::PgListener;
    let raise_all = || {
        wakeups.queue.notify_one();
        wakeups.webhooks.notify_one();
    };
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for other nodes' work; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(WAKE_CHANNEL).await {
            tracing::warn!(error = %e, "cannot LISTEN for other nodes' work; retrying in 1 s");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        raise_all();
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => match n.payload() {
                    // This node's own enqueues: its delivery was woken by
                    // the submitter already.
                    "q" if own.lock().expect("own backends").contains(&n.process_id()) => {}
                    "q" => wakeups.queue.notify_one(),
                    "w" => wakeups.webhooks.notify_one(),
                    _ => {}
                },
                // The connection was lost; the next call makes it again
                // (and LISTENs again).
                Ok(None) => raise_all(),
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection failed; reconnecting in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

/// Apply the migrations not yet applied, holding an advisory lock (one
/// per schema) so nodes starting together take turns.
async fn migrate(conn: &mut PgConnection, schema: Option<&str>) -> Result<()> {
    let key = format!("posthorn.migrate.{}", schema.unwrap_or(""));
    sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
        .bind(&key)
        .execute(&mut *conn)
        .await?;
    let result = migrate_locked(conn, schema).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
        .bind(&key)
        .execute(&mut *conn)
        .await;
    result?;
    unlocked?;
    Ok(())
}

async fn migrate_locked(conn: &mut PgConnection, schema: Option<&str>) -> Result<()> {
    if let Some(schema) = schema {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote_ident(schema)
        )))
        .execute(&mut *conn)
        .await?;
    }
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS posthorn_migrations (
             version     BIGINT PRIMARY KEY,
             applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .execute(&mut *conn)
    .await?;
    let applied: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM posthorn_migrations")
        .fetch_one(&mut *conn)
        .await?;
    let applied = applied.unwrap_or(0);
    if applied > MIGRATIONS.len() as i64 {
        return Err(StoreError::Backend(format!(
            "the database schema is version {applied}, newer than this Posthorn knows ({}); upgrade Posthorn",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        let mut tx = conn.begin().await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO posthorn_migrations (version) VALUES ($1)")
            .bind(i as i64 + 1)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(())
}

fn parse_id(id: &str) -> Result<MessageId> {
    id.parse()
        .map_err(|e| StoreError::Backend(format!("stored id {id:?}: {e}")))
}

fn account_from_row(row: &PgRow) -> Account {
    Account {
        id: row.get("id"),
        name: row.get("name"),
        created_at: row.get("created_at"),
    }
}

fn domain_from_row(row: &PgRow) -> Domain {
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

fn recipient_from_row(r: &PgRow) -> Result<RecipientRecord> {
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
}

fn attachment_from_row(r: &PgRow) -> AttachmentRecord {
    AttachmentRecord {
        filename: r.get("filename"),
        content_type: r.get("content_type"),
        size: r.get::<i64, _>("size") as u64,
    }
}

fn message_from_row(
    row: &PgRow,
    attachments: Vec<AttachmentRecord>,
    recipients: Vec<RecipientRecord>,
) -> Result<MessageRecord> {
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
        client_ip: row.get("client_ip"),
        label: row.get("label"),
        size: row.get::<i64, _>("size") as u64,
        received_at: row.get("received_at"),
        subject: row.get("subject"),
        header_from: row.get("header_from"),
        attachments,
        recipients,
    })
}

fn by_message<T>(
    rows: &[PgRow],
    make: impl Fn(&PgRow) -> Result<T>,
) -> Result<HashMap<String, Vec<T>>> {
    let mut out: HashMap<String, Vec<T>> = HashMap::new();
    for r in rows {
        out.entry(r.get("message_id")).or_default().push(make(r)?);
    }
    Ok(out)
}

const MESSAGE_COLUMNS: &str = "m.id, m.account_id, a.name AS account, m.mail_from, m.auth_user, m.client_ip, m.label, m.size, m.received_at, m.subject, m.header_from, m.completed_at, m.is_dsn, m.content_purged";

impl PostgresStore {
    /// [`Store::record_outcomes`] on `conn`, in one transaction.
    async fn record_outcomes_on(
        &self,
        conn: &mut PgConnection,
        owner: Option<&str>,
        batch: OutcomeBatch,
    ) -> Result<Recorded> {
        let now = self.now();
        let mut tx = conn.begin().await?;
        let mut recorded = Recorded::default();
        if !batch.updates.is_empty() {
            let mut touched: Vec<String> = batch
                .updates
                .iter()
                .map(|u| u.message_id.to_string())
                .collect();
            touched.sort_unstable();
            touched.dedup();
            let u = &batch.updates;
            let guard = match owner {
                Some(_) => "r.status = 'sending' AND r.lease_owner = $9",
                None => "r.status IN ('queued', 'deferred', 'sending') AND $9::text IS NULL",
            };
            // One statement: the messages locked first, in id order (the
            // one-time filter runs before any recipient is touched), so two
            // recorders finishing the last recipients of one message take
            // turns and the second's completion check below, a statement
            // begun after the lock, sees the first's; then the recipients,
            // and the webhook events of their new states.
            let sql = format!(
                "WITH locked AS (SELECT 1 FROM messages WHERE id = ANY($10) ORDER BY id FOR UPDATE),
                 upd AS (
                     UPDATE recipients AS r SET status = u.status, attempts = u.attempts,
                            last_reply = u.last_reply, remote_host = u.remote_host, next_try = u.next_try,
                            lease_owner = NULL, lease_until = NULL, updated_at = $8
                     FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::bigint[])
                          AS u(id, idx, status, attempts, last_reply, remote_host, next_try)
                     WHERE r.message_id = u.id AND r.idx = u.idx AND {guard}
                       AND (SELECT COUNT(*) FROM locked) >= 0
                     RETURNING r.message_id, r.idx, r.status, r.address, r.attempts, r.last_reply, r.remote_host),
                 {events}
                 SELECT upd.message_id, upd.idx, (SELECT COUNT(*) FROM ({wake}) w) AS woken FROM upd",
                events = event_ctes("upd", "$8", "$8"),
                wake = WAKE_IF_ADDED.replace("$CH", "$11"),
            );
            // Planned afresh each time (see PLANNED_EACH_TIME).
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .persistent(PLANNED_EACH_TIME)
                .bind(
                    u.iter()
                        .map(|u| u.message_id.to_string())
                        .collect::<Vec<_>>(),
                )
                .bind(u.iter().map(|u| i64::from(u.idx)).collect::<Vec<_>>())
                .bind(u.iter().map(|u| u.status.as_str()).collect::<Vec<_>>())
                .bind(u.iter().map(|u| i64::from(u.attempts)).collect::<Vec<_>>())
                .bind(u.iter().map(|u| u.last_reply.clone()).collect::<Vec<_>>())
                .bind(u.iter().map(|u| u.remote_host.clone()).collect::<Vec<_>>())
                .bind(u.iter().map(|u| u.next_try).collect::<Vec<_>>())
                .bind(now)
                .bind(owner)
                .bind(&touched)
                .bind(WAKE_CHANNEL)
                .fetch_all(&mut *tx)
                .await?;
            let mut applied: Vec<(String, i64)> = rows
                .iter()
                .map(|r| (r.get("message_id"), r.get("idx")))
                .collect();
            applied.sort_unstable();
            applied.dedup();
            recorded.applied = applied.len() as u64;
            for u in &batch.updates {
                let Some(reason) = &u.suppress else { continue };
                let id = u.message_id.to_string();
                if applied
                    .binary_search(&(id.clone(), i64::from(u.idx)))
                    .is_err()
                {
                    continue;
                }
                sqlx::query(
                    "INSERT INTO suppressions (account_id, address, reason, message_id, created_at)
                     SELECT m.account_id, r.address, $3, $1, $4
                     FROM messages m JOIN recipients r ON r.message_id = m.id AND r.idx = $2
                     WHERE m.id = $1
                     ON CONFLICT (account_id, lower(address)) DO UPDATE SET reason = excluded.reason,
                         message_id = excluded.message_id, created_at = excluded.created_at",
                )
                .bind(&id)
                .bind(i64::from(u.idx))
                .bind(reason)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            let sql = format!(
                "UPDATE messages SET completed_at = $1
                 WHERE id = ANY($2) AND completed_at IS NULL
                   AND NOT EXISTS (SELECT 1 FROM recipients WHERE message_id = messages.id AND status IN {NOT_FINAL})
                 RETURNING id"
            );
            let done: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .persistent(PLANNED_EACH_TIME)
                .bind(now)
                .bind(&touched)
                .fetch_all(&mut *tx)
                .await?;
            for id in done {
                recorded.completed.push(parse_id(&id)?);
            }
            recorded.completed.sort_unstable();
        }
        for notice in &batch.notices {
            insert_messages(&mut tx, &[notice], now).await?;
        }
        tx.commit().await?;
        Ok(recorded)
    }
}

impl PostgresStore {
    /// The attachments and recipients of these messages, by message id.
    async fn parts_of(
        &self,
        ids: &[String],
    ) -> Result<(
        HashMap<String, Vec<AttachmentRecord>>,
        HashMap<String, Vec<RecipientRecord>>,
    )> {
        let attachments = sqlx::query(
            "SELECT message_id, filename, content_type, size FROM attachments
             WHERE message_id = ANY($1) ORDER BY message_id, idx",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        let recipients = sqlx::query(
            "SELECT message_id, address, status, attempts, last_reply, next_try, remote_host, updated_at
             FROM recipients WHERE message_id = ANY($1) ORDER BY message_id, idx",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok((
            by_message(&attachments, |r| Ok(attachment_from_row(r)))?,
            by_message(&recipients, recipient_from_row)?,
        ))
    }

    async fn messages_from_rows(&self, rows: &[PgRow]) -> Result<Vec<MessageRecord>> {
        let ids: Vec<String> = rows.iter().map(|r| r.get("id")).collect();
        let (mut attachments, mut recipients) = self.parts_of(&ids).await?;
        rows.iter()
            .zip(&ids)
            .map(|(row, id)| {
                message_from_row(
                    row,
                    attachments.remove(id).unwrap_or_default(),
                    recipients.remove(id).unwrap_or_default(),
                )
            })
            .collect()
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn now(&self) -> i64 {
        self.clock.now(&self.pool)
    }

    async fn create_account(&self, name: &str) -> Result<Account> {
        let row = sqlx::query(
            "INSERT INTO accounts (name, created_at) VALUES ($1, $2) RETURNING id, name, created_at",
        )
        .bind(name)
        .bind(self.now())
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::from)
        .map_err(duplicate("account", name))?;
        Ok(account_from_row(&row))
    }

    async fn account(&self, name: &str) -> Result<Account> {
        sqlx::query("SELECT id, name, created_at FROM accounts WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| account_from_row(&r))
            .ok_or_else(|| StoreError::NotFound(format!("no account named {name:?}")))
    }

    async fn account_by_id(&self, id: i64) -> Result<Account> {
        sqlx::query("SELECT id, name, created_at FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| account_from_row(&r))
            .ok_or_else(|| StoreError::NotFound(format!("no account with id {id}")))
    }

    async fn accounts(&self) -> Result<Vec<Account>> {
        let rows =
            sqlx::query("SELECT id, name, created_at FROM accounts ORDER BY name COLLATE \"C\"")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.iter().map(account_from_row).collect())
    }

    async fn add_domain(&self, d: NewDomain) -> Result<Domain> {
        let row = sqlx::query(
            "INSERT INTO domains (account_id, name, dkim_selector, dkim_private_key, dkim_public_key, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        )
        .bind(d.account_id)
        .bind(&d.name)
        .bind(&d.dkim_selector)
        .bind(&d.dkim_private_key)
        .bind(&d.dkim_public_key)
        .bind(self.now())
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::from)
        .map_err(duplicate("domain", &d.name))?;
        Ok(domain_from_row(&row))
    }

    async fn domain(&self, name: &str) -> Result<Domain> {
        sqlx::query("SELECT * FROM domains WHERE lower(name) = lower($1)")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| domain_from_row(&r))
            .ok_or_else(|| StoreError::NotFound(format!("no domain named {name:?}")))
    }

    async fn domains(&self, account_id: i64) -> Result<Vec<Domain>> {
        let rows = sqlx::query(
            "SELECT * FROM domains WHERE account_id = $1 ORDER BY lower(name) COLLATE \"C\"",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(domain_from_row).collect())
    }

    async fn add_sender(&self, account_id: i64, address: &str, password_hash: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO senders (address, account_id, password_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(address)
        .bind(account_id)
        .bind(password_hash)
        .bind(self.now())
        .execute(&self.pool)
        .await
        .map_err(StoreError::from)
        .map_err(duplicate("sender address", address))?;
        Ok(())
    }

    async fn set_sender_password(&self, address: &str, password_hash: &str) -> Result<()> {
        let done =
            sqlx::query("UPDATE senders SET password_hash = $1 WHERE lower(address) = lower($2)")
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
        sqlx::query(
            "SELECT address, account_id, password_hash FROM senders WHERE lower(address) = lower($1)",
        )
        .bind(address)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| Sender {
            address: r.get("address"),
            account_id: r.get("account_id"),
            password_hash: r.get("password_hash"),
        })
        .ok_or_else(|| StoreError::NotFound(format!("no sender address {address:?}")))
    }

    async fn add_api_user(&self, account_id: i64, name: &str, key_hash: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_users (name, account_id, key_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(name)
        .bind(account_id)
        .bind(key_hash)
        .bind(self.now())
        .execute(&self.pool)
        .await
        .map_err(StoreError::from)
        .map_err(duplicate("API user", name))?;
        Ok(())
    }

    async fn api_user(&self, name: &str) -> Result<ApiUser> {
        sqlx::query("SELECT name, account_id, key_hash FROM api_users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| ApiUser {
                name: r.get("name"),
                account_id: r.get("account_id"),
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
                    "INSERT INTO account_settings (account_id, key, value) VALUES ($1, $2, $3)
                     ON CONFLICT (account_id, key) DO UPDATE SET value = excluded.value",
                )
                .bind(account_id)
                .bind(key)
                .bind(v)
                .execute(&self.pool)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM account_settings WHERE account_id = $1 AND key = $2")
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
            "SELECT key, value FROM account_settings WHERE account_id = $1 ORDER BY key COLLATE \"C\"",
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
        sqlx::query("INSERT INTO labels (account_id, label, created_at) VALUES ($1, $2, $3)")
            .bind(account_id)
            .bind(label)
            .bind(self.now())
            .execute(&self.pool)
            .await
            .map_err(StoreError::from)
            .map_err(duplicate("label", label))?;
        Ok(())
    }

    async fn has_label(&self, account_id: i64, label: &str) -> Result<bool> {
        let found = sqlx::query("SELECT 1 FROM labels WHERE account_id = $1 AND label = $2")
            .bind(account_id)
            .bind(label)
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    async fn remove_sender(&self, account_id: i64, address: &str) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM senders WHERE account_id = $1 AND lower(address) = lower($2)")
                .bind(account_id)
                .bind(address)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn remove_api_user(&self, account_id: i64, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM api_users WHERE account_id = $1 AND name = $2")
            .bind(account_id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn remove_label(&self, account_id: i64, label: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM labels WHERE account_id = $1 AND label = $2")
            .bind(account_id)
            .bind(label)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn remove_domain(&self, account_id: i64, name: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        // The domain's row first, locked, so a sender added meanwhile is
        // seen or waits.
        let domain: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM domains WHERE account_id = $1 AND lower(name) = lower($2) FOR UPDATE",
        )
        .bind(account_id)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let senders: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM senders
             WHERE account_id = $1 AND lower(substr(address, strpos(address, '@') + 1)) = lower($2)",
        )
        .bind(account_id)
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        if senders > 0 {
            return Err(StoreError::InUse(format!(
                "domain {name} still has {senders} sender address{}; remove {} first",
                if senders == 1 { "" } else { "es" },
                if senders == 1 { "it" } else { "them" },
            )));
        }
        let Some(domain) = domain else {
            return Ok(false);
        };
        let done = sqlx::query("DELETE FROM domains WHERE id = $1")
            .bind(domain)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn remove_account(&self, account_id: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // Its messages first, in id order, as a recorder locks them (so
        // the two take turns instead of deadlocking); then the account:
        // an enqueue for it (its foreign key takes a share lock on that
        // row) waits until this commits, then fails.
        sqlx::query("SELECT 1 FROM messages WHERE account_id = $1 ORDER BY id FOR UPDATE")
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE")
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        let sql = format!(
            "SELECT COUNT(DISTINCT r.message_id) FROM recipients r JOIN messages m ON m.id = r.message_id
             WHERE m.account_id = $1 AND r.status IN {NOT_FINAL}"
        );
        let pending: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .fetch_one(&mut *tx)
            .await?;
        if pending > 0 {
            return Err(StoreError::InUse(format!(
                "the account still has {pending} message{} in the queue; let {} finish, or give up with: posthorn queue bounce ID",
                if pending == 1 { "" } else { "s" },
                if pending == 1 { "it" } else { "them" },
            )));
        }
        for sql in [
            "DELETE FROM webhook_deliveries WHERE webhook_id IN (SELECT id FROM webhooks WHERE account_id = $1)",
            "DELETE FROM webhooks WHERE account_id = $1",
            "DELETE FROM webhook_deliveries WHERE event_id IN (SELECT id FROM events WHERE account_id = $1)",
            "DELETE FROM events WHERE account_id = $1",
            "DELETE FROM engagements WHERE account_id = $1",
            "DELETE FROM attachments WHERE message_id IN (SELECT id FROM messages WHERE account_id = $1)",
            "DELETE FROM recipients WHERE message_id IN (SELECT id FROM messages WHERE account_id = $1)",
            "DELETE FROM message_contents WHERE message_id IN (SELECT id FROM messages WHERE account_id = $1)",
            "DELETE FROM messages WHERE account_id = $1",
            "DELETE FROM suppressions WHERE account_id = $1",
            "DELETE FROM api_keys WHERE account_id = $1",
            "DELETE FROM labels WHERE account_id = $1",
            "DELETE FROM account_settings WHERE account_id = $1",
            "DELETE FROM api_users WHERE account_id = $1",
            "DELETE FROM senders WHERE account_id = $1",
            "DELETE FROM domains WHERE account_id = $1",
            "DELETE FROM accounts WHERE id = $1",
        ] {
            sqlx::query(sql).bind(account_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn enqueue(&self, message: NewMessage) -> Result<()> {
        let result = self.enqueuer.enqueue(vec![message]).await;
        self.space.observe(&result, self.now());
        result
    }

    async fn enqueue_all(&self, messages: Vec<NewMessage>) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let result = self.enqueuer.enqueue(messages).await;
        self.space.observe(&result, self.now());
        result
    }

    async fn message(&self, id: MessageId) -> Result<MessageRecord> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN accounts a ON a.id = m.account_id WHERE m.id = $1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no message {id}")))?;
        Ok(self
            .messages_from_rows(std::slice::from_ref(&row))
            .await?
            .remove(0))
    }

    async fn message_content(&self, id: MessageId) -> Result<Vec<u8>> {
        if let Some(content) = self.fresh.take(id) {
            return Ok(content);
        }
        let found = sqlx::query(
            "SELECT c.content, m.content_purged FROM messages m
             LEFT JOIN message_contents c ON c.message_id = m.id WHERE m.id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no message {id}")))?;
        if found.get::<bool, _>("content_purged") {
            return Err(StoreError::NotFound(format!(
                "the content of message {id} was deleted after its retention time (every recipient is final)"
            )));
        }
        found
            .get::<Option<Vec<u8>>, _>("content")
            .ok_or_else(|| StoreError::Backend(format!("message {id} has no stored content")))
    }

    async fn messages(&self, filter: &MessageFilter) -> Result<Vec<MessageRecord>> {
        let order = if filter.newest_first { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN accounts a ON a.id = m.account_id
             WHERE ($1::bigint IS NULL OR m.account_id = $1)
               AND ($2::text IS NULL OR EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id AND r.status = $2))
               AND ($4::text IS NULL OR m.id > $4)
               AND ($5::text IS NULL OR m.id < $5)
               AND ($6::text IS NULL OR m.id IN (SELECT message_id FROM recipients WHERE lower(address) = lower($6)))
               AND ($7::text IS NULL OR m.label = $7)
             ORDER BY m.id {order} LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(filter.account_id)
            .bind(filter.status.map(|s| s.as_str()))
            .bind(filter.limit.map(i64::from))
            .bind(filter.after.map(|id| id.to_string()))
            .bind(filter.before.map(|id| id.to_string()))
            .bind(filter.recipient.as_deref())
            .bind(filter.label.as_deref())
            .fetch_all(&self.pool)
            .await?;
        self.messages_from_rows(&rows).await
    }

    async fn count_messages_since(&self, account_id: i64, since: i64) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages WHERE account_id = $1 AND received_at >= $2",
        )
        .bind(account_id)
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }

    async fn claim_due_except(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
        skip: &[String],
    ) -> Result<Vec<DueRecipient>> {
        // One statement: leases that ran out first, then the earliest
        // planned; rows another node is claiming right now are skipped,
        // never waited for nor taken twice. `$5`: domains to leave out,
        // compared with the end of the address.
        let mut lease = self.delivery.lease().await?;
        let rows = sqlx::query(
            "WITH expired AS (
                 SELECT message_id, idx FROM recipients
                 WHERE status = 'sending' AND lease_until <= $1
                   AND NOT EXISTS (SELECT 1 FROM unnest($5::text[]) s(d)
                       WHERE right(lower(address), length(s.d) + 1) = '@' || s.d)
                 ORDER BY lease_until LIMIT $2 FOR UPDATE SKIP LOCKED),
             planned AS (
                 SELECT message_id, idx FROM recipients
                 WHERE status IN ('queued', 'deferred') AND next_try <= $1
                   AND NOT EXISTS (SELECT 1 FROM unnest($5::text[]) s(d)
                       WHERE right(lower(address), length(s.d) + 1) = '@' || s.d)
                 ORDER BY next_try LIMIT $2 FOR UPDATE SKIP LOCKED),
             due AS (SELECT * FROM expired UNION ALL SELECT * FROM planned LIMIT $2)
             UPDATE recipients r SET status = 'sending', lease_owner = $3, lease_until = $4, updated_at = $1
             FROM due JOIN messages m ON m.id = due.message_id
             WHERE r.message_id = due.message_id AND r.idx = due.idx
             RETURNING r.message_id, r.idx, r.address, r.attempts, m.account_id, m.mail_from,
                       m.header_from, m.label, m.received_at, m.is_dsn",
        )
        .persistent(PLANNED_EACH_TIME)
        .bind(now)
        .bind(i64::from(limit))
        .bind(owner)
        .bind(lease_until)
        .bind(skip)
        .fetch_all(lease.conn())
        .await
        .map_err(StoreError::from);
        lease.done(&rows).await;
        let rows = rows?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: String = r.get("message_id");
            out.push(DueRecipient {
                message_id: parse_id(&id)?,
                idx: r.get::<i64, _>("idx") as u32,
                address: r.get("address"),
                attempts: r.get::<i64, _>("attempts") as u32,
                account_id: r.get("account_id"),
                mail_from: r.get("mail_from"),
                header_from: r.get("header_from"),
                label: r.get("label"),
                received_at: r.get("received_at"),
                is_dsn: r.get("is_dsn"),
            });
        }
        // Oldest messages first, a message's recipients together and in order.
        out.sort_by_key(|r| (r.message_id, r.idx));
        Ok(out)
    }

    async fn release_leases(&self, owner: &str, now: i64) -> Result<u64> {
        let released = nodes::release(&self.pool, owner, now).await?;
        self.wake_queue(released).await?;
        Ok(released)
    }

    async fn next_due(&self) -> Result<Option<i64>> {
        let mut lease = self.delivery.lease().await?;
        let next = sqlx::query_scalar(
            "SELECT LEAST(
                 (SELECT MIN(next_try) FROM recipients WHERE status IN ('queued', 'deferred')),
                 (SELECT MIN(lease_until) FROM recipients WHERE status = 'sending'))",
        )
        .persistent(PLANNED_EACH_TIME)
        .fetch_one(lease.conn())
        .await
        .map_err(StoreError::from);
        lease.done(&next).await;
        next
    }

    async fn record_outcomes(&self, owner: Option<&str>, batch: OutcomeBatch) -> Result<Recorded> {
        let mut lease = self.delivery.lease().await?;
        let result = self.record_outcomes_on(lease.conn(), owner, batch).await;
        lease.done(&result).await;
        result
    }

    async fn retry_now(&self, id: MessageId, now: i64) -> Result<u64> {
        self.message(id).await?;
        let done = sqlx::query(
            "UPDATE recipients SET next_try = $1, updated_at = $1
             WHERE message_id = $2 AND status IN ('queued', 'deferred')",
        )
        .bind(now)
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        self.wake_queue(done.rows_affected()).await?;
        Ok(done.rows_affected())
    }

    async fn purge(&self, bodies_before: i64, records_before: i64) -> Result<(u64, u64)> {
        let mut tx = self.pool.begin().await?;
        // Housekeeping is one node's at a time: the others, finding the
        // lock taken, leave it to that one (the lock ends with the
        // transaction).
        let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext('posthorn.housekeeping.' || current_schema()))")
            .fetch_one(&mut *tx)
            .await?;
        if !ours {
            return Ok((0, 0));
        }
        // The messages it may touch, in id order, as a recorder locks them:
        // the two take turns instead of deadlocking.
        // Only those with something to purge: a content not yet purged, or
        // a record past its retention (not every finished message kept for
        // status queries, which would be a lock and a scan per tick growing
        // with the retention).
        sqlx::query(
            "SELECT 1 FROM messages WHERE id IN (
                 SELECT id FROM messages
                 WHERE completed_at IS NOT NULL AND NOT content_purged AND completed_at <= $1
                 UNION
                 SELECT id FROM messages WHERE completed_at IS NOT NULL AND completed_at <= $2)
             ORDER BY id FOR UPDATE",
        )
        .bind(bodies_before)
        .bind(records_before)
        .execute(&mut *tx)
        .await?;
        let final_before = "completed_at IS NOT NULL AND completed_at <= $1 AND NOT content_purged";
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM message_contents WHERE message_id IN (SELECT id FROM messages WHERE {final_before})"
        )))
        .bind(bodies_before)
        .execute(&mut *tx)
        .await?;
        let bodies = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE messages SET content_purged = true WHERE {final_before}"
        )))
        .bind(bodies_before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let old = "SELECT id FROM messages WHERE completed_at IS NOT NULL AND completed_at <= $1";
        for table in ["attachments", "recipients", "message_contents"] {
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
        sqlx::query("DELETE FROM webhook_deliveries WHERE done_at IS NOT NULL AND done_at <= $1")
            .bind(records_before)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "DELETE FROM events WHERE created_at <= $1
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = events.id)",
        )
        .bind(records_before)
        .execute(&mut *tx)
        .await?;
        // Opens and clicks, kept as long as statuses.
        sqlx::query("DELETE FROM engagements WHERE created_at <= $1")
            .bind(records_before)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        // Contents were deleted: none may be handed out now.
        self.fresh.clear();
        Ok((bodies, records))
    }

    async fn add_suppression(&self, account_id: i64, address: &str, reason: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO suppressions (account_id, address, reason, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (account_id, lower(address)) DO UPDATE SET reason = excluded.reason",
        )
        .bind(account_id)
        .bind(address)
        .bind(reason)
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn daily_engagements(
        &self,
        account_id: i64,
        from: MessageId,
        before: MessageId,
        label: Option<&str>,
    ) -> Result<Vec<DayEngagements>> {
        crate::engagements::daily_postgres(&self.pool, account_id, from, before, label).await
    }

    async fn record_engagement(&self, engagement: &NewEngagement) -> Result<bool> {
        crate::engagements::record_postgres(&self.pool, engagement, self.now()).await
    }

    async fn engagements(&self, message_id: MessageId) -> Result<Vec<EngagementSummary>> {
        crate::engagements::summary_postgres(&self.pool, &message_id.to_string()).await
    }

    async fn record_unsubscribe(
        &self,
        account_id: i64,
        message_id: &str,
        recipient: &str,
    ) -> Result<bool> {
        crate::unsubscribe::postgres(&self.pool, account_id, message_id, recipient, self.now())
            .await
    }

    async fn remove_suppression(&self, account_id: i64, address: &str) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM suppressions WHERE account_id = $1 AND lower(address) = lower($2)",
        )
        .bind(account_id)
        .bind(address)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn suppressions(&self, account_id: i64) -> Result<Vec<Suppression>> {
        let rows = sqlx::query(
            "SELECT address, reason, message_id, created_at FROM suppressions
             WHERE account_id = $1 ORDER BY lower(address) COLLATE \"C\"",
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
        self.suppressed.is_suppressed(account_id, address).await
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

    async fn add_console_session(&self, session: &ConsoleSession) -> Result<()> {
        crate::postgres_console::add(&self.pool, session).await
    }

    async fn console_session(&self, token_hash: &str) -> Result<ConsoleSession> {
        crate::postgres_console::get(&self.pool, token_hash).await
    }

    async fn touch_console_session(&self, token_hash: &str, expires_at: i64) -> Result<()> {
        crate::postgres_console::touch(&self.pool, token_hash, expires_at).await
    }

    async fn remove_console_session(&self, token_hash: &str) -> Result<bool> {
        crate::postgres_console::remove(&self.pool, token_hash).await
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
        api::claim_webhook_deliveries(&self.pool, now, lease_until, limit).await
    }

    async fn record_webhook_results(&self, results: Vec<WebhookResult>) -> Result<()> {
        api::record_webhook_results(&self.pool, &results, self.now()).await
    }

    async fn webhook_deliveries(
        &self,
        account_id: i64,
        webhook_id: &str,
        limit: u32,
    ) -> Result<Vec<WebhookDeliveryRecord>> {
        api::webhook_deliveries(&self.pool, account_id, webhook_id, limit).await
    }

    async fn add_test_webhook_event(
        &self,
        account_id: i64,
        webhook_id: &str,
        event: &TestEvent,
    ) -> Result<i64> {
        api::add_test_webhook_event(&self.pool, account_id, webhook_id, event, self.now()).await
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

    async fn heartbeat(&self, node: &NodeInfo) -> Result<()> {
        nodes::heartbeat(&self.pool, node, self.now()).await
    }

    async fn report_node(&self, id: &str, report: &str) -> Result<()> {
        nodes::report(&self.pool, id, report).await
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        nodes::nodes(&self.pool).await
    }

    async fn take_over_dead_nodes(&self, now: i64, timeout: i64) -> Result<Vec<TakenOver>> {
        nodes::take_over(&self.pool, now, timeout).await
    }

    async fn forget_nodes(&self, before: i64) -> Result<u64> {
        nodes::forget(&self.pool, before).await
    }

    async fn out_of_space(&self) -> Option<i64> {
        self.space.check(self.now()).await
    }

    fn wakeups(&self) -> Wakeups {
        self.listening.call_once(|| {
            tokio::spawn(listen(
                self.pool.clone(),
                self.wakeups.clone(),
                self.own_backends.clone(),
            ));
        });
        self.wakeups.clone()
    }

    async fn record_auth_failure(
        &self,
        ip: std::net::IpAddr,
        user: &str,
        tag: &str,
        now: i64,
        policy: &LockoutPolicy,
    ) -> Result<Option<Lockout>> {
        auth::record_failure(&self.pool, ip, user, tag, now, policy).await
    }

    async fn auth_lockout(
        &self,
        ip: std::net::IpAddr,
        user: &str,
        now: i64,
    ) -> Result<Option<Lockout>> {
        auth::lockout_of(&self.pool, ip, user, now).await
    }

    async fn auth_lockouts(&self, now: i64) -> Result<Vec<Lockout>> {
        auth::lockouts(&self.pool, now).await
    }

    async fn clear_auth_lockouts(&self, ip: std::net::IpAddr, user: Option<&str>) -> Result<u64> {
        auth::clear(&self.pool, ip, user, self.now()).await
    }
}

/// What only the shared store has: several nodes at once. These run when
/// `POSTHORN_TEST_POSTGRES_URL` is set (each in a schema of its own,
/// dropped at the end); the behaviour every backend shares is the
/// conformance suite's (`tests/conformance`).
#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh schema name and the URL, or `None` (skip) without a database.
    fn database() -> Option<(String, String)> {
        let Ok(url) = std::env::var("POSTHORN_TEST_POSTGRES_URL") else {
            eprintln!("skipped: POSTHORN_TEST_POSTGRES_URL is unset");
            return None;
        };
        let schema = format!("u_{}", MessageId::generate().to_string().to_lowercase());
        Some((url, schema))
    }

    async fn drop_schema(store: &PostgresStore, schema: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA {} CASCADE",
            quote_ident(schema)
        )))
        .execute(&store.pool)
        .await
        .unwrap();
    }

    fn message(account_id: i64, rcpts: usize, at: i64) -> NewMessage {
        NewMessage {
            id: MessageId::generate(),
            account_id,
            mail_from: "a@x.test".into(),
            recipients: (0..rcpts).map(|i| format!("r{i}@y.test")).collect(),
            auth_user: "a@x.test".into(),
            client_ip: None,
            label: None,
            received_at: at,
            subject: "x".into(),
            header_from: "a@x.test".into(),
            attachments: Vec::new(),
            content: b"Subject: x\r\n\r\nhi\r\n".to_vec(),
            suppressed: Vec::new(),
            is_dsn: false,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_starting_together_migrate_once() {
        let Some((url, schema)) = database() else {
            return;
        };
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let (url, schema) = (url.clone(), schema.clone());
                tokio::spawn(async move { PostgresStore::open(&url, Some(&schema), 2).await })
            })
            .collect();
        let mut stores = Vec::new();
        for o in opens {
            stores.push(o.await.unwrap().unwrap());
        }
        let versions: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM posthorn_migrations ORDER BY version")
                .fetch_all(&stores[0].pool)
                .await
                .unwrap();
        assert_eq!(versions, (1..=MIGRATIONS.len() as i64).collect::<Vec<_>>());
        drop_schema(&stores[0], &schema).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_never_claim_the_same_recipient() {
        let Some((url, schema)) = database() else {
            return;
        };
        let a = Arc::new(PostgresStore::open(&url, Some(&schema), 4).await.unwrap());
        let b = Arc::new(PostgresStore::open(&url, Some(&schema), 4).await.unwrap());
        let account = a.create_account("shop").await.unwrap().id;
        let t = a.now();
        for _ in 0..50 {
            a.enqueue(message(account, 4, t)).await.unwrap();
        }
        let claimers: Vec<_> = [(a.clone(), "n1"), (b.clone(), "n2"), (a.clone(), "n3")]
            .into_iter()
            .map(|(store, owner)| {
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    loop {
                        let got = store.claim_due(owner, t, t + 600, 7).await.unwrap();
                        if got.is_empty() {
                            break mine;
                        }
                        mine.extend(got.into_iter().map(|d| (d.message_id, d.idx)));
                    }
                })
            })
            .collect();
        let mut all = Vec::new();
        for c in claimers {
            all.extend(c.await.unwrap());
        }
        let claimed = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), claimed, "a recipient was claimed twice");
        assert_eq!(claimed, 200);
        drop_schema(&a, &schema).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn outcomes_recorded_together_still_complete_their_message() {
        let Some((url, schema)) = database() else {
            return;
        };
        let store = Arc::new(PostgresStore::open(&url, Some(&schema), 8).await.unwrap());
        let account = store.create_account("shop").await.unwrap().id;
        let t = store.now();
        let mut ids = Vec::new();
        for _ in 0..20 {
            let m = message(account, 2, t);
            ids.push(m.id);
            store.enqueue(m).await.unwrap();
        }
        assert_eq!(
            store.claim_due("n", t, t + 600, 100).await.unwrap().len(),
            40
        );
        // Each recipient's outcome in a commit of its own, all at once: the
        // last of each message to commit must mark it complete.
        let mut tasks = Vec::new();
        for &id in &ids {
            for idx in 0..2 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    let update = RecipientUpdate {
                        message_id: id,
                        idx,
                        status: RecipientStatus::Delivered,
                        attempts: 1,
                        last_reply: Some("250 ok".into()),
                        remote_host: None,
                        next_try: None,
                        suppress: None,
                    };
                    store
                        .record_outcomes(
                            Some("n"),
                            OutcomeBatch {
                                updates: vec![update],
                                notices: Vec::new(),
                            },
                        )
                        .await
                        .unwrap()
                }));
            }
        }
        let mut completed = Vec::new();
        for t in tasks {
            let r = t.await.unwrap();
            assert_eq!(r.applied, 1);
            completed.extend(r.completed);
        }
        completed.sort();
        ids.sort();
        assert_eq!(completed, ids);
        for id in ids {
            assert!(store.message(id).await.unwrap().completed_at.is_some());
        }
        drop_schema(&store, &schema).await;
    }

    /// Checks asked together are answered by one statement
    /// (`postgres_suppressed.rs`); each caller still gets its own answer,
    /// per account and without regard to case, and a suppression added
    /// is seen by the next check.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn suppression_checks_asked_together_each_get_their_answer() {
        let Some((url, schema)) = database() else {
            return;
        };
        // A pool large enough for the stashed connections (`postgres_stash.rs`).
        let store = Arc::new(PostgresStore::open(&url, Some(&schema), 12).await.unwrap());
        let a = store.create_account("a").await.unwrap().id;
        let b = store.create_account("b").await.unwrap().id;
        for i in (0..200).step_by(3) {
            store
                .add_suppression(a, &format!("r{i}@x.test"), "bounced")
                .await
                .unwrap();
        }
        let checks: Vec<_> = (0..200)
            .flat_map(|i| [(a, i), (b, i)])
            .map(|(account, i)| {
                let store = store.clone();
                tokio::spawn(async move {
                    let address = if i % 2 == 0 {
                        format!("R{i}@X.TEST")
                    } else {
                        format!("r{i}@x.test")
                    };
                    let hit = store.is_suppressed(account, &address).await.unwrap();
                    (account, i, hit)
                })
            })
            .collect();
        for c in checks {
            let (account, i, hit) = c.await.unwrap();
            assert_eq!(hit, account == a && i % 3 == 0, "account {account}, r{i}");
        }
        assert!(!store.is_suppressed(b, "r0@x.test").await.unwrap());
        store
            .add_suppression(b, "r0@x.test", "manual")
            .await
            .unwrap();
        assert!(store.is_suppressed(b, "r0@x.test").await.unwrap());
        drop_schema(&store, &schema).await;
    }
}
