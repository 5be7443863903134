//! One-click unsubscribe and tracking (issue 22): `Store::record_unsubscribe`
//! suppresses the address with reason `unsubscribed` and, in the same
//! commit, makes one `unsubscribed` event per subscribed webhook, with
//! the message's label; a repeat changes nothing.

use crate::support::{message, Backend};
use posthorn_store::*;

pub async fn an_unsubscribe_suppresses_once_and_makes_one_event(b: &Backend) {
    let store = b.store();
    let a = store.create_account("shop").await.unwrap().id;
    let other = store.create_account("other").await.unwrap().id;
    let t = store.now();
    store.add_label(a, "news").await.unwrap();
    for (id, account_id, kind) in [
        ("wh1", a, UNSUBSCRIBED),
        ("wh2", a, "delivered"),
        ("wh3", other, UNSUBSCRIBED),
    ] {
        store
            .add_webhook(Webhook {
                id: id.into(),
                account_id,
                url: format!("http://127.0.0.1:9/{id}"),
                events: vec![kind.into()],
                secret: "s".into(),
                created_at: t,
            })
            .await
            .unwrap();
    }
    let mut m = message(&*store, a, &["Ann@example.net"]);
    m.label = Some("news".into());
    let id = m.id.to_string();
    store.enqueue(m).await.unwrap();

    assert!(store
        .record_unsubscribe(a, &id, "Ann@example.net")
        .await
        .unwrap());
    // Case-insensitive, as every suppression: already done.
    assert!(!store
        .record_unsubscribe(a, &id, "ann@EXAMPLE.net")
        .await
        .unwrap());
    assert!(store.is_suppressed(a, "ann@example.net").await.unwrap());
    assert!(!store.is_suppressed(other, "ann@example.net").await.unwrap());
    let list = store.suppressions(a).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].reason, UNSUBSCRIBED);
    assert_eq!(list[0].message_id.as_deref(), Some(id.as_str()));

    let due = store
        .claim_webhook_deliveries(store.now() + 1, store.now() + 30, 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(due[0].webhook_id, "wh1");
    let e = &due[0].event;
    assert_eq!(
        (
            e.kind.as_str(),
            e.message_id.as_str(),
            e.recipient.as_str(),
            e.label.as_deref()
        ),
        (UNSUBSCRIBED, id.as_str(), "Ann@example.net", Some("news"))
    );

    // A bounce's suppression becomes an unsubscribe (and an event); an
    // unknown account changes nothing.
    store
        .add_suppression(a, "bob@example.net", "bounced")
        .await
        .unwrap();
    assert!(store
        .record_unsubscribe(a, &id, "bob@example.net")
        .await
        .unwrap());
    assert!(!store
        .record_unsubscribe(a + other + 100, &id, "x@example.net")
        .await
        .unwrap());
    let reasons: Vec<(String, String)> = store
        .suppressions(a)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.address.to_ascii_lowercase(), s.reason))
        .collect();
    assert!(reasons.contains(&("bob@example.net".into(), UNSUBSCRIBED.into())));
}

/// Opens and clicks (issue 22, tracking): recorded with their events (a
/// click's with its URL), summed per recipient and kind, counted per day,
/// capped per recipient, gone with the account.
pub async fn opens_and_clicks_are_recorded_summed_and_capped(b: &Backend) {
    let store = b.store();
    let a = store.create_account("shop").await.unwrap().id;
    let t = store.now();
    store
        .add_webhook(Webhook {
            id: "wh1".into(),
            account_id: a,
            url: "http://127.0.0.1:9/h".into(),
            events: vec![CLICKED.into()],
            secret: "s".into(),
            created_at: t,
        })
        .await
        .unwrap();
    let m = message(&*store, a, &["ann@example.net", "bob@example.net"]);
    let id = m.id;
    store.enqueue(m).await.unwrap();
    let e = |kind: &str, rcpt: &str, url: Option<&str>| NewEngagement {
        account_id: a,
        message_id: id.to_string(),
        recipient: rcpt.into(),
        kind: kind.into(),
        user_agent: Some("UA".into()),
        ip: Some("192.0.2.1".into()),
        url: url.map(str::to_string),
    };
    assert!(store
        .record_engagement(&e(OPENED, "ann@example.net", None))
        .await
        .unwrap());
    assert!(store
        .record_engagement(&e(OPENED, "Ann@example.net", None))
        .await
        .unwrap());
    assert!(store
        .record_engagement(&e(CLICKED, "ann@example.net", Some("https://x.example/")))
        .await
        .unwrap());
    let summary = store.engagements(id).await.unwrap();
    assert_eq!(summary.len(), 2, "{summary:?}");
    let opened = summary.iter().find(|s| s.kind == OPENED).unwrap();
    assert_eq!(opened.recipient.to_ascii_lowercase(), "ann@example.net");
    assert_eq!(opened.count, 2);
    assert!(opened.first_at <= opened.last_at && opened.first_at >= t);
    // Only the click had a webhook; its event carries the URL.
    let due = store
        .claim_webhook_deliveries(store.now() + 1, store.now() + 30, 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(due[0].event.kind, CLICKED);
    assert_eq!(due[0].event.url.as_deref(), Some("https://x.example/"));
    assert_eq!(due[0].event.recipient, "ann@example.net");
    // Per day: one recipient opened, one clicked.
    let days = store
        .daily_engagements(
            a,
            posthorn_types::MessageId::first_at(0),
            posthorn_types::MessageId::first_at(u64::MAX >> 17),
            None,
        )
        .await
        .unwrap();
    assert_eq!(days.len(), 1, "{days:?}");
    assert_eq!((days[0].opened, days[0].clicked), (1, 1));
    // Capped per recipient.
    for _ in 0..MAX_PER_RECIPIENT {
        store
            .record_engagement(&e(OPENED, "bob@example.net", None))
            .await
            .unwrap();
    }
    assert!(!store
        .record_engagement(&e(OPENED, "bob@example.net", None))
        .await
        .unwrap());
    let bob = store.engagements(id).await.unwrap();
    let bob = bob
        .iter()
        .find(|s| s.recipient == "bob@example.net")
        .unwrap();
    assert_eq!(bob.count, MAX_PER_RECIPIENT as u64);
}
