//! `GET /v1/admin/destinations`: the delivery destinations the live nodes
//! report (their ready queues, attempts in flight, suspensions and last
//! errors), busiest first. `posthorn queue destinations --json` prints the
//! same document ([`DestinationsView`]).

use super::service;
use crate::auth::AdminAuth;
use crate::error::{ApiResult, ErrorBody};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use posthorn_admin::destinations::DestinationRow;
use posthorn_types::time::rfc3339;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct DestinationsView {
    /// Busiest first (queued + in flight).
    pub destinations: Vec<DestinationView>,
}

#[derive(Serialize, ToSchema)]
pub struct DestinationView {
    /// The mail servers' names in preference order, or `relay:host:port`.
    #[schema(example = "gmail-smtp-in.l.google.com,alt1.gmail-smtp-in.l.google.com")]
    pub destination: String,
    /// Recipient domains whose mail goes there (some of them).
    pub domains: Vec<String>,
    /// Claimed recipients' transactions waiting for a connection.
    pub queued: u64,
    /// Attempts running now.
    pub in_flight: u64,
    /// Connections open to its hosts (busy or idle), over the live nodes.
    pub open_connections: u64,
    /// RFC 3339: until when it is suspended after its hosts could not be
    /// reached (its mail is deferred without connecting until then).
    pub suspended_until: Option<String>,
    /// The last connection error or "slow down" reply.
    pub last_error: Option<String>,
    /// The live nodes that report it.
    pub nodes: Vec<String>,
}

impl From<Vec<DestinationRow>> for DestinationsView {
    fn from(rows: Vec<DestinationRow>) -> Self {
        Self {
            destinations: rows
                .into_iter()
                .map(|r| DestinationView {
                    destination: r.destination,
                    domains: r.domains,
                    queued: r.queued,
                    in_flight: r.in_flight,
                    open_connections: r.open_connections,
                    suspended_until: r.suspended_until.map(rfc3339),
                    last_error: r.last_error,
                    nodes: r.nodes,
                })
                .collect(),
        }
    }
}

/// The delivery destinations of the live nodes, as of their last
/// heartbeats; the same from every node.
#[utoipa::path(get, path = "/v1/admin/destinations", tag = "admin",
    responses(
        (status = 200, description = "the destinations", body = DestinationsView),
        (status = 401, description = "no or a wrong key", body = ErrorBody),
        (status = 403, description = "not the admin key", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn destinations(
    _admin: AdminAuth,
    State(state): State<AppState>,
) -> ApiResult<Json<DestinationsView>> {
    let timeout = state.config.node_timeout.as_secs() as i64;
    Ok(Json(service(&state).destinations(timeout).await?.into()))
}
