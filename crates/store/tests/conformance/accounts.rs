//! Accounts, their credentials, settings and labels, and removing them.

use crate::support::{message, record, update, Backend};
use posthorn_store::*;
use posthorn_types::RecipientStatus;

fn names(listed: Vec<ListedName>) -> Vec<String> {
    listed.into_iter().map(|n| n.name).collect()
}

fn domain(account_id: i64, name: &str) -> NewDomain {
    NewDomain {
        account_id,
        name: name.into(),
        dkim_selector: "ph1".into(),
        dkim_private_key: "-----BEGIN PRIVATE KEY-----".into(),
        dkim_public_key: "MIIB".into(),
    }
}

pub async fn credentials_settings_and_duplicates(b: &Backend) {
    let store = b.store();
    let acct = store.create_account("shop").await.unwrap();
    assert!(matches!(
        store.create_account("shop").await,
        Err(StoreError::Duplicate(_))
    ));
    assert_eq!(store.account("shop").await.unwrap(), acct);
    assert_eq!(store.account_by_id(acct.id).await.unwrap(), acct);
    store
        .add_sender(acct.id, "a@example.com", "h")
        .await
        .unwrap();
    assert_eq!(
        store.sender("A@Example.com").await.unwrap().account_id,
        acct.id
    );
    assert!(matches!(
        store.add_sender(acct.id, "A@example.com", "h").await,
        Err(StoreError::Duplicate(_))
    ));
    store
        .set_sender_password("a@example.com", "h2")
        .await
        .unwrap();
    assert_eq!(
        store.sender("a@example.com").await.unwrap().password_hash,
        "h2"
    );
    assert!(matches!(
        store.set_sender_password("b@example.com", "x").await,
        Err(StoreError::NotFound(_))
    ));
    store
        .set_account_setting(acct.id, "max_attachments", Some("3"))
        .await
        .unwrap();
    store
        .set_account_setting(acct.id, "max_attachments", Some("4"))
        .await
        .unwrap();
    assert_eq!(
        store.account_settings(acct.id).await.unwrap(),
        [("max_attachments".to_string(), "4".to_string())]
    );
    store
        .set_account_setting(acct.id, "max_attachments", None)
        .await
        .unwrap();
    assert!(store.account_settings(acct.id).await.unwrap().is_empty());
    store.add_label(acct.id, "7").await.unwrap();
    assert!(store.has_label(acct.id, "7").await.unwrap());
    assert!(!store.has_label(acct.id, "8").await.unwrap());
    assert!(matches!(
        store.add_label(acct.id, "7").await,
        Err(StoreError::Duplicate(_))
    ));
    let d = store
        .add_domain(domain(acct.id, "example.com"))
        .await
        .unwrap();
    assert_eq!(store.domain("example.com").await.unwrap(), d);
    assert_eq!(store.domains(acct.id).await.unwrap(), [d]);
    assert!(matches!(
        store.add_domain(domain(acct.id, "example.com")).await,
        Err(StoreError::Duplicate(_))
    ));
}

pub async fn remove_sender_api_user_and_label(b: &Backend) {
    let store = b.store();
    let a = store.create_account("shop").await.unwrap().id;
    let other = store.create_account("other").await.unwrap().id;
    store.add_sender(a, "b@example.com", "h").await.unwrap();
    store.add_sender(a, "a@example.com", "h").await.unwrap();
    store.add_api_user(a, "app", "k").await.unwrap();
    store.add_api_user(a, "cron", "k").await.unwrap();
    store.add_label(a, "7").await.unwrap();
    store.add_label(a, "8").await.unwrap();
    assert_eq!(
        names(store.senders(a).await.unwrap()),
        ["a@example.com", "b@example.com"]
    );
    assert_eq!(names(store.api_users(a).await.unwrap()), ["app", "cron"]);
    assert_eq!(names(store.labels(a).await.unwrap()), ["7", "8"]);

    // Not another account's to remove.
    assert!(!store.remove_sender(other, "a@example.com").await.unwrap());
    assert!(!store.remove_api_user(other, "app").await.unwrap());
    assert!(!store.remove_label(other, "7").await.unwrap());
    assert_eq!(store.sender("a@example.com").await.unwrap().account_id, a);

    // Sender addresses compare without case, as they are looked up.
    assert!(store.remove_sender(a, "A@Example.COM").await.unwrap());
    assert!(matches!(
        store.sender("a@example.com").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(!store.remove_sender(a, "a@example.com").await.unwrap());
    assert_eq!(names(store.senders(a).await.unwrap()), ["b@example.com"]);

    assert!(store.remove_api_user(a, "app").await.unwrap());
    assert!(matches!(
        store.api_user("app").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(!store.remove_api_user(a, "app").await.unwrap());
    assert_eq!(names(store.api_users(a).await.unwrap()), ["cron"]);

    assert!(store.remove_label(a, "7").await.unwrap());
    assert!(!store.has_label(a, "7").await.unwrap());
    assert!(!store.remove_label(a, "7").await.unwrap());
    assert_eq!(names(store.labels(a).await.unwrap()), ["8"]);

    // Gone, the names are free again.
    store.add_sender(other, "a@example.com", "h").await.unwrap();
    store.add_api_user(other, "app", "k").await.unwrap();
    store.add_label(a, "7").await.unwrap();
}

pub async fn remove_domain_is_refused_while_senders_at_it_exist(b: &Backend) {
    let store = b.store();
    let a = store.create_account("shop").await.unwrap().id;
    let other = store.create_account("other").await.unwrap().id;
    store.add_domain(domain(a, "example.com")).await.unwrap();
    store.add_domain(domain(a, "example.org")).await.unwrap();
    // A sender whose domain is written in another case still counts.
    store.add_sender(a, "a@Example.COM", "h").await.unwrap();
    // Not a sender at the domain: another domain ending the same way.
    store.add_sender(a, "b@myexample.com", "h").await.unwrap();

    assert!(matches!(
        store.remove_domain(a, "example.com").await,
        Err(StoreError::InUse(_))
    ));
    assert!(matches!(
        store.remove_domain(a, "EXAMPLE.com").await,
        Err(StoreError::InUse(_))
    ));
    assert!(store.domain("example.com").await.is_ok());
    // Another account has no such domain.
    assert!(!store.remove_domain(other, "example.org").await.unwrap());
    // A domain without senders goes.
    assert!(store.remove_domain(a, "example.org").await.unwrap());
    assert!(matches!(
        store.domain("example.org").await,
        Err(StoreError::NotFound(_))
    ));

    assert!(store.remove_sender(a, "a@example.com").await.unwrap());
    assert!(store.remove_domain(a, "Example.Com").await.unwrap());
    assert!(matches!(
        store.domain("example.com").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.domains(a).await.unwrap().is_empty());
    assert!(!store.remove_domain(a, "example.com").await.unwrap());
    // The other sender was not touched.
    assert!(store.sender("b@myexample.com").await.is_ok());
}

/// Adding to an account that is gone (removed meanwhile) is "not found"
/// on both backends, not a store failure.
pub async fn adding_to_a_removed_account_is_not_found(b: &Backend) {
    let store = b.store();
    let a = store.create_account("gone").await.unwrap().id;
    store.remove_account(a).await.unwrap();
    assert!(matches!(
        store.add_domain(domain(a, "example.com")).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn remove_account_is_refused_while_its_mail_is_pending(b: &Backend) {
    let store = b.store();
    let a = store.create_account("shop").await.unwrap().id;
    let m = message(&*store, a, &["x@example.net", "y@example.net"]);
    let id = m.id;
    store.enqueue(m).await.unwrap();
    let in_use = || async { matches!(store.remove_account(a).await, Err(StoreError::InUse(_))) };
    // Queued.
    assert!(in_use().await, "queued");
    // Sending.
    let t = store.now();
    assert_eq!(store.claim_due("n", t, t + 60, 10).await.unwrap().len(), 2);
    assert!(in_use().await, "sending");
    // One delivered, one deferred.
    let r = record(
        &*store,
        "n",
        vec![
            update(id, 0, RecipientStatus::Delivered, None),
            update(id, 1, RecipientStatus::Deferred, Some(t + 30)),
        ],
    )
    .await;
    assert_eq!(r.applied, 2);
    assert!(in_use().await, "deferred");
    assert_eq!(store.account_by_id(a).await.unwrap().name, "shop");
    assert_eq!(store.message(id).await.unwrap().recipients.len(), 2);

    // Final: now it may go.
    let due = store.claim_due("n", t + 31, t + 90, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    let r = record(
        &*store,
        "n",
        vec![update(id, 1, RecipientStatus::Bounced, None)],
    )
    .await;
    assert_eq!(r.completed, [id]);
    store.remove_account(a).await.unwrap();
    assert!(matches!(
        store.account_by_id(a).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Everything an account can have, `tag` making its names its own.
async fn furnish(store: &dyn Store, account: i64, tag: &str) {
    let t = store.now();
    store
        .add_domain(domain(account, &format!("{tag}.test")))
        .await
        .unwrap();
    store
        .add_sender(account, &format!("a@{tag}.test"), "h")
        .await
        .unwrap();
    store
        .add_api_user(account, &format!("{tag}-app"), "k")
        .await
        .unwrap();
    store.add_label(account, "7").await.unwrap();
    store
        .set_account_setting(account, "max_attachments", Some("3"))
        .await
        .unwrap();
    store
        .add_suppression(account, "gone@example.net", "by operator")
        .await
        .unwrap();
    store
        .add_api_key(ApiKey {
            id: format!("{tag}-key"),
            account_id: Some(account),
            secret_hash: "$argon2id$x".into(),
            description: "ci".into(),
            created_at: t,
        })
        .await
        .unwrap();
    store
        .add_webhook(Webhook {
            id: format!("{tag}-hook"),
            account_id: account,
            url: "http://127.0.0.1:9/hook".into(),
            events: vec!["delivered".into()],
            secret: "s".into(),
            created_at: t,
        })
        .await
        .unwrap();
}

pub async fn remove_account_takes_all_of_its_rows_and_nothing_else(b: &Backend) {
    let store = b.store();
    let a = store.create_account("shop").await.unwrap().id;
    let keep = store.create_account("other").await.unwrap().id;
    furnish(&*store, a, "shop").await;
    furnish(&*store, keep, "other").await;

    // A finished message of the account (with a webhook event waiting to
    // be sent, and its content), and a queued one of the other.
    let mut m = message(&*store, a, &["x@example.net"]);
    m.label = Some("7".into());
    let gone = m.id;
    store.enqueue(m).await.unwrap();
    let t = store.now();
    assert_eq!(store.claim_due("n", t, t + 60, 10).await.unwrap().len(), 1);
    let r = record(
        &*store,
        "n",
        vec![update(gone, 0, RecipientStatus::Delivered, None)],
    )
    .await;
    assert_eq!(r.completed, [gone]);
    let kept = message(&*store, keep, &["x@example.net"]);
    let kept_id = kept.id;
    store.enqueue(kept).await.unwrap();

    store.remove_account(a).await.unwrap();

    // The account and every row of it are gone.
    assert!(matches!(
        store.account_by_id(a).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.account("shop").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.domains(a).await.unwrap().is_empty());
    assert!(matches!(
        store.domain("shop.test").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.sender("a@shop.test").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.api_user("shop-app").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.senders(a).await.unwrap().is_empty());
    assert!(store.api_users(a).await.unwrap().is_empty());
    assert!(store.labels(a).await.unwrap().is_empty());
    assert!(!store.has_label(a, "7").await.unwrap());
    assert!(store.account_settings(a).await.unwrap().is_empty());
    assert!(store.suppressions(a).await.unwrap().is_empty());
    assert!(!store.is_suppressed(a, "gone@example.net").await.unwrap());
    assert!(store.api_keys(Some(a)).await.unwrap().is_empty());
    assert!(matches!(
        store.api_key("shop-key").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.webhooks(a).await.unwrap().is_empty());
    assert!(store.message(gone).await.is_err());
    assert!(store.message_content(gone).await.is_err());
    let listed = store
        .messages(&MessageFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect::<Vec<_>>();
    assert_eq!(listed, [kept_id]);
    // Its event's delivery went with its webhook.
    assert_eq!(store.next_webhook_due().await.unwrap(), None);
    assert!(store
        .claim_webhook_deliveries(t, t + 30, 10)
        .await
        .unwrap()
        .is_empty());
    // Its names are free again.
    let again = store.create_account("shop").await.unwrap().id;
    furnish(&*store, again, "shop").await;

    // The other account has all it had.
    assert_eq!(store.account_by_id(keep).await.unwrap().name, "other");
    assert_eq!(store.domain("other.test").await.unwrap().account_id, keep);
    assert_eq!(store.sender("a@other.test").await.unwrap().account_id, keep);
    assert_eq!(store.api_user("other-app").await.unwrap().account_id, keep);
    assert!(store.has_label(keep, "7").await.unwrap());
    assert_eq!(store.account_settings(keep).await.unwrap().len(), 1);
    assert!(store.is_suppressed(keep, "gone@example.net").await.unwrap());
    assert_eq!(
        store.api_key("other-key").await.unwrap().account_id,
        Some(keep)
    );
    assert_eq!(store.webhooks(keep).await.unwrap()[0].id, "other-hook");
    let kept = store.message(kept_id).await.unwrap();
    assert_eq!(kept.recipients[0].status, RecipientStatus::Queued);
    assert_eq!(
        store.message_content(kept_id).await.unwrap(),
        crate::support::CONTENT
    );
}
