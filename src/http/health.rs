//! Health endpoints for orchestrators and load balancers: `/livez` (the process answers),
//! `/readyz` (it can take traffic: its stores answer) and `/metrics` (OpenMetrics text, which Prometheus reads).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// Tells whether the node can take traffic, and what it is doing.
pub(crate) trait Readiness: Send + Sync + 'static {
    fn check(&self) -> impl Future<Output = Result<(), String>> + Send;

    /// The node's metrics in the Prometheus text format.
    fn metrics(&self) -> impl Future<Output = String> + Send;
}

/// The health routes, answered from `readiness`.
pub(crate) fn router<R: Readiness>(readiness: Arc<R>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz::<R>))
        .route("/metrics", get(metrics::<R>))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(readiness)
}

async fn readyz<R: Readiness>(State(readiness): State<Arc<R>>) -> impl IntoResponse {
    match readiness.check().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

async fn metrics<R: Readiness>(State(readiness): State<Arc<R>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        readiness.metrics().await,
    )
}
