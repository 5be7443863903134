//! What the cases share: the [`Backend`] each case gets, the openers of
//! the backends, and builders of the records the cases store.

use posthorn_store::*;
use posthorn_types::{MessageId, RecipientStatus};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// The longest a case may take; the largest (5,000 enqueues past the
/// writer's queue) takes a few seconds on the 2-core VM.
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

type Reopen = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Arc<dyn Store>> + Send>> + Send + Sync>;

/// One backend under test, for one case: a fresh, empty store of its
/// own, and the way to open that same store again (another process, a
/// restart).
pub struct Backend {
    pub name: &'static str,
    store: Arc<dyn Store>,
    reopen: Reopen,
    /// What must live as long as the case (a data directory, a schema).
    _keep: Box<dyn Send + Sync>,
}

impl Backend {
    /// Open the first store with `reopen` and keep `keep` alive with it.
    async fn new(name: &'static str, keep: Box<dyn Send + Sync>, reopen: Reopen) -> Self {
        let store = reopen().await;
        Self {
            name,
            store,
            reopen,
            _keep: keep,
        }
    }

    /// The case's store.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// A new handle on the same stored data, as a restarted server or the
    /// admin command line would open it. The case drops the old handle
    /// first when it means a restart.
    pub async fn reopen(&self) -> Arc<dyn Store> {
        (self.reopen)().await
    }
}

/// Run one case under [`CASE_TIMEOUT`].
pub async fn run(backend: &Backend, case: impl Future<Output = ()>) {
    if tokio::time::timeout(CASE_TIMEOUT, case).await.is_err() {
        panic!("{}: the case ran over {CASE_TIMEOUT:?}", backend.name);
    }
}

/// The embedded store, in a temporary data directory of its own.
pub async fn sqlite() -> Option<Backend> {
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let path = dir.path().to_path_buf();
    let reopen: Reopen = Box::new(move || {
        let path = path.clone();
        Box::pin(async move {
            let store = SqliteStore::open(&path)
                .await
                .expect("open the SQLite store");
            Arc::new(store) as Arc<dyn Store>
        })
    });
    Some(Backend::new("sqlite", Box::new(dir), reopen).await)
}

/// A shared PostgreSQL database (issue 18), when
/// `POSTHORN_TEST_POSTGRES_URL` is set: a schema of its own per case
/// (`t_<random>`), created here and dropped when the case ends, so cases
/// run in parallel and each starts empty; reopening opens that schema
/// again.
pub async fn postgres() -> Option<Backend> {
    let Ok(url) = std::env::var("POSTHORN_TEST_POSTGRES_URL") else {
        eprintln!("skipped: POSTHORN_TEST_POSTGRES_URL is unset");
        return None;
    };
    let schema = TestSchema {
        url: url.clone(),
        name: format!("t_{}", MessageId::generate().to_string().to_lowercase()),
    };
    let name = schema.name.clone();
    let reopen: Reopen = Box::new(move || {
        let (url, name) = (url.clone(), name.clone());
        Box::pin(async move {
            let store = PostgresStore::open(&url, Some(&name), 8)
                .await
                .expect("open the PostgreSQL store");
            Arc::new(store) as Arc<dyn Store>
        })
    });
    Some(Backend::new("postgres", Box::new(schema), reopen).await)
}

/// A case's schema, dropped with everything in it when the case ends
/// (passed or failed).
struct TestSchema {
    url: String,
    name: String,
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // Drop runs outside async code: a thread with a runtime of its own.
        let (url, name) = (self.url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&url).await.ok()?;
                let sql = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .ok()?;
                conn.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop the test schema {}", self.name);
        }
    }
}

/// A message of `account_id` to `rcpts`, received at the store's now.
pub fn message(store: &dyn Store, account_id: i64, rcpts: &[&str]) -> NewMessage {
    NewMessage {
        id: MessageId::generate(),
        account_id,
        mail_from: "a@example.com".into(),
        recipients: rcpts.iter().map(|s| s.to_string()).collect(),
        auth_user: "a@example.com".into(),
        client_ip: None,
        label: None,
        received_at: store.now(),
        subject: "x".into(),
        header_from: "a@example.com".into(),
        attachments: Vec::new(),
        content: CONTENT.to_vec(),
        suppressed: Vec::new(),
        is_dsn: false,
    }
}

/// The content [`message`] stores.
pub const CONTENT: &[u8] = b"Subject: x\r\n\r\nhi\r\n";

/// An attempt's outcome for recipient `idx` of `id`; a deferred one is
/// due again at `next_try`.
pub fn update(
    id: MessageId,
    idx: u32,
    status: RecipientStatus,
    next_try: Option<i64>,
) -> RecipientUpdate {
    RecipientUpdate {
        message_id: id,
        idx,
        status,
        attempts: 1,
        last_reply: Some("250 2.0.0 ok".into()),
        remote_host: Some("mx.test[127.0.0.1]".into()),
        next_try,
        suppress: None,
    }
}

/// Record `updates` as `owner`'s, no notices.
pub async fn record(store: &dyn Store, owner: &str, updates: Vec<RecipientUpdate>) -> Recorded {
    store
        .record_outcomes(
            Some(owner),
            OutcomeBatch {
                updates,
                notices: Vec::new(),
            },
        )
        .await
        .unwrap()
}
