//! Failed logins and AUTH lockouts, with explicit times read from the
//! store's clock.

use crate::support::Backend;
use posthorn_store::LockoutPolicy;
use std::net::IpAddr;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub async fn distinct_failures_lock_one_user_from_one_address(b: &Backend) {
    let store = b.store();
    let t0 = store.now();
    let p = LockoutPolicy::default();
    let a = ip("192.0.2.1");
    // The same wrong secret again (PLAIN then LOGIN, a retry) counts once.
    for _ in 0..10 {
        assert_eq!(
            store
                .record_auth_failure(a, "bob@x.test", "t0", t0, &p)
                .await
                .unwrap(),
            None
        );
    }
    for i in 1..4 {
        let tag = format!("t{i}");
        assert!(store
            .record_auth_failure(a, "Bob@X.test", &tag, t0 + i, &p)
            .await
            .unwrap()
            .is_none());
    }
    assert_eq!(
        store.auth_lockout(a, "bob@x.test", t0 + 4).await.unwrap(),
        None
    );
    let started = store
        .record_auth_failure(a, "bob@x.test", "t4", t0 + 4, &p)
        .await
        .unwrap()
        .expect("the fifth distinct failure locks");
    assert_eq!(started.user.as_deref(), Some("bob@x.test"));
    assert_eq!(started.ip, a);
    assert_eq!(started.locked_at, t0 + 4);
    assert_eq!(started.locked_until, t0 + 4 + 300);
    assert_eq!(started.failures, 5);
    // Locked for bob from this address only, names without case.
    let t = t0 + 5;
    assert_eq!(
        store.auth_lockout(a, "BOB@x.test", t).await.unwrap(),
        Some(started.clone())
    );
    assert_eq!(
        store.auth_lockout(a, "carol@x.test", t).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .auth_lockout(ip("192.0.2.2"), "bob@x.test", t)
            .await
            .unwrap(),
        None
    );
    // The IPv4-mapped form of the address is the same address.
    assert!(store
        .auth_lockout(ip("::ffff:192.0.2.1"), "bob@x.test", t)
        .await
        .unwrap()
        .is_some());
    assert_eq!(store.auth_lockouts(t).await.unwrap(), vec![started.clone()]);
    // It ends by itself, and a single failure after it does not start
    // another one: counting starts again after a lockout.
    let after = started.locked_until;
    assert_eq!(
        store.auth_lockout(a, "bob@x.test", after).await.unwrap(),
        None
    );
    assert!(store.auth_lockouts(after).await.unwrap().is_empty());
    assert!(store
        .record_auth_failure(a, "bob@x.test", "t5", after, &p)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .auth_lockout(a, "bob@x.test", after)
        .await
        .unwrap()
        .is_none());
}

pub async fn failures_out_of_the_window_do_not_count(b: &Backend) {
    let store = b.store();
    let t0 = store.now();
    let p = LockoutPolicy::default();
    let a = ip("2001:db8::1");
    for i in 0..4 {
        store
            .record_auth_failure(a, "bob", &format!("old{i}"), t0, &p)
            .await
            .unwrap();
    }
    // Ten minutes later those four are gone.
    let later = t0 + 600;
    assert!(store
        .record_auth_failure(a, "bob", "new", later, &p)
        .await
        .unwrap()
        .is_none());
    assert!(store.auth_lockout(a, "bob", later).await.unwrap().is_none());
}

pub async fn spraying_many_users_locks_the_whole_address(b: &Backend) {
    let store = b.store();
    let t0 = store.now();
    let p = LockoutPolicy::default();
    let a = ip("198.51.100.7");
    let mut started = None;
    for i in 0..30 {
        // Two guesses per user: no user is locked.
        let user = format!("u{}", i / 2);
        started = store
            .record_auth_failure(a, &user, &format!("t{i}"), t0 + i, &p)
            .await
            .unwrap();
        assert!(started.is_none() || i == 29, "locked early at {i}");
    }
    let started = started.expect("30 distinct failures lock the address");
    assert_eq!(started.user, None);
    assert_eq!(started.locked_until, t0 + 29 + 900);
    assert_eq!(started.failures, 30);
    // Every user, even one never tried, is refused from that address.
    let got = store
        .auth_lockout(a, "someone-else", t0 + 30)
        .await
        .unwrap();
    assert_eq!(got, Some(started));
    assert!(store
        .auth_lockout(ip("198.51.100.8"), "u0", t0 + 30)
        .await
        .unwrap()
        .is_none());
}

/// A user locked at an address that is then locked as a whole: the check
/// answers the whole address's lockout.
pub async fn the_whole_address_lockout_comes_before_a_users(b: &Backend) {
    let store = b.store();
    let t0 = store.now();
    let p = LockoutPolicy {
        user_failures: 2,
        address_failures: 4,
        ..LockoutPolicy::default()
    };
    let a = ip("198.51.100.9");
    for tag in ["x", "y"] {
        store
            .record_auth_failure(a, "bob", tag, t0, &p)
            .await
            .unwrap();
    }
    let bob = store.auth_lockout(a, "bob", t0 + 1).await.unwrap();
    assert_eq!(bob.expect("bob locked").user.as_deref(), Some("bob"));
    for user in ["carol", "dave"] {
        store
            .record_auth_failure(a, user, "z", t0 + 1, &p)
            .await
            .unwrap();
    }
    let got = store.auth_lockout(a, "bob", t0 + 2).await.unwrap();
    assert_eq!(got.expect("the address locked").user, None);
}

pub async fn zero_means_no_lockout(b: &Backend) {
    let store = b.store();
    let t0 = store.now();
    let p = LockoutPolicy {
        user_failures: 0,
        address_failures: 0,
        ..LockoutPolicy::default()
    };
    let a = ip("192.0.2.9");
    for i in 0..50 {
        assert!(store
            .record_auth_failure(a, "bob", &format!("t{i}"), t0, &p)
            .await
            .unwrap()
            .is_none());
    }
    assert!(store.auth_lockouts(t0).await.unwrap().is_empty());
}

pub async fn clearing_ends_lockouts_and_forgets_failures_and_survives_reopen(b: &Backend) {
    let p = LockoutPolicy {
        user_failures: 2,
        ..LockoutPolicy::default()
    };
    let a = ip("192.0.2.1");
    let store = b.store();
    let now = store.now();
    for user in ["bob", "carol"] {
        for tag in ["x", "y"] {
            store
                .record_auth_failure(a, user, tag, now, &p)
                .await
                .unwrap();
        }
    }
    store
        .record_auth_failure(a, "dave", "x", now, &p)
        .await
        .unwrap();
    drop(store);

    // Another process (the admin command line) sees and clears them.
    let store = b.reopen().await;
    assert_eq!(store.auth_lockouts(now).await.unwrap().len(), 2);
    assert_eq!(store.clear_auth_lockouts(a, Some("BOB")).await.unwrap(), 1);
    assert!(store.auth_lockout(a, "bob", now).await.unwrap().is_none());
    assert!(store.auth_lockout(a, "carol", now).await.unwrap().is_some());
    // Bob's failures are forgotten: one more is one, not three.
    assert!(store
        .record_auth_failure(a, "bob", "z", now, &p)
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.clear_auth_lockouts(a, None).await.unwrap(), 1);
    assert!(store.auth_lockouts(now).await.unwrap().is_empty());
    assert_eq!(store.clear_auth_lockouts(a, None).await.unwrap(), 0);
    // Dave's one failure went with the address's.
    assert!(store
        .record_auth_failure(a, "dave", "y", now, &p)
        .await
        .unwrap()
        .is_none());
}
