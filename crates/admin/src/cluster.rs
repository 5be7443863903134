//! The cluster as the store sees it: every node with its last heartbeat,
//! whether it counts as alive, the leases it holds, and the queue by
//! status. `posthorn cluster status` and `GET /v1/admin/cluster` both
//! show this, from whichever node is asked.

use crate::{Admin, AdminResult};
use posthorn_store::NodeRecord;
use posthorn_types::RecipientStatus;

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct ClusterStatus {
    /// The store's clock when it was read, Unix seconds.
    pub now: i64,
    pub node_timeout_secs: i64,
    /// By id.
    pub nodes: Vec<NodeStatus>,
    /// Recipients in each status, every status listed (zeros included).
    pub queue: Vec<(RecipientStatus, u64)>,
}

#[derive(Clone, Debug)]
pub struct NodeStatus {
    pub node: NodeRecord,
    /// Its last heartbeat is at most `node_timeout` old.
    pub alive: bool,
}

impl Admin {
    /// The cluster's state; a node is alive when its last heartbeat is at
    /// most `node_timeout_secs` old by the store's clock (the rule the
    /// nodes' takeover applies).
    pub async fn cluster_status(&self, node_timeout_secs: i64) -> AdminResult<ClusterStatus> {
        let store = self.store();
        let nodes = store.nodes().await?;
        let counts = store.status_counts().await?;
        let now = store.now();
        Ok(ClusterStatus {
            now,
            node_timeout_secs,
            nodes: nodes
                .into_iter()
                .map(|node| NodeStatus {
                    alive: node.last_seen >= now - node_timeout_secs,
                    node,
                })
                .collect(),
            queue: RecipientStatus::ALL
                .iter()
                .map(|s| {
                    let n = counts.iter().find(|(c, _)| c == s).map_or(0, |(_, n)| *n);
                    (*s, n)
                })
                .collect(),
        })
    }
}
