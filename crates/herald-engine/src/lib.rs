//! Herald's delivery engine: takes messages from the API, has the store
//! commit them with their fan-out, and delivers every resulting delivery
//! from memory, falling back to the store only for what does not fit.
//!
//! Tasks, all owned by [`Engine`]:
//! - the *scheduler* ([`scheduler`]) holds a lane per endpoint
//!   ([`lane`]: adaptive concurrency, circuit breaker), near-future retries
//!   in a timer heap, and starts attempts ([`attempt`]) within the global
//!   budget, shared fairly between lanes;
//! - the *loader* ([`loader`]) claims due deliveries from the store when
//!   memory has room, by count and by bytes;
//! - the *recorder* and the *renewer* ([`recorder`]) write outcomes in
//!   batches and keep this node's leases alive;
//! - a forwarder turns the store's change feed into scheduler events;
//! - the backlog counter ([`backlog`]) keeps `/metrics`' count of pending
//!   deliveries a few seconds fresh.

mod attempt;
mod backlog;
mod lane;
mod loader;
mod pace;
mod recorder;
mod request;
pub mod retention;
mod scheduler;
mod ticket;
mod transforms;
pub mod transport;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use herald_core::ssrf::PrivateTargets;
use herald_core::{AppId, EndpointId};
use herald_store::{Change, Ingested, Lease, NewMessage, NodeId, Store, StoreError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use attempt::{ATTEMPT_DURATION_BOUNDS_US, AttemptDurations};
pub use transport::{Transport, TransportError};

use lane::LaneConfig;
use ticket::{Job, Shared};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Requests in flight at once, over all endpoints.
    pub max_in_flight: usize,
    /// Requests in flight at once to one endpoint: the cap of its adaptive limit.
    pub max_in_flight_per_endpoint: usize,
    /// Deliveries held in memory (queued, in flight or waiting for a near
    /// retry). Beyond this, work stays in the store: memory stays bounded
    /// however large the backlog.
    pub max_resident: usize,
    /// Payload bytes held in memory, the same bound by size.
    pub max_resident_bytes: usize,
    /// This node's identity as a lease owner, stable across restarts.
    pub node: NodeId,
    /// How long a claim lasts, from the database's now, unless renewed.
    pub claim_ttl: Duration,
    /// Retries due sooner than this stay in memory; later ones go back to the store.
    pub retry_horizon: Duration,
    /// Divides every retry and probe delay (a testing aid: `HERALD_TIME_SCALE`).
    pub time_scale: f64,
    pub private_targets: PrivateTargets,
    /// Refuse to send to `http://` URLs (`--require-https`).
    pub require_https: bool,
    pub user_agent: String,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// Consecutive unanswered attempts (refused, timed out) that open an
    /// endpoint's circuit.
    pub circuit_open_after: u32,
    /// The first probe of an open circuit, then doubling up to the maximum.
    pub circuit_first_probe: Duration,
    pub circuit_max_probe: Duration,
    /// How often the store's backlog is counted for `/metrics`.
    pub backlog_refresh: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 512,
            max_in_flight_per_endpoint: 64,
            max_resident: 10_000,
            max_resident_bytes: 64 * 1024 * 1024,
            node: NodeId::new("node-1"),
            claim_ttl: Duration::from_secs(30),
            retry_horizon: Duration::from_secs(60),
            time_scale: 1.0,
            private_targets: PrivateTargets::Deny,
            require_https: false,
            user_agent: format!("Herald/{}", env!("CARGO_PKG_VERSION")),
            shutdown_grace: Duration::from_secs(20),
            circuit_open_after: 5,
            circuit_first_probe: Duration::from_secs(1),
            circuit_max_probe: Duration::from_secs(60),
            backlog_refresh: Duration::from_secs(5),
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

    pub(crate) fn lane_config(&self) -> LaneConfig {
        let scale = |d: Duration| attempt::scaled(d, self.time_scale);
        LaneConfig {
            max_in_flight: self.max_in_flight_per_endpoint.max(1),
            initial_limit: 8,
            open_after: self.circuit_open_after.max(1),
            first_probe: scale(self.circuit_first_probe),
            max_probe: scale(self.circuit_max_probe),
            decrease_cooldown: scale(Duration::from_secs(1)),
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

/// What the scheduler is told.
pub(crate) enum Event {
    /// Deliveries already claimed for us: fresh from ingest, or loaded.
    Jobs(Vec<Job>),
    /// These deliveries' outcomes are durable: they leave memory.
    Recorded(Vec<i64>),
    /// Renewal found these claims taken over by another holder.
    Lost(Vec<i64>),
    /// An endpoint's settings changed: its cached target is stale.
    EndpointChanged(EndpointId),
    /// An endpoint was deleted: its work stops now.
    EndpointDeleted(EndpointId),
    /// An application was deleted with its endpoints.
    AppDeleted(AppId),
    /// Changes were missed: every cached target is stale.
    Resync,
    /// Parked deliveries taken back for a probe or a refill (`asked` was
    /// the most wanted).
    Claimed {
        endpoint: EndpointId,
        jobs: Vec<Job>,
        asked: usize,
    },
    /// Ordered endpoints with deliveries waiting in the store for their
    /// lane to claim in order (fresh from ingest, or found due).
    FifoWork(Vec<(AppId, EndpointId)>),
    /// The next run of an ordered endpoint's deliveries (`asked` was the
    /// most wanted).
    FifoClaimed {
        endpoint: EndpointId,
        jobs: Vec<Job>,
        asked: usize,
    },
    /// The store's answers to asking for endpoint holds, or a renewal that
    /// found one lost (`scheduler/holds.rs`).
    HoldAnswered { endpoints: Vec<(EndpointId, Option<bool>)> },
    /// Deliveries were left due for some node (another's hold, a hand-back):
    /// the loader looks.
    Due,
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
    /// How long those attempts took, by outcome.
    pub attempt_durations: AttemptDurations,
    /// Deliveries that ended with a 2xx.
    pub deliveries_delivered: AtomicU64,
    /// Deliveries that ran out of retries.
    pub deliveries_exhausted: AtomicU64,
    /// Deliveries ended without a request because their endpoint is disabled.
    pub deliveries_disabled: AtomicU64,
    /// Deliveries claimed from the store by the loader.
    pub deliveries_loaded: AtomicU64,
    /// Endpoints whose circuit is open now (a gauge).
    pub circuits_open: AtomicUsize,
    /// Endpoints whose latest attempt from this node, within the last
    /// day, failed (a gauge; `scheduler/failing.rs`).
    pub endpoints_failing: AtomicUsize,
    /// Pending deliveries in the store, all nodes' (a gauge, counted every
    /// `backlog_refresh`), and when it was counted (Unix milliseconds).
    pub backlog: AtomicU64,
    pub backlog_counted_at_ms: AtomicU64,
}

/// An endpoint the engine disabled, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointDisabled {
    pub app_id: herald_core::AppId,
    pub endpoint_id: herald_core::EndpointId,
    pub reason: herald_core::health::DisableReason,
    /// When its failure streak began (for a `410 Gone` with none, when it
    /// answered so): Svix's `failSince`.
    pub failing_since: chrono::DateTime<chrono::Utc>,
}

/// The attempt after which a delivery is told to be failing (Svix sends
/// `message.attempt.failing` after the fourth failure).
pub const FAILING_AFTER_ATTEMPTS: u32 = 4;

/// What an attempt meant for its delivery, for operational webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptEventKind {
    /// It failed and was the last: the delivery is given up.
    Exhausted,
    /// It was the [`FAILING_AFTER_ATTEMPTS`]-th failure, and more follow.
    Failing,
    /// It succeeded after a `Failing` attempt of the same delivery.
    Recovered,
}

#[derive(Debug, Clone)]
pub struct AttemptEvent {
    pub kind: AttemptEventKind,
    pub attempt: herald_core::model::Attempt,
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
        let transport = Arc::new(
            Transport::new(
                config.private_targets.clone(),
                &config.user_agent,
                // Pools are per host, and many endpoints may share one host.
                config.max_in_flight,
            )?
            .require_https(config.require_https),
        );
        let shared = Arc::new(Shared::new(config.max_resident, config.max_resident_bytes));
        backlog::count(&store, &shared.stats).await?;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (records_tx, records_rx) = mpsc::unbounded_channel();
        let (renewals_tx, renewals_rx) = mpsc::unbounded_channel();

        let recorder = tokio::spawn(recorder::record(
            store.clone(),
            config.lease(),
            shared.clone(),
            events_tx.clone(),
            records_rx,
        ));
        let renewer = tokio::spawn(recorder::renew(
            store.clone(),
            config.lease(),
            events_tx.clone(),
            renewals_rx,
        ));
        let channels = scheduler::Channels {
            records: records_tx,
            renewals: renewals_tx,
            events: events_tx.clone(),
        };
        let scheduler = tokio::spawn(
            scheduler::Scheduler::new(store.clone(), transport, config.clone(), shared.clone(), channels)
                .run(events_rx, shutdown.clone()),
        );
        let loader = tokio::spawn(loader::run(
            store.clone(),
            config.clone(),
            shared.clone(),
            events_tx.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(forward_changes(changes, events_tx.clone(), shutdown.clone()));
        let counter = tokio::spawn(backlog::run(
            store.clone(),
            shared.clone(),
            config.backlog_refresh,
            shutdown.clone(),
        ));
        Ok(Arc::new(Self {
            store,
            config,
            shared,
            events: events_tx,
            shutdown,
            tasks: tokio::sync::Mutex::new(vec![loader, scheduler, recorder, renewer, counter]),
        }))
    }

    /// Commits a message and its fan-out, then hands the deliveries to the
    /// scheduler directly (no read-back) when memory has room.
    ///
    /// Cancel-safe: a caller that stops waiting (its client hung up) hands
    /// the unfinished work to a task of its own, so a committed message is
    /// never left undispatched. Only then is a task spawned: one per
    /// message would cost more than the rest of the API's work on it.
    pub async fn ingest(self: &Arc<Self>, msg: NewMessage) -> Result<Ingested, StoreError> {
        let engine = self.clone();
        FinishOnDrop(Some(Box::pin(async move { engine.ingest_now(msg).await }))).await
    }

    async fn ingest_now(&self, mut msg: NewMessage) -> Result<Ingested, StoreError> {
        // One delivery at least, and the payload once: fan-out shares it.
        let has_room = self.shared.has_room(1, msg.payload.len()) && !self.shutdown.is_cancelled();
        msg.lease = has_room.then(|| self.config.lease());
        let ingested = self.store.ingest(msg).await?;
        let stats = &self.shared.stats;
        stats.messages_ingested.fetch_add(1, Ordering::Relaxed);
        stats.deliveries_created.fetch_add(
            (ingested.deliveries.len() + ingested.fifo.len()) as u64,
            Ordering::Relaxed,
        );
        if !ingested.fifo.is_empty() {
            let _ = self.events.send(Event::FifoWork(ingested.fifo.clone()));
        }
        if !ingested.deliveries.is_empty() {
            if has_room {
                let jobs = self.shared.admit(ingested.deliveries.clone());
                // If the scheduler is gone (shutting down) the claims are
                // recovered at the next start.
                let _ = self.events.send(Event::Jobs(jobs));
            } else {
                self.shared.wake_loader.notify_one();
            }
        }
        Ok(ingested)
    }

    /// Tells the loader that deliveries were made due outside ingest (a
    /// resend, a recover, a replay), so they go out now rather than at its
    /// next periodic look.
    pub fn wake(&self) {
        self.shared.wake_loader.notify_one();
    }

    /// Deliveries held in memory right now.
    pub fn resident(&self) -> usize {
        self.shared.resident()
    }

    /// Payload bytes held in memory right now.
    pub fn resident_bytes(&self) -> usize {
        self.shared.resident_bytes()
    }

    /// The node this engine claims as.
    pub fn node(&self) -> &herald_store::NodeId {
        &self.config.node
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// From now on, every attempt that exhausts a delivery, is its fourth
    /// failure, or succeeds after that. A listener that falls more than
    /// 1,024 behind misses the oldest (`RecvError::Lagged` says how many).
    pub fn attempt_events(&self) -> tokio::sync::broadcast::Receiver<AttemptEvent> {
        self.shared.attempt_events.subscribe()
    }

    /// Every endpoint the engine disables itself from now on (it answered
    /// `410 Gone`, or its disable rule tripped), once each; a listener that
    /// falls behind misses the oldest, as with [`Engine::attempt_events`].
    pub fn disabled(&self) -> tokio::sync::broadcast::Receiver<EndpointDisabled> {
        self.shared.disabled.subscribe()
    }

    /// Waits until the tasks have stopped after `shutdown` was cancelled:
    /// requests in flight finished (within the grace period), results
    /// recorded, and claims on unsent work returned to the store.
    pub async fn stopped(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().await);
        for t in tasks {
            if let Err(e) = t.await {
                tracing::error!(error = %e, "an engine task failed; its unsent work is recovered at the next start");
            }
        }
    }
}

/// Turns the store's change feed into scheduler events; a subscriber that
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
            Ok(Change::EndpointUpdated { endpoint_id, .. }) => Event::EndpointChanged(endpoint_id),
            Ok(Change::EndpointDeleted { endpoint_id, .. }) => Event::EndpointDeleted(endpoint_id),
            Ok(Change::AppDeleted { app_id }) => Event::AppDeleted(app_id),
            Ok(Change::Due) => Event::Due,
            Ok(Change::Missed) => {
                tracing::warn!("the change feed may have missed changes; reloading every endpoint");
                Event::Resync
            }
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

/// A future that, dropped before it completes, is run to completion in a
/// task of its own instead of being cancelled.
struct FinishOnDrop<F: Future + Send + 'static>(Option<Pin<Box<F>>>)
where
    F::Output: Send;

impl<F: Future + Send + 'static> Future for FinishOnDrop<F>
where
    F::Output: Send,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let work = self.0.as_mut().expect("polled after completion");
        let out = ready!(work.as_mut().poll(cx));
        self.0 = None;
        Poll::Ready(out)
    }
}

impl<F: Future + Send + 'static> Drop for FinishOnDrop<F>
where
    F::Output: Send,
{
    fn drop(&mut self) {
        if let Some(work) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(work);
        }
    }
}
