//! Retention: what lets history be pruned in the background (SPEC §3
//! History) without ever stalling ingest.
//!
//! Every method does one small batch and says how much it did, so the caller
//! (the engine's retention task) decides the pace: a batch is one short write
//! (on SQLite one savepoint inside a group commit), and between batches
//! ingest has the writer to itself. A backend must never prune a message
//! that still has a pending delivery: accepted data still to be delivered is
//! never lost, however old it is.

use std::time::Duration;

use crate::Result;

/// How long a payload is kept when the message did not say
/// (`payloadRetentionPeriod` defaults to 90 days in Svix).
pub const DEFAULT_PAYLOAD_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

/// Where a walk over old messages goes on from. A pass starts at
/// [`PruneCursor::default`] (the oldest message) and follows
/// [`PrunedMessages::next`], so messages kept because they are still pending
/// are looked at once per pass, not once per batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneCursor(i64);

impl PruneCursor {
    pub(crate) fn at(position: i64) -> Self {
        Self(position)
    }
    pub(crate) fn position(self) -> i64 {
        self.0
    }
}

/// What one batch of [`RetentionStore::prune_messages`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrunedMessages {
    pub messages: u64,
    pub attempts: u64,
    /// Where the next batch goes on from; `None` once the walk reached
    /// messages too young to prune (the pass is done).
    pub next: Option<PruneCursor>,
}

/// What one batch of [`RetentionStore::expunge_payloads`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpungedPayloads {
    pub payloads: u64,
    /// Where the walk over default-retention payloads stands: the next
    /// batch goes on from here.
    pub cursor: PruneCursor,
    /// The walk kept a due payload because its message is still pending:
    /// a later pass must look at it again, so it should not start past it.
    pub kept_pending: bool,
    /// The batch was full: more may be due now.
    pub more: bool,
}

#[async_trait::async_trait]
pub trait RetentionStore: Send + Sync {
    /// Deletes up to `batch` messages created more than `max_age` ago (by the
    /// database's clock), oldest first from `from`, with their deliveries and
    /// attempts; a message with a pending delivery is kept. One batch also
    /// looks at no more than a few times `batch` messages, so a run of pending
    /// ones cannot make it long.
    async fn prune_messages(&self, max_age: Duration, batch: usize, from: PruneCursor) -> Result<PrunedMessages>;
    /// Expunges the payloads of up to `batch` messages whose payload
    /// retention has passed: the message and its attempts stay, its payload
    /// becomes empty (which no posted payload is: they are JSON objects). A
    /// message with a pending delivery keeps its payload until it is sent.
    ///
    /// A message that set `payloadRetentionPeriod` expires at its own time;
    /// one that did not expires `default_retention` after it was created.
    /// The second kind is the common one and costs ingest nothing: no expiry
    /// is stored or indexed for it, and it is found by walking messages
    /// oldest first from `from`, stopping at the first one too young.
    async fn expunge_payloads(
        &self,
        default_retention: Duration,
        batch: usize,
        from: PruneCursor,
    ) -> Result<ExpungedPayloads>;
    /// Deletes up to `batch` responses saved for idempotency keys more than
    /// `max_age` ago (oldest first); returns how many, fewer than `batch`
    /// once nothing more is due.
    async fn prune_idempotency(&self, max_age: Duration, batch: usize) -> Result<u64>;
    /// Deletes up to `batch` app-scoped tokens whose expiry has passed (by
    /// the database's clock; every portal visit makes one); returns how
    /// many, fewer than `batch` once none is left.
    async fn prune_expired_tokens(&self, batch: usize) -> Result<u64>;
}
