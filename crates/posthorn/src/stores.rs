//! Opening the store a configuration names (`[store]`): the embedded
//! SQLite store in the data directory, or a PostgreSQL database a cluster
//! shares. The server and every admin command open it here, so they find
//! the same one; opening applies the schema migrations (on PostgreSQL
//! under an advisory lock, so nodes starting together take turns).

use crate::config::{Config, StoreChoice};
use anyhow::Context;
use posthorn_store::{PostgresStore, SqliteStore, Store};
use std::sync::Arc;

/// Connections an admin command keeps to PostgreSQL (the server keeps
/// `[store] max_connections`).
const ADMIN_CONNECTIONS: u32 = 4;

/// The opened store, and the embedded one's own handle where it is that
/// (for what only it has: the backup).
pub struct Opened {
    pub store: Arc<dyn Store>,
    pub sqlite: Option<Arc<SqliteStore>>,
    pg: Option<Arc<PostgresStore>>,
    pub choice: StoreChoice,
}

impl Opened {
    /// Keep up to `bytes` of just-accepted contents in memory for this
    /// process's delivery (either backend; see the store's `fresh.rs`).
    pub fn keep_fresh_contents(&self, bytes: usize) {
        if let Some(s) = &self.sqlite {
            s.keep_fresh_contents(bytes);
        }
        if let Some(p) = &self.pg {
            p.keep_fresh_contents(bytes);
        }
    }
}

/// Who opens it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Opener {
    Server,
    /// An admin command: warns on a terminal which store it opened, and
    /// when it is about to create an empty embedded store (usually the
    /// wrong place).
    Admin,
}

pub async fn open(config: &Config, by: Opener) -> anyhow::Result<Opened> {
    let choice = config.store_choice()?;
    match &choice {
        StoreChoice::Sqlite(dir) => {
            let db = SqliteStore::database_path(dir);
            if by == Opener::Admin {
                if !db.exists() {
                    eprintln!(
                        "warning: no store at {}: creating an empty one. If the server keeps its data elsewhere, point this command at its configuration (--config FILE or POSTHORN_CONFIG) or its --data-dir",
                        db.display()
                    );
                } else if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                    eprintln!("posthorn: {}", config.describe());
                }
            }
            let sqlite = Arc::new(
                SqliteStore::open(dir)
                    .await
                    .with_context(|| format!("cannot open the store in {}", dir.display()))?,
            );
            Ok(Opened {
                store: sqlite.clone(),
                sqlite: Some(sqlite),
                pg: None,
                choice,
            })
        }
        StoreChoice::Postgres {
            url,
            schema,
            max_connections,
        } => {
            if by == Opener::Admin && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                eprintln!("posthorn: {}", config.describe());
            }
            let connections = match by {
                Opener::Server => *max_connections,
                Opener::Admin => ADMIN_CONNECTIONS.min(*max_connections),
            };
            let pg = PostgresStore::open(url, schema.as_deref(), connections)
                .await
                .with_context(|| {
                    format!("cannot open the store ({choice}); check [store] url and that the database answers")
                })?;
            let pg = Arc::new(pg);
            Ok(Opened {
                store: pg.clone(),
                sqlite: None,
                pg: Some(pg),
                choice,
            })
        }
    }
}
