//! A fresh store, and the store's clock.

use crate::support::Backend;
use posthorn_store::*;
use std::time::{SystemTime, UNIX_EPOCH};

pub async fn a_fresh_store_is_empty(b: &Backend) {
    let store = b.store();
    assert!(store.accounts().await.unwrap().is_empty());
    assert!(store
        .messages(&MessageFilter::default())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.next_due().await.unwrap(), None);
    assert_eq!(store.next_webhook_due().await.unwrap(), None);
    assert!(store.api_keys(None).await.unwrap().is_empty());
    assert!(store.auth_lockouts(store.now()).await.unwrap().is_empty());
    // A store that has not failed a write for lack of space is not out of it.
    assert_eq!(store.out_of_space().await, None);
    assert!(matches!(
        store.account("shop").await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn now_is_the_system_clock_within_seconds(b: &Backend) {
    let store = b.store();
    // The one place the suite reads the system clock: a shared database's
    // clock may differ from this machine's, but not by more than this.
    let system = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let now = store.now();
    assert!((now - system).abs() <= 5, "store {now}, system {system}");
    // It does not run backwards.
    assert!(store.now() >= now);
}
