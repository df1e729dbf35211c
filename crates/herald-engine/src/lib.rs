//! Herald's delivery engine: takes messages from the API, has the store
//! commit them with their fan-out, and delivers every resulting delivery
//! from memory, falling back to the store only for what does not fit.
//!
//! Tasks, all owned by [`Engine`]:
//! - the *dispatcher* ([`dispatch`]) holds per-endpoint lanes, near-future
//!   retries in a timer heap, and starts attempts within a global and a
//!   per-endpoint concurrency limit;
//! - the *loader* claims due deliveries from the store when there is room
//!   (after a restart, after an overflow, for far-future retries), sleeping
//!   until the next due time instead of polling;
//! - the *recorder* writes attempt results and state changes in batches.

mod dispatch;
mod request;
pub mod retention;
pub mod transport;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use herald_core::ssrf::PrivateTargets;
use herald_core::{AppId, EndpointId};
use herald_store::{Change, Ingested, Lease, NewMessage, NodeId, Store, StoreError};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use transport::{Transport, TransportError};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Requests in flight at once, over all endpoints.
    pub max_in_flight: usize,
    /// Requests in flight at once to one endpoint, so a slow endpoint fills
    /// only its own lane.
    pub max_in_flight_per_endpoint: usize,
    /// Deliveries held in memory (queued, in flight or waiting for a near
    /// retry). Beyond this, work stays in the store: memory stays bounded
    /// however large the backlog.
    pub max_resident: usize,
    /// This node's identity as a lease owner, stable across restarts.
    pub node: NodeId,
    /// How long a claim lasts, from the database's now, unless renewed.
    pub claim_ttl: Duration,
    /// Retries due sooner than this stay in memory; later ones go back to the store.
    pub retry_horizon: Duration,
    /// Divides every retry delay (a testing aid: `HERALD_TIME_SCALE`).
    pub time_scale: f64,
    pub private_targets: PrivateTargets,
    pub user_agent: String,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 512,
            max_in_flight_per_endpoint: 64,
            max_resident: 10_000,
            node: NodeId::new("node-1"),
            claim_ttl: Duration::from_secs(30),
            retry_horizon: Duration::from_secs(60),
            time_scale: 1.0,
            private_targets: PrivateTargets::Deny,
            user_agent: format!("Herald/{}", env!("CARGO_PKG_VERSION")),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

impl EngineConfig {
    pub(crate) fn lease(&self) -> Lease {
        Lease {
            owner: self.node.clone(),
            ttl: self.claim_ttl,
        }
    }
}

/// Turns the store's change feed into dispatcher events; a subscriber that
/// fell behind has missed changes and treats every cached target as stale.
async fn forward_changes(
    mut changes: tokio::sync::broadcast::Receiver<Change>,
    events: mpsc::UnboundedSender<Event>,
    shutdown: CancellationToken,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let change = tokio::select! {
            c = changes.recv() => c,
            _ = shutdown.cancelled() => return,
        };
        let event = match change {
            Ok(Change::EndpointUpdated { endpoint_id, .. } | Change::EndpointDeleted { endpoint_id, .. }) => {
                Event::EndpointChanged(endpoint_id)
            }
            Ok(Change::AppDeleted { app_id }) => Event::AppDeleted(app_id),
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "fell behind the change feed; reloading every endpoint");
                Event::Resync
            }
            Err(RecvError::Closed) => return,
        };
        if events.send(event).is_err() {
            return;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// What the dispatcher is told.
pub(crate) enum Event {
    /// Deliveries already claimed for us: fresh from ingest, or loaded.
    Jobs(Vec<herald_store::DeliveryJob>),
    /// An endpoint changed or was deleted: its cached target is stale.
    EndpointChanged(EndpointId),
    /// An application was deleted with its endpoints.
    AppDeleted(AppId),
    /// Changes were missed: every cached target is stale.
    Resync,
}

/// Shared counters between the dispatcher, the loader and ingest.
#[derive(Default)]
pub(crate) struct Shared {
    /// Deliveries held in memory (see [`EngineConfig::max_resident`]).
    pub resident: AtomicUsize,
    /// Wakes the loader: work was handed back to the store, or room was freed.
    pub wake_loader: Notify,
    pub stats: Stats,
}

/// Counters for `/metrics`; monotonic unless noted.
#[derive(Default, Debug)]
pub struct Stats {
    pub messages_ingested: AtomicU64,
    pub deliveries_created: AtomicU64,
    /// Requests in flight now (a gauge).
    pub in_flight: AtomicUsize,
    pub attempts_succeeded: AtomicU64,
    pub attempts_failed: AtomicU64,
    /// Deliveries that ran out of retries.
    pub deliveries_exhausted: AtomicU64,
    /// Deliveries claimed from the store by the loader.
    pub deliveries_loaded: AtomicU64,
}

pub struct Engine {
    store: Arc<dyn Store>,
    config: EngineConfig,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Event>,
    shutdown: CancellationToken,
    tasks: tokio::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl Engine {
    /// Starts the engine's tasks. They stop when `shutdown` is cancelled;
    /// [`Engine::stopped`] waits for them to finish their work.
    pub async fn start(
        store: Arc<dyn Store>,
        config: EngineConfig,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, EngineError> {
        // Subscribed before anything is claimed, so no change is missed.
        let changes = store.changes();
        let n = store.recover(&config.node).await?;
        if n > 0 {
            tracing::info!(deliveries = n, "resuming deliveries interrupted by the last stop");
        }
        let transport = Arc::new(Transport::new(
            config.private_targets.clone(),
            &config.user_agent,
            // Pools are per host, and many endpoints may share one host.
            config.max_in_flight,
        )?);
        let shared = Arc::new(Shared::default());
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (outcomes_tx, outcomes_rx) = mpsc::unbounded_channel();

        let recorder = tokio::spawn(dispatch::record(
            store.clone(),
            config.lease(),
            shared.clone(),
            config.max_resident,
            outcomes_rx,
        ));
        let dispatcher = tokio::spawn(
            dispatch::Dispatcher::new(store.clone(), transport, config.clone(), shared.clone(), outcomes_tx)
                .run(events_rx, shutdown.clone()),
        );
        let loader = tokio::spawn(dispatch::load(
            store.clone(),
            config.clone(),
            shared.clone(),
            events_tx.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(forward_changes(changes, events_tx.clone(), shutdown.clone()));
        Ok(Arc::new(Self {
            store,
            config,
            shared,
            events: events_tx,
            shutdown,
            tasks: tokio::sync::Mutex::new(vec![loader, dispatcher, recorder]),
        }))
    }

    /// Commits a message and its fan-out, then hands the deliveries to the
    /// dispatcher directly (no read-back) when there is room in memory.
    pub async fn ingest(&self, mut msg: NewMessage) -> Result<Ingested, StoreError> {
        let has_room = self.shared.resident.load(Ordering::Relaxed) < self.config.max_resident;
        msg.lease = has_room.then(|| self.lease());
        let ingested = self.store.ingest(msg).await?;
        let stats = &self.shared.stats;
        stats.messages_ingested.fetch_add(1, Ordering::Relaxed);
        stats
            .deliveries_created
            .fetch_add(ingested.deliveries.len() as u64, Ordering::Relaxed);
        if !ingested.deliveries.is_empty() {
            if has_room && !self.shutdown.is_cancelled() {
                self.shared
                    .resident
                    .fetch_add(ingested.deliveries.len(), Ordering::Relaxed);
                if self.events.send(Event::Jobs(ingested.deliveries.clone())).is_err() {
                    // The dispatcher is gone (shutting down): the claims lapse
                    // at the next start and the deliveries resume then.
                    self.shared
                        .resident
                        .fetch_sub(ingested.deliveries.len(), Ordering::Relaxed);
                }
            } else {
                self.shared.wake_loader.notify_one();
            }
        }
        Ok(ingested)
    }

    fn lease(&self) -> Lease {
        self.config.lease()
    }

    /// Deliveries held in memory right now.
    pub fn resident(&self) -> usize {
        self.shared.resident.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Waits until the tasks have stopped after `shutdown` was cancelled:
    /// requests in flight finished (within the grace period), results
    /// recorded, and claims on unsent work returned to the store.
    pub async fn stopped(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().await);
        for t in tasks {
            let _ = t.await;
        }
    }
}
