//! Group commit: one job that fails in a shared transaction fails alone,
//! and the writer's queue is bounded without losing or failing work.

use posthorn_store::*;
use posthorn_types::MessageId;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

fn message(account_id: i64, id: MessageId) -> NewMessage {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    NewMessage {
        id,
        account_id,
        mail_from: "a@example.com".into(),
        recipients: vec!["b@example.net".into()],
        auth_user: "a@example.com".into(),
        label: None,
        received_at: now,
        subject: "x".into(),
        header_from: "a@example.com".into(),
        attachments: Vec::new(),
        content: b"Subject: x\r\n\r\nhi\r\n".to_vec(),
        suppressed: Vec::new(),
        is_dsn: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_fails_only_its_own_caller() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    let account = store.create_account("shop").await.unwrap().id;
    let taken = MessageId::generate();
    store.enqueue(message(account, taken)).await.unwrap();

    // Many enqueues at once, one of them with an id already stored: they
    // share commits, and only the duplicate may fail.
    for _ in 0..5 {
        let mut tasks = Vec::new();
        for i in 0..64 {
            let store = store.clone();
            let id = if i == 31 {
                taken
            } else {
                MessageId::generate()
            };
            tasks.push(tokio::spawn(async move {
                (id, store.enqueue(message(account, id)).await)
            }));
        }
        for t in tasks {
            let (id, result) = t.await.unwrap();
            if id == taken {
                assert!(
                    matches!(result, Err(StoreError::Duplicate(_))),
                    "{result:?}"
                );
            } else {
                result.unwrap_or_else(|e| panic!("{id} failed with its neighbour: {e}"));
                assert_eq!(store.message(id).await.unwrap().recipients.len(), 1);
            }
        }
    }
    let stats = store.commit_stats();
    assert!(
        stats.commits < 5 * 64,
        "the enqueues shared commits: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_writes_than_the_queue_holds_all_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    let account = store.create_account("shop").await.unwrap().id;
    // Over the queue's capacity (4,096 jobs) at once: callers wait for
    // room, none fails, all are there.
    let mut tasks = Vec::new();
    for _ in 0..5000 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = MessageId::generate();
            store.enqueue(message(account, id)).await.map(|_| id)
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap().unwrap());
    }
    let listed = store.messages(&MessageFilter::default()).await.unwrap();
    assert_eq!(listed.len(), 5000);
}
