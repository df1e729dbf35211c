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
        .route_both("/api/v1/health/ping", get(ping))
}

/// The same check under Svix's other name for it.
#[utoipa::path(
    get,
    path = "/api/v1/health/ping",
    tag = "health",
    summary = "Health of the server and its database",
    responses((status = 200, description = "Healthy"), (status = 503, description = "The database does not answer"))
)]
async fn ping(state: State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    health(state).await
}

/// Reads through the store so a wedged database shows as unhealthy.
#[utoipa::path(
    get,
    path = "/api/v1/health",
    tag = "health",
    summary = "Health of the server and its database",
    responses((status = 200, description = "Healthy"), (status = 503, description = "The database does not answer"))
)]
async fn health(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    match state.store.next_due(state.engine.node()).await {
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
