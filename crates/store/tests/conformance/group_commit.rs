//! Writes that arrive together: one job that fails fails alone, and
//! more writes than a backend queues at once all commit, none fails.
//! (How many commits they shared is the SQLite store's own counter,
//! tested in `src/sqlite.rs`.)

use crate::support::{message, Backend};
use posthorn_store::*;
use posthorn_types::MessageId;

pub async fn a_failing_job_fails_only_its_own_caller(b: &Backend) {
    let store = b.store();
    let account = store.create_account("shop").await.unwrap().id;
    let mut first = message(&*store, account, &["b@example.net"]);
    let taken = first.id;
    first.subject = "the first".into();
    store.enqueue(first).await.unwrap();

    // Many enqueues at once, one of them with an id already stored: only
    // the duplicate may fail, and it changes nothing stored.
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
                let mut m = message(&*store, account, &["b@example.net"]);
                m.id = id;
                (id, store.enqueue(m).await)
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
    let first = store.message(taken).await.unwrap();
    assert_eq!(first.subject, "the first");
    assert_eq!(first.recipients.len(), 1);
    assert_eq!(
        store
            .messages(&MessageFilter::default())
            .await
            .unwrap()
            .len(),
        1 + 5 * 63
    );
}

pub async fn more_writes_than_the_queue_holds_all_commit(b: &Backend) {
    let store = b.store();
    let account = store.create_account("shop").await.unwrap().id;
    // Over the SQLite writer's queue (4,096 jobs) at once: callers wait
    // for room, none fails, all are there.
    let mut tasks = Vec::new();
    for _ in 0..5000 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let m = message(&*store, account, &["b@example.net"]);
            let id = m.id;
            store.enqueue(m).await.map(|_| id)
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap().unwrap());
    }
    let listed = store.messages(&MessageFilter::default()).await.unwrap();
    assert_eq!(listed.len(), 5000);
    ids.sort();
    let mut listed: Vec<_> = listed.iter().map(|m| m.id).collect();
    listed.sort();
    assert_eq!(ids, listed);
}

/// `enqueue_all` (an X-SMTPAPI batch): every message or none, also while
/// other enqueues share its commit.
pub async fn a_batch_is_stored_all_or_none(b: &Backend) {
    let store = b.store();
    let account = store.create_account("shop").await.unwrap().id;
    let taken = message(&*store, account, &["a@example.net"]);
    let taken_id = taken.id;
    store.enqueue(taken).await.unwrap();

    let batch = |with_taken: bool| {
        (0..3)
            .map(|i| {
                let mut m = message(&*store, account, &[&format!("r{i}@example.net")]);
                if with_taken && i == 1 {
                    m.id = taken_id;
                }
                m
            })
            .collect::<Vec<_>>()
    };
    // One of them cannot be stored: none is, and the neighbours that
    // shared the commit are not touched.
    let bad = batch(true);
    let bad_ids: Vec<MessageId> = bad.iter().map(|m| m.id).collect();
    let neighbour = message(&*store, account, &["n@example.net"]);
    let neighbour_id = neighbour.id;
    let (all, one) = tokio::join!(store.enqueue_all(bad), store.enqueue(neighbour));
    assert!(all.is_err(), "{all:?}");
    one.unwrap();
    for id in [bad_ids[0], bad_ids[2]] {
        assert!(
            matches!(store.message(id).await, Err(StoreError::NotFound(_))),
            "{id} stored from a refused batch"
        );
    }
    assert_eq!(
        store.message(taken_id).await.unwrap().recipients[0].address,
        "a@example.net"
    );
    assert!(store.message(neighbour_id).await.is_ok());

    // All good: all stored, each with its recipient.
    let good = batch(false);
    let ids: Vec<MessageId> = good.iter().map(|m| m.id).collect();
    store.enqueue_all(good).await.unwrap();
    for (i, id) in ids.iter().enumerate() {
        let m = store.message(*id).await.unwrap();
        assert_eq!(m.recipients[0].address, format!("r{i}@example.net"));
    }
    store.enqueue_all(Vec::new()).await.unwrap();
}
