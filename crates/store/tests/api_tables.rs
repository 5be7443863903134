//! The store's HTTP API tables: API keys, listing filters, daily
//! statistics, and webhook events written in the commit of the status
//! change they report.

use posthorn_store::*;
use posthorn_types::{MessageId, RecipientStatus};
use std::time::{SystemTime, UNIX_EPOCH};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn message(account_id: i64, rcpts: &[&str], label: Option<&str>) -> NewMessage {
    NewMessage {
        id: MessageId::generate(),
        account_id,
        mail_from: "a@example.com".into(),
        recipients: rcpts.iter().map(|s| s.to_string()).collect(),
        auth_user: "a@example.com".into(),
        label: label.map(str::to_string),
        received_at: now(),
        subject: "x".into(),
        header_from: "a@example.com".into(),
        attachments: Vec::new(),
        content: b"Subject: x\r\n\r\nhi\r\n".to_vec(),
        suppressed: Vec::new(),
        is_dsn: false,
    }
}

fn update(id: MessageId, idx: u32, status: RecipientStatus) -> RecipientUpdate {
    RecipientUpdate {
        message_id: id,
        idx,
        status,
        attempts: 1,
        last_reply: Some("250 2.0.0 ok".into()),
        remote_host: Some("mx.test[127.0.0.1]".into()),
        next_try: (status == RecipientStatus::Deferred).then(|| now() + 60),
        suppress: None,
    }
}

async fn open() -> (tempfile::TempDir, SqliteStore, i64, i64) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let a = store.create_account("shop").await.unwrap().id;
    let b = store.create_account("other").await.unwrap().id;
    (dir, store, a, b)
}

#[tokio::test]
async fn api_keys_are_per_account_or_admin() {
    let (_dir, store, a, _) = open().await;
    let key = |id: &str, account_id| ApiKey {
        id: id.into(),
        account_id,
        secret_hash: "$argon2id$x".into(),
        description: "ci".into(),
        created_at: now(),
    };
    store.add_api_key(key("k1", Some(a))).await.unwrap();
    store.add_api_key(key("k2", None)).await.unwrap();
    assert!(matches!(
        store.add_api_key(key("k1", None)).await,
        Err(StoreError::Duplicate(_))
    ));
    assert_eq!(store.api_key("k1").await.unwrap().account_id, Some(a));
    assert_eq!(store.api_keys(Some(a)).await.unwrap().len(), 1);
    assert_eq!(store.api_keys(None).await.unwrap()[0].id, "k2");
    assert!(store.remove_api_key("k1").await.unwrap());
    assert!(!store.remove_api_key("k1").await.unwrap());
    assert!(matches!(
        store.api_key("k1").await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn listing_filters_page_and_statistics_count() {
    let (_dir, store, a, b) = open().await;
    let start = MessageId::generate();
    let mut m1 = message(a, &["x@example.net", "y@example.net"], Some("7"));
    m1.attachments.push(AttachmentRecord {
        filename: Some("invoice.pdf".into()),
        content_type: "application/pdf".into(),
        size: 3,
    });
    let m2 = message(a, &["Y@example.net"], None);
    let m3 = message(b, &["y@example.net"], None);
    let (i1, i2) = (m1.id, m2.id);
    for m in [m1, m2, m3] {
        store.enqueue(m).await.unwrap();
    }
    let end = MessageId::generate();
    let claimed = store.claim_due("n", now(), now() + 60, 10).await.unwrap();
    assert_eq!(claimed.len(), 4);
    store
        .record_outcomes(
            Some("n"),
            OutcomeBatch {
                updates: vec![
                    update(i1, 0, RecipientStatus::Delivered),
                    update(i1, 1, RecipientStatus::Bounced),
                    update(i2, 0, RecipientStatus::Deferred),
                ],
                notices: Vec::new(),
            },
        )
        .await
        .unwrap();

    let list = |f: MessageFilter| {
        let store = &store;
        async move {
            store
                .messages(&f)
                .await
                .unwrap()
                .iter()
                .map(|m| m.id)
                .collect::<Vec<_>>()
        }
    };
    let mine = MessageFilter {
        account_id: Some(a),
        ..Default::default()
    };
    assert_eq!(list(mine.clone()).await, [i1, i2]);
    // Each listed message carries its own recipients, in order, with their
    // statuses (the parts of a page are read in one query per table).
    let listed = store.messages(&mine).await.unwrap();
    let parts = |m: &posthorn_store::MessageRecord| {
        m.recipients
            .iter()
            .map(|r| (r.address.clone(), r.status))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        parts(&listed[0]),
        [
            ("x@example.net".to_string(), RecipientStatus::Delivered),
            ("y@example.net".to_string(), RecipientStatus::Bounced)
        ]
    );
    assert_eq!(
        parts(&listed[1]),
        [("Y@example.net".to_string(), RecipientStatus::Deferred)]
    );
    assert_eq!(parts(&store.message(i2).await.unwrap()), parts(&listed[1]));
    assert_eq!(
        listed[0].attachments,
        store.message(i1).await.unwrap().attachments
    );
    let by_rcpt = MessageFilter {
        recipient: Some("y@EXAMPLE.net".into()),
        ..mine.clone()
    };
    assert_eq!(list(by_rcpt).await, [i1, i2]);
    let page = MessageFilter {
        limit: Some(1),
        ..mine.clone()
    };
    assert_eq!(list(page.clone()).await, [i1]);
    let next = MessageFilter {
        after: Some(i1),
        ..page
    };
    assert_eq!(list(next).await, [i2]);
    let bounced = MessageFilter {
        status: Some(RecipientStatus::Bounced),
        ..mine.clone()
    };
    assert_eq!(list(bounced).await, [i1]);
    let labelled = MessageFilter {
        label: Some("7".into()),
        ..mine.clone()
    };
    assert_eq!(list(labelled).await, [i1]);
    let window = MessageFilter {
        before: Some(start),
        ..mine
    };
    assert!(list(window).await.is_empty());

    let stats = store.daily_stats(a, start, end, None).await.unwrap();
    assert_eq!(stats.len(), 1);
    let day = &stats[0];
    assert_eq!(
        (
            day.messages,
            day.requests,
            day.delivered,
            day.bounced,
            day.deferred
        ),
        (2, 3, 1, 1, 1)
    );
    let labelled = store.daily_stats(a, start, end, Some("7")).await.unwrap();
    assert_eq!(labelled[0].requests, 2);
    let counts = store.status_counts().await.unwrap();
    assert!(counts.contains(&(RecipientStatus::Sending, 1)));
}

#[tokio::test]
async fn webhook_events_are_written_with_the_status_change_and_retried() {
    let (_dir, store, a, b) = open().await;
    // Before any webhook: no events at all.
    let early = message(a, &["early@example.net"], None);
    store.enqueue(early).await.unwrap();
    store
        .add_webhook(Webhook {
            id: "wh1".into(),
            account_id: a,
            url: "http://127.0.0.1:9/hook".into(),
            events: vec!["delivered".into(), "suppressed".into()],
            secret: "s".into(),
            created_at: now(),
        })
        .await
        .unwrap();
    assert_eq!(store.webhooks(a).await.unwrap()[0].events.len(), 2);
    assert!(store.webhooks(b).await.unwrap().is_empty());

    let mut m = message(a, &["ok@example.net", "later@example.net"], Some("7"));
    m.suppressed = vec!["gone@example.net".into()];
    let id = m.id;
    store.enqueue(m).await.unwrap();
    store
        .enqueue(message(b, &["ok@example.net"], None))
        .await
        .unwrap();
    store.claim_due("n", now(), now() + 60, 10).await.unwrap();
    store
        .record_outcomes(
            Some("n"),
            OutcomeBatch {
                updates: vec![
                    update(id, 0, RecipientStatus::Delivered),
                    // Deferred: not subscribed, so no event.
                    update(id, 1, RecipientStatus::Deferred),
                ],
                notices: Vec::new(),
            },
        )
        .await
        .unwrap();

    let due = store
        .claim_webhook_deliveries(now(), now() + 30, 10)
        .await
        .unwrap();
    let kinds: Vec<(&str, &str)> = due
        .iter()
        .map(|d| (d.event.kind.as_str(), d.event.recipient.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("suppressed", "gone@example.net"),
            ("delivered", "ok@example.net")
        ]
    );
    assert_eq!(due[1].event.message_id, id.to_string());
    assert_eq!(due[1].event.label.as_deref(), Some("7"));
    assert_eq!(due[1].url, "http://127.0.0.1:9/hook");
    // Claimed: not due again within the lease.
    assert!(store
        .claim_webhook_deliveries(now(), now() + 30, 10)
        .await
        .unwrap()
        .is_empty());
    store
        .record_webhook_results(vec![
            WebhookResult {
                webhook_id: "wh1".into(),
                event_id: due[0].event.id,
                retry_at: None,
                error: None,
            },
            WebhookResult {
                webhook_id: "wh1".into(),
                event_id: due[1].event.id,
                retry_at: Some(now() - 1),
                error: Some("HTTP 500".into()),
            },
        ])
        .await
        .unwrap();
    let again = store
        .claim_webhook_deliveries(now(), now() + 30, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].event.kind, "delivered");
    assert!(store.next_webhook_due().await.unwrap().is_some());
    assert!(!store.remove_webhook(b, "wh1").await.unwrap());
    assert!(store.remove_webhook(a, "wh1").await.unwrap());
    assert_eq!(store.next_webhook_due().await.unwrap(), None);
    // Old events nothing waits for are purged with the records.
    store.purge(now() + 10, now() + 10).await.unwrap();
}
