//! Point reads on the hot path (one row by its key: is this recipient
//! suppressed, whose is this sender address, this API user, the content a
//! delivery sends), run inline on the calling thread over a small set of
//! synchronous read-only connections. Such a read takes microseconds on an
//! index; through the
//! async driver it was a round trip to the driver's worker thread, which
//! cost more than the read (see `sqlite_writer`). Longer reads (listings,
//! statistics) stay on the sqlx pool, off the async threads.

use crate::Result;
use rusqlite::{Connection, OpenFlags};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// Connections kept open between reads (more are opened when needed).
const KEEP: usize = 8;

pub(crate) struct PointReads {
    db: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl PointReads {
    pub(crate) fn new(db: PathBuf) -> Self {
        Self {
            db,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn open(&self) -> Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.db,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(10))?;
        Ok(conn)
    }

    /// Run `read` on an idle connection (or a new one).
    pub(crate) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let idle = self.idle.lock().expect("read connections").pop();
        let conn = match idle {
            Some(c) => c,
            None => self.open()?,
        };
        let out = read(&conn);
        let mut idle = self.idle.lock().expect("read connections");
        if idle.len() < KEEP {
            idle.push(conn);
        }
        Ok(out?)
    }
}
