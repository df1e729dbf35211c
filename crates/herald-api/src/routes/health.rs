//! `GET /api/v1/health`: unauthenticated, for load balancers and probes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::RouteBoth;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route_both("/api/v1/health", get(health))
        .route_both("/api/v1/health/ping", get(health))
}

/// Reads through the store so a wedged database shows as unhealthy.
async fn health(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    match state.store.next_due().await {
        Ok(_) => (StatusCode::OK, Json(json!({"status": "ok", "database": "ok"}))),
        Err(e) => {
            tracing::error!(error = %e, "health check could not read the store");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "error", "database": "error"})),
            )
        }
    }
}
