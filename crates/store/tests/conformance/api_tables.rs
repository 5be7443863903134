//! The HTTP API's tables: API keys, listing filters, daily statistics,
//! and webhook events written in the commit of the status change they
//! report.

use crate::support::{message, record, update, Backend};
use posthorn_store::*;
use posthorn_types::{MessageId, RecipientStatus};

/// Two accounts: (shop, other).
async fn accounts(store: &dyn Store) -> (i64, i64) {
    let a = store.create_account("shop").await.unwrap().id;
    let b = store.create_account("other").await.unwrap().id;
    (a, b)
}

pub async fn api_keys_are_per_account_or_admin(b: &Backend) {
    let store = b.store();
    let (a, _) = accounts(&*store).await;
    let t = store.now();
    let key = |id: &str, account_id| ApiKey {
        id: id.into(),
        account_id,
        secret_hash: "$argon2id$x".into(),
        description: "ci".into(),
        created_at: t,
    };
    store.add_api_key(key("k1", Some(a))).await.unwrap();
    store.add_api_key(key("k2", None)).await.unwrap();
    assert!(matches!(
        store.add_api_key(key("k1", None)).await,
        Err(StoreError::Duplicate(_))
    ));
    assert_eq!(store.api_key("k1").await.unwrap(), key("k1", Some(a)));
    assert_eq!(store.api_keys(Some(a)).await.unwrap().len(), 1);
    assert_eq!(store.api_keys(None).await.unwrap()[0].id, "k2");
    assert!(store.remove_api_key("k1").await.unwrap());
    assert!(!store.remove_api_key("k1").await.unwrap());
    assert!(matches!(
        store.api_key("k1").await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn listing_filters_page_and_statistics_count(b: &Backend) {
    let store = b.store();
    let (a, other) = accounts(&*store).await;
    let start = MessageId::generate();
    let mut m1 = message(&*store, a, &["x@example.net", "y@example.net"]);
    m1.label = Some("7".into());
    m1.attachments.push(AttachmentRecord {
        filename: Some("invoice.pdf".into()),
        content_type: "application/pdf".into(),
        size: 3,
    });
    let m2 = message(&*store, a, &["Y@example.net"]);
    let m3 = message(&*store, other, &["y@example.net"]);
    let (i1, i2) = (m1.id, m2.id);
    for m in [m1, m2, m3] {
        store.enqueue(m).await.unwrap();
    }
    let end = MessageId::generate();
    let t = store.now();
    let claimed = store.claim_due("n", t, t + 60, 10).await.unwrap();
    assert_eq!(claimed.len(), 4);
    record(
        &*store,
        "n",
        vec![
            update(i1, 0, RecipientStatus::Delivered, None),
            update(i1, 1, RecipientStatus::Bounced, None),
            update(i2, 0, RecipientStatus::Deferred, Some(t + 60)),
        ],
    )
    .await;

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
    // statuses.
    let listed = store.messages(&mine).await.unwrap();
    let parts = |m: &MessageRecord| {
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
    assert_eq!(listed[1].recipients[0].next_try, Some(t + 60));
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

pub async fn webhook_events_are_written_with_the_status_change_and_retried(b: &Backend) {
    let store = b.store();
    let (a, other) = accounts(&*store).await;
    // Before any webhook: no events at all.
    let early = message(&*store, a, &["early@example.net"]);
    store.enqueue(early).await.unwrap();
    let t = store.now();
    store
        .add_webhook(Webhook {
            id: "wh1".into(),
            account_id: a,
            url: "http://127.0.0.1:9/hook".into(),
            events: vec!["delivered".into(), "suppressed".into()],
            secret: "s".into(),
            created_at: t,
        })
        .await
        .unwrap();
    assert_eq!(store.webhooks(a).await.unwrap()[0].events.len(), 2);
    assert!(store.webhooks(other).await.unwrap().is_empty());

    let mut m = message(&*store, a, &["ok@example.net", "later@example.net"]);
    m.label = Some("7".into());
    m.suppressed = vec!["gone@example.net".into()];
    let id = m.id;
    store.enqueue(m).await.unwrap();
    store
        .enqueue(message(&*store, other, &["ok@example.net"]))
        .await
        .unwrap();
    let t = store.now();
    store.claim_due("n", t, t + 60, 10).await.unwrap();
    record(
        &*store,
        "n",
        vec![
            update(id, 0, RecipientStatus::Delivered, None),
            // Deferred: not subscribed, so no event.
            update(id, 1, RecipientStatus::Deferred, Some(t + 60)),
        ],
    )
    .await;
    // The record's deliveries are due from its commit, which may fall in
    // the second after `t` (whole seconds): claim from a clock read after.
    let t = store.now();

    let due = store.claim_webhook_deliveries(t, t + 30, 10).await.unwrap();
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
    assert_eq!(due[1].event.account_id, a);
    assert_eq!(due[1].url, "http://127.0.0.1:9/hook");
    assert_eq!(due[1].webhook_id, "wh1");
    assert_eq!(due[1].attempts, 0);
    // Claimed: not due again within the lease.
    assert!(store
        .claim_webhook_deliveries(t, t + 30, 10)
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
                status: Some(204),
            },
            WebhookResult {
                webhook_id: "wh1".into(),
                event_id: due[1].event.id,
                retry_at: Some(t - 1),
                error: Some("HTTP 500".into()),
                status: Some(500),
            },
        ])
        .await
        .unwrap();
    let again = store.claim_webhook_deliveries(t, t + 30, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].event.kind, "delivered");
    assert!(store.next_webhook_due().await.unwrap().is_some());
    assert!(!store.remove_webhook(other, "wh1").await.unwrap());
    assert!(store.remove_webhook(a, "wh1").await.unwrap());
    assert_eq!(store.next_webhook_due().await.unwrap(), None);
    // Old events nothing waits for are purged with the records.
    store.purge(t + 10, t + 10).await.unwrap();
}

pub async fn a_test_event_goes_to_one_webhook_and_its_deliveries_are_listed(b: &Backend) {
    let store = b.store();
    let (a, other) = accounts(&*store).await;
    let t = store.now();
    for (id, kind) in [("wh1", "delivered"), ("wh2", "bounced")] {
        store
            .add_webhook(Webhook {
                id: id.into(),
                account_id: a,
                url: format!("http://127.0.0.1:9/{id}"),
                events: vec![kind.into()],
                secret: "s".into(),
                created_at: t,
            })
            .await
            .unwrap();
    }
    let test = TestEvent {
        message_id: String::new(),
        recipient: "test@example.com".into(),
        reply: Some("a test".into()),
    };
    // Only the account's own webhook.
    for (account, hook) in [(other, "wh1"), (a, "nope")] {
        assert!(matches!(
            store.add_test_webhook_event(account, hook, &test).await,
            Err(StoreError::NotFound(_))
        ));
    }
    assert!(store
        .claim_webhook_deliveries(t, t + 30, 10)
        .await
        .unwrap()
        .is_empty());
    let first = store.add_test_webhook_event(a, "wh1", &test).await.unwrap();
    assert!(store.next_webhook_due().await.unwrap().is_some());
    let listed = store.webhook_deliveries(a, "wh1", 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    let d = &listed[0];
    assert_eq!(
        (
            d.event_id,
            d.kind.as_str(),
            d.recipient.as_str(),
            d.attempts
        ),
        (first, TEST_EVENT_KIND, "test@example.com", 0)
    );
    assert_eq!((d.last_status, d.done_at), (None, None));
    assert!(d.next_try.is_some() && d.created_at >= t);
    assert!(store
        .webhook_deliveries(a, "wh2", 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .webhook_deliveries(other, "wh1", 10)
        .await
        .unwrap()
        .is_empty());

    // A status change afterwards fans out its own event only: the test
    // event stays wh1's alone.
    let m = message(&*store, a, &["ok@example.net"]);
    let mid = m.id;
    store.enqueue(m).await.unwrap();
    let now = store.now();
    store.claim_due("n", now, now + 60, 10).await.unwrap();
    record(
        &*store,
        "n",
        vec![update(mid, 0, RecipientStatus::Delivered, None)],
    )
    .await;
    assert!(store
        .webhook_deliveries(a, "wh2", 10)
        .await
        .unwrap()
        .is_empty());

    let now = store.now();
    let due = store
        .claim_webhook_deliveries(now, now + 30, 10)
        .await
        .unwrap();
    let kinds: Vec<(&str, &str)> = due
        .iter()
        .map(|d| (d.webhook_id.as_str(), d.event.kind.as_str()))
        .collect();
    assert_eq!(kinds, [("wh1", TEST_EVENT_KIND), ("wh1", "delivered")]);
    assert_eq!(due[0].event.id, first);
    assert_eq!(due[0].event.reply.as_deref(), Some("a test"));
    // The test POST failed with a status, the other went.
    store
        .record_webhook_results(vec![
            WebhookResult {
                webhook_id: "wh1".into(),
                event_id: first,
                retry_at: Some(now - 1),
                error: Some("HTTP 500".into()),
                status: Some(500),
            },
            WebhookResult {
                webhook_id: "wh1".into(),
                event_id: due[1].event.id,
                retry_at: None,
                error: None,
                status: Some(204),
            },
        ])
        .await
        .unwrap();
    let listed = store.webhook_deliveries(a, "wh1", 10).await.unwrap();
    assert_eq!(listed.len(), 2);
    // Newest event first.
    assert_eq!(listed[0].kind, "delivered");
    assert_eq!(listed[0].message_id, mid.to_string());
    assert_eq!(
        (
            listed[0].attempts,
            listed[0].last_status,
            listed[0].next_try
        ),
        (1, Some(204), None)
    );
    assert!(listed[0].done_at.is_some() && listed[0].last_error.is_none());
    let d = &listed[1];
    assert_eq!(
        (d.attempts, d.last_status, d.last_error.as_deref()),
        (1, Some(500), Some("HTTP 500"))
    );
    assert_eq!((d.done_at, d.next_try), (None, Some(now - 1)));

    // Tried again: accepted this time.
    let again = store
        .claim_webhook_deliveries(now, now + 30, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].event.id, again[0].attempts), (first, 1));
    store
        .record_webhook_results(vec![WebhookResult {
            webhook_id: "wh1".into(),
            event_id: first,
            retry_at: None,
            error: None,
            status: Some(200),
        }])
        .await
        .unwrap();
    let second = store.add_test_webhook_event(a, "wh1", &test).await.unwrap();
    assert!(second > first);
    let listed = store.webhook_deliveries(a, "wh1", 2).await.unwrap();
    let ids: Vec<i64> = listed.iter().map(|d| d.event_id).collect();
    assert_eq!(ids, [second, due[1].event.id]);
    let done = store.webhook_deliveries(a, "wh1", 10).await.unwrap();
    let d = done.iter().find(|d| d.event_id == first).unwrap();
    assert_eq!(
        (
            d.attempts,
            d.last_status,
            d.last_error.as_deref(),
            d.next_try
        ),
        (2, Some(200), None, None)
    );
    assert!(d.done_at.is_some());
    // Removing the webhook takes its deliveries.
    assert!(store.remove_webhook(a, "wh1").await.unwrap());
    assert!(store
        .webhook_deliveries(a, "wh1", 10)
        .await
        .unwrap()
        .is_empty());
}
