//! Group commit throughput of the embedded store on its own: TASKS
//! concurrent writers (default 20) each enqueueing 5 KB messages with one
//! recipient, then waiting for the commit, as SMTP sessions do; a fresh
//! database in a temp dir. Prints messages per second and messages per
//! commit. No SMTP, no policy: the ceiling the store sets on the accept path.
//!
//!   cargo bench -p posthorn-store --bench enqueue
//!   TASKS=1 MESSAGES=2000 cargo bench -p posthorn-store --bench enqueue
use posthorn_store::{NewMessage, SqliteStore, Store};
use posthorn_types::MessageId;
use std::sync::Arc;
use std::time::Instant;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let tasks = env("TASKS", 20);
    let total = env("MESSAGES", 20_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(dir.path()).await.expect("open"));
    let account = store.create_account("bench").await.expect("account");
    let content = vec![b'x'; 5120];
    let started = Instant::now();
    let mut joins = Vec::new();
    for t in 0..tasks {
        let store = store.clone();
        let content = content.clone();
        let n = total / tasks + usize::from(t < total % tasks);
        joins.push(tokio::spawn(async move {
            for _ in 0..n {
                store
                    .enqueue(NewMessage {
                        id: MessageId::generate(),
                        account_id: account.id,
                        mail_from: "load@bench.test".into(),
                        recipients: vec!["sink@example.net".into()],
                        auth_user: "load@bench.test".into(),
                        client_ip: None,
                        label: None,
                        received_at: 0,
                        subject: "bench".into(),
                        header_from: "load@bench.test".into(),
                        attachments: Vec::new(),
                        content: content.clone(),
                        suppressed: Vec::new(),
                        is_dsn: false,
                    })
                    .await
                    .expect("enqueue");
            }
        }));
    }
    for j in joins {
        j.await.expect("task");
    }
    let secs = started.elapsed().as_secs_f64();
    let stats = store.commit_stats();
    println!(
        "enqueue: {tasks} tasks, {total} messages x 5 KB in {secs:.3} s = {:.0} messages/s; {} commits, {:.1} messages per commit",
        total as f64 / secs,
        stats.commits,
        stats.messages as f64 / stats.commits.max(1) as f64
    );
}
