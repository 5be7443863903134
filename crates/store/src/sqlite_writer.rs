//! The embedded store's writer: one OS thread with its own SQLite
//! connection (rusqlite, synchronous), fed by a channel. Every write
//! waiting when a commit starts goes into that one transaction (group
//! commit), so many sessions share one fsync.
//!
//! Why a thread of its own and not an async driver: every statement an
//! async SQLite driver runs is a round trip to that driver's worker
//! thread, two thread wake-ups, which on a small VM costs more than the
//! statement. Here a commit costs its SQL and its fsync, nothing else.
//! Statements are prepared once and cached by their text; a batch uses a
//! fixed number of them however many messages it carries.

use crate::fresh::FreshContents;
use crate::shared::SUPPRESSED_REPLY;
use crate::spool::{Location, Spool, COMPACT_AGE, SPOOL_MIN};
use crate::sqlite::{now, parse_id};
use crate::*;
use posthorn_types::RecipientStatus;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, ToSql, TransactionBehavior};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::sync::oneshot;

/// Most jobs one group commit carries.
const MAX_BATCH: usize = 512;
/// Jobs that may wait for the writer: when it falls this far behind,
/// callers wait for room (a submission waits before its 250) instead of
/// memory growing without bound. Eight full commits' worth.
pub(crate) const QUEUE_CAP: usize = 8 * MAX_BATCH;
/// Messages per multi-row INSERT (12 parameters each; SQLite allows 32,766).
const MESSAGE_CHUNK: usize = 256;
/// Rows per multi-row INSERT or UPDATE of the smaller tables.
const ROW_CHUNK: usize = 512;
/// Updates per statement when recording outcomes (7 parameters each).
const UPDATE_CHUNK: usize = 128;
/// Statuses after which nothing more happens to a recipient.
const NOT_FINAL: &str = "('queued', 'deferred', 'sending')";

/// A write the writer carries out inside its next group commit.
pub(crate) enum Op {
    /// One message, or several stored all or none (with the batch, or
    /// under one savepoint when the batch runs again).
    Enqueue(Vec<NewMessage>),
    Claim {
        owner: String,
        now: i64,
        lease_until: i64,
        limit: u32,
        /// Domains to leave out, as a JSON array of strings.
        skip: String,
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

pub(crate) enum Done {
    Enqueued,
    Claimed(Vec<DueRecipient>),
    Recorded(Recorded),
    Purged(u64, u64),
    WebhooksClaimed(Vec<DueWebhookDelivery>),
    WebhooksRecorded,
}

pub(crate) struct WriteJob {
    pub op: Op,
    pub done: oneshot::Sender<Result<Done>>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub commits: AtomicU64,
    pub messages: AtomicU64,
    /// Whether writes fail for lack of space (`Store::out_of_space`).
    pub space: crate::space::SpaceWatch,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(f, msg) = &e {
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            {
                return StoreError::Duplicate(msg.clone().unwrap_or_else(|| e.to_string()));
            }
            // SQLite answers SQLITE_FULL for ENOSPC too.
            if f.code == rusqlite::ErrorCode::DiskFull {
                return StoreError::NoSpace(e.to_string());
            }
        }
        StoreError::Backend(e.to_string())
    }
}

/// Open the writer's connection to `db` (already migrated) and start its
/// thread; it stops when every sender is dropped.
pub(crate) fn spawn(
    db: &Path,
    counters: Arc<Counters>,
    fresh: Arc<FreshContents>,
    spool: Arc<Spool>,
) -> Result<mpsc::Sender<WriteJob>> {
    // Through the VFS that gathers contiguous writes (`sqlite_vfs.rs`),
    // which counts on synchronous = FULL below.
    crate::sqlite_vfs::register().map_err(StoreError::Backend)?;
    let conn = Connection::open_with_flags_and_vfs(
        db,
        rusqlite::OpenFlags::default(),
        crate::sqlite_vfs::NAME,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // Every commit is on stable storage before its writers hear of it.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(128);
    // Files a crash left before their commit, or whose rows went with an
    // account.
    sweep(&conn, &spool);
    let (tx, rx) = mpsc::channel(QUEUE_CAP);
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || run(conn, rx, counters, fresh, spool))
        .map_err(|e| StoreError::Backend(format!("cannot start the store writer: {e}")))?;
    Ok(tx)
}

fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<WriteJob>,
    counters: Arc<Counters>,
    fresh: Arc<FreshContents>,
    spool: Arc<Spool>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut compacted: Option<std::time::Instant> = None;
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let spooled = spool_contents(&spool, &mut batch, &counters);
        if batch.is_empty() {
            continue;
        }
        let purges = batch.iter().any(|j| matches!(j.op, Op::Purge { .. }));
        let changes = conn.total_changes();
        match write_batch(&mut conn, &batch, &spooled) {
            Ok(results) => {
                // Files no row points into any more: after a purge that
                // removed something, and with the compaction (which also
                // finds the files an account's removal left).
                let purged = results
                    .iter()
                    .any(|r| matches!(r, Ok(Done::Purged(b, r)) if b + r > 0));
                let compact_now = purges && compacted.is_none_or(|t| t.elapsed() >= COMPACT_EVERY);
                if purged || compact_now {
                    sweep(&conn, &spool);
                }
                if compact_now {
                    compacted = Some(std::time::Instant::now());
                    if let Err(e) = compact(&mut conn, &spool) {
                        tracing::warn!(error = %e, "cannot compact the spool");
                    }
                }
                // Space: a job refused for want of it, or a commit that
                // wrote something.
                if results
                    .iter()
                    .any(|r| matches!(r, Err(StoreError::NoSpace(_))))
                {
                    counters.space.failed(now());
                } else if conn.total_changes() != changes {
                    counters.space.succeeded();
                }
                counters.commits.fetch_add(1, Ordering::Relaxed);
                let committed = std::time::Instant::now();
                for (job, done) in batch.drain(..).zip(results) {
                    if done.is_ok() {
                        match job.op {
                            // Before its sender hears of the commit, so any
                            // delivery of it can find it.
                            Op::Enqueue(messages) => {
                                counters
                                    .messages
                                    .fetch_add(messages.len() as u64, Ordering::Relaxed);
                                for m in messages {
                                    fresh.keep(m.id, m.content, committed)
                                }
                            }
                            // Contents were deleted: none may be handed out now.
                            Op::Purge { .. } => fresh.clear(),
                            _ => {}
                        }
                    }
                    let _ = job.done.send(done);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = batch.len(), "group commit failed");
                // Nothing points into this commit's file.
                if let Some(at) = spooled.values().next() {
                    spool.remove(at.file);
                }
                if matches!(e, StoreError::NoSpace(_)) {
                    counters.space.failed(now());
                }
                for job in batch.drain(..) {
                    let _ = job.done.send(Err(crate::space::again(&e)));
                }
            }
        }
    }
}

/// Where the batch's spooled contents are, by message.
type Spooled = HashMap<MessageId, Location>;

/// Write the batch's large contents ([`SPOOL_MIN`]) into one spool file,
/// on stable storage before the commit that points into it. When that
/// fails, the enqueues are answered with the error and taken out of the
/// batch; the other jobs go on (a delivery's outcome, a purge, are what
/// frees space).
fn spool_contents(spool: &Spool, batch: &mut Vec<WriteJob>, counters: &Counters) -> Spooled {
    let large: Vec<&NewMessage> = batch_messages(batch)
        .into_iter()
        .filter(|m| m.content.len() >= SPOOL_MIN)
        .collect();
    if large.is_empty() {
        return Spooled::new();
    }
    let contents: Vec<&[u8]> = large.iter().map(|m| m.content.as_slice()).collect();
    match spool.write(&contents) {
        Ok(at) => large.iter().map(|m| m.id).zip(at).collect(),
        Err(e) => {
            let e = if e.kind() == std::io::ErrorKind::StorageFull {
                counters.space.failed(now());
                StoreError::NoSpace(format!("cannot write to the spool: {e}"))
            } else {
                StoreError::Backend(format!("cannot write to the spool: {e}"))
            };
            tracing::error!(error = %e, "spooling a commit's contents failed");
            let (enqueues, rest): (Vec<WriteJob>, Vec<WriteJob>) = batch
                .drain(..)
                .partition(|j| matches!(j.op, Op::Enqueue(_)));
            *batch = rest;
            for job in enqueues {
                let _ = job.done.send(Err(crate::space::again(&e)));
            }
            Spooled::new()
        }
    }
}

/// How often the writer looks for spool files to compact (after a purge).
const COMPACT_EVERY: Duration = Duration::from_secs(60);
/// Live bytes moved by one compaction at most (more wait for the next);
/// they are read into memory first.
const COMPACT_BYTES: i64 = 16 << 20;

/// Move the live contents of old, mostly dead spool files (see spool.rs)
/// into one new file, in a commit of their own, then remove the old files.
fn compact(conn: &mut Connection, spool: &Spool) -> Result<()> {
    let live: Vec<(i64, i64)> = conn
        .prepare_cached("SELECT file, SUM(length) FROM message_spool GROUP BY file")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut files = Vec::new();
    let mut bytes = 0;
    for (file, live) in live {
        let Ok((size, age)) = spool.size_and_age(file) else {
            continue;
        };
        if age >= COMPACT_AGE && (live as u64) * 2 < size && bytes + live <= COMPACT_BYTES {
            files.push(file);
            bytes += live;
        }
    }
    if files.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "SELECT message_id, file, start, length FROM message_spool WHERE file IN ({}) ORDER BY file, start",
        vec!["?"; files.len()].join(", ")
    );
    let rows: Vec<(String, Location)> = conn
        .prepare(&sql)?
        .query_map(params_from_iter(&files), Location::row)?
        .collect::<rusqlite::Result<_>>()?;
    let io = |e: std::io::Error| StoreError::Backend(format!("compacting the spool: {e}"));
    let contents: Vec<Vec<u8>> = rows
        .iter()
        .map(|(_, at)| spool.read(*at))
        .collect::<std::io::Result<_>>()
        .map_err(io)?;
    let slices: Vec<&[u8]> = contents.iter().map(Vec::as_slice).collect();
    let moved = spool.write(&slices).map_err(io)?;
    let committed = (|| {
        let tx = begin(conn)?;
        for ((id, old), new) in rows.iter().zip(&moved) {
            tx.prepare_cached(
                "UPDATE message_spool SET file = ?, start = ?, length = ? WHERE message_id = ? AND file = ?",
            )?
            .execute(params![new.file, new.start, new.length, id, old.file])?;
        }
        tx.commit()?;
        Ok::<_, StoreError>(())
    })();
    match committed {
        Ok(()) => {
            tracing::info!(
                files = files.len(),
                contents = rows.len(),
                bytes,
                "spool files compacted"
            );
            sweep(conn, spool);
            Ok(())
        }
        Err(e) => {
            spool.remove(moved[0].file);
            Err(e)
        }
    }
}

/// Remove the spool files no row points into (see `Spool::sweep`).
fn sweep(conn: &Connection, spool: &Spool) {
    let in_use: rusqlite::Result<Vec<i64>> = conn
        .prepare_cached("SELECT DISTINCT file FROM message_spool")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect());
    match in_use.map_err(StoreError::from).and_then(|files| {
        spool
            .sweep(&files)
            .map_err(|e| StoreError::Backend(e.to_string()))
    }) {
        Ok(0) => {}
        Ok(n) => tracing::debug!(files = n, "spool files removed"),
        Err(e) => tracing::warn!(error = %e, "cannot sweep the spool"),
    }
}

/// Every job in one transaction; each job's result in the jobs' order.
///
/// First without savepoints: SQLite copies every page a savepoint's writes
/// touch first into its sub-journal (9-16 % of the writer's CPU per
/// message in `bench/http.sh`). Should any job fail, that transaction is rolled back
/// (it has written nothing else) and the batch runs again with a savepoint
/// per job, so the job at fault fails alone while the others commit; only
/// a failure of the transaction itself (the commit, the disk) fails them
/// all.
fn write_batch(
    conn: &mut Connection,
    batch: &[WriteJob],
    spooled: &Spooled,
) -> Result<Vec<Result<Done>>> {
    let tx = begin(conn)?;
    let (now, events_since) = batch_context(&tx)?;
    match write_unguarded(&tx, batch, spooled, events_since.is_some(), now) {
        Ok(results) => {
            finish(tx, events_since, now)?;
            Ok(results)
        }
        Err(e) => {
            tracing::debug!(error = %e, jobs = batch.len(), "a job failed; the batch again with a savepoint per job");
            // Dropping the transaction rolls it back (if SQLite has not already).
            drop(tx);
            write_guarded(conn, batch, spooled)
        }
    }
}

/// IMMEDIATE: take the write lock now (waiting out the pool's admin
/// writes), so no read snapshot can go stale under this transaction.
fn begin(conn: &mut Connection) -> Result<rusqlite::Transaction<'_>> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

/// The batch's time, and the last event's id when some webhook may want
/// events (see sqlite_api), `None` when none may.
fn batch_context(tx: &Connection) -> Result<(i64, Option<i64>)> {
    let webhooks: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM webhooks)")?
        .query_row([], |r| r.get(0))?;
    let events_since = if webhooks {
        Some(
            tx.prepare_cached("SELECT COALESCE(MAX(id), 0) FROM events")?
                .query_row([], |r| r.get(0))?,
        )
    } else {
        None
    };
    Ok((now(), events_since))
}

/// Every job without a savepoint; the first failure fails the lot.
fn write_unguarded(
    tx: &Connection,
    batch: &[WriteJob],
    spooled: &Spooled,
    events: bool,
    now: i64,
) -> Result<Vec<Result<Done>>> {
    let messages = batch_messages(batch);
    insert_messages(tx, &messages, spooled, events)?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        results.push(Ok(run_op(tx, &job.op, events, now)?));
    }
    Ok(results)
}

/// Every job under a savepoint of its own.
fn write_guarded(
    conn: &mut Connection,
    batch: &[WriteJob],
    spooled: &Spooled,
) -> Result<Vec<Result<Done>>> {
    let mut tx = begin(conn)?;
    let (now, events_since) = batch_context(&tx)?;
    let events = events_since.is_some();
    // The batch's messages first, together; the other writes may then
    // already see them (they commit together either way).
    let enqueued = enqueue_all(&mut tx, batch, spooled, events)?;
    let mut results = Vec::with_capacity(batch.len());
    for (job, enqueued) in batch.iter().zip(enqueued) {
        if let Some(result) = enqueued {
            results.push(result);
            continue;
        }
        let sp = tx.savepoint()?;
        let done = run_op(&sp, &job.op, events, now);
        match done {
            Ok(d) => {
                sp.commit()?;
                results.push(Ok(d));
            }
            // Dropping the savepoint undoes what the job wrote.
            Err(e) => results.push(Err(e)),
        }
    }
    finish(tx, events_since, now)?;
    Ok(results)
}

/// The batch's events to the webhooks that want them, then the commit.
fn finish(tx: rusqlite::Transaction<'_>, events_since: Option<i64>, now: i64) -> Result<()> {
    if let Some(since) = events_since {
        fan_out(&tx, since, now)?;
    }
    tx.commit()?;
    Ok(())
}

/// The messages of the batch's enqueues, in the jobs' order.
fn batch_messages(batch: &[WriteJob]) -> Vec<&NewMessage> {
    batch
        .iter()
        .filter_map(|j| match &j.op {
            Op::Enqueue(m) => Some(m.iter()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Insert the batch's messages: all in one go (a fixed number of
/// statements), or when that fails, each under a savepoint of its own, so
/// only the message at fault is refused. One entry per job: `Some` for an
/// enqueue, with its result.
fn enqueue_all(
    tx: &mut rusqlite::Transaction<'_>,
    batch: &[WriteJob],
    spooled: &Spooled,
    events: bool,
) -> Result<Vec<Option<Result<Done>>>> {
    let messages = batch_messages(batch);
    let all = {
        let sp = tx.savepoint()?;
        match insert_messages(&sp, &messages, spooled, events) {
            Ok(()) => sp.commit().map_err(StoreError::from),
            Err(e) => Err(e),
        }
    };
    let one_by_one = all.is_err();
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let Op::Enqueue(job_messages) = &job.op else {
            results.push(None);
            continue;
        };
        if !one_by_one {
            results.push(Some(Ok(Done::Enqueued)));
            continue;
        }
        // A job's messages (several for an X-SMTPAPI batch) stand or fall
        // together.
        let job_messages: Vec<&NewMessage> = job_messages.iter().collect();
        let sp = tx.savepoint()?;
        match insert_messages(&sp, &job_messages, spooled, events) {
            Ok(()) => {
                sp.commit()?;
                results.push(Some(Ok(Done::Enqueued)));
            }
            Err(e) => {
                let id = job_messages.first().map(|m| m.id.to_string());
                tracing::warn!(id = id.as_deref().unwrap_or(""), messages = job_messages.len(), error = %e, "one job of a group commit refused");
                results.push(Some(Err(e)));
            }
        }
    }
    Ok(results)
}

/// One write other than an enqueue.
fn run_op(tx: &Connection, op: &Op, events: bool, now: i64) -> Result<Done> {
    Ok(match op {
        Op::Enqueue(_) => Done::Enqueued,
        Op::Claim {
            owner,
            now,
            lease_until,
            limit,
            skip,
        } => Done::Claimed(claim(tx, owner, *now, *lease_until, *limit, skip)?),
        Op::Record { owner, batch } => {
            Done::Recorded(record(tx, owner.as_deref(), batch, events, now)?)
        }
        Op::Purge {
            bodies_before,
            records_before,
        } => {
            let (b, r) = purge(tx, *bodies_before, *records_before)?;
            Done::Purged(b, r)
        }
        Op::ClaimWebhooks {
            now,
            lease_until,
            limit,
        } => Done::WebhooksClaimed(claim_webhook_deliveries(tx, *now, *lease_until, *limit)?),
        Op::WebhookResults(results) => {
            record_webhook_results(tx, results, now)?;
            Done::WebhooksRecorded
        }
    })
}

/// `(?, ?, …)` rows for a multi-row `VALUES`.
fn rows(n: usize, width: usize) -> String {
    let one = format!("({})", vec!["?"; width].join(", "));
    vec![one.as_str(); n].join(", ")
}

/// Insert messages with a fixed number of statements: messages,
/// attachments and recipients each as chunked multi-row `VALUES`.
fn insert_messages(
    tx: &Connection,
    messages: &[&NewMessage],
    spooled: &Spooled,
    events: bool,
) -> Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = messages.iter().map(|m| m.id.to_string()).collect();
    let both: Vec<(&String, &NewMessage)> = ids.iter().zip(messages.iter().copied()).collect();
    // The two derived columns, next to their message: (id, message, size,
    // completed_at, which only a message without queued recipients has).
    let message_rows: Vec<(&String, &NewMessage, i64, Option<i64>)> = both
        .iter()
        .map(|(id, m)| {
            let completed = m.recipients.is_empty().then_some(m.received_at);
            (*id, *m, m.content.len() as i64, completed)
        })
        .collect();
    for chunk in message_rows.chunks(MESSAGE_CHUNK) {
        let sql = format!(
            "INSERT INTO messages (id, account_id, mail_from, auth_user, client_ip, label, size, received_at, subject, header_from, is_dsn, completed_at)
             VALUES {}",
            rows(chunk.len(), 12)
        );
        let mut args: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 12);
        for (id, m, size, completed) in chunk {
            args.extend([
                *id as &dyn ToSql,
                &m.account_id,
                &m.mail_from,
                &m.auth_user,
                &m.client_ip,
                &m.label,
                size,
                &m.received_at,
                &m.subject,
                &m.header_from,
                &m.is_dsn,
                completed,
            ]);
        }
        tx.prepare_cached(&sql)?.execute(params_from_iter(args))?;
    }
    // The content in its own table (see schema_v4.sql), or where it is in
    // the spool (schema_v14.sql).
    let (in_spool, in_db): (Vec<_>, Vec<_>) =
        both.iter().partition(|(_, m)| spooled.contains_key(&m.id));
    for chunk in in_spool.chunks(MESSAGE_CHUNK) {
        let sql = format!(
            "INSERT INTO message_spool (message_id, file, start, length) VALUES {}",
            rows(chunk.len(), 4)
        );
        let mut args: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 4);
        for (id, m) in chunk {
            let at = &spooled[&m.id];
            args.extend([*id as &dyn ToSql, &at.file, &at.start, &at.length]);
        }
        tx.prepare_cached(&sql)?.execute(params_from_iter(args))?;
    }
    for chunk in in_db.chunks(MESSAGE_CHUNK) {
        let sql = format!(
            "INSERT INTO message_contents (message_id, content) VALUES {}",
            rows(chunk.len(), 2)
        );
        let mut args: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 2);
        for (id, m) in chunk {
            args.extend([*id as &dyn ToSql, &m.content]);
        }
        tx.prepare_cached(&sql)?.execute(params_from_iter(args))?;
    }

    let attachments: Vec<(&String, i64, &AttachmentRecord, i64)> = both
        .iter()
        .flat_map(|(id, m)| {
            m.attachments
                .iter()
                .enumerate()
                .map(move |(i, a)| (*id, i as i64, a, a.size as i64))
        })
        .collect();
    for chunk in attachments.chunks(ROW_CHUNK) {
        let sql = format!(
            "INSERT INTO attachments (message_id, idx, filename, content_type, size) VALUES {}",
            rows(chunk.len(), 5)
        );
        let mut args: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 5);
        for (id, idx, a, size) in chunk {
            args.extend([*id as &dyn ToSql, idx, &a.filename, &a.content_type, size]);
        }
        tx.prepare_cached(&sql)?.execute(params_from_iter(args))?;
    }

    let mut recipients: Vec<RecipientRow> = Vec::new();
    // (message id, idx, the message's received_at) of suppressed recipients.
    let mut suppressed_events = Vec::new();
    for (id, m) in &both {
        let queued = m.recipients.iter().map(|r| (r, RecipientStatus::Queued));
        let suppressed = m
            .suppressed
            .iter()
            .map(|r| (r, RecipientStatus::Suppressed));
        for (idx, (rcpt, status)) in queued.chain(suppressed).enumerate() {
            let is_queued = status == RecipientStatus::Queued;
            if events && !is_queued {
                suppressed_events.push(((*id).clone(), idx as i64, m.received_at));
            }
            recipients.push((
                *id,
                idx as i64,
                rcpt,
                status.as_str(),
                is_queued.then_some(m.received_at),
                (!is_queued).then_some(SUPPRESSED_REPLY),
                m.received_at,
            ));
        }
    }
    for chunk in recipients.chunks(ROW_CHUNK) {
        let sql = format!(
            "INSERT INTO recipients (message_id, idx, address, status, next_try, last_reply, updated_at)
             VALUES {}",
            rows(chunk.len(), 7)
        );
        let mut args: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 7);
        for (id, idx, rcpt, status, next_try, reply, at) in chunk {
            args.extend([*id as &dyn ToSql, idx, *rcpt, status, next_try, reply, at]);
        }
        tx.prepare_cached(&sql)?.execute(params_from_iter(args))?;
    }
    // Rare (a webhook subscribed and a recipient suppressed at RCPT): a
    // statement per message, each event stamped with its message's time.
    for group in suppressed_events.chunk_by(|a, b| a.0 == b.0) {
        let recipients: Vec<(String, i64)> = group
            .iter()
            .map(|(id, idx, _)| (id.clone(), *idx))
            .collect();
        record_events(tx, &recipients, group[0].2)?;
    }
    Ok(())
}

/// (message id, idx, address, status, next_try, last_reply, updated_at)
type RecipientRow<'a> = (
    &'a String,
    i64,
    &'a String,
    &'static str,
    Option<i64>,
    Option<&'static str>,
    i64,
);

fn claim(
    tx: &Connection,
    owner: &str,
    now: i64,
    lease_until: i64,
    limit: u32,
    skip: &str,
) -> Result<Vec<DueRecipient>> {
    // One statement marks what is due (leases that ran out first, then the
    // earliest planned), one reads its messages. `?4` is a JSON array of
    // domains to leave out, compared with the end of the address. `?5`,
    // the limit, is bound as `CAST(?5 AS INTEGER)`: SQLite plans with the
    // value bound to a bare `LIMIT ?`, so it compiled such a statement
    // again each time the parameter was bound, and every claim did (a
    // profile of scenario a, Intel, 2026-12-07: `sqlite3Reprepare` 1.1 %
    // of the server's CPU); an expression is not planned with, and the
    // limit varies (the engine's room), so it cannot be written in.
    let mut stmt = tx.prepare_cached(
        "UPDATE recipients SET status = 'sending', lease_owner = ?2, lease_until = ?3, updated_at = ?1
         WHERE rowid IN (
             SELECT rowid FROM (SELECT rowid FROM recipients
                                WHERE status = 'sending' AND lease_until <= ?1
                                  AND NOT EXISTS (SELECT 1 FROM json_each(?4) s
                                      WHERE substr(lower(address), -length(s.value) - 1) = '@' || s.value)
                                ORDER BY lease_until LIMIT CAST(?5 AS INTEGER))
             UNION ALL
             SELECT rowid FROM (SELECT rowid FROM recipients
                                WHERE status IN ('queued', 'deferred') AND next_try <= ?1
                                  AND NOT EXISTS (SELECT 1 FROM json_each(?4) s
                                      WHERE substr(lower(address), -length(s.value) - 1) = '@' || s.value)
                                ORDER BY next_try LIMIT CAST(?5 AS INTEGER))
             LIMIT CAST(?5 AS INTEGER))
         RETURNING message_id, idx, address, attempts",
    )?;
    let claimed: Vec<(String, i64, String, i64)> = stmt
        .query_map(params![now, owner, lease_until, skip, limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    if claimed.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids: Vec<&str> = claimed.iter().map(|c| c.0.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    struct Msg {
        account_id: i64,
        mail_from: String,
        header_from: String,
        label: Option<String>,
        received_at: i64,
        is_dsn: bool,
    }
    let mut messages: HashMap<String, Msg> = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(ROW_CHUNK) {
        let sql = format!(
            "SELECT id, account_id, mail_from, header_from, label, received_at, is_dsn
             FROM messages WHERE id IN ({})",
            vec!["?"; chunk.len()].join(", ")
        );
        let mut stmt = tx.prepare_cached(&sql)?;
        let found = stmt.query_map(params_from_iter(chunk.iter()), |r| {
            Ok((
                r.get::<_, String>(0)?,
                Msg {
                    account_id: r.get(1)?,
                    mail_from: r.get(2)?,
                    header_from: r.get(3)?,
                    label: r.get(4)?,
                    received_at: r.get(5)?,
                    is_dsn: r.get(6)?,
                },
            ))
        })?;
        for row in found {
            let (id, m) = row?;
            messages.insert(id, m);
        }
    }
    let mut out = Vec::with_capacity(claimed.len());
    for (id, idx, address, attempts) in claimed {
        let Some(m) = messages.get(&id) else {
            return Err(StoreError::Backend(format!(
                "recipient of a missing message {id}"
            )));
        };
        out.push(DueRecipient {
            message_id: parse_id(&id)?,
            idx: idx as u32,
            address,
            attempts: attempts as u32,
            account_id: m.account_id,
            mail_from: m.mail_from.clone(),
            header_from: m.header_from.clone(),
            label: m.label.clone(),
            received_at: m.received_at,
            is_dsn: m.is_dsn,
        });
    }
    // Oldest messages first, a message's recipients together and in order.
    out.sort_by_key(|r| (r.message_id, r.idx));
    Ok(out)
}

fn record(
    tx: &Connection,
    owner: Option<&str>,
    batch: &OutcomeBatch,
    events: bool,
    now: i64,
) -> Result<Recorded> {
    let mut recorded = Recorded::default();
    if !batch.updates.is_empty() {
        // A statement per chunk of updates; RETURNING says which applied.
        let guard = match owner {
            Some(_) => "r.status = 'sending' AND r.lease_owner = ?",
            None => "r.status IN ('queued', 'deferred', 'sending') AND ? IS NULL",
        };
        let mut applied: HashSet<(String, i64)> = HashSet::with_capacity(batch.updates.len());
        for chunk in batch.updates.chunks(UPDATE_CHUNK) {
            let sql = format!(
                "WITH u(id, idx, status, attempts, last_reply, remote_host, next_try) AS (VALUES {})
                 UPDATE recipients AS r SET status = u.status, attempts = u.attempts,
                        last_reply = u.last_reply, remote_host = u.remote_host, next_try = u.next_try,
                        lease_owner = NULL, lease_until = NULL, updated_at = ?
                 FROM u
                 WHERE r.message_id = u.id AND r.idx = u.idx AND {guard}
                 RETURNING message_id, idx",
                rows(chunk.len(), 7)
            );
            let mut args: Vec<Value> = Vec::with_capacity(chunk.len() * 7 + 2);
            for u in chunk {
                args.push(Value::Text(u.message_id.to_string()));
                args.push(Value::Integer(i64::from(u.idx)));
                args.push(Value::Text(u.status.as_str().to_string()));
                args.push(Value::Integer(i64::from(u.attempts)));
                args.push(u.last_reply.clone().map_or(Value::Null, Value::Text));
                args.push(u.remote_host.clone().map_or(Value::Null, Value::Text));
                args.push(u.next_try.map_or(Value::Null, Value::Integer));
            }
            args.push(Value::Integer(now));
            args.push(owner.map_or(Value::Null, |o| Value::Text(o.to_string())));
            let mut stmt = tx.prepare_cached(&sql)?;
            let done = stmt.query_map(params_from_iter(args), |r| Ok((r.get(0)?, r.get(1)?)))?;
            for row in done {
                applied.insert(row?);
            }
        }
        recorded.applied = applied.len() as u64;
        if events {
            let changed: Vec<(String, i64)> = applied.iter().cloned().collect();
            record_events(tx, &changed, now)?;
        }
        let mut touched: Vec<&str> = applied.iter().map(|(id, _)| id.as_str()).collect();
        touched.sort_unstable();
        touched.dedup();
        for u in &batch.updates {
            let Some(reason) = &u.suppress else { continue };
            let id = u.message_id.to_string();
            if !applied.contains(&(id.clone(), i64::from(u.idx))) {
                continue;
            }
            tx.prepare_cached(
                "INSERT INTO suppressions (account_id, address, reason, message_id, created_at)
                 SELECT account_id, (SELECT address FROM recipients WHERE message_id = ?1 AND idx = ?2), ?3, ?1, ?4
                 FROM messages WHERE id = ?1
                 ON CONFLICT (account_id, address) DO UPDATE SET reason = excluded.reason,
                     message_id = excluded.message_id, created_at = excluded.created_at",
            )?
            .execute(params![id, i64::from(u.idx), reason, now])?;
        }
        for chunk in touched.chunks(ROW_CHUNK) {
            let sql = format!(
                "UPDATE messages SET completed_at = ?
                 WHERE id IN ({}) AND completed_at IS NULL
                   AND NOT EXISTS (SELECT 1 FROM recipients WHERE message_id = messages.id AND status IN {NOT_FINAL})
                 RETURNING id",
                vec!["?"; chunk.len()].join(", ")
            );
            let mut args: Vec<&dyn ToSql> = vec![&now];
            args.extend(chunk.iter().map(|id| id as &dyn ToSql));
            let mut stmt = tx.prepare_cached(&sql)?;
            let done = stmt.query_map(params_from_iter(args), |r| r.get::<_, String>(0))?;
            for id in done {
                recorded.completed.push(parse_id(&id?)?);
            }
        }
        recorded.completed.sort_unstable();
    }
    let notices: Vec<&NewMessage> = batch.notices.iter().collect();
    // Bounce notices are not spooled: they go into the database.
    insert_messages(tx, &notices, &Spooled::new(), events)?;
    Ok(recorded)
}

/// Bodies, then whole records, of messages final long enough. In the
/// writer, so it never waits on (or holds up) the group commit's lock.
fn purge(tx: &Connection, bodies_before: i64, records_before: i64) -> Result<(u64, u64)> {
    let final_before = "completed_at IS NOT NULL AND completed_at <= ? AND content_purged = 0";
    for table in ["message_contents", "message_spool"] {
        tx.prepare_cached(&format!(
            "DELETE FROM {table} WHERE message_id IN (SELECT id FROM messages WHERE {final_before})"
        ))?
        .execute([bodies_before])?;
    }
    let bodies = tx
        .prepare_cached(&format!(
            "UPDATE messages SET content_purged = 1 WHERE {final_before}"
        ))?
        .execute([bodies_before])? as u64;
    let old = "SELECT id FROM messages WHERE completed_at IS NOT NULL AND completed_at <= ?";
    for table in [
        "attachments",
        "recipients",
        "message_contents",
        "message_spool",
    ] {
        tx.prepare_cached(&format!("DELETE FROM {table} WHERE message_id IN ({old})"))?
            .execute([records_before])?;
    }
    let records = tx
        .prepare_cached(&format!("DELETE FROM messages WHERE id IN ({old})"))?
        .execute([records_before])? as u64;
    // Webhook deliveries and events that nothing waits for any more.
    tx.prepare_cached("DELETE FROM webhook_deliveries WHERE done_at IS NOT NULL AND done_at <= ?")?
        .execute([records_before])?;
    tx.prepare_cached(
        "DELETE FROM events WHERE created_at <= ?
         AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = events.id)",
    )?
    .execute([records_before])?;
    // Opens and clicks, kept as long as statuses.
    tx.prepare_cached("DELETE FROM engagements WHERE created_at <= ?")?
        .execute([records_before])?;
    Ok((bodies, records))
}

/// Write an event for each of these recipients (`(message id, idx)`) whose
/// account has a webhook for its new status. Bounce notices Posthorn made
/// have none: the bounce itself was the event.
fn record_events(tx: &Connection, recipients: &[(String, i64)], now: i64) -> Result<()> {
    for chunk in recipients.chunks(256) {
        let sql = format!(
            "WITH t(id, idx) AS (VALUES {})
             INSERT INTO events (account_id, kind, message_id, recipient, attempts, reply, remote_host, label, created_at)
             SELECT m.account_id, r.status, r.message_id, r.address, r.attempts, r.last_reply, r.remote_host, m.label, ?
             FROM t JOIN recipients r ON r.message_id = t.id AND r.idx = t.idx
                    JOIN messages m ON m.id = r.message_id
             WHERE r.status IN ('delivered', 'deferred', 'bounced', 'expired', 'suppressed')
               AND m.is_dsn = 0
               AND EXISTS (SELECT 1 FROM webhooks w WHERE w.account_id = m.account_id
                           AND instr(w.events, ',' || r.status || ',') > 0)",
            rows(chunk.len(), 2)
        );
        let mut args: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 2 + 1);
        for (id, idx) in chunk {
            args.push(id);
            args.push(idx);
        }
        args.push(&now);
        tx.prepare_cached(&sql)?.execute(params_from_iter(args))?;
    }
    Ok(())
}

/// A delivery row for every event after `since` and every webhook that
/// wants it: one statement per commit.
fn fan_out(tx: &Connection, since: i64, now: i64) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO webhook_deliveries (webhook_id, event_id, next_try)
         SELECT w.id, e.id, ? FROM events e
         JOIN webhooks w ON w.account_id = e.account_id AND instr(w.events, ',' || e.kind || ',') > 0
         WHERE e.id > ?",
    )?
    .execute(params![now, since])?;
    Ok(())
}

fn claim_webhook_deliveries(
    tx: &Connection,
    now: i64,
    lease_until: i64,
    limit: u32,
) -> Result<Vec<DueWebhookDelivery>> {
    let claimed: Vec<(String, i64, i64)> = tx
        // The limit as an expression, not a bare `LIMIT ?`: see `claim`.
        .prepare_cached(
            "UPDATE webhook_deliveries SET next_try = ?2
             WHERE rowid IN (SELECT rowid FROM webhook_deliveries
                             WHERE done_at IS NULL AND next_try <= ?1
                             ORDER BY next_try LIMIT CAST(?3 AS INTEGER))
             RETURNING webhook_id, event_id, attempts",
        )?
        .query_map(params![now, lease_until, limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::with_capacity(claimed.len());
    let mut stmt = tx.prepare_cached(
        "SELECT w.url, w.secret, e.id, e.account_id, e.kind, e.message_id, e.recipient, e.attempts,
                e.reply, e.remote_host, e.label, e.created_at, e.url
         FROM webhooks w, events e WHERE w.id = ? AND e.id = ?",
    )?;
    for (webhook_id, event_id, attempts) in claimed {
        let (url, secret, event) = stmt.query_row(params![webhook_id, event_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                Event {
                    id: r.get(2)?,
                    account_id: r.get(3)?,
                    kind: r.get(4)?,
                    message_id: r.get(5)?,
                    recipient: r.get(6)?,
                    attempts: r.get::<_, i64>(7)? as u32,
                    reply: r.get(8)?,
                    remote_host: r.get(9)?,
                    label: r.get(10)?,
                    created_at: r.get(11)?,
                    url: r.get(12)?,
                },
            ))
        })?;
        out.push(DueWebhookDelivery {
            webhook_id,
            url,
            secret,
            attempts: attempts as u32,
            event,
        });
    }
    out.sort_by_key(|d| d.event.id);
    Ok(out)
}

fn record_webhook_results(tx: &Connection, results: &[WebhookResult], now: i64) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, last_error = ?1,
                next_try = COALESCE(?2, next_try),
                done_at = CASE WHEN ?2 IS NULL THEN ?3 ELSE NULL END,
                last_status = ?6
         WHERE webhook_id = ?4 AND event_id = ?5 AND done_at IS NULL",
    )?;
    for r in results {
        stmt.execute(params![
            r.error,
            r.retry_at,
            now,
            r.webhook_id,
            r.event_id,
            r.status
        ])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(account_id: i64, n: usize) -> NewMessage {
        NewMessage {
            id: MessageId::generate(),
            account_id,
            mail_from: "a@x.test".into(),
            // Every 7th message has only a suppressed recipient.
            recipients: if n.is_multiple_of(7) {
                Vec::new()
            } else {
                vec![format!("r{n}@y.test")]
            },
            auth_user: "a@x.test".into(),
            client_ip: None,
            label: None,
            received_at: 1_000 + n as i64,
            subject: format!("m{n}"),
            header_from: "a@x.test".into(),
            attachments: (0..2)
                .map(|i| AttachmentRecord {
                    filename: Some(format!("f{i}.txt")),
                    content_type: "text/plain".into(),
                    size: 10 + i,
                })
                .collect(),
            content: vec![b'x'; n + 1],
            suppressed: vec![format!("s{n}@y.test")],
            is_dsn: false,
        }
    }

    /// Past every chunk size at once: 300 messages (chunks of 256), 600
    /// attachments and 557 recipients (chunks of 512), in one transaction.
    #[tokio::test]
    async fn a_batch_larger_than_every_chunk_is_stored_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::SqliteStore::open(dir.path()).await.unwrap();
        let account = store.create_account("shop").await.unwrap();
        let messages: Vec<NewMessage> = (0..300).map(|n| message(account.id, n)).collect();
        let mut conn = Connection::open(dir.path().join("posthorn.db")).unwrap();
        let tx = conn.transaction().unwrap();
        insert_messages(
            &tx,
            &messages.iter().collect::<Vec<_>>(),
            &Spooled::new(),
            false,
        )
        .unwrap();
        tx.commit().unwrap();

        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(count("SELECT COUNT(*) FROM messages"), 300);
        assert_eq!(count("SELECT COUNT(*) FROM attachments"), 600);
        assert_eq!(count("SELECT COUNT(*) FROM recipients"), 300 + 257);
        assert_eq!(
            count("SELECT COUNT(*) FROM recipients WHERE status = 'suppressed' AND idx = 1"),
            257
        );
        // The last message (past the first chunk) kept its own columns.
        let last = &messages[299];
        let (size, subject, completed): (i64, String, Option<i64>) = conn
            .query_row(
                "SELECT size, subject, completed_at FROM messages WHERE id = ?",
                [last.id.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((size, subject.as_str(), completed), (300, "m299", None));
        let only_suppressed = &messages[294];
        let completed: Option<i64> = conn
            .query_row(
                "SELECT completed_at FROM messages WHERE id = ?",
                [only_suppressed.id.to_string()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(completed, Some(1_294));
        let attachment_size: i64 = conn
            .query_row(
                "SELECT size FROM attachments WHERE message_id = ? AND idx = 1",
                [last.id.to_string()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(attachment_size, 11);
    }
}
