//! This node in the cluster: a heartbeat every fifth of `[cluster]
//! node_timeout`, and on the same tick the takeover of nodes silent for
//! longer (their delivery leases are given back, so the live nodes
//! deliver that mail at once instead of after the full lease). Every node
//! does it; the store makes each lease given back once. On the embedded
//! store there is one node and this keeps `posthorn cluster status` true.
//! With each heartbeat goes the node's report of its delivery destinations
//! (`posthorn queue destinations` merges the live nodes' reports).

use posthorn_admin::destinations::{DestinationReport, NodeReport, MAX_REPORTED};
use posthorn_delivery::Engine;
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
    engine: Option<Arc<Engine>>,
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
        if let (true, Some(engine)) = (healthy, &engine) {
            let report = destination_report(engine, store.now());
            if let Err(e) = store.report_node(&node.id, &report).await {
                tracing::debug!(error = %e, "cannot record this node's destinations");
            }
        }
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

/// This node's delivery destinations as JSON ([`NodeReport`]), the busiest
/// [`MAX_REPORTED`]; times on the store's clock `now`.
pub fn destination_report(engine: &Engine, now: i64) -> String {
    let destinations = engine
        .destinations()
        .into_iter()
        .take(MAX_REPORTED)
        .map(|d| DestinationReport {
            destination: d.destination,
            domains: d.domains,
            queued: d.status.queued as u64,
            in_flight: d.status.in_flight as u64,
            open_connections: d.open_connections as u64,
            concurrency: (d.status.concurrency != usize::MAX)
                .then_some(d.status.concurrency as u64),
            suspended_until: d
                .status
                .suspended_for
                .map(|t| now + t.as_secs_f64().ceil() as i64),
            last_error: d.status.last_error,
        })
        .collect();
    serde_json::to_string(&NodeReport { destinations }).expect("a report is JSON")
}
