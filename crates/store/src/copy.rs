//! `posthorn store copy`: the embedded SQLite store of one node copied into
//! an empty PostgreSQL database (or schema), so that node can join a
//! cluster with everything it had: accounts and credentials, templates, the queue
//! with every recipient's status, statistics, webhooks and their pending
//! deliveries.
//!
//! How it goes:
//!
//! - The source is first opened with [`SqliteStore::open`], as the server
//!   and every admin command open it. For the store a running (or
//!   stopped) server of this version wrote, that changes nothing: its
//!   migrations have run already. Only a store an older Posthorn left gets
//!   its missing migrations, exactly as starting this Posthorn on it would
//!   do. That is simpler and safer than refusing such a store, and it
//!   means the copy reads one known layout. Then the store is read through
//!   a read-only connection of its own (`read_only(true)`), inside one read
//!   transaction: one consistent snapshot even while a server writes (WAL
//!   readers do not block the writer). What is accepted after that
//!   snapshot is not copied, so the server should be stopped first.
//! - The copy refuses to run when the store has a table or a column it does
//!   not know ([`TABLES`], [`NOT_COPIED`]): a later schema must say what
//!   becomes of its data here rather than have it silently left behind.
//! - PostgreSQL is opened with [`PostgresStore::open`] (which creates the
//!   schema), and everything is written in one transaction: the four
//!   tables that say whether a database is in use are locked and must be
//!   empty, then the tables are filled in foreign-key order in chunks of
//!   `unnest` rows (1,000 rows, or 32 MiB of contents), and the identity
//!   sequences are moved past the copied ids. Nothing is visible, and
//!   nothing is left behind on failure, until the commit.
//!
//! Conversions: SQLite's 0/1 flags become BOOLEANs, the webhook event list
//! `",delivered,bounced,"` becomes a TEXT[], ids are kept as they are
//! (accounts, domains, events; messages and keys have text ids anyway).
//! A recipient that was `sending` is held by no node in the cluster: it is
//! given back as [`Store::release_leases`] gives back a node's leases
//! (`queued` when never tried, else `deferred`, due at the database's now),
//! and every lease column is left empty.

use crate::spool::{Location, Spool};
use crate::{PostgresStore, Result, SqliteStore, Store, StoreError};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{ConnectOptions, Connection, Row};
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

/// The oldest SQLite schema (`PRAGMA user_version`) whose layout [`TABLES`]
/// describe (v6 added `messages.client_ip`). A file opened through its
/// data directory is migrated to the current version first; this only
/// refuses a file of another name (say, an old backup) that is older.
const READS_SCHEMA_VERSION: i64 = 6;

/// Rows per `INSERT ... SELECT FROM unnest(...)`.
const CHUNK_ROWS: i64 = 1000;
/// Content bytes per insert of `message_contents` (at least one row).
const CHUNK_BYTES: i64 = 32 << 20;

/// SQLite tables deliberately not copied, and why:
///
/// - `auth_failures`, `auth_lockouts`: failed SMTP logins and the AUTH
///   lockouts they started are per-node, short-lived state (minutes), and
///   each failure's tag is an HMAC under a key the node drew at start,
///   meaningless to any other process.
/// - `nodes` (schema v7 and later): which nodes exist and their heartbeats
///   belong to the cluster itself, never to one node's copy.
/// - `console_sessions` (schema v10): console sign-ins are short-lived; one
///   signs in again on the cluster.
/// - `message_spool` (schema v14): where large contents are in the data
///   directory's spool files; not copied as rows but as what they point at,
///   into `message_contents` ([`copy_spooled`]).
const NOT_COPIED: &[&str] = &[
    "auth_failures",
    "auth_lockouts",
    "nodes",
    "console_sessions",
    "message_spool",
];

/// How a column's values travel: read from SQLite as this, sent to
/// PostgreSQL as an array of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
    Bytes,
}

impl Kind {
    fn pg_array(self) -> &'static str {
        match self {
            Kind::Int => "bigint[]",
            Kind::Text => "text[]",
            Kind::Bytes => "bytea[]",
        }
    }
}

/// One table to copy. Its column names are the same on both sides.
struct Table {
    name: &'static str,
    /// Columns read from SQLite and written to PostgreSQL, in order.
    columns: &'static [(&'static str, Kind)],
    /// SQLite columns deliberately not copied.
    left_behind: &'static [&'static str],
    /// What is inserted for each column, over the unnested row `u` (one
    /// expression per column, in order; `$now` is the database's time);
    /// `None`: the values as they are.
    select: Option<&'static str>,
    /// Which SQLite rows (rows whose parent is gone would break
    /// PostgreSQL's foreign keys; the embedded store never leaves any, but
    /// a copy must not fail on one).
    only: &'static str,
}

use Kind::{Bytes, Int, Text};

/// Every table copied, parents before children.
const TABLES: &[Table] = &[
    Table {
        name: "accounts",
        columns: &[("id", Int), ("name", Text), ("created_at", Int)],
        left_behind: &[],
        select: None,
        only: "1",
    },
    Table {
        name: "domains",
        columns: &[
            ("id", Int),
            ("account_id", Int),
            ("name", Text),
            ("dkim_selector", Text),
            ("dkim_private_key", Text),
            ("dkim_public_key", Text),
            ("created_at", Int),
        ],
        left_behind: &[],
        select: None,
        only: "1",
    },
    Table {
        name: "senders",
        columns: &[
            ("address", Text),
            ("account_id", Int),
            ("password_hash", Text),
            ("created_at", Int),
        ],
        left_behind: &[],
        select: None,
        only: "1",
    },
    Table {
        name: "api_users",
        columns: &[
            ("name", Text),
            ("account_id", Int),
            ("key_hash", Text),
            ("created_at", Int),
        ],
        left_behind: &[],
        select: None,
        only: "1",
    },
    Table {
        name: "account_settings",
        columns: &[("account_id", Int), ("key", Text), ("value", Text)],
        left_behind: &[],
        select: None,
        only: "1",
    },
    Table {
        name: "labels",
        columns: &[("account_id", Int), ("label", Text), ("created_at", Int)],
        left_behind: &[],
        select: None,
        only: "1",
    },
    Table {
        name: "templates",
        columns: &[
            ("id", Text),
            ("account_id", Int),
            ("name", Text),
            ("subject", Text),
            ("text", Text),
            ("html", Text),
            ("created_at", Int),
            ("updated_at", Int),
        ],
        left_behind: &[],
        select: None,
        only: "account_id IN (SELECT id FROM accounts)",
    },
    Table {
        name: "api_keys",
        columns: &[
            ("id", Text),
            ("account_id", Int),
            ("secret_hash", Text),
            ("description", Text),
            ("created_at", Int),
        ],
        left_behind: &[],
        select: None,
        only: "1",
    },
    Table {
        name: "webhooks",
        columns: &[
            ("id", Text),
            ("account_id", Int),
            ("url", Text),
            ("events", Text),
            ("secret", Text),
            ("created_at", Int),
        ],
        left_behind: &[],
        // ",delivered,bounced," -> {delivered,bounced}
        select: Some(
            "u.id, u.account_id, u.url, array_remove(string_to_array(u.events, ','), ''), u.secret, u.created_at",
        ),
        only: "1",
    },
    Table {
        name: "messages",
        columns: &[
            ("id", Text),
            ("account_id", Int),
            ("mail_from", Text),
            ("auth_user", Text),
            ("client_ip", Text),
            ("label", Text),
            ("size", Int),
            ("received_at", Int),
            ("subject", Text),
            ("header_from", Text),
            ("completed_at", Int),
            ("content_purged", Int),
            ("is_dsn", Int),
        ],
        left_behind: &[],
        select: Some(
            "u.id, u.account_id, u.mail_from, u.auth_user, u.client_ip, u.label, u.size, u.received_at,
             u.subject, u.header_from, u.completed_at, u.content_purged <> 0, u.is_dsn <> 0",
        ),
        only: "1",
    },
    Table {
        name: "message_contents",
        columns: &[("message_id", Text), ("content", Bytes)],
        left_behind: &[],
        select: None,
        only: "message_id IN (SELECT id FROM messages)",
    },
    Table {
        name: "attachments",
        columns: &[
            ("message_id", Text),
            ("idx", Int),
            ("filename", Text),
            ("content_type", Text),
            ("size", Int),
        ],
        left_behind: &[],
        select: None,
        only: "message_id IN (SELECT id FROM messages)",
    },
    Table {
        name: "recipients",
        columns: &[
            ("message_id", Text),
            ("idx", Int),
            ("address", Text),
            ("status", Text),
            ("attempts", Int),
            ("last_reply", Text),
            ("next_try", Int),
            ("updated_at", Int),
            ("remote_host", Text),
        ],
        // No node of the cluster holds a lease the copy would carry over.
        left_behind: &["lease_owner", "lease_until"],
        // A recipient that was being sent is given back as
        // `release_leases` gives back a node's leases.
        select: Some(
            "u.message_id, u.idx, u.address,
             CASE WHEN u.status <> 'sending' THEN u.status
                  WHEN u.attempts = 0 THEN 'queued' ELSE 'deferred' END,
             u.attempts, u.last_reply,
             CASE WHEN u.status = 'sending' THEN $now ELSE u.next_try END,
             CASE WHEN u.status = 'sending' THEN $now ELSE u.updated_at END,
             u.remote_host",
        ),
        only: "message_id IN (SELECT id FROM messages)",
    },
    Table {
        name: "suppressions",
        columns: &[
            ("account_id", Int),
            ("address", Text),
            ("reason", Text),
            ("message_id", Text),
            ("created_at", Int),
        ],
        left_behind: &[],
        select: None,
        only: "1",
    },
    Table {
        name: "events",
        columns: &[
            ("id", Int),
            ("account_id", Int),
            ("kind", Text),
            ("message_id", Text),
            ("recipient", Text),
            ("attempts", Int),
            ("reply", Text),
            ("remote_host", Text),
            ("label", Text),
            ("created_at", Int),
        ],
        // Schema v12: the URL of a click event, for its webhook only
        // (older sources lack it).
        left_behind: &["url"],
        select: None,
        only: "1",
    },
    Table {
        name: "engagements",
        columns: &[
            ("id", Int),
            ("account_id", Int),
            ("message_id", Text),
            ("recipient", Text),
            ("kind", Text),
            ("created_at", Int),
            ("user_agent", Text),
            ("ip", Text),
            ("url", Text),
        ],
        left_behind: &[],
        select: None,
        only: "1",
    },
    Table {
        name: "webhook_deliveries",
        columns: &[
            ("webhook_id", Text),
            ("event_id", Int),
            ("attempts", Int),
            ("next_try", Int),
            ("last_error", Text),
            ("done_at", Int),
        ],
        // Schema v11: the last POST's HTTP status, for the console only
        // (older sources lack it).
        left_behind: &["last_status"],
        select: None,
        only: "webhook_id IN (SELECT id FROM webhooks) AND event_id IN (SELECT id FROM events)",
    },
];

/// Tables whose `id` is an identity column in PostgreSQL, copied with
/// explicit ids: their sequences must start past the largest.
const IDENTITIES: &[&str] = &["accounts", "domains", "events", "engagements"];

/// What [`copy_sqlite_to_postgres`] copied: rows per table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyReport {
    pub accounts: u64,
    pub domains: u64,
    pub senders: u64,
    pub api_users: u64,
    pub account_settings: u64,
    pub labels: u64,
    pub templates: u64,
    pub api_keys: u64,
    pub webhooks: u64,
    pub messages: u64,
    pub message_contents: u64,
    pub attachments: u64,
    pub recipients: u64,
    pub suppressions: u64,
    pub events: u64,
    pub webhook_deliveries: u64,
    /// Opens and clicks of tracked messages.
    pub engagements: u64,
    /// Recipients that were `sending` on the node, now due at once.
    pub released: u64,
    pub elapsed: Duration,
}

impl CopyReport {
    fn count_of(&mut self, table: &str) -> &mut u64 {
        match table {
            "accounts" => &mut self.accounts,
            "domains" => &mut self.domains,
            "senders" => &mut self.senders,
            "api_users" => &mut self.api_users,
            "account_settings" => &mut self.account_settings,
            "labels" => &mut self.labels,
            "templates" => &mut self.templates,
            "api_keys" => &mut self.api_keys,
            "webhooks" => &mut self.webhooks,
            "messages" => &mut self.messages,
            "message_contents" => &mut self.message_contents,
            "attachments" => &mut self.attachments,
            "recipients" => &mut self.recipients,
            "suppressions" => &mut self.suppressions,
            "events" => &mut self.events,
            "webhook_deliveries" => &mut self.webhook_deliveries,
            "engagements" => &mut self.engagements,
            other => unreachable!("no count for table {other}"),
        }
    }
}

/// `3 accounts`, `1 account`.
fn n(count: u64, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

impl fmt::Display for CopyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "accounts:  {}, {}, {}, {}, {}, {}, {}",
            n(self.accounts, "account", "accounts"),
            n(self.domains, "domain", "domains"),
            n(self.senders, "sender", "senders"),
            n(self.api_users, "API user", "API users"),
            n(self.labels, "label", "labels"),
            n(self.account_settings, "setting", "settings"),
            n(self.templates, "template", "templates"),
        )?;
        writeln!(
            f,
            "queue:     {} ({} kept, {}), {}",
            n(self.messages, "message", "messages"),
            n(self.message_contents, "content", "contents"),
            n(self.attachments, "attachment", "attachments"),
            n(self.recipients, "recipient", "recipients"),
        )?;
        if self.released > 0 {
            writeln!(
                f,
                "           {} that this node was sending, due again at once",
                n(self.released, "recipient", "recipients"),
            )?;
        }
        writeln!(
            f,
            "api:       {}, {}, {}, {}, {}",
            n(self.api_keys, "API key", "API keys"),
            n(self.suppressions, "suppression", "suppressions"),
            n(self.webhooks, "webhook", "webhooks"),
            n(self.events, "event", "events"),
            n(
                self.webhook_deliveries,
                "webhook delivery",
                "webhook deliveries"
            ),
        )?;
        if self.engagements > 0 {
            writeln!(
                f,
                "tracking:  {}",
                n(self.engagements, "open or click", "opens and clicks")
            )?;
        }
        write!(f, "took:      {:.2} s", self.elapsed.as_secs_f64())
    }
}

/// Copy the embedded store in the file `sqlite_path` (a data directory's
/// `posthorn.db`) into the PostgreSQL database at `pg_url` (in `schema`,
/// created if missing, or the user's default search path), which must hold
/// no data yet: [`StoreError::InUse`] when it has accounts, messages, API
/// keys or suppressions, and then nothing is written. See the module
/// documentation.
pub async fn copy_sqlite_to_postgres(
    sqlite_path: &Path,
    pg_url: &str,
    schema: Option<&str>,
) -> Result<CopyReport, StoreError> {
    let started = Instant::now();
    if !sqlite_path.is_file() {
        return Err(StoreError::NotFound(format!(
            "no store at {}: nothing to copy",
            sqlite_path.display()
        )));
    }
    // Bring a data directory's store to this version's layout, as the
    // server would on start (a no-op for a store it already opened).
    if let (Some(dir), Some(name)) = (sqlite_path.parent(), sqlite_path.file_name()) {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if SqliteStore::database_path(dir).file_name() == Some(name) {
            drop(SqliteStore::open(dir).await?);
        }
    }
    let mut source = SqliteConnectOptions::new()
        .filename(sqlite_path)
        .read_only(true)
        .busy_timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| {
            StoreError::Backend(format!(
                "cannot open {} read-only: {e}",
                sqlite_path.display()
            ))
        })?;
    // One read transaction: every table from the same snapshot.
    let mut snapshot = source.begin().await?;
    check_source(&mut snapshot, sqlite_path).await?;
    let released: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM recipients WHERE status = 'sending'")
            .fetch_one(&mut *snapshot)
            .await?;

    let pg = PostgresStore::open(pg_url, schema, 2).await?;
    let now = pg.now();
    let mut tx = pg.pool.begin().await?;
    // Two copies (or a node starting on the database) cannot both find it
    // empty: these locks are held to the commit.
    sqlx::query(
        "LOCK TABLE accounts, messages, api_keys, suppressions IN SHARE ROW EXCLUSIVE MODE",
    )
    .execute(&mut *tx)
    .await?;
    let held = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM accounts) AS accounts,
                (SELECT COUNT(*) FROM messages) AS messages,
                (SELECT COUNT(*) FROM api_keys) AS api_keys,
                (SELECT COUNT(*) FROM suppressions) AS suppressions",
    )
    .fetch_one(&mut *tx)
    .await?;
    let count = |c: &str| held.get::<i64, _>(c) as u64;
    let (accounts, messages) = (count("accounts"), count("messages"));
    let (keys, suppressions) = (count("api_keys"), count("suppressions"));
    if accounts + messages + keys + suppressions > 0 {
        let mut what = vec![
            n(accounts, "account", "accounts"),
            n(messages, "message", "messages"),
        ];
        if keys > 0 {
            what.push(n(keys, "API key", "API keys"));
        }
        if suppressions > 0 {
            what.push(n(suppressions, "suppression", "suppressions"));
        }
        let target = match schema {
            Some(s) => format!("the PostgreSQL database (schema {s:?})"),
            None => "the PostgreSQL database".to_string(),
        };
        return Err(StoreError::InUse(format!(
            "{target} already holds data ({}): store copy only fills an empty database; nothing was copied. Give an empty database, or a new schema with --schema",
            what.join(", ")
        )));
    }

    let mut report = CopyReport {
        released: released as u64,
        ..CopyReport::default()
    };
    for table in TABLES {
        let copied = copy_table(&mut snapshot, &mut tx, table, now)
            .await
            .map_err(|e| in_table(table.name, e))?;
        *report.count_of(table.name) = copied;
    }
    report.message_contents += copy_spooled(&mut snapshot, &mut tx, sqlite_path)
        .await
        .map_err(|e| in_table("message_spool", e))?;
    // Last, so a copy that failed leaves the sequences as they were
    // (setval is not undone by a rollback).
    for table in IDENTITIES {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM {table}"
        )))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    snapshot.rollback().await?;
    source.close().await?;
    pg.pool.close().await;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The contents in the spool beside `sqlite_path` (schema v14) into the
/// target's `message_contents`, one by one (each may be large). Returns
/// how many.
async fn copy_spooled(
    source: &mut SqliteConnection,
    target: &mut sqlx::PgConnection,
    sqlite_path: &Path,
) -> Result<u64> {
    let has_table: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'message_spool')",
    )
    .fetch_one(&mut *source)
    .await?;
    if !has_table {
        return Ok(0);
    }
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT message_id, file, start, length FROM message_spool
         WHERE message_id IN (SELECT id FROM messages) ORDER BY file, start",
    )
    .fetch_all(&mut *source)
    .await?;
    let dir = sqlite_path.parent().unwrap_or(Path::new("."));
    let spool = Spool::at(dir);
    for (id, file, start, length) in &rows {
        let at = Location {
            file: *file,
            start: *start,
            length: *length,
        };
        let content = spool.read(at).map_err(|e| {
            StoreError::Backend(format!(
                "cannot read the content of message {id} from {}: {e} (was the server still running? stop it and copy again)",
                spool.path(*file).display()
            ))
        })?;
        sqlx::query("INSERT INTO message_contents (message_id, content) VALUES ($1, $2)")
            .bind(id)
            .bind(content)
            .execute(&mut *target)
            .await?;
    }
    Ok(rows.len() as u64)
}

/// The error with the table it happened in.
fn in_table(table: &str, e: StoreError) -> StoreError {
    match e {
        StoreError::NotFound(m) => StoreError::NotFound(format!("copying {table}: {m}")),
        StoreError::Duplicate(m) => StoreError::Duplicate(format!("copying {table}: {m}")),
        StoreError::InUse(m) => StoreError::InUse(format!("copying {table}: {m}")),
        StoreError::Backend(m) => StoreError::Backend(format!("copying {table}: {m}")),
        StoreError::NoSpace(m) => StoreError::NoSpace(format!("copying {table}: {m}")),
    }
}

/// The source is a layout this copy knows entirely: a recent enough
/// schema, and no table or column it would leave behind unawares.
async fn check_source(conn: &mut SqliteConnection, path: &Path) -> Result<()> {
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *conn)
        .await?;
    if version < READS_SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "{} is a store of schema version {version}, older than {READS_SCHEMA_VERSION}: put it in a data directory as posthorn.db and copy from there (it is brought up to date first)",
            path.display()
        )));
    }
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await?;
    for name in &tables {
        if NOT_COPIED.contains(&name.as_str()) {
            continue;
        }
        let Some(table) = TABLES.iter().find(|t| t.name == name) else {
            return Err(StoreError::Backend(format!(
                "the store has a table {name:?} that store copy does not know (a store of a newer Posthorn?); nothing was copied"
            )));
        };
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
            .bind(name)
            .fetch_all(&mut *conn)
            .await?;
        for column in &columns {
            let known = table.columns.iter().any(|(c, _)| c == column)
                || table.left_behind.contains(&column.as_str());
            if !known {
                return Err(StoreError::Backend(format!(
                    "the store's table {name} has a column {column:?} that store copy does not know (a store of a newer Posthorn?); nothing was copied"
                )));
            }
        }
    }
    Ok(())
}

/// One column of a chunk of rows.
enum Values {
    Int(Vec<Option<i64>>),
    Text(Vec<Option<String>>),
    Bytes(Vec<Option<Vec<u8>>>),
}

/// Copy one table, chunk by chunk in rowid order. Returns rows copied.
async fn copy_table(
    source: &mut SqliteConnection,
    target: &mut sqlx::PgConnection,
    table: &Table,
    now: i64,
) -> Result<u64> {
    let names: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
    let read = format!(
        "SELECT rowid, {} FROM {} WHERE rowid > ? AND ({}) ORDER BY rowid LIMIT ?",
        names.join(", "),
        table.name,
        table.only
    );
    let quoted: Vec<String> = names.iter().map(|c| format!("\"{c}\"")).collect();
    let arrays: Vec<String> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| format!("${}::{}", i + 1, kind.pg_array()))
        .collect();
    let select = match table.select {
        Some(s) => s.replace("$now", &format!("${}", names.len() + 1)),
        None => quoted
            .iter()
            .map(|c| format!("u.{c}"))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let write = format!(
        "INSERT INTO {} ({}) SELECT {select} FROM unnest({}) AS u({})",
        table.name,
        quoted.join(", "),
        arrays.join(", "),
        quoted.join(", "),
    );
    let uses_now = table.select.is_some_and(|s| s.contains("$now"));
    // The content column, whose size bounds a chunk.
    let blob = table
        .columns
        .iter()
        .find(|(_, k)| *k == Bytes)
        .map(|(c, _)| *c);

    let mut after = 0i64;
    let mut copied = 0u64;
    loop {
        let limit = match blob {
            Some(column) => chunk_by_bytes(source, table, column, after).await?,
            None => CHUNK_ROWS,
        };
        let rows: Vec<SqliteRow> = sqlx::query(sqlx::AssertSqlSafe(read.clone()))
            .bind(after)
            .bind(limit)
            .fetch_all(&mut *source)
            .await?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.try_get(0)?;
        let mut query = sqlx::query(sqlx::AssertSqlSafe(write.clone()));
        for (i, (_, kind)) in table.columns.iter().enumerate() {
            query = match column(&rows, i + 1, *kind)? {
                Values::Int(v) => query.bind(v),
                Values::Text(v) => query.bind(v),
                Values::Bytes(v) => query.bind(v),
            };
        }
        if uses_now {
            query = query.bind(now);
        }
        copied += query.execute(&mut *target).await?.rows_affected();
        if (rows.len() as i64) < limit {
            break;
        }
    }
    Ok(copied)
}

/// How many rows after `after` fit in [`CHUNK_BYTES`] of `column` (one at
/// least), reading only their lengths.
async fn chunk_by_bytes(
    source: &mut SqliteConnection,
    table: &Table,
    column: &str,
    after: i64,
) -> Result<i64> {
    let sizes: Vec<Option<i64>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT length({column}) FROM {} WHERE rowid > ? AND ({}) ORDER BY rowid LIMIT ?",
        table.name, table.only
    )))
    .bind(after)
    .bind(CHUNK_ROWS)
    .fetch_all(&mut *source)
    .await?;
    let mut total = 0i64;
    let mut rows = 0i64;
    for size in sizes {
        total += size.unwrap_or(0);
        if rows > 0 && total > CHUNK_BYTES {
            break;
        }
        rows += 1;
    }
    // 1 when none are left: the read finds none and the copy ends.
    Ok(rows.max(1))
}

/// Column `i` of `rows` as `kind`.
fn column(rows: &[SqliteRow], i: usize, kind: Kind) -> Result<Values> {
    Ok(match kind {
        Kind::Int => Values::Int(
            rows.iter()
                .map(|r| r.try_get(i))
                .collect::<Result<_, _>>()?,
        ),
        Kind::Text => Values::Text(
            rows.iter()
                .map(|r| r.try_get(i))
                .collect::<Result<_, _>>()?,
        ),
        Kind::Bytes => Values::Bytes(
            rows.iter()
                .map(|r| r.try_get(i))
                .collect::<Result<_, _>>()?,
        ),
    })
}
