//! The embedded store's spool (large contents in files beside the
//! database, `spool.rs`): what is written comes back, a purge removes the
//! files no message needs, mostly dead old files are compacted, a backup
//! carries the spooled contents with it, and a file a crash left behind
//! does not outlive its grace time.

use posthorn_store::*;
use posthorn_types::{MessageId, RecipientStatus};
use std::path::Path;
use std::time::{Duration, SystemTime};

fn message(account_id: i64, now: i64, size: usize, seed: u8) -> NewMessage {
    let mut content = b"From: app@example.com\r\nSubject: Big\r\n\r\n".to_vec();
    content.extend((0..size).map(|i| b'a' + ((i as u8).wrapping_add(seed) % 26)));
    NewMessage {
        id: MessageId::generate(),
        account_id,
        mail_from: "app@example.com".into(),
        recipients: vec!["to@x.test".into()],
        auth_user: "app@example.com".into(),
        client_ip: None,
        label: None,
        received_at: now,
        subject: "Big".into(),
        header_from: "app@example.com".into(),
        attachments: Vec::new(),
        content,
        suppressed: Vec::new(),
        is_dsn: false,
    }
}

fn delivered(id: MessageId) -> RecipientUpdate {
    RecipientUpdate {
        message_id: id,
        idx: 0,
        status: RecipientStatus::Delivered,
        attempts: 1,
        last_reply: Some("250 2.0.0 ok".into()),
        remote_host: None,
        next_try: None,
        suppress: None,
    }
}

fn files(data: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(data.join("spool"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Make `path` look written an hour ago.
fn make_old(path: &Path) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
}

async fn deliver(store: &SqliteStore, ids: &[MessageId]) {
    let now = store.now();
    store.claim_due("n", now, now + 300, 100).await.unwrap();
    let recorded = store
        .record_outcomes(
            Some("n"),
            OutcomeBatch {
                updates: ids.iter().map(|id| delivered(*id)).collect(),
                notices: Vec::new(),
            },
        )
        .await
        .unwrap();
    assert_eq!(recorded.applied, ids.len() as u64);
}

#[tokio::test]
async fn large_contents_live_in_the_spool_until_purged() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let acct = store.create_account("shop").await.unwrap();
    let now = store.now();
    let big = message(acct.id, now, 100_000, 1);
    let small = message(acct.id, now, 1_000, 2);
    store.enqueue(big.clone()).await.unwrap();
    store.enqueue(small.clone()).await.unwrap();
    // Only the large one is in a file.
    assert_eq!(files(dir.path()).len(), 1);
    assert_eq!(store.message_content(big.id).await.unwrap(), big.content);
    assert_eq!(
        store.message_content(small.id).await.unwrap(),
        small.content
    );
    assert_eq!(
        store.message(big.id).await.unwrap().size,
        big.content.len() as u64
    );

    // It survives a reopen (a file of this process is not an orphan).
    drop(store);
    let store = SqliteStore::open(dir.path()).await.unwrap();
    assert_eq!(store.message_content(big.id).await.unwrap(), big.content);
    assert_eq!(files(dir.path()).len(), 1);

    deliver(&store, &[big.id, small.id]).await;
    let later = store.now() + 10;
    assert_eq!(store.purge(later, 0).await.unwrap(), (2, 0));
    assert!(matches!(
        store.message_content(big.id).await,
        Err(StoreError::NotFound(_))
    ));
    // The dead file is kept to be written again: the next commit's
    // content goes into it, under a new name.
    let dead = files(dir.path());
    assert_eq!(dead.len(), 1);
    let next = message(acct.id, store.now(), 60_000, 4);
    store.enqueue(next.clone()).await.unwrap();
    let now_there = files(dir.path());
    assert_eq!(now_there.len(), 1);
    assert_ne!(now_there, dead);
    assert_eq!(
        std::fs::metadata(&now_there[0]).unwrap().len(),
        next.content.len() as u64,
        "cut to what this commit wrote"
    );
    assert_eq!(store.message_content(next.id).await.unwrap(), next.content);
}

#[tokio::test]
async fn a_backup_carries_spooled_contents_and_a_crash_leftover_goes() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let acct = store.create_account("shop").await.unwrap();
    let big = message(acct.id, store.now(), 80_000, 3);
    store.enqueue(big.clone()).await.unwrap();
    let backup = dir.path().join("backup.db");
    store.backup(&backup).await.unwrap();
    drop(store);

    // Restored into a data directory of its own, with no spool beside it.
    let restored = tempfile::tempdir().unwrap();
    std::fs::copy(&backup, SqliteStore::database_path(restored.path())).unwrap();
    let store = SqliteStore::open(restored.path()).await.unwrap();
    assert_eq!(store.message_content(big.id).await.unwrap(), big.content);
    drop(store);

    // A file no row points into, written by someone else: kept while it
    // may belong to a commit in flight, removed once old.
    let stray = dir.path().join("spool").join("7");
    std::fs::write(&stray, b"half a commit").unwrap();
    drop(SqliteStore::open(dir.path()).await.unwrap());
    assert!(stray.exists());
    make_old(&stray);
    let store = SqliteStore::open(dir.path()).await.unwrap();
    assert!(!stray.exists());
    assert_eq!(store.message_content(big.id).await.unwrap(), big.content);
}

#[tokio::test]
async fn an_old_mostly_purged_file_is_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let acct = store.create_account("shop").await.unwrap();
    let now = store.now();
    let batch: Vec<NewMessage> = (0..3).map(|i| message(acct.id, now, 50_000, i)).collect();
    store.enqueue_all(batch.clone()).await.unwrap();
    let before = files(dir.path());
    assert_eq!(before.len(), 1, "one commit, one file");
    deliver(&store, &[batch[0].id, batch[1].id]).await;
    // The file is old: its one live content (a third of it) moves out.
    make_old(&before[0]);
    assert_eq!(store.purge(store.now() + 10, 0).await.unwrap(), (2, 0));
    // Moved into a file of its own; the old one is dead (kept a while to
    // be written again).
    let moved: Vec<_> = files(dir.path())
        .into_iter()
        .filter(|f| *f != before[0])
        .collect();
    assert_eq!(moved.len(), 1);
    assert_eq!(
        std::fs::metadata(&moved[0]).unwrap().len(),
        batch[2].content.len() as u64
    );
    assert_eq!(
        store.message_content(batch[2].id).await.unwrap(),
        batch[2].content
    );
}
