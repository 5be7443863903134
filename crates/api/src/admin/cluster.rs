//! `GET /v1/admin/cluster`: the nodes sharing this store, their last
//! heartbeats and leases, and the queue by status. `posthorn cluster
//! status --json` prints the same document ([`ClusterView`]).

use super::service;
use crate::auth::AdminAuth;
use crate::error::{ApiResult, ErrorBody};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use posthorn_admin::cluster::ClusterStatus;
use posthorn_types::time::rfc3339;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct ClusterView {
    /// A node whose last heartbeat is older is dead (`[cluster] node_timeout`).
    #[schema(example = 30)]
    pub node_timeout_secs: i64,
    /// The store's clock when this was read, RFC 3339.
    pub now: String,
    /// By id.
    pub nodes: Vec<NodeView>,
    /// Recipients in each status (every status, zeros included).
    #[schema(example = json!({"queued": 0, "sending": 3, "delivered": 120, "deferred": 1, "bounced": 2, "expired": 0, "suppressed": 0}))]
    pub queue: BTreeMap<String, u64>,
}

#[derive(Serialize, ToSchema)]
pub struct NodeView {
    /// `[delivery] node_id`.
    #[schema(example = "mail1")]
    pub id: String,
    /// Its host name and listeners.
    pub address: String,
    pub version: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339: its last heartbeat.
    pub last_seen: String,
    /// Seconds since its last heartbeat, by the store's clock.
    pub last_seen_secs_ago: i64,
    /// Its last heartbeat is at most `node_timeout_secs` old.
    pub alive: bool,
    /// Recipients it is delivering now, under its lease.
    pub leases: u64,
}

impl From<ClusterStatus> for ClusterView {
    fn from(s: ClusterStatus) -> Self {
        Self {
            node_timeout_secs: s.node_timeout_secs,
            now: rfc3339(s.now),
            nodes: s
                .nodes
                .into_iter()
                .map(|n| NodeView {
                    id: n.node.info.id,
                    address: n.node.info.address,
                    version: n.node.info.version,
                    started_at: rfc3339(n.node.info.started_at),
                    last_seen: rfc3339(n.node.last_seen),
                    last_seen_secs_ago: (s.now - n.node.last_seen).max(0),
                    alive: n.alive,
                    leases: n.node.leases,
                })
                .collect(),
            queue: s
                .queue
                .into_iter()
                .map(|(status, n)| (status.as_str().to_string(), n))
                .collect(),
        }
    }
}

/// The nodes sharing this store and the queue by status; the same from
/// every node.
#[utoipa::path(get, path = "/v1/admin/cluster", tag = "admin",
    responses(
        (status = 200, description = "the cluster", body = ClusterView),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn cluster(
    _admin: AdminAuth,
    State(state): State<AppState>,
) -> ApiResult<Json<ClusterView>> {
    let timeout = state.config.node_timeout.as_secs() as i64;
    Ok(Json(service(&state).cluster_status(timeout).await?.into()))
}
