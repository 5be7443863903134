//! The queue: enqueues, claims under leases, outcomes with their
//! suppressions and bounce notices, the suppression list, the purge.

use crate::support::{message, update, Backend, CONTENT};
use posthorn_store::*;
use posthorn_types::{MessageId, RecipientStatus};

pub async fn concurrent_enqueues_are_all_stored_and_survive_reopen(b: &Backend) {
    let store = b.store();
    let acct = store.create_account("shop").await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = store.clone();
        let rcpt = format!("r{i}@example.net");
        tasks.push(tokio::spawn(async move {
            let mut m = message(&*store, acct.id, &[&rcpt, "x@example.org"]);
            m.label = Some("7".into());
            m.attachments.push(AttachmentRecord {
                filename: Some("a.pdf".into()),
                content_type: "application/pdf".into(),
                size: 3,
            });
            let id = m.id;
            store.enqueue(m).await.map(|_| id)
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap().unwrap());
    }
    drop(store);

    let store = b.reopen().await;
    let all = store.messages(&MessageFilter::default()).await.unwrap();
    assert_eq!(all.len(), 50);
    let t = store.now();
    assert_eq!(
        store.count_messages_since(acct.id, t - 60).await.unwrap(),
        50
    );
    assert_eq!(
        store.count_messages_since(acct.id, t + 60).await.unwrap(),
        0
    );
    let one = store.message(ids[3]).await.unwrap();
    assert_eq!(one.recipients.len(), 2);
    assert_eq!(one.recipients[0].address, "r3@example.net");
    assert_eq!(one.recipients[0].status, RecipientStatus::Queued);
    assert_eq!(one.label.as_deref(), Some("7"));
    assert_eq!(one.account, "shop");
    assert_eq!(one.account_id, acct.id);
    assert_eq!(one.subject, "x");
    assert_eq!(one.size, CONTENT.len() as u64);
    assert_eq!(one.attachments[0].filename.as_deref(), Some("a.pdf"));
    assert_eq!(one.completed_at, None);
    let delivered = store
        .messages(&MessageFilter {
            status: Some(RecipientStatus::Delivered),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(delivered.is_empty());
    assert_eq!(store.message_content(ids[0]).await.unwrap(), CONTENT);
    assert!(matches!(
        store.message(MessageId::generate()).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn claims_leases_outcomes_suppression_and_purge(b: &Backend) {
    let store = b.store();
    let acct = store.create_account("shop").await.unwrap();
    let mut m = message(&*store, acct.id, &["a@x.test", "b@y.test"]);
    m.suppressed = vec!["gone@x.test".into()];
    let id = m.id;
    store.enqueue(m).await.unwrap();
    let t = store.now();
    assert_eq!(
        store.next_due().await.unwrap(),
        Some(t.min(store.message(id).await.unwrap().received_at))
    );

    // Two recipients are due; the suppressed one is final already.
    let due = store.claim_due("n1", t, t + 60, 10).await.unwrap();
    assert_eq!(due.len(), 2);
    assert_eq!(due[0].address, "a@x.test");
    assert_eq!(due[0].header_from, "a@example.com");
    assert_eq!(due[0].account_id, acct.id);
    assert_eq!((due[0].idx, due[1].idx), (0, 1));
    // Leased: not claimed again, by this node or another, until the lease ends.
    assert!(store
        .claim_due("n2", t, t + 60, 10)
        .await
        .unwrap()
        .is_empty());
    let again = store.claim_due("n2", t + 61, t + 120, 10).await.unwrap();
    assert_eq!(again.len(), 2, "an expired lease is picked up again");
    // n1's late outcome no longer applies; n2's does.
    let r = store
        .record_outcomes(
            Some("n1"),
            OutcomeBatch {
                updates: vec![update(id, 0, RecipientStatus::Delivered, None)],
                notices: vec![],
            },
        )
        .await
        .unwrap();
    assert_eq!(r.applied, 0);
    let mut bounce = update(id, 1, RecipientStatus::Bounced, None);
    bounce.last_reply = Some("550 5.1.1 user unknown".into());
    bounce.suppress = Some("550 5.1.1 user unknown".into());
    let mut notice = message(&*store, acct.id, &["a@example.com"]);
    notice.mail_from = String::new();
    notice.is_dsn = true;
    let notice_id = notice.id;
    let r = store
        .record_outcomes(
            Some("n2"),
            OutcomeBatch {
                updates: vec![update(id, 0, RecipientStatus::Delivered, None), bounce],
                notices: vec![notice],
            },
        )
        .await
        .unwrap();
    assert_eq!(r.applied, 2);
    assert_eq!(r.completed, vec![id]);
    let rec = store.message(id).await.unwrap();
    assert_eq!(
        rec.recipients.iter().map(|r| r.status).collect::<Vec<_>>(),
        [
            RecipientStatus::Delivered,
            RecipientStatus::Bounced,
            RecipientStatus::Suppressed
        ]
    );
    assert_eq!(
        rec.recipients[1].last_reply.as_deref(),
        Some("550 5.1.1 user unknown")
    );
    assert!(rec.completed_at.is_some());
    assert!(store.is_suppressed(acct.id, "B@y.test").await.unwrap());
    assert!(store.message(notice_id).await.unwrap().is_dsn);
    // An operator's update applies to what is not final only.
    let r = store
        .record_outcomes(
            None,
            OutcomeBatch {
                updates: vec![update(id, 0, RecipientStatus::Bounced, None)],
                notices: vec![],
            },
        )
        .await
        .unwrap();
    assert_eq!(r.applied, 0);

    // The notice is due; a crash leaves it leased; release gives it back.
    let due = store.claim_due("n1", t, t + 600, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert!(due[0].is_dsn);
    assert_eq!(store.release_leases("n1", t).await.unwrap(), 1);
    assert_eq!(
        store.message(notice_id).await.unwrap().recipients[0].status,
        RecipientStatus::Queued
    );
    assert_eq!(store.retry_now(notice_id, t).await.unwrap(), 1);

    // Suppression list by hand.
    store
        .add_suppression(acct.id, "c@z.test", "added by operator")
        .await
        .unwrap();
    assert_eq!(store.suppressions(acct.id).await.unwrap().len(), 2);
    assert!(store.remove_suppression(acct.id, "c@z.test").await.unwrap());
    assert!(!store.remove_suppression(acct.id, "c@z.test").await.unwrap());

    // Bodies go first, then records; the pending notice stays.
    assert_eq!(store.purge(t + 10, 0).await.unwrap(), (1, 0));
    assert!(matches!(
        store.message_content(id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.message(id).await.unwrap().content_purged);
    assert_eq!(store.purge(t + 10, t + 10).await.unwrap(), (0, 1));
    assert!(store.message(id).await.is_err());
    assert!(store.message_content(notice_id).await.is_ok());
}

pub async fn claims_leave_out_the_domains_asked(b: &Backend) {
    let store = b.store();
    let acct = store.create_account("shop").await.unwrap();
    // A backlog at one domain, then one message elsewhere; a domain that
    // only ends like a skipped one is not skipped.
    for i in 0..5 {
        let rcpt = format!("r{i}@Busy.test");
        store
            .enqueue(message(&*store, acct.id, &[&rcpt]))
            .await
            .unwrap();
    }
    let other = message(&*store, acct.id, &["a@other.test", "b@notbusy.test"]);
    store.enqueue(other).await.unwrap();
    let t = store.now();
    let skip = vec!["busy.test".to_string()];
    let due = store
        .claim_due_except("n1", t, t + 60, 10, &skip)
        .await
        .unwrap();
    let got: Vec<&str> = due.iter().map(|d| d.address.as_str()).collect();
    assert_eq!(got, ["a@other.test", "b@notbusy.test"]);
    // Without the list the backlog is claimed, oldest first.
    let due = store.claim_due("n1", t, t + 60, 2).await.unwrap();
    let got: Vec<&str> = due.iter().map(|d| d.address.as_str()).collect();
    assert_eq!(got, ["r0@Busy.test", "r1@Busy.test"]);
    // Expired leases are left out alike.
    let due = store
        .claim_due_except("n2", t + 61, t + 120, 10, &skip)
        .await
        .unwrap();
    let got: Vec<&str> = due.iter().map(|d| d.address.as_str()).collect();
    assert_eq!(got, ["a@other.test", "b@notbusy.test"]);
}
