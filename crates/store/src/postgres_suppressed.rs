//! The RCPT-time suppression check on PostgreSQL, coalesced: every
//! [`Store::is_suppressed`](crate::Store::is_suppressed) call waiting at
//! one moment is answered by one statement.
//!
//! Sessions finishing a message together (they were answered by one group
//! commit) send their next RCPTs together, so a check per RCPT, each its
//! own round trip and transaction, was the largest share of the
//! database's statements per message (bench/cluster.sh). Here one task
//! takes every check waiting, asks for all of them at once, and while that
//! statement runs the next checks gather. A lone check goes at once, so
//! an idle node waits no longer than before; under load a check waits at
//! most for the one statement in flight.
//!
//! The statement runs with one generic plan per connection (the accept
//! pool, `postgres.rs`), planned once, maybe while the table is empty and
//! unanalyzed. It is written so that any plan looks each address up in the
//! unique index: a lateral subquery with a `LIMIT` is a lookup per row.
//! (The `EXISTS` form it replaced was planned, on an empty table, as a
//! hash join over a scan of the whole table, kept however large it grew.)
//!
//! Nothing is cached: each answer comes from a statement begun after the
//! call, so a suppression committed before the RCPT is seen at that RCPT,
//! on every node, as with a statement per call.

use crate::postgres_stash::Stash;
use crate::{Result, StoreError};
use sqlx::postgres::PgConnection;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The most checks one statement carries.
const MAX_BATCH: usize = 512;
/// Checks waiting for a statement; past it, callers wait for room.
const QUEUE_CAP: usize = 4096;

struct Check {
    account_id: i64,
    address: String,
    done: oneshot::Sender<Result<bool>>,
}

/// The front of the coalesced check (see the module documentation).
pub(crate) struct SuppressionChecks {
    checks: mpsc::Sender<Check>,
}

impl SuppressionChecks {
    /// Start the task, asking on connections of `stash`.
    pub(crate) fn start(stash: Arc<Stash>) -> Self {
        let (checks, rx) = mpsc::channel(QUEUE_CAP);
        tokio::spawn(run(rx, stash));
        Self { checks }
    }

    /// Whether `account_id` suppresses `address` (compared as `lower()`
    /// does, like the unique index).
    pub(crate) async fn is_suppressed(&self, account_id: i64, address: &str) -> Result<bool> {
        let stopped = || StoreError::Backend("the suppression check task has stopped".into());
        let (done, answer) = oneshot::channel();
        self.checks
            .send(Check {
                account_id,
                address: address.to_string(),
                done,
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// One statement at a time, for every check waiting when it starts.
async fn run(mut rx: mpsc::Receiver<Check>, stash: Arc<Stash>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        // A caller that gave up (its session closed) needs no answer.
        batch.retain(|c| !c.done.is_closed());
        if batch.is_empty() {
            continue;
        }
        let answer = async {
            let mut lease = stash.lease().await?;
            let found = suppressed(lease.conn(), &batch).await;
            lease.done(&found).await;
            found
        }
        .await;
        match answer {
            Ok(found) => {
                for (c, hit) in batch.into_iter().zip(found) {
                    let _ = c.done.send(Ok(hit));
                }
            }
            Err(e) => {
                let e = match e {
                    StoreError::Backend(m) => m,
                    other => other.to_string(),
                };
                for c in batch {
                    let _ = c.done.send(Err(StoreError::Backend(e.clone())));
                }
            }
        }
    }
}

/// For each check, whether its account suppresses its address.
async fn suppressed(conn: &mut PgConnection, batch: &[Check]) -> Result<Vec<bool>> {
    let hits: Vec<i64> = sqlx::query_scalar(
        "SELECT t.i FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS t(account_id, address, i)
         CROSS JOIN LATERAL (SELECT 1 FROM suppressions s
                             WHERE s.account_id = t.account_id AND lower(s.address) = lower(t.address)
                             LIMIT 1) hit",
    )
    .bind(batch.iter().map(|c| c.account_id).collect::<Vec<_>>())
    .bind(batch.iter().map(|c| c.address.as_str()).collect::<Vec<_>>())
    .fetch_all(conn)
    .await?;
    let mut found = vec![false; batch.len()];
    for i in hits {
        if let Some(f) = usize::try_from(i - 1).ok().and_then(|i| found.get_mut(i)) {
            *f = true;
        }
    }
    Ok(found)
}
