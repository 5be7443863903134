//! `/healthz` (the process answers), `/readyz` (the store answers and can
//! write) and `/metrics` (Prometheus text).

use crate::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// The store answers and can write (a load balancer's readiness check):
/// not ready while writes fail for lack of space (`Store::out_of_space`),
/// until one succeeds again.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "ready", body = Health),
        (status = 503, description = "the store does not answer, or cannot write for lack of space", body = Health),
    ))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    if let Some(since) = state.store.out_of_space().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: format!(
                    "store out of space since {}: writes fail until space is freed",
                    posthorn_types::time::rfc3339(since)
                ),
            }),
        );
    }
    match state.store.accounts().await {
        Ok(_) => (
            StatusCode::OK,
            Json(Health {
                status: "ok".into(),
            }),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: format!("store unavailable: {e}"),
            }),
        ),
    }
}

/// Prometheus metrics: submissions, refusals by code, deliveries by
/// outcome, queue depth by status, delivery latency, limiter refusals,
/// connections.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    // Queue depth is read when asked, not kept up to date on every change.
    if let Ok(counts) = state.store.status_counts().await {
        text.push_str("# HELP posthorn_queue_recipients Recipients by status, now.\n");
        text.push_str("# TYPE posthorn_queue_recipients gauge\n");
        for status in posthorn_types::RecipientStatus::ALL {
            let n = counts
                .iter()
                .find(|(s, _)| *s == status)
                .map_or(0, |(_, n)| *n);
            text.push_str(&format!(
                "posthorn_queue_recipients{{status=\"{}\"}} {n}\n",
                status.as_str()
            ));
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// Install the process's metrics recorder (once; `None` if one already
/// is). Delivery latency gets histogram buckets from 1 s to a day.
pub fn install_recorder() -> Option<crate::PrometheusHandle> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("posthorn_delivery_latency_seconds".into()),
            &[
                0.1,
                0.5,
                1.0,
                5.0,
                15.0,
                60.0,
                300.0,
                900.0,
                3600.0,
                4.0 * 3600.0,
                86400.0,
            ],
        )
        .ok()?;
    builder.install_recorder().ok()
}
