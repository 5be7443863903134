//! Connections kept out of the pool by the hot paths (group commit, the
//! RCPT-time suppression check, delivery's claims and records), so they
//! skip the pool's round trips.
//!
//! sqlx's pool pings a connection when it is taken (`test_before_acquire`)
//! and again when it is given back (always): two round trips to the
//! backend for every statement or transaction, more than the statements
//! themselves on the accept path (bench/cluster.sh counted 3.4 pings per
//! message). A [`Stash`] keeps a few pool connections taken: a [`Lease`]
//! hands one out without a ping, and one that did its work goes back to
//! the stash, not to the pool. A connection idle for [`CHECK_AFTER`] is
//! pinged before use, as the pool would (a database restart or a killed
//! backend is then found before a statement is sent on it); one whose
//! statement failed other than with a database error (the connection
//! broke) is closed, and the next lease takes a new one from the pool.
//! The stashed connections count against the pool's size.

use crate::Result;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool, Postgres};
use sqlx::Connection;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A stashed connection idle longer than this is pinged before use.
const CHECK_AFTER: Duration = Duration::from_secs(1);

/// The backend process ids of connections stashed for enqueues: the LISTEN
/// task leaves their `q` notifications alone, since this node's delivery
/// heard of those commits already (the submitter wakes it).
pub(crate) type OwnBackends = Arc<Mutex<HashSet<u32>>>;

struct Idle {
    conn: PoolConnection<Postgres>,
    since: Instant,
    pid: Option<u32>,
}

/// See the module documentation.
pub(crate) struct Stash {
    pool: PgPool,
    idle: Mutex<Vec<Idle>>,
    cap: usize,
    /// Where to register the backends of this stash's connections.
    own: Option<OwnBackends>,
}

/// One connection of a [`Stash`] (or of the pool when the stash keeps
/// none): [`Lease::conn`] to use it, [`Lease::done`] with the result.
pub(crate) struct Lease {
    stash: Arc<Stash>,
    conn: Option<Idle>,
}

impl Stash {
    /// Keep up to `cap` connections (0: every lease is the pool's, with its
    /// pings). With `own`, the backend ids of the stashed connections are
    /// kept there.
    pub(crate) fn new(pool: PgPool, cap: usize, own: Option<OwnBackends>) -> Self {
        Self {
            pool,
            idle: Mutex::new(Vec::new()),
            cap,
            own,
        }
    }

    /// A connection: a stashed one (pinged first when it has been idle a
    /// while), or a new one from the pool.
    pub(crate) async fn lease(self: &Arc<Self>) -> Result<Lease> {
        loop {
            let stashed = self.idle.lock().expect("stash").pop();
            let Some(mut idle) = stashed else { break };
            if idle.since.elapsed() < CHECK_AFTER || idle.conn.ping().await.is_ok() {
                return Ok(Lease {
                    stash: self.clone(),
                    conn: Some(idle),
                });
            }
            self.close(idle);
        }
        let mut conn = self.pool.acquire().await?;
        let pid = match (&self.own, self.cap) {
            (Some(own), cap) if cap > 0 => {
                let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                    .fetch_one(&mut *conn)
                    .await?;
                own.lock().expect("own backends").insert(pid as u32);
                Some(pid as u32)
            }
            _ => None,
        };
        Ok(Lease {
            stash: self.clone(),
            conn: Some(Idle {
                conn,
                since: Instant::now(),
                pid,
            }),
        })
    }

    fn forget_pid(&self, idle: &Idle) {
        if let (Some(own), Some(pid)) = (&self.own, idle.pid) {
            own.lock().expect("own backends").remove(&pid);
        }
    }

    fn close(&self, mut idle: Idle) {
        self.forget_pid(&idle);
        idle.conn.close_on_drop();
    }

    fn give_back(&self, mut idle: Idle) {
        let mut stashed = self.idle.lock().expect("stash");
        if stashed.len() < self.cap {
            idle.since = Instant::now();
            stashed.push(idle);
        } else {
            drop(stashed);
            // Back to the pool, where anyone may NOTIFY on it.
            self.forget_pid(&idle);
        }
    }
}

impl Lease {
    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        &mut self
            .conn
            .as_mut()
            .expect("a lease holds its connection")
            .conn
    }

    /// Give the connection back after `result`. After an error it is
    /// pinged first: kept if it answers (the database refused a
    /// statement), closed if not (the connection broke).
    pub(crate) async fn done<T>(mut self, result: &Result<T>) {
        let mut idle = self.conn.take().expect("a lease holds its connection");
        if result.is_err() && idle.conn.ping().await.is_err() {
            self.stash.close(idle);
        } else {
            self.stash.give_back(idle);
        }
    }

    /// Begin a transaction on the leased connection.
    pub(crate) async fn begin(&mut self) -> Result<sqlx::Transaction<'_, Postgres>> {
        Ok(self.conn().begin().await?)
    }
}

impl Drop for Lease {
    /// A lease dropped without [`Lease::done`] (its future was cancelled
    /// mid-statement) may have left the connection anywhere: closed.
    fn drop(&mut self) {
        if let Some(idle) = self.conn.take() {
            self.stash.close(idle);
        }
    }
}
