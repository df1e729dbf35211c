//! `herald listen`: the receiving side's inspector. It captures any request
//! on any path, verifies its signature (`--secret`), keeps it in a local
//! SQLite file, forwards it to the developer's server (`--forward`) and can
//! replay it byte for byte; a page and a JSON API under `/_herald/` show the
//! history live. With `--relay`, requests sent to a `herald serve` relay
//! channel arrive over a WebSocket and take the same path as local ones.
//!
//! One concern a file: `capture` (the catch-all route), `inspector` (verify,
//! store, forward, answer), `history` (SQLite), `forward` (the client),
//! `record` (what is kept and its JSON), `verifier` (which signature style), `api` (JSON and live events),
//! `page` (the embedded web page), `terminal` (one line per request),
//! `relay` (the WebSocket client).

mod api;
mod capture;
pub mod forward;
pub mod history;
pub mod inspector;
mod page;
pub mod record;
pub mod relay;
pub mod terminal;
pub mod verifier;

use std::future::IntoFuture as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::any;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::forward::Forwarder;
use crate::history::History;
use crate::inspector::Inspector;
use crate::terminal::Terminal;

/// Everything `herald listen` is told on its command line, parsed.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    pub db: PathBuf,
    /// `whsec_`/`whpk_` key(s) to verify Standard Webhooks signatures with.
    pub secrets: Vec<String>,
    /// Verify `sha256=<hex>` body signatures in this header instead.
    pub signature_header: Option<String>,
    pub forward: Option<String>,
    /// Answer at once with this status (default 200 without a target; with a
    /// target, the target's answer is passed back unless this is set).
    pub status: Option<u16>,
    pub max_body_bytes: usize,
    pub max_requests: usize,
    pub forward_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("--secret: {0}")]
    Secret(#[from] herald_verify::SecretError),
    #[error("--status {0} is not an HTTP status code (100 to 999)")]
    Status(u16),
    #[error(transparent)]
    Forward(#[from] forward::ForwardSetupError),
    #[error("opening the history file: {0}")]
    History(#[from] history::HistoryError),
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Relay(#[from] relay::RelayError),
}

/// What every route shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) inspector: Arc<Inspector>,
    pub(crate) max_body_bytes: usize,
    pub(crate) shutdown: CancellationToken,
}

/// A listener ready to serve: checked configuration, open history.
pub struct Listen {
    state: AppState,
}

impl Listen {
    /// Validates the configuration and opens the history file.
    pub fn new(config: &ListenConfig, shutdown: CancellationToken) -> Result<Self, ListenError> {
        let verifier = verifier::Verifier::new(&config.secrets, config.signature_header.as_deref())?;
        let status = config
            .status
            .map(|code| StatusCode::from_u16(code).map_err(|_| ListenError::Status(code)))
            .transpose()?;
        let forwarder = config
            .forward
            .as_deref()
            .map(|url| Forwarder::new(url, config.forward_timeout, config.max_body_bytes))
            .transpose()?;
        let history = History::open(&config.db, config.max_requests)?;
        let inspector = Inspector::new(history, verifier, forwarder, status, Terminal::detect());
        Ok(Self {
            state: AppState {
                inspector: Arc::new(inspector),
                max_body_bytes: config.max_body_bytes,
                shutdown,
            },
        })
    }

    pub fn inspector(&self) -> Arc<Inspector> {
        self.state.inspector.clone()
    }

    /// Serves the capture route, the page and the API on `listener` (and,
    /// with `relay`, the relay channel's requests) until the shutdown token
    /// is cancelled, or the relay refuses this listener.
    pub async fn serve(self, listener: TcpListener, relay: Option<relay::RelayConfig>) -> Result<(), ListenError> {
        let shutdown = self.state.shutdown.clone();
        let inspector = self.state.inspector.clone();
        let server = axum::serve(listener, router(self.state))
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future();
        let Some(relay) = relay else {
            server.await?;
            return Ok(());
        };
        let relayed = relay::run(inspector, relay, shutdown.clone());
        tokio::pin!(server, relayed);
        tokio::select! {
            served = &mut server => {
                served?;
                Ok(())
            }
            relayed = &mut relayed => {
                // Refused or replaced: stop serving too, and say why.
                shutdown.cancel();
                let _ = server.await;
                relayed?;
                Ok(())
            }
        }
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .merge(api::router())
        .merge(page::router())
        // Anything else under /_herald/ is ours, never a captured request.
        .route("/_herald/{*rest}", any(reserved_not_found))
        .fallback(capture::capture)
        .with_state(state)
}

async fn reserved_not_found(uri: axum::http::Uri) -> axum::response::Response {
    capture::into_response(inspector::json_answer(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!(
            "nothing at {} (paths under /_herald/ belong to the listener)",
            uri.path()
        ),
    ))
}

pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
