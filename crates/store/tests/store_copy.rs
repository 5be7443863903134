//! `copy_sqlite_to_postgres`: an embedded store filled through the `Store`
//! trait reads back the same through `PostgresStore` after the copy.
//! Runs when `POSTHORN_TEST_POSTGRES_URL` is set (each test in a schema of
//! its own, dropped at the end); otherwise each test says so and passes.

use posthorn_store::*;
use posthorn_types::{MessageId, RecipientStatus};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A schema of its own for one test, dropped (with everything in it) when
/// the test ends, passed or failed.
struct TestSchema {
    url: String,
    name: String,
}

impl TestSchema {
    /// `None` (skip) without a database.
    async fn new() -> Option<Self> {
        static N: AtomicU32 = AtomicU32::new(0);
        let Ok(url) = std::env::var("POSTHORN_TEST_POSTGRES_URL") else {
            eprintln!("skipped: POSTHORN_TEST_POSTGRES_URL is unset");
            return None;
        };
        let name = format!(
            "copy_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        // A schema left by a crashed run of the same pid would refuse the copy.
        drop_schema(&url, &name).await;
        Some(Self { url, name })
    }

    async fn open(&self) -> PostgresStore {
        PostgresStore::open(&self.url, Some(&self.name), 4)
            .await
            .expect("open the PostgreSQL store")
    }
}

async fn drop_schema(url: &str, name: &str) -> Option<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.ok()?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
    )))
    .execute(&mut conn)
    .await
    .ok()?;
    conn.close().await.ok()
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // Drop runs outside async code: a thread with a runtime of its own.
        let (url, name) = (self.url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?
                .block_on(drop_schema(&url, &name))
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop the test schema {}", self.name);
        }
    }
}

const HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQxMjM0$3q2+7wvB5Hk7D2h0mK1Jx0qBPe1V8i0H7wYx1cZ0rGg";
const PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n";

fn message(account_id: i64, rcpts: &[&str], now: i64) -> NewMessage {
    NewMessage {
        id: MessageId::generate(),
        account_id,
        mail_from: "app@example.com".into(),
        recipients: rcpts.iter().map(|s| s.to_string()).collect(),
        auth_user: "app@example.com".into(),
        client_ip: Some("192.0.2.7".into()),
        label: None,
        received_at: now,
        subject: "Your order".into(),
        header_from: "app@example.com".into(),
        attachments: Vec::new(),
        content: b"From: app@example.com\r\nSubject: Your order\r\n\r\nThanks\r\n".to_vec(),
        suppressed: Vec::new(),
        is_dsn: false,
    }
}

fn outcome(id: MessageId, idx: u32, status: RecipientStatus, reply: &str) -> RecipientUpdate {
    RecipientUpdate {
        message_id: id,
        idx,
        status,
        attempts: 1,
        last_reply: Some(reply.into()),
        remote_host: Some("mx.x.test[192.0.2.25]".into()),
        next_try: None,
        suppress: None,
    }
}

/// What the test stored, to look up afterwards.
struct Filled {
    shop: Account,
    other: Account,
    /// Recipients (message, address) left `sending` under node-a's lease.
    sending: Vec<(MessageId, String)>,
}

/// Two accounts and one of everything, messages in every status.
async fn fill(store: &SqliteStore) -> Filled {
    let now = store.now();
    let shop = store.create_account("shop").await.unwrap();
    let other = store.create_account("other").await.unwrap();
    store
        .add_domain(NewDomain {
            account_id: shop.id,
            name: "example.com".into(),
            dkim_selector: "ph2024".into(),
            dkim_private_key: PRIVATE_KEY.into(),
            dkim_public_key: "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=".into(),
        })
        .await
        .unwrap();
    store
        .add_sender(shop.id, "app@example.com", HASH)
        .await
        .unwrap();
    store
        .add_sender(shop.id, "News@Example.com", &format!("{HASH}x"))
        .await
        .unwrap();
    store
        .add_sender(other.id, "x@other.test", HASH)
        .await
        .unwrap();
    store
        .add_api_user(shop.id, "api1", &format!("{HASH}k"))
        .await
        .unwrap();
    store
        .set_account_setting(shop.id, "messages_per_second", Some("0"))
        .await
        .unwrap();
    store
        .set_account_setting(shop.id, "max_recipients", Some("10"))
        .await
        .unwrap();
    store.add_label(shop.id, "42").await.unwrap();
    store
        .add_api_key(ApiKey {
            id: "k1a2b3".into(),
            account_id: Some(shop.id),
            secret_hash: HASH.into(),
            description: "ci".into(),
            created_at: now,
        })
        .await
        .unwrap();
    store
        .add_api_key(ApiKey {
            id: "adm001".into(),
            account_id: None,
            secret_hash: HASH.into(),
            description: String::new(),
            created_at: now,
        })
        .await
        .unwrap();
    store
        .add_webhook(Webhook {
            id: "wh1".into(),
            account_id: shop.id,
            url: "https://hooks.example.com/posthorn".into(),
            events: vec!["delivered".into(), "bounced".into()],
            secret: "whsec_1".into(),
            created_at: now,
        })
        .await
        .unwrap();
    store
        .add_suppression(shop.id, "gone@x.test", "added by operator")
        .await
        .unwrap();
    // An open of a tracked message (schema v12).
    assert!(store
        .record_engagement(&NewEngagement {
            account_id: shop.id,
            message_id: MessageId::first_at(1).to_string(),
            recipient: "ok@x.test".into(),
            kind: OPENED.into(),
            user_agent: Some("UA".into()),
            ip: Some("192.0.2.1".into()),
            url: None,
        })
        .await
        .unwrap());

    // First claim: delivered, bounced (with its notice and suppression),
    // deferred (due at once, and later), and one message completed and
    // its content purged.
    let m2 = message(
        shop.id,
        &["ok@x.test", "bad@x.test", "soon@x.test", "wait@x.test"],
        now,
    );
    let m5 = message(shop.id, &["done@x.test"], now);
    store.enqueue(m2.clone()).await.unwrap();
    store.enqueue(m5.clone()).await.unwrap();
    let claimed = store.claim_due("node-a", now, now + 300, 10).await.unwrap();
    assert_eq!(claimed.len(), 5);
    let mut notice = message(shop.id, &["app@example.com"], now);
    notice.mail_from = String::new();
    notice.auth_user = String::new();
    notice.is_dsn = true;
    let bounced = RecipientUpdate {
        suppress: Some("550 5.1.1 no such user".into()),
        ..outcome(m2.id, 1, RecipientStatus::Bounced, "550 5.1.1 no such user")
    };
    let soon = RecipientUpdate {
        next_try: Some(now),
        ..outcome(m2.id, 2, RecipientStatus::Deferred, "451 4.3.0 try later")
    };
    let wait = RecipientUpdate {
        next_try: Some(now + 3600),
        ..outcome(m2.id, 3, RecipientStatus::Deferred, "451 4.3.0 try later")
    };
    let recorded = store
        .record_outcomes(
            Some("node-a"),
            OutcomeBatch {
                updates: vec![
                    outcome(m2.id, 0, RecipientStatus::Delivered, "250 2.0.0 ok"),
                    bounced,
                    soon,
                    wait,
                    outcome(m5.id, 0, RecipientStatus::Delivered, "250 2.0.0 ok"),
                ],
                notices: vec![notice.clone()],
            },
        )
        .await
        .unwrap();
    assert_eq!(recorded.applied, 5);
    assert_eq!(recorded.completed, vec![m5.id]);
    assert_eq!(store.purge(now + 100, 0).await.unwrap(), (1, 0));

    // Second claim, left unfinished: soon@ (tried once), the notice and
    // m3 (never tried) are `sending` when the copy runs.
    let m3 = message(shop.id, &["held@x.test"], now);
    store.enqueue(m3.clone()).await.unwrap();
    let claimed = store.claim_due("node-a", now, now + 300, 10).await.unwrap();
    let mut sending: Vec<(MessageId, String)> = claimed
        .iter()
        .map(|d| (d.message_id, d.address.clone()))
        .collect();
    sending.sort();
    let mut expected = vec![
        (m2.id, "soon@x.test".to_string()),
        (notice.id, "app@example.com".to_string()),
        (m3.id, "held@x.test".to_string()),
    ];
    expected.sort();
    assert_eq!(sending, expected);

    // Queued: a labelled message with attachments, and one of the other
    // account with a recipient suppressed at RCPT.
    let mut m1 = message(shop.id, &["queued@x.test", "queued2@x.test"], now);
    m1.label = Some("42".into());
    m1.attachments = vec![
        AttachmentRecord {
            filename: Some("invoice.pdf".into()),
            content_type: "application/pdf".into(),
            size: 12345,
        },
        AttachmentRecord {
            filename: None,
            content_type: "image/png".into(),
            size: 99,
        },
    ];
    m1.content = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    store.enqueue(m1).await.unwrap();
    let mut m4 = message(other.id, &["y@x.test"], now);
    m4.mail_from = "x@other.test".into();
    m4.suppressed = vec!["z@x.test".into()];
    store.enqueue(m4).await.unwrap();
    Filled {
        shop,
        other,
        sending,
    }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn sorted_suppressions(mut v: Vec<Suppression>) -> Vec<Suppression> {
    v.sort_by(|a, b| a.address.cmp(&b.address));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_every_table_into_an_empty_database_and_only_once() {
    let Some(schema) = TestSchema::new().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(dir.path()).await.unwrap();
    let filled = fill(&sqlite).await;
    let db = SqliteStore::database_path(dir.path());

    let report = copy_sqlite_to_postgres(&db, &schema.url, Some(&schema.name))
        .await
        .unwrap();
    println!("{report}");
    assert_eq!(
        (
            report.accounts,
            report.domains,
            report.senders,
            report.api_users
        ),
        (2, 1, 3, 1)
    );
    assert_eq!(
        (
            report.account_settings,
            report.labels,
            report.api_keys,
            report.webhooks
        ),
        (2, 1, 2, 1)
    );
    // m1..m5 and the notice; m5's content was purged.
    assert_eq!((report.messages, report.message_contents), (6, 5));
    assert_eq!((report.attachments, report.recipients), (2, 11));
    assert_eq!(report.suppressions, 2);
    // delivered ok@ and done@, bounced bad@: events and their deliveries.
    assert_eq!((report.events, report.webhook_deliveries), (3, 3));
    assert_eq!(report.released, 3);
    assert!(report.to_string().contains("6 messages"));

    let pg = schema.open().await;
    assert_eq!(report.engagements, 1);
    let opens = pg.engagements(MessageId::first_at(1)).await.unwrap();
    assert_eq!(opens.len(), 1, "{opens:?}");
    assert_eq!((opens[0].kind.as_str(), opens[0].count), (OPENED, 1));
    let (shop, other) = (filled.shop.id, filled.other.id);

    // Accounts and credentials.
    assert_eq!(
        pg.accounts().await.unwrap(),
        sqlite.accounts().await.unwrap()
    );
    assert_eq!(pg.account("shop").await.unwrap(), filled.shop);
    let domain = pg.domain("example.com").await.unwrap();
    assert_eq!(domain, sqlite.domain("example.com").await.unwrap());
    assert_eq!(domain.dkim_private_key, PRIVATE_KEY);
    assert_eq!(
        pg.domains(shop).await.unwrap(),
        sqlite.domains(shop).await.unwrap()
    );
    for address in ["app@example.com", "news@example.com", "x@other.test"] {
        let sender = pg.sender(address).await.unwrap();
        assert_eq!(sender, sqlite.sender(address).await.unwrap());
        assert!(sender.password_hash.starts_with("$argon2id$"));
    }
    for a in [shop, other] {
        assert_eq!(
            pg.senders(a).await.unwrap(),
            sqlite.senders(a).await.unwrap()
        );
        assert_eq!(
            pg.api_users(a).await.unwrap(),
            sqlite.api_users(a).await.unwrap()
        );
        assert_eq!(pg.labels(a).await.unwrap(), sqlite.labels(a).await.unwrap());
        assert_eq!(
            sorted(pg.account_settings(a).await.unwrap()),
            sorted(sqlite.account_settings(a).await.unwrap())
        );
        assert_eq!(
            pg.webhooks(a).await.unwrap(),
            sqlite.webhooks(a).await.unwrap()
        );
        assert_eq!(
            sorted_suppressions(pg.suppressions(a).await.unwrap()),
            sorted_suppressions(sqlite.suppressions(a).await.unwrap())
        );
        assert_eq!(
            pg.api_keys(Some(a)).await.unwrap(),
            sqlite.api_keys(Some(a)).await.unwrap()
        );
    }
    assert_eq!(
        pg.api_user("api1").await.unwrap(),
        sqlite.api_user("api1").await.unwrap()
    );
    assert!(pg.has_label(shop, "42").await.unwrap());
    assert_eq!(
        pg.api_keys(None).await.unwrap(),
        sqlite.api_keys(None).await.unwrap()
    );
    assert_eq!(
        pg.api_key("k1a2b3").await.unwrap(),
        sqlite.api_key("k1a2b3").await.unwrap()
    );
    assert_eq!(
        pg.webhooks(shop).await.unwrap()[0].events,
        ["delivered", "bounced"]
    );
    assert!(pg.is_suppressed(shop, "BAD@x.test").await.unwrap());
    assert!(pg.is_suppressed(shop, "gone@x.test").await.unwrap());

    // The queue: every record equal, but what node-a was sending is due
    // again at once (queued when never tried, deferred after a try).
    let pg_now = pg.now();
    let all = MessageFilter::default();
    let before = sqlite.messages(&all).await.unwrap();
    let after = pg.messages(&all).await.unwrap();
    assert_eq!(before.len(), 6);
    assert_eq!(after.len(), before.len());
    let mut released = Vec::new();
    for (mut was, now) in before.into_iter().zip(after) {
        for (i, r) in was.recipients.iter_mut().enumerate() {
            if r.status == RecipientStatus::Sending {
                let copied = &now.recipients[i];
                let expect = if r.attempts == 0 {
                    RecipientStatus::Queued
                } else {
                    RecipientStatus::Deferred
                };
                assert_eq!(copied.status, expect, "{}", r.address);
                let due = copied
                    .next_try
                    .expect("a released recipient has a next try");
                assert!(due <= pg_now && due >= pg_now - 60, "{due} vs {pg_now}");
                released.push((was.id, r.address.clone()));
                r.status = expect;
                r.next_try = copied.next_try;
                r.updated_at = copied.updated_at;
            }
        }
        assert_eq!(was, now);
        match sqlite.message_content(was.id).await {
            Ok(content) => assert_eq!(pg.message_content(was.id).await.unwrap(), content),
            Err(_) => {
                assert!(was.content_purged);
                assert!(pg.message_content(was.id).await.is_err());
            }
        }
    }
    assert_eq!(sorted(released), filled.sending);
    assert!(pg
        .messages(&MessageFilter {
            status: Some(RecipientStatus::Sending),
            ..MessageFilter::default()
        })
        .await
        .unwrap()
        .is_empty());
    let (from, before) = (MessageId::first_at(0), MessageId::generate());
    for a in [shop, other] {
        assert_eq!(
            pg.daily_stats(a, from, before, None).await.unwrap(),
            sqlite.daily_stats(a, from, before, None).await.unwrap()
        );
    }
    assert_eq!(
        pg.daily_stats(shop, from, before, Some("42"))
            .await
            .unwrap(),
        sqlite
            .daily_stats(shop, from, before, Some("42"))
            .await
            .unwrap()
    );
    let counts = |v: Vec<(RecipientStatus, u64)>| -> HashMap<RecipientStatus, u64> {
        v.into_iter().collect()
    };
    let mut expected = counts(sqlite.status_counts().await.unwrap());
    expected.remove(&RecipientStatus::Sending);
    *expected.entry(RecipientStatus::Queued).or_default() += 2;
    *expected.entry(RecipientStatus::Deferred).or_default() += 1;
    assert_eq!(counts(pg.status_counts().await.unwrap()), expected);

    // The released recipients are claimed by the cluster's next claim;
    // wait@ (deferred for an hour) is not.
    let claimed = pg
        .claim_due("node-b", pg_now, pg_now + 300, 100)
        .await
        .unwrap();
    let claimed: Vec<(MessageId, String)> = claimed
        .into_iter()
        .map(|d| (d.message_id, d.address))
        .collect();
    for held in &filled.sending {
        assert!(claimed.contains(held), "{held:?} not claimed: {claimed:?}");
    }
    assert!(!claimed.iter().any(|(_, a)| a == "wait@x.test"));
    assert_eq!(claimed.len(), 3 + 2 + 1);

    // Webhook deliveries pending on the node are pending here, same events.
    let t = sqlite.now();
    let mut want = sqlite
        .claim_webhook_deliveries(t, t + 30, 10)
        .await
        .unwrap();
    let mut got = pg
        .claim_webhook_deliveries(pg_now, pg_now + 30, 10)
        .await
        .unwrap();
    want.sort_by_key(|d| d.event.id);
    got.sort_by_key(|d| d.event.id);
    assert_eq!(want.len(), 3);
    assert_eq!(got, want);

    // New rows get fresh ids past the copied ones.
    let newer = pg.create_account("newer").await.unwrap();
    assert_eq!(newer.id, filled.other.id.max(filled.shop.id) + 1);
    let d = pg
        .add_domain(NewDomain {
            account_id: newer.id,
            name: "newer.test".into(),
            dkim_selector: "s".into(),
            dkim_private_key: PRIVATE_KEY.into(),
            dkim_public_key: "p".into(),
        })
        .await
        .unwrap();
    assert!(d.id > domain.id);

    // A second copy into the same schema is refused and changes nothing.
    let accounts = pg.accounts().await.unwrap();
    let messages = pg.messages(&all).await.unwrap();
    let err = copy_sqlite_to_postgres(&db, &schema.url, Some(&schema.name))
        .await
        .unwrap_err();
    match &err {
        StoreError::InUse(msg) => {
            assert!(
                msg.contains("already holds data (3 accounts, 6 messages"),
                "{msg}"
            );
            assert!(msg.contains("only fills an empty database"), "{msg}");
        }
        other => panic!("expected InUse, got {other:?}"),
    }
    assert_eq!(pg.accounts().await.unwrap(), accounts);
    assert_eq!(pg.messages(&all).await.unwrap(), messages);
    // The source is untouched: node-a's recipients still show sending.
    assert_eq!(
        sqlite
            .messages(&MessageFilter {
                status: Some(RecipientStatus::Sending),
                ..MessageFilter::default()
            })
            .await
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn refuses_a_missing_store_and_creates_none() {
    let Some(schema) = TestSchema::new().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = SqliteStore::database_path(dir.path());
    let err = copy_sqlite_to_postgres(&db, &schema.url, Some(&schema.name))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert!(err.to_string().contains("no store at"), "{err}");
    assert!(!db.exists());
}

/// 5,000 messages of 2 recipients and 2 KB each, copied (printed with
/// `--nocapture`; the bound is generous for a busy 2-core machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_5000_messages_in_seconds() {
    let Some(schema) = TestSchema::new().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    let a = store.create_account("bulk").await.unwrap().id;
    let now = store.now();
    let filled = Instant::now();
    for batch in 0..10 {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..500 {
            let store = store.clone();
            let mut m = message(a, &["r1@x.test", "r2@x.test"], now);
            m.content =
                format!("Subject: {batch}/{i}\r\n\r\n{}\r\n", "x".repeat(2000)).into_bytes();
            tasks.spawn(async move { store.enqueue(m).await.unwrap() });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    }
    println!("filled 5,000 messages in {:?}", filled.elapsed());
    let report = copy_sqlite_to_postgres(
        &SqliteStore::database_path(dir.path()),
        &schema.url,
        Some(&schema.name),
    )
    .await
    .unwrap();
    println!("{report}");
    assert_eq!(
        (report.messages, report.message_contents, report.recipients),
        (5000, 5000, 10000)
    );
    assert!(report.elapsed.as_secs() < 60, "{:?}", report.elapsed);
    let pg = schema.open().await;
    assert_eq!(pg.count_messages_since(a, 0).await.unwrap(), 5000);
}

/// A table or column the copy does not know (a newer schema) stops it
/// before PostgreSQL is reached, rather than leave data behind unawares.
#[tokio::test]
async fn refuses_a_store_with_tables_or_columns_it_does_not_know() {
    use sqlx::Connection;
    let never = "postgres://nobody@127.0.0.1:1/never";
    for (change, named) in [
        (
            "CREATE TABLE campaigns (id INTEGER PRIMARY KEY, body TEXT)",
            "\"campaigns\"",
        ),
        (
            "ALTER TABLE messages ADD COLUMN priority INTEGER",
            "\"priority\"",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(dir.path()).await.unwrap());
        let db = SqliteStore::database_path(dir.path());
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::raw_sql(change).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        let err = copy_sqlite_to_postgres(&db, never, None).await.unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(named) && msg.contains("does not know"),
            "{msg}"
        );
    }
}
