//! Herald's HTTP API: the Svix v1 surface (`/api/v1/...`) so the official
//! Svix SDKs work unchanged. One router file per resource; handlers validate
//! input into domain types and call the store or the engine, never SQL.

pub mod access;
pub mod body;
pub mod dto;
pub mod error;
mod extract;
mod frame;
mod head;
mod middleware;
pub mod openapi;
pub mod operational;
mod prometheus;
pub mod relay;
mod routes;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use herald_engine::Engine;
use herald_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::{ApiError, ApiResult};
pub use server::ConnectionLimits;

/// How long a response saved for an `idempotency-key` is replayed.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone)]
pub struct ApiConfig {
    pub admin_token: String,
    pub max_payload_bytes: usize,
    /// Endpoint URLs must be `https://` (`--require-https`).
    pub require_https: bool,
    /// Timeouts and the connection cap of [`serve`].
    pub connections: ConnectionLimits,
    /// Signs relay channel ids (derived from the encryption key).
    pub relay_key: relay::ChannelKey,
    pub relay_limits: relay::RelayLimits,
    /// The portal's and the dashboard's headers (`herald-ui`).
    pub ui: herald_ui::UiConfig,
    /// This node (`--node-id`, the engine's lease owner): background tasks
    /// run here, and their rows say so.
    pub node: herald_store::NodeId,
}

/// What every handler shares. One `Arc` around it all, because axum
/// clones the state for each extractor of each request, and one reference
/// count is cheaper to bump than one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub store: Arc<dyn Store>,
    pub engine: Arc<Engine>,
    pub config: ApiConfig,
    /// Relay channels: connected listeners and queued requests.
    pub relay: Arc<relay::RelayHub>,
    /// SHA-256 of the admin token, computed once.
    pub(crate) admin_digest: [u8; 32],
    /// Idempotency keys in progress (`None`) or answered and being saved.
    pub(crate) idempotency: std::sync::Mutex<std::collections::HashMap<String, Option<herald_store::SavedResponse>>>,
    /// The internal application operational webhooks travel through, once known.
    pub(crate) operational: std::sync::OnceLock<herald_core::AppId>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, engine: Arc<Engine>, config: ApiConfig) -> Self {
        let admin_digest = middleware::digest(config.admin_token.as_bytes());
        let relay = Arc::new(relay::RelayHub::new(
            config.relay_key.clone(),
            config.relay_limits.clone(),
        ));
        Self(Arc::new(Shared {
            store,
            engine,
            relay,
            config,
            admin_digest,
            idempotency: Default::default(),
            operational: Default::default(),
        }))
    }
}

pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .merge(routes::app::router())
        .merge(routes::endpoint::router())
        .merge(routes::endpoint_tools::router())
        .merge(routes::event_type::router())
        .merge(routes::message::router())
        .merge(routes::attempt::router())
        .merge(routes::auth::router())
        .merge(routes::task::router())
        .merge(routes::relay::api_router())
        .merge(routes::operational::router())
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::guard));
    // Every error of Herald's own routes is JSON (`frame`); the relay's
    // public routes are left out, since what they answer is the developer's
    // target's response, passed back as it came.
    let own = Router::new()
        .nest("/api/v1", v1)
        .merge(routes::health::router())
        .merge(routes::metrics::router())
        // The customer portal and the operator dashboard: static pages that
        // call the routes above like any client.
        .merge(herald_ui::router(&state.config.ui))
        .route("/api/v1/openapi.json", axum::routing::get(openapi::get_openapi));
    own.merge(routes::relay::public_router())
        .fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .with_state(state)
        .layer(frame::FrameLayer)
}

/// Serves the API on `listener` until `shutdown` is cancelled, then lets
/// requests in progress finish; the bounds on connections come from
/// `state.config.connections` (see [`server`]).
pub async fn serve(listener: TcpListener, state: AppState, shutdown: CancellationToken) -> std::io::Result<()> {
    let limits = state.config.connections.clone();
    // Known before the first request, so the guard hides it by id as well.
    if let Err(e) = operational::app_id(&state).await {
        tracing::warn!(error = ?e, "could not look up the operational webhooks application");
    }
    tokio::spawn(operational::run(state.clone(), shutdown.clone()));
    server::serve(listener, router(state), limits, shutdown).await;
    Ok(())
}
