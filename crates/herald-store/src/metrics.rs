//! What a store counts for `/metrics`: facts only the store sees, counted
//! when the transaction that makes them true commits (never for one that
//! rolls back).

use std::sync::atomic::{AtomicU64, Ordering};

use herald_core::metrics::Histogram;

/// Bounds of `herald_ingest_batch_size`: messages per commit, in powers of
/// two up to the SQLite writer's largest batch (1,024 queued writes).
pub const INGEST_BATCH_BOUNDS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

#[derive(Debug)]
pub struct StoreMetrics {
    /// Messages ingested per commit that carried any (the group commit at
    /// work: one fsync for the whole batch).
    pub ingest_batch: Histogram,
    /// Pending deliveries canceled because their endpoint was deleted, or
    /// deleted with their application.
    pub deliveries_cancelled: AtomicU64,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self {
            ingest_batch: Histogram::new(INGEST_BATCH_BOUNDS, 1),
            deliveries_cancelled: AtomicU64::new(0),
        }
    }
}

/// What one transaction did that [`StoreMetrics`] counts, kept aside until
/// it commits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub messages: u64,
    pub cancelled: u64,
}

impl StoreMetrics {
    /// Counts what a committed transaction did.
    pub(crate) fn committed(&self, tally: Tally) {
        if tally.messages > 0 {
            self.ingest_batch.observe(tally.messages);
        }
        if tally.cancelled > 0 {
            self.deliveries_cancelled.fetch_add(tally.cancelled, Ordering::Relaxed);
        }
    }
}
