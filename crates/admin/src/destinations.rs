//! Delivery destinations across the cluster: each node reports its own
//! (its scheduler's ready queues, kept in memory) beside its heartbeat, and
//! this merges the reports of the live nodes. `posthorn queue
//! destinations` and `GET /v1/admin/destinations` both show this, from
//! whichever node is asked; it is as fresh as the nodes' last heartbeats
//! (every fifth of `node_timeout`).

use crate::{Admin, AdminResult};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Destinations one node puts in its report at most (the busiest).
pub const MAX_REPORTED: usize = 200;

/// What a node reports of its own work (`Store::report_node`), as JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    #[serde(default)]
    pub destinations: Vec<DestinationReport>,
}

/// One destination as one node's scheduler sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationReport {
    /// The mail servers' names in preference order, or `relay:host:port`.
    pub destination: String,
    /// Recipient domains whose mail goes there (some of them).
    pub domains: Vec<String>,
    /// Jobs claimed and waiting for a connection.
    pub queued: u64,
    /// Attempts running.
    pub in_flight: u64,
    /// Connections open to its hosts, busy or idle.
    #[serde(default)]
    pub open_connections: u64,
    /// Attempts allowed at once now (`None`: no limit); below the
    /// configured cap while the destination has asked to slow down.
    pub concurrency: Option<u64>,
    /// Unix seconds (the store's clock) until which it is suspended.
    pub suspended_until: Option<i64>,
    /// The last connection error or slow-down reply.
    pub last_error: Option<String>,
}

/// A destination over the live nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DestinationRow {
    pub destination: String,
    pub domains: Vec<String>,
    pub queued: u64,
    pub in_flight: u64,
    pub open_connections: u64,
    /// The latest suspension any node reports.
    pub suspended_until: Option<i64>,
    pub last_error: Option<String>,
    /// The live nodes that report it.
    pub nodes: Vec<String>,
}

impl Admin {
    /// Every destination the live nodes report (a heartbeat at most
    /// `node_timeout_secs` old), busiest first.
    pub async fn destinations(&self, node_timeout_secs: i64) -> AdminResult<Vec<DestinationRow>> {
        let store = self.store();
        let nodes = store.nodes().await?;
        let now = store.now();
        let mut rows: BTreeMap<String, DestinationRow> = BTreeMap::new();
        for node in nodes
            .iter()
            .filter(|n| n.last_seen >= now - node_timeout_secs)
        {
            let report: NodeReport = match serde_json::from_str(&node.report) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(node = %node.info.id, error = %e, "unreadable node report");
                    continue;
                }
            };
            for d in report.destinations {
                let row = rows
                    .entry(d.destination.clone())
                    .or_insert_with(|| DestinationRow {
                        destination: d.destination.clone(),
                        ..DestinationRow::default()
                    });
                row.queued += d.queued;
                row.in_flight += d.in_flight;
                row.open_connections += d.open_connections;
                for domain in d.domains {
                    if !row.domains.contains(&domain) {
                        row.domains.push(domain);
                    }
                }
                row.suspended_until = row.suspended_until.max(d.suspended_until);
                if d.last_error.is_some() {
                    row.last_error = d.last_error;
                }
                row.nodes.push(node.info.id.clone());
            }
        }
        let mut all: Vec<DestinationRow> = rows.into_values().collect();
        for row in &mut all {
            row.domains.sort();
        }
        all.sort_by(|a, b| {
            (b.queued + b.in_flight)
                .cmp(&(a.queued + a.in_flight))
                .then_with(|| a.destination.cmp(&b.destination))
        });
        Ok(all)
    }
}
