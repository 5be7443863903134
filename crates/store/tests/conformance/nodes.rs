//! Cluster nodes: heartbeats, the leases each holds, takeover of a dead
//! node's leases, forgetting old nodes; and the wakeups handle.

use crate::support::{message, Backend};
use posthorn_store::*;

fn node(id: &str, started_at: i64) -> NodeInfo {
    NodeInfo {
        id: id.into(),
        address: format!("{id}.example.com 127.0.0.1:587"),
        version: "0.test".into(),
        started_at,
    }
}

pub async fn heartbeats_list_nodes_with_the_leases_they_hold(b: &Backend) {
    let store = b.store();
    let t0 = store.now();
    assert!(store.nodes().await.unwrap().is_empty());
    store.heartbeat(&node("b", t0)).await.unwrap();
    store.heartbeat(&node("a", t0)).await.unwrap();
    // A second heartbeat updates the row, it does not add one.
    let mut again = node("a", t0);
    again.address = "a.example.com 10.0.0.1:587".into();
    store.heartbeat(&again).await.unwrap();

    let acct = store.create_account("shop").await.unwrap();
    store
        .enqueue(message(
            &*store,
            acct.id,
            &["x@example.net", "y@example.net"],
        ))
        .await
        .unwrap();
    let now = store.now();
    let claimed = store.claim_due("a", now, now + 900, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);

    let nodes = store.nodes().await.unwrap();
    let ids: Vec<&str> = nodes.iter().map(|n| n.info.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"], "by id");
    assert_eq!(nodes[0].info, again);
    assert_eq!(nodes[0].leases, 2);
    assert_eq!(nodes[1].leases, 0);
    for n in &nodes {
        assert!(
            (n.last_seen - now).abs() <= 2,
            "{n:?} stamped by the store's clock"
        );
    }
}

pub async fn a_dead_nodes_leases_are_taken_over_and_claimed_by_another(b: &Backend) {
    let store = b.store();
    let t0 = store.now();
    store.heartbeat(&node("a", t0)).await.unwrap();
    store.heartbeat(&node("b", t0)).await.unwrap();
    let acct = store.create_account("shop").await.unwrap();
    let m = message(&*store, acct.id, &["x@example.net", "y@example.net"]);
    let id = m.id;
    store.enqueue(m).await.unwrap();
    let now = store.now();
    assert_eq!(
        store
            .claim_due("a", now, now + 900, 10)
            .await
            .unwrap()
            .len(),
        2
    );

    // Both heartbeats are fresh: nobody is dead.
    assert!(store
        .take_over_dead_nodes(now, 30)
        .await
        .unwrap()
        .is_empty());
    // Nothing is due for b while a holds the lease.
    assert!(store
        .claim_due("b", now, now + 900, 10)
        .await
        .unwrap()
        .is_empty());

    // 100 s later only b has sent a heartbeat: a is dead.
    let later = now + 100;
    store.heartbeat(&node("b", t0)).await.unwrap();
    let taken = store.take_over_dead_nodes(later, 30).await.unwrap();
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(taken[0].node, "a");
    assert_eq!(taken[0].leases, 2);
    assert!(taken[0].last_seen <= now);
    // Taken once: a second look finds nothing left.
    assert!(store
        .take_over_dead_nodes(later, 30)
        .await
        .unwrap()
        .is_empty());

    // They are due at once, for b (b's own heartbeat is "old" at `later`
    // by the store's real clock, but b holds nothing to take).
    let claimed = store.claim_due("b", later, later + 900, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(claimed.iter().all(|r| r.message_id == id));
    let nodes = store.nodes().await.unwrap();
    assert_eq!(nodes.iter().find(|n| n.info.id == "a").unwrap().leases, 0);
    assert_eq!(nodes.iter().find(|n| n.info.id == "b").unwrap().leases, 2);

    // a comes back: its late outcome for a recipient it no longer holds
    // is not recorded.
    let rec = store
        .record_outcomes(
            Some("a"),
            OutcomeBatch {
                updates: vec![RecipientUpdate {
                    message_id: id,
                    idx: 0,
                    status: posthorn_types::RecipientStatus::Delivered,
                    attempts: 1,
                    last_reply: Some("250 ok".into()),
                    remote_host: None,
                    next_try: None,
                    suppress: None,
                }],
                notices: Vec::new(),
            },
        )
        .await
        .unwrap();
    assert_eq!(rec.applied, 0);
}

pub async fn old_nodes_without_leases_are_forgotten(b: &Backend) {
    let store = b.store();
    let t0 = store.now();
    store.heartbeat(&node("gone", t0)).await.unwrap();
    store.heartbeat(&node("holding", t0)).await.unwrap();
    let acct = store.create_account("shop").await.unwrap();
    store
        .enqueue(message(&*store, acct.id, &["x@example.net"]))
        .await
        .unwrap();
    let now = store.now();
    store
        .claim_due("holding", now, now + 900, 10)
        .await
        .unwrap();
    assert_eq!(store.forget_nodes(now - 60).await.unwrap(), 0);
    assert_eq!(store.forget_nodes(now + 60).await.unwrap(), 1);
    let left: Vec<String> = store
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.info.id)
        .collect();
    assert_eq!(left, ["holding"]);
    // The handle is the same pair on every call.
    let (w1, w2) = (store.wakeups(), store.wakeups());
    assert!(std::sync::Arc::ptr_eq(&w1.queue, &w2.queue));
    assert!(std::sync::Arc::ptr_eq(&w1.webhooks, &w2.webhooks));
}

pub async fn a_nodes_report_is_kept_beside_its_heartbeat(b: &Backend) {
    let store = b.store();
    let t0 = store.now();
    // No row yet: nothing to report on, and no error.
    store
        .report_node("a", r#"{"destinations":[]}"#)
        .await
        .unwrap();
    assert!(store.nodes().await.unwrap().is_empty());
    store.heartbeat(&node("a", t0)).await.unwrap();
    assert_eq!(store.nodes().await.unwrap()[0].report, "{}");
    let report = r#"{"destinations":[{"destination":"mx.example.net","queued":3}]}"#;
    store.report_node("a", report).await.unwrap();
    // A later heartbeat leaves the report as it is.
    store.heartbeat(&node("a", t0)).await.unwrap();
    assert_eq!(store.nodes().await.unwrap()[0].report, report);
}
