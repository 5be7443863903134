//! The console's sign-in sessions (issue 21): kept by token hash, read by
//! any node, moved on use, gone at sign-out; expired ones are swept when a
//! new one is added. Also the console's newest-first message listing.

use crate::support::{message, Backend};
use posthorn_store::*;

pub async fn console_sessions_are_kept_moved_and_removed(b: &Backend) {
    let store = b.store();
    let a = store.create_account("shop").await.unwrap().id;
    let t = store.now();
    let s =
        |hash: &str, account_id: Option<i64>, created_at: i64, expires_at: i64| ConsoleSession {
            token_hash: hash.into(),
            api_key_id: account_id.map(|_| "k1".to_string()),
            account_id,
            created_at,
            expires_at,
        };
    let old = s("old", None, t - 100, t - 50);
    // Added "back then", when it was still valid.
    store.add_console_session(&old).await.unwrap();
    assert_eq!(store.console_session("old").await.unwrap(), old);
    let mine = s("h1", Some(a), t, t + 3600);
    store.add_console_session(&mine).await.unwrap();
    assert_eq!(store.console_session("h1").await.unwrap(), mine);
    // Adding swept the one that had run out.
    assert!(matches!(
        store.console_session("old").await,
        Err(StoreError::NotFound(_))
    ));
    store.touch_console_session("h1", t + 7200).await.unwrap();
    assert_eq!(
        store.console_session("h1").await.unwrap().expires_at,
        t + 7200
    );
    assert!(store.remove_console_session("h1").await.unwrap());
    assert!(!store.remove_console_session("h1").await.unwrap());
    assert!(matches!(
        store.console_session("h1").await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn messages_list_newest_first_when_asked(b: &Backend) {
    let store = b.store();
    let a = store.create_account("shop").await.unwrap().id;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let m = message(&*store, a, &["x@example.net"]);
        ids.push(m.id);
        store.enqueue(m).await.unwrap();
    }
    let list = |f: MessageFilter| {
        let store = store.clone();
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
    let newest = MessageFilter {
        account_id: Some(a),
        newest_first: true,
        limit: Some(2),
        ..Default::default()
    };
    assert_eq!(list(newest.clone()).await, [ids[2], ids[1]]);
    let next = MessageFilter {
        before: Some(ids[1]),
        ..newest
    };
    assert_eq!(list(next).await, [ids[0]]);
}
