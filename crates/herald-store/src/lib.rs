//! Herald's storage: the traits the API and the delivery engine talk to, and
//! their implementations. This is the only crate that knows SQL.
//!
//! [`Store`] is these contracts and a change feed:
//! - [`ResourceStore`]: applications, endpoints, event types, and the read
//!   side of messages and attempts;
//! - [`DeliveryQueue`]: ingest with fan-out (so an implementation can
//!   group-commit many messages under one fsync), and deliveries claimed,
//!   renewed, recorded and released under owned, fenced leases whose expiry
//!   the database's clock decides;
//! - [`HistoryStore`]: one attempt, attempted messages and destinations,
//!   stats over a time range, expunging content;
//! - [`RedeliveryStore`]: resend, recover, replay-missing;
//! - [`TaskStore`]: the background tasks those run as;
//! - [`AccessStore`]: app-scoped tokens, kept as digests;
//! - [`IdempotencyStore`]: responses saved for `idempotency-key`s;
//! - [`RetentionStore`]: history pruned and payloads expunged in small
//!   batches, never what is still to be delivered;
//! - [`HealthStore`]: endpoints' failure streaks, for their disable rules;
//! - [`Store::changes`]: endpoint and application changes, announced after
//!   they commit, for every node's engine;
//! - [`Store::metrics`]: what only the store sees (messages per group
//!   commit, deliveries canceled by deletes), counted as it commits.

use tokio::sync::broadcast;

mod access;
mod changes;
mod crypto;
mod health;
mod history;
mod idempotency;
mod metrics;
pub mod postgres;
mod queue;
mod redeliver;
mod resources;
mod retention;
pub mod sqlite;
mod tasks;

pub use access::{AccessStore, AppToken};
pub use changes::{CHANGE_BUFFER, Change};
pub use crypto::{EncryptionKey, KeyError};
pub use health::HealthStore;
pub use history::{EndpointMessage, HistoryStore, MessageDestination, TimeRange, shown_status};
pub use idempotency::{IdempotencyStore, SavedResponse};
pub use metrics::{INGEST_BATCH_BOUNDS, StoreMetrics};
pub use queue::{
    AppRef, DeliveryJob, DeliveryQueue, DeliveryState, FifoDue, Held, Ingested, Lease, LeaseResult, NewMessage, NodeId,
    Outcome, RetryHold,
};
pub use redeliver::RedeliveryStore;
pub use resources::{
    AttemptFilter, DeliveryCounts, MessageFilter, NewApplication, NewEndpoint, Order, Page, PageRequest, ResourceStore,
};
pub use retention::{DEFAULT_PAYLOAD_RETENTION, ExpungedPayloads, PruneCursor, PrunedMessages, RetentionStore};
pub use tasks::{Task, TaskKind, TaskStatus, TaskStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("the store is shut down")]
    Closed,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("database error: {0}")]
    Postgres(tokio_postgres::Error),
    /// The database cannot be reached (down, restarting, or every pooled
    /// connection is broken): nothing was written, and the caller may retry.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("could not commit: {0}")]
    Commit(String),
    #[error("storage I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("secret encryption: {0}")]
    Crypto(String),
    #[error("could not encode a value for storage: {0}")]
    Encode(String),
    /// The request names real data but cannot be done in its present
    /// state (e.g. resending a message whose payload was expunged).
    #[error("{0}")]
    Refused(String),
}

/// The most replaced secrets that may sign beside the current one at once
/// (Svix's bound too).
pub const MAX_RETIRING_SECRETS: usize = 10;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[async_trait::async_trait]
pub trait Store:
    ResourceStore
    + HistoryStore
    + RedeliveryStore
    + TaskStore
    + AccessStore
    + DeliveryQueue
    + IdempotencyStore
    + RetentionStore
    + HealthStore
    + 'static
{
    /// Changes committed from now on, on this node and (for a shared
    /// database) every other.
    fn changes(&self) -> broadcast::Receiver<Change>;
    /// What this store counted for `/metrics` since it was opened.
    fn metrics(&self) -> &StoreMetrics;
    /// Flushes and closes; later calls fail with [`StoreError::Closed`].
    async fn close(&self);
}
