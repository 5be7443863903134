//! This node in the cluster: a heartbeat every fifth of `[cluster]
//! node_timeout`, and on the same tick the takeover of nodes silent for
//! longer (their delivery leases are given back, so the live nodes
//! deliver that mail at once instead of after the full lease). Every node
//! does it; the store makes each lease given back once. On the embedded
//! store there is one node and this keeps `posthorn cluster status` true.

use posthorn_store::{NodeInfo, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Nodes silent for this long, holding nothing, are dropped from the list.
const FORGET_AFTER: i64 = 7 * 24 * 3600;

pub async fn run(
    store: Arc<dyn Store>,
    node: NodeInfo,
    node_timeout: Duration,
    shutdown: CancellationToken,
) {
    let every = (node_timeout / 5).max(Duration::from_secs(1));
    let timeout = node_timeout.as_secs() as i64;
    let mut healthy = true;
    let mut ticks: u64 = 0;
    loop {
        let beat = store.heartbeat(&node).await;
        match (&beat, healthy) {
            (Err(e), true) => {
                tracing::warn!(error = %e, "cannot record this node's heartbeat; other nodes will take over its deliveries after node_timeout")
            }
            (Ok(()), false) => tracing::info!("heartbeat recorded again"),
            _ => {}
        }
        healthy = beat.is_ok();
        if healthy {
            match store.take_over_dead_nodes(store.now(), timeout).await {
                Ok(taken) => {
                    for t in taken {
                        tracing::warn!(
                            node = %t.node,
                            silent_secs = store.now() - t.last_seen,
                            leases = t.leases,
                            "a node stopped sending heartbeats: its deliveries are taken over"
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot look for dead nodes"),
            }
            if ticks.is_multiple_of(720) {
                let _ = store.forget_nodes(store.now() - FORGET_AFTER).await;
            }
        }
        ticks += 1;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
