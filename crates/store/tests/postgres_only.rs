//! PostgreSQL only. One node's commits wake the others (LISTEN/NOTIFY),
//! for delivery when recipients become due and for webhook senders when
//! deliveries are added. The embedded store has no other node and raises
//! nothing, so this is not part of the conformance suite. And a node's
//! own fresh contents (delivered from memory once), and housekeeping on
//! one node at a time.
//!
//! NOTIFY is per database, and the conformance suite's schemas share one:
//! this test makes a database of its own so no other test's commits wake
//! it. Skips when `POSTHORN_TEST_POSTGRES_URL` is unset.

use posthorn_store::*;
use posthorn_types::{MessageId, RecipientStatus};
use sqlx::Connection;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// A wakeup arrives well within this (about 100 ms is the promise; the
/// bound is for a loaded CI machine).
const WITHIN: Duration = Duration::from_secs(2);

struct TestDb {
    admin_url: String,
    name: String,
}

impl TestDb {
    async fn create(url: &str) -> Self {
        let name = format!("posthorn_wake_{}", std::process::id());
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        Self {
            admin_url: url.to_string(),
            name,
        }
    }

    fn url(&self) -> String {
        // Same server, this database.
        let base = match self.admin_url.rsplit_once('/') {
            Some((base, _)) => base,
            None => &self.admin_url,
        };
        format!("{base}/{}", self.name)
    }

    async fn drop_db(self) {
        let mut conn = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
}

async fn woken(n: &Arc<Notify>) -> Option<Duration> {
    let start = Instant::now();
    tokio::time::timeout(WITHIN, n.notified())
        .await
        .ok()
        .map(|_| start.elapsed())
}

/// Let the LISTEN task connect (it raises both once when it has), then
/// take those first wakeups away.
async fn settle(w: &Wakeups) {
    assert!(
        woken(&w.queue).await.is_some(),
        "the first LISTEN raises both"
    );
    assert!(woken(&w.webhooks).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_nodes_commits_wake_this_one() {
    let Ok(url) = std::env::var("POSTHORN_TEST_POSTGRES_URL") else {
        eprintln!("skipped: POSTHORN_TEST_POSTGRES_URL is unset");
        return;
    };
    let db = TestDb::create(&url).await;
    let idle = PostgresStore::open(&db.url(), None, 4).await.unwrap();
    let busy = PostgresStore::open(&db.url(), None, 4).await.unwrap();
    let w = idle.wakeups();
    settle(&w).await;

    let acct = busy.create_account("shop").await.unwrap();
    // Nothing due, nothing raised.
    assert!(woken(&w.queue).await.is_none(), "no work, no wakeup");

    // Another node enqueues: this one's delivery is woken.
    let now = busy.now();
    let message = |rcpt: &str| NewMessage {
        id: MessageId::generate(),
        account_id: acct.id,
        mail_from: "app@shop.example".into(),
        recipients: vec![rcpt.into()],
        auth_user: "app@shop.example".into(),
        client_ip: None,
        label: None,
        received_at: now,
        subject: "hi".into(),
        header_from: "app@shop.example".into(),
        attachments: Vec::new(),
        content: b"Subject: hi\r\n\r\nhi\r\n".to_vec(),
        suppressed: Vec::new(),
        is_dsn: false,
    };
    busy.enqueue(message("a@example.net")).await.unwrap();
    let took = woken(&w.queue).await.expect("woken by the enqueue");
    eprintln!("delivery woken {took:?} after the other node's enqueue returned");

    // A webhook delivery added by another node's outcome wakes the sender.
    busy.add_webhook(Webhook {
        id: "wh".into(),
        account_id: acct.id,
        url: "https://hooks.example/x".into(),
        events: vec!["delivered".into()],
        secret: "s".into(),
        created_at: now,
    })
    .await
    .unwrap();
    let m = message("b@example.net");
    let id = m.id;
    busy.enqueue(m).await.unwrap();
    let _ = woken(&w.queue).await;
    let t = busy.now();
    let claimed = busy.claim_due("n2", t, t + 60, 10).await.unwrap();
    let updates = claimed
        .iter()
        .filter(|r| r.message_id == id)
        .map(|r| RecipientUpdate {
            message_id: r.message_id,
            idx: r.idx,
            status: RecipientStatus::Delivered,
            attempts: 1,
            last_reply: Some("250 ok".into()),
            remote_host: None,
            next_try: None,
            suppress: None,
        })
        .collect();
    busy.record_outcomes(
        Some("n2"),
        OutcomeBatch {
            updates,
            notices: Vec::new(),
        },
    )
    .await
    .unwrap();
    let took = woken(&w.webhooks)
        .await
        .expect("woken by the webhook delivery");
    eprintln!("webhook sender woken {took:?} after the other node's outcome returned");

    // Another node's retry makes mail due: woken again.
    let m = message("c@example.net");
    let later = m.id;
    busy.enqueue(m).await.unwrap();
    let _ = woken(&w.queue).await;
    assert_eq!(busy.retry_now(later, busy.now()).await.unwrap(), 1);
    assert!(woken(&w.queue).await.is_some(), "woken by the retry");

    drop((idle, busy));
    db.drop_db().await;
}

/// What this node just committed is handed to its own delivery from
/// memory once, then read from the database; another node reads it from
/// the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_contents_come_from_memory_once_then_from_the_database() {
    let Ok(url) = std::env::var("POSTHORN_TEST_POSTGRES_URL") else {
        eprintln!("skipped: POSTHORN_TEST_POSTGRES_URL is unset");
        return;
    };
    let schema = format!("fresh_{}", std::process::id());
    let this = PostgresStore::open(&url, Some(&schema), 4).await.unwrap();
    let other = PostgresStore::open(&url, Some(&schema), 4).await.unwrap();
    this.keep_fresh_contents(1 << 20);
    let acct = this.create_account("shop").await.unwrap();
    let id = MessageId::generate();
    let content = b"Subject: hi\r\n\r\nfresh\r\n".to_vec();
    this.enqueue(NewMessage {
        id,
        account_id: acct.id,
        mail_from: "app@shop.example".into(),
        recipients: vec!["a@example.net".into()],
        auth_user: "app@shop.example".into(),
        client_ip: None,
        label: None,
        received_at: this.now(),
        subject: "hi".into(),
        header_from: "app@shop.example".into(),
        attachments: Vec::new(),
        content: content.clone(),
        suppressed: Vec::new(),
        is_dsn: false,
    })
    .await
    .unwrap();
    // Delete the stored copy behind the store's back: what comes back
    // first must be the one in memory, then the database's (gone).
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "UPDATE \"{schema}\".message_contents SET content = 'db'::bytea"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(this.message_content(id).await.unwrap(), content);
    assert_eq!(this.message_content(id).await.unwrap(), b"db");
    assert_eq!(other.message_content(id).await.unwrap(), b"db");
    drop((this, other));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
}

/// Housekeeping runs on one node at a time: while another connection holds
/// the housekeeping lock of this schema, a purge does nothing; once it is
/// free, the same purge does its work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn housekeeping_is_one_nodes_at_a_time() {
    let Ok(url) = std::env::var("POSTHORN_TEST_POSTGRES_URL") else {
        eprintln!("skipped: POSTHORN_TEST_POSTGRES_URL is unset");
        return;
    };
    let schema = format!("housekeeping_{}", std::process::id());
    let store = PostgresStore::open(&url, Some(&schema), 4).await.unwrap();
    let acct = store.create_account("shop").await.unwrap();
    let id = MessageId::generate();
    store
        .enqueue(NewMessage {
            id,
            account_id: acct.id,
            mail_from: "app@shop.example".into(),
            recipients: vec!["a@example.net".into()],
            auth_user: "app@shop.example".into(),
            client_ip: None,
            label: None,
            received_at: store.now(),
            subject: "hi".into(),
            header_from: "app@shop.example".into(),
            attachments: Vec::new(),
            content: b"Subject: hi\r\n\r\nhi\r\n".to_vec(),
            suppressed: Vec::new(),
            is_dsn: false,
        })
        .await
        .unwrap();
    let t = store.now();
    let claimed = store.claim_due("n1", t, t + 60, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let recorded = store
        .record_outcomes(
            Some("n1"),
            OutcomeBatch {
                updates: vec![RecipientUpdate {
                    message_id: id,
                    idx: 0,
                    status: RecipientStatus::Delivered,
                    attempts: 1,
                    last_reply: Some("250 ok".into()),
                    remote_host: None,
                    next_try: None,
                    suppress: None,
                }],
                notices: Vec::new(),
            },
        )
        .await
        .unwrap();
    assert_eq!(recorded.completed, [id]);

    // Another node is housekeeping: it holds the lock.
    let mut other = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(hashtext('posthorn.housekeeping.' || $1))")
        .bind(&schema)
        .execute(&mut other)
        .await
        .unwrap();
    let later = store.now() + 10;
    assert_eq!(store.purge(later, later).await.unwrap(), (0, 0));
    assert!(store.message(id).await.is_ok(), "left to the other node");

    sqlx::query("SELECT pg_advisory_unlock(hashtext('posthorn.housekeeping.' || $1))")
        .bind(&schema)
        .execute(&mut other)
        .await
        .unwrap();
    assert_eq!(store.purge(later, later).await.unwrap(), (1, 1));
    assert!(
        store.message(id).await.is_err(),
        "purged once the lock is free"
    );

    drop(store);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(&mut other)
    .await
    .unwrap();
}
