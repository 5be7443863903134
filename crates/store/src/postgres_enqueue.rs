//! Enqueueing on PostgreSQL: group commit and the batch insert.
//!
//! Sessions that finish together share one transaction, as on the embedded
//! store: [`Enqueuer`] takes messages from a bounded queue, and a batch is
//! whatever waited while the previous batches were committing (up to
//! [`MAX_BATCH`]). Up to `parallel` batches commit at once, each on a
//! connection of its own (kept out of the pool between batches,
//! `postgres_stash.rs`), so one slow commit does not stop the others. A
//! batch is one statement whatever its size ([`insert_rows`] sends every
//! table's rows as arrays), sent outside a transaction block: one round
//! trip, committed when it returns, other nodes woken after it
//! ([`notify_others`]); only a batch with recipients suppressed at RCPT,
//! whose events read the rows just inserted, is a transaction of two.
//! The caller is answered only after
//! the commit (`synchronous_commit` is the database's: on, unless an
//! operator turned it off). When the batch fails, its messages are
//! inserted again one by one, each under a savepoint in one transaction,
//! so a bad message is refused alone; only a failing commit fails them all.

use crate::fresh::FreshContents;
use crate::postgres_clock::Clock;
use crate::postgres_events::{record_events, WAKE_CHANNEL};
use crate::postgres_stash::Stash;
use crate::shared::SUPPRESSED_REPLY;
use crate::*;
use posthorn_types::RecipientStatus;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::Acquire;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};

/// The most messages one transaction carries.
const MAX_BATCH: usize = 128;
/// Messages waiting for a batch; past it, submitters wait for room.
const QUEUE_CAP: usize = 4096;
/// Other nodes are woken at most this often (one NOTIFY for every commit
/// meanwhile): under load a NOTIFY per batch was as many transactions as
/// the batches themselves, and an idle node still hears of new work well
/// within the 100 ms it is promised.
const NOTIFY_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// One caller's messages: one, or several stored all or none.
struct Job {
    messages: Vec<NewMessage>,
    done: oneshot::Sender<Result<()>>,
}

/// The group-commit front of enqueue (see the module documentation).
pub(crate) struct Enqueuer {
    jobs: mpsc::Sender<Job>,
}

impl Enqueuer {
    /// Start the batching task, committing up to `parallel` batches at
    /// once. Committed contents go to `fresh` (when it has a cap), for this
    /// node's delivery to take instead of reading them back.
    pub(crate) fn start(
        pool: PgPool,
        stash: Arc<Stash>,
        clock: Arc<Clock>,
        parallel: usize,
        fresh: Arc<FreshContents>,
    ) -> Self {
        let (jobs, rx) = mpsc::channel(QUEUE_CAP);
        let slots = Arc::new(Semaphore::new(parallel.max(1)));
        let wake = Arc::new(Notify::new());
        tokio::spawn(notify_others(stash.clone(), wake.clone()));
        tokio::spawn(gather(rx, pool, stash, clock, slots, fresh, wake));
        Self { jobs }
    }

    /// Store `messages` all or none; returns once they are committed.
    pub(crate) async fn enqueue(&self, messages: Vec<NewMessage>) -> Result<()> {
        let stopped = || StoreError::Backend("the enqueue task has stopped".into());
        let (done, wait) = oneshot::channel();
        self.jobs
            .send(Job { messages, done })
            .await
            .map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?
    }
}

/// Take jobs as batches: wait for a free commit slot, then take what is
/// waiting.
async fn gather(
    mut rx: mpsc::Receiver<Job>,
    pool: PgPool,
    stash: Arc<Stash>,
    clock: Arc<Clock>,
    slots: Arc<Semaphore>,
    fresh: Arc<FreshContents>,
    wake: Arc<Notify>,
) {
    while let Some(first) = rx.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (pool, stash, clock, fresh, wake) = (
            pool.clone(),
            stash.clone(),
            clock.clone(),
            fresh.clone(),
            wake.clone(),
        );
        tokio::spawn(async move {
            commit(&pool, &stash, &clock, &fresh, &wake, batch).await;
            drop(slot);
        });
    }
}

/// Wake every other node's delivery (NOTIFY `q`) after commits of this
/// node made recipients due: one notification for every commit since the
/// last. Not inside the commit: PostgreSQL holds the notification queue's
/// lock from before a notifying commit until after its WAL flush, so
/// concurrent notifying commits cannot share a flush; the batches commit
/// in parallel without it. The notification is its own transaction,
/// committed without waiting for the flush (`synchronous_commit` off for
/// it alone): one lost to a crash costs nothing, since every listener
/// raises all its wakeups when it reconnects. It goes out on this node's
/// enqueue connections, so this node's own LISTEN skips it (the
/// submitter woke its delivery already). At most one every
/// [`NOTIFY_EVERY`]: the commits meanwhile share the next.
async fn notify_others(stash: Arc<Stash>, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        tokio::time::sleep(NOTIFY_EVERY).await;
        let sent = async {
            let mut lease = stash.lease().await?;
            let result = sqlx::query(
                "SELECT pg_notify($1, 'q') FROM (SELECT set_config('synchronous_commit', 'off', true)) s",
            )
            .bind(WAKE_CHANNEL)
            .execute(lease.conn())
            .await
            .map(|_| ())
            .map_err(StoreError::from);
            lease.done(&result).await;
            result
        }
        .await;
        if let Err(e) = sent {
            tracing::debug!(error = %e, "cannot wake other nodes; they find the work when they next look");
        }
    }
}

/// Commit one batch and answer each of its callers.
async fn commit(
    pool: &PgPool,
    stash: &Arc<Stash>,
    clock: &Arc<Clock>,
    fresh: &FreshContents,
    wake: &Notify,
    batch: Vec<Job>,
) {
    let now = clock.now(pool);
    let messages: Vec<&NewMessage> = batch.iter().flat_map(|j| j.messages.iter()).collect();
    let together = async {
        let mut lease = stash.lease().await?;
        let result = if messages.iter().any(|m| makes_events(m)) {
            async {
                let mut tx = lease.begin().await?;
                insert_messages(&mut tx, &messages, now).await?;
                tx.commit().await?;
                Ok::<_, StoreError>(())
            }
            .await
        } else {
            // One statement, its own transaction: committed (and flushed,
            // with synchronous_commit on) when it returns. Other nodes
            // hear of it from `notify_others`, after the commit.
            insert_rows(lease.conn(), &messages, false).await
        };
        lease.done(&result).await;
        result
    }
    .await;
    if together.is_ok() && messages.iter().any(|m| !m.recipients.is_empty()) {
        wake.notify_one();
    }
    let results: Vec<Result<()>> = match together {
        Ok(()) => batch.iter().map(|_| Ok(())).collect(),
        Err(e) if batch.len() == 1 => vec![Err(e)],
        Err(_) => {
            let jobs: Vec<Vec<&NewMessage>> =
                batch.iter().map(|j| j.messages.iter().collect()).collect();
            one_by_one(pool, &jobs, now).await
        }
    };
    drop(messages);
    let committed = std::time::Instant::now();
    for (job, result) in batch.into_iter().zip(results) {
        let Job { messages, done } = job;
        if result.is_ok() {
            // Before its sender hears of the commit, so any delivery of it
            // can find it.
            for m in messages {
                fresh.keep(m.id, m.content, committed);
            }
        }
        let _ = done.send(result);
    }
}

/// Each job's messages under a savepoint of one transaction: the jobs that
/// fail are undone and answered with their own error.
async fn one_by_one(pool: &PgPool, jobs: &[Vec<&NewMessage>], now: i64) -> Vec<Result<()>> {
    let attempt = async {
        let mut conn = pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            let mut sp = tx.begin().await?;
            match insert_messages(&mut sp, job, now).await {
                Ok(()) => {
                    sp.commit().await?;
                    results.push(Ok(()));
                }
                Err(e) => {
                    sp.rollback().await?;
                    results.push(Err(e));
                }
            }
        }
        tx.commit().await?;
        Ok::<_, StoreError>(results)
    }
    .await;
    match attempt {
        Ok(results) => results,
        Err(e) => jobs.iter().map(|_| Err(crate::space::again(&e))).collect(),
    }
}

/// Whether committing `m` also stores events (for recipients suppressed
/// at RCPT), which must read the rows inserted before them: a
/// transaction of two statements rather than one statement.
fn makes_events(m: &NewMessage) -> bool {
    !m.suppressed.is_empty() && !m.is_dsn
}

/// Insert messages, their contents, attachments and recipients (queued,
/// and suppressed at RCPT), with the events their suppressed recipients
/// make, inside `tx`. Wakes every node's delivery (NOTIFY, sent at
/// commit) when a recipient is due.
pub(crate) async fn insert_messages(
    tx: &mut PgConnection,
    messages: &[&NewMessage],
    now: i64,
) -> Result<()> {
    insert_rows(tx, messages, true).await?;
    for m in messages.iter().filter(|m| makes_events(m)) {
        // Events stamped at acceptance, as the embedded store does.
        let queued = m.recipients.len() as i64;
        let total = queued + m.suppressed.len() as i64;
        record_events(
            tx,
            vec![m.id.to_string(); m.suppressed.len()],
            (queued..total).collect(),
            m.received_at,
            now,
        )
        .await?;
    }
    Ok(())
}

/// The rows of `messages` in every table, and (with `notify`) the NOTIFY
/// when a recipient is due, in one statement (data-modifying `WITH`s; the foreign keys are
/// checked at its end), so a batch outside a transaction block is one
/// round trip and one commit.
async fn insert_rows(
    conn: &mut PgConnection,
    messages: &[&NewMessage],
    notify: bool,
) -> Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = messages.iter().map(|m| m.id.to_string()).collect();
    let mut attachments = Columns::default();
    let mut recipients = Columns::default();
    for (m, id) in messages.iter().zip(&ids) {
        for (i, a) in m.attachments.iter().enumerate() {
            attachments.ids.push(id.clone());
            attachments.idx.push(i as i64);
            attachments.text1.push(a.filename.clone());
            attachments.text2.push(Some(a.content_type.clone()));
            attachments.num.push(Some(a.size as i64));
        }
        let queued = m.recipients.len();
        for (i, address) in m.recipients.iter().chain(&m.suppressed).enumerate() {
            let is_queued = i < queued;
            recipients.ids.push(id.clone());
            recipients.idx.push(i as i64);
            recipients.text1.push(Some(address.clone()));
            recipients.text2.push(Some(
                if is_queued {
                    RecipientStatus::Queued
                } else {
                    RecipientStatus::Suppressed
                }
                .as_str()
                .to_string(),
            ));
            recipients.num.push(is_queued.then_some(m.received_at));
            recipients
                .text3
                .push((!is_queued).then(|| SUPPRESSED_REPLY.to_string()));
            recipients.at.push(m.received_at);
        }
    }
    let due = notify && messages.iter().any(|m| !m.recipients.is_empty());
    sqlx::query(
        "WITH m AS (
             INSERT INTO messages (id, account_id, mail_from, auth_user, client_ip, label, size, received_at, subject, header_from, is_dsn, completed_at)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[],
                                  $8::bigint[], $9::text[], $10::text[], $11::boolean[], $12::bigint[])),
         c AS (
             INSERT INTO message_contents (message_id, content)
             SELECT * FROM unnest($1::text[], $13::bytea[])),
         a AS (
             INSERT INTO attachments (message_id, idx, filename, content_type, size)
             SELECT * FROM unnest($14::text[], $15::bigint[], $16::text[], $17::text[], $18::bigint[])),
         r AS (
             INSERT INTO recipients (message_id, idx, address, status, next_try, last_reply, updated_at)
             SELECT * FROM unnest($19::text[], $20::bigint[], $21::text[], $22::text[], $23::bigint[], $24::text[], $25::bigint[]))
         SELECT pg_notify($26, 'q') WHERE $27",
    )
    .bind(&ids)
    .bind(messages.iter().map(|m| m.account_id).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.mail_from.as_str()).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.auth_user.as_str()).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.client_ip.as_deref()).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.label.as_deref()).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.content.len() as i64).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.received_at).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.subject.as_str()).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.header_from.as_str()).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.is_dsn).collect::<Vec<_>>())
    .bind(
        messages
            .iter()
            .map(|m| m.recipients.is_empty().then_some(m.received_at))
            .collect::<Vec<_>>(),
    )
    .bind(
        messages
            .iter()
            .map(|m| m.content.as_slice())
            .collect::<Vec<_>>(),
    )
    .bind(attachments.ids)
    .bind(attachments.idx)
    .bind(attachments.text1)
    .bind(attachments.text2)
    .bind(attachments.num)
    .bind(recipients.ids)
    .bind(recipients.idx)
    .bind(recipients.text1)
    .bind(recipients.text2)
    .bind(recipients.num)
    .bind(recipients.text3)
    .bind(recipients.at)
    .bind(WAKE_CHANNEL)
    .bind(due)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Rows of one table as columns, for `unnest`.
#[derive(Default)]
struct Columns {
    ids: Vec<String>,
    idx: Vec<i64>,
    text1: Vec<Option<String>>,
    text2: Vec<Option<String>>,
    text3: Vec<Option<String>>,
    num: Vec<Option<i64>>,
    at: Vec<i64>,
}
