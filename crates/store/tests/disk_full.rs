//! A store on a full disk, on both backends: a write that cannot get space
//! is `StoreError::NoSpace` (not a generic failure), `Store::out_of_space`
//! reports it, and both recover once space is back.
//!
//! The full disk is real: a small tmpfs (the embedded store's data
//! directory; for PostgreSQL a tablespace holding the message contents).
//! Mounting needs root; without it, or when the PostgreSQL server is not
//! on this machine, the test says so and skips.

use posthorn_store::*;
use posthorn_types::MessageId;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// A tmpfs mounted on a directory of its own, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Self, String> {
        let _ = Command::new("umount").arg("-l").arg(dir).output();
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed (not root?): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }

    /// Write a file until the file system is full; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0x55u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        while f.write_all(&chunk[..512]).is_ok() {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// `len` bytes that do not compress (PostgreSQL compresses large values).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn message(account_id: i64, now: i64, content: Vec<u8>) -> NewMessage {
    NewMessage {
        id: MessageId::generate(),
        account_id,
        mail_from: "app@shop.example".into(),
        recipients: vec!["a@example.net".into()],
        auth_user: "app@shop.example".into(),
        client_ip: None,
        label: None,
        received_at: now,
        subject: "big".into(),
        header_from: "app@shop.example".into(),
        attachments: Vec::new(),
        content,
        suppressed: Vec::new(),
        is_dsn: false,
    }
}

/// Enqueue large messages until one fails; that failure must be NoSpace.
async fn enqueue_until_full(store: &Arc<dyn Store>, account_id: i64) {
    for i in 0..200 {
        let m = message(account_id, store.now(), noise(256 * 1024, i + 1));
        match store.enqueue(m).await {
            Ok(()) => continue,
            Err(StoreError::NoSpace(why)) => {
                eprintln!("out of space after {i} messages: {why}");
                return;
            }
            Err(e) => panic!("a full disk must be NoSpace, got: {e:?}"),
        }
    }
    panic!("200 messages of 256 KiB fit: the disk never filled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_full_disk() {
    let dir = std::env::temp_dir().join(format!("posthorn-sqlite-full-{}", std::process::id()));
    let tmpfs = match Tmpfs::mount(&dir, "8m") {
        Ok(t) => t,
        Err(why) => {
            eprintln!("skipped: a full disk needs a tmpfs: {why}");
            return;
        }
    };
    let sqlite = SqliteStore::open(&dir).await.unwrap();
    let store: Arc<dyn Store> = Arc::new(sqlite);
    let account = store.create_account("shop").await.unwrap();
    assert_eq!(store.out_of_space().await, None);
    // A file takes what room there is; the next message finds none.
    let filler = tmpfs.fill();
    enqueue_until_full(&store, account.id).await;
    let since = store.out_of_space().await.expect("out of space");
    assert!((since - store.now()).abs() <= 5);
    // Asked again at once: still out (the probe runs at most once a second).
    assert_eq!(store.out_of_space().await, Some(since));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(store.out_of_space().await, Some(since), "nothing was freed");

    std::fs::remove_file(filler).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(store.out_of_space().await, None, "the probe found room");
    store
        .enqueue(message(account.id, store.now(), noise(4096, 7)))
        .await
        .expect("space is back");
    assert_eq!(store.out_of_space().await, None);
    drop(store);
    drop(tmpfs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_on_a_full_disk() {
    use sqlx::Connection;
    let Ok(url) = std::env::var("POSTHORN_TEST_POSTGRES_URL") else {
        eprintln!("skipped: POSTHORN_TEST_POSTGRES_URL is unset");
        return;
    };
    const SPACE: &str = "posthorn_test_full";
    const SCHEMA: &str = "disk_full";
    let dir = std::env::temp_dir().join("posthorn-pg-full");
    let run = |sql: String| {
        let url = url.clone();
        async move {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .map(|_| ())
        }
    };
    // What an earlier run may have left.
    let _ = run(format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")).await;
    let _ = run(format!("DROP TABLESPACE IF EXISTS {SPACE}")).await;
    let tmpfs = match Tmpfs::mount(&dir, "2m") {
        Ok(t) => t,
        Err(why) => {
            eprintln!("skipped: a full disk needs a tmpfs: {why}");
            return;
        }
    };
    let owned = Command::new("chown")
        .arg("postgres:postgres")
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success());
    if !owned {
        eprintln!("skipped: no postgres user to give the tablespace to");
        return;
    }
    if let Err(e) = run(format!(
        "CREATE TABLESPACE {SPACE} LOCATION '{}'",
        dir.display()
    ))
    .await
    {
        eprintln!("skipped: the PostgreSQL server cannot use {dir:?} (not on this machine?): {e}");
        return;
    }

    let pg = PostgresStore::open(&url, Some(SCHEMA), 4).await.unwrap();
    let store: Arc<dyn Store> = Arc::new(pg);
    let account = store.create_account("shop").await.unwrap();
    run(format!(
        "ALTER TABLE {SCHEMA}.message_contents SET TABLESPACE {SPACE}"
    ))
    .await
    .unwrap();
    assert_eq!(store.out_of_space().await, None);
    enqueue_until_full(&store, account.id).await;
    let since = store.out_of_space().await.expect("out of space");
    assert!((since - store.now()).abs() <= 5);

    // Space is back: the contents move to the main disk; the next write
    // succeeds and the store is no longer out of space.
    run(format!(
        "ALTER TABLE {SCHEMA}.message_contents SET TABLESPACE pg_default"
    ))
    .await
    .unwrap();
    store
        .enqueue(message(account.id, store.now(), noise(4096, 7)))
        .await
        .expect("space is back");
    assert_eq!(store.out_of_space().await, None);

    drop(store);
    run(format!("DROP SCHEMA {SCHEMA} CASCADE")).await.unwrap();
    run(format!("DROP TABLESPACE {SPACE}")).await.unwrap();
    drop(tmpfs);
}
