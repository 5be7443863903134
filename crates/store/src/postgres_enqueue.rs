//! Enqueueing on PostgreSQL: group commit and the batch insert.
//!
//! Sessions that finish together share one transaction, as on the embedded
//! store: [`Enqueuer`] takes messages from a bounded queue, and a batch is
//! whatever waited while the previous batches were committing (up to
//! [`MAX_BATCH`]). Up to `parallel` batches commit at once, each on a
//! connection of its own, so one slow commit does not stop the others. A
//! batch is a handful of statements whatever its size ([`insert_messages`]
//! sends every table's rows as arrays), and the caller is answered only
//! after the commit (`synchronous_commit` is the database's: on, unless an
//! operator turned it off). When the batch fails, its messages are
//! inserted again one by one, each under a savepoint in one transaction,
//! so a bad message is refused alone; only a failing commit fails them all.

use crate::fresh::FreshContents;
use crate::postgres_clock::Clock;
use crate::postgres_events::{record_events, WAKE_CHANNEL};
use crate::shared::SUPPRESSED_REPLY;
use crate::*;
use posthorn_types::RecipientStatus;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::Acquire;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// The most messages one transaction carries.
const MAX_BATCH: usize = 128;
/// Messages waiting for a batch; past it, submitters wait for room.
const QUEUE_CAP: usize = 4096;

struct Job {
    message: Box<NewMessage>,
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
        clock: Arc<Clock>,
        parallel: usize,
        fresh: Arc<FreshContents>,
    ) -> Self {
        let (jobs, rx) = mpsc::channel(QUEUE_CAP);
        let slots = Arc::new(Semaphore::new(parallel.max(1)));
        tokio::spawn(gather(rx, pool, clock, slots, fresh));
        Self { jobs }
    }

    /// Store `message`; returns once it is committed.
    pub(crate) async fn enqueue(&self, message: NewMessage) -> Result<()> {
        let stopped = || StoreError::Backend("the enqueue task has stopped".into());
        let (done, wait) = oneshot::channel();
        self.jobs
            .send(Job {
                message: Box::new(message),
                done,
            })
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
    clock: Arc<Clock>,
    slots: Arc<Semaphore>,
    fresh: Arc<FreshContents>,
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
        let (pool, clock, fresh) = (pool.clone(), clock.clone(), fresh.clone());
        tokio::spawn(async move {
            commit(&pool, &clock, &fresh, batch).await;
            drop(slot);
        });
    }
}

/// Commit one batch and answer each of its callers.
async fn commit(pool: &PgPool, clock: &Arc<Clock>, fresh: &FreshContents, batch: Vec<Job>) {
    let now = clock.now(pool);
    let messages: Vec<&NewMessage> = batch.iter().map(|j| &*j.message).collect();
    let together = async {
        let mut tx = pool.begin().await?;
        insert_messages(&mut tx, &messages, now).await?;
        tx.commit().await?;
        Ok::<_, StoreError>(())
    }
    .await;
    let results: Vec<Result<()>> = match together {
        Ok(()) => batch.iter().map(|_| Ok(())).collect(),
        Err(e) if batch.len() == 1 => vec![Err(e)],
        Err(_) => one_by_one(pool, &messages, now).await,
    };
    drop(messages);
    let committed = std::time::Instant::now();
    for (job, result) in batch.into_iter().zip(results) {
        let Job { message, done } = job;
        if result.is_ok() {
            // Before its sender hears of the commit, so any delivery of it
            // can find it.
            fresh.keep(message.id, message.content, committed);
        }
        let _ = done.send(result);
    }
}

/// Each message under a savepoint of one transaction: the ones that fail
/// are undone and answered with their own error.
async fn one_by_one(pool: &PgPool, messages: &[&NewMessage], now: i64) -> Vec<Result<()>> {
    let attempt = async {
        let mut conn = pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let mut results = Vec::with_capacity(messages.len());
        for m in messages {
            let mut sp = tx.begin().await?;
            match insert_messages(&mut sp, &[*m], now).await {
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
        Err(e) => messages
            .iter()
            .map(|_| Err(StoreError::Backend(e.to_string())))
            .collect(),
    }
}

/// Insert messages, their contents, attachments and recipients (queued,
/// and suppressed at RCPT), with the events their suppressed recipients
/// make, inside `tx`: one statement per table for the whole batch. Wakes
/// every node's delivery (NOTIFY, sent at commit) when a recipient is due.
pub(crate) async fn insert_messages(
    tx: &mut PgConnection,
    messages: &[&NewMessage],
    now: i64,
) -> Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = messages.iter().map(|m| m.id.to_string()).collect();
    sqlx::query(
        "INSERT INTO messages (id, account_id, mail_from, auth_user, client_ip, label, size, received_at, subject, header_from, is_dsn, completed_at)
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[],
                              $8::bigint[], $9::text[], $10::text[], $11::boolean[], $12::bigint[])",
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
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO message_contents (message_id, content)
         SELECT * FROM unnest($1::text[], $2::bytea[])",
    )
    .bind(&ids)
    .bind(
        messages
            .iter()
            .map(|m| m.content.as_slice())
            .collect::<Vec<_>>(),
    )
    .execute(&mut *tx)
    .await?;

    let mut attachments = Columns::default();
    let mut recipients = Columns::default();
    // Per message with recipients suppressed at RCPT: (ids, indexes, at).
    let mut suppressed: Vec<(Vec<String>, Vec<i64>, i64)> = Vec::new();
    for (m, id) in messages.iter().zip(&ids) {
        for (i, a) in m.attachments.iter().enumerate() {
            attachments.ids.push(id.clone());
            attachments.idx.push(i as i64);
            attachments.text1.push(a.filename.clone());
            attachments.text2.push(Some(a.content_type.clone()));
            attachments.num.push(Some(a.size as i64));
        }
        let queued = m.recipients.len();
        if !m.suppressed.is_empty() && !m.is_dsn {
            let total = (queued + m.suppressed.len()) as i64;
            suppressed.push((
                vec![id.clone(); m.suppressed.len()],
                (queued as i64..total).collect(),
                m.received_at,
            ));
        }
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
    if !attachments.ids.is_empty() {
        sqlx::query(
            "INSERT INTO attachments (message_id, idx, filename, content_type, size)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[])",
        )
        .bind(attachments.ids)
        .bind(attachments.idx)
        .bind(attachments.text1)
        .bind(attachments.text2)
        .bind(attachments.num)
        .execute(&mut *tx)
        .await?;
    }
    if !recipients.ids.is_empty() {
        sqlx::query(
            "INSERT INTO recipients (message_id, idx, address, status, next_try, last_reply, updated_at)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::bigint[])",
        )
        .bind(recipients.ids)
        .bind(recipients.idx)
        .bind(recipients.text1)
        .bind(recipients.text2)
        .bind(recipients.num)
        .bind(recipients.text3)
        .bind(recipients.at)
        .execute(&mut *tx)
        .await?;
    }
    for (ids, idx, at) in suppressed {
        // Events stamped at acceptance, as the embedded store does.
        record_events(tx, ids, idx, at, now).await?;
    }
    if messages.iter().any(|m| !m.recipients.is_empty()) {
        sqlx::query("SELECT pg_notify($1, 'q')")
            .bind(WAKE_CHANNEL)
            .execute(&mut *tx)
            .await?;
    }
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
