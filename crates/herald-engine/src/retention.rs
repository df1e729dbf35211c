//! The retention task (SPEC §3 History): prunes old messages with their
//! deliveries and attempts, expunges payloads past their
//! `payloadRetentionPeriod`, and drops idempotency keys no longer replayed
//! and app-scoped tokens that expired.
//!
//! It runs beside the engine rather than inside it because it shares
//! nothing with delivery but the store. Work comes in small batches, each one
//! short store write, with a pause between them, so the writer is never
//! held for long and ingest keeps its latency while a large backlog of old
//! history goes. What is still pending delivery is never pruned (the store
//! guarantees it), however old.

use std::sync::Arc;
use std::time::Duration;

use herald_store::{DEFAULT_PAYLOAD_RETENTION, PruneCursor, Store, StoreError};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// Messages and their attempts older than this are pruned.
    pub retention: Duration,
    /// A payload whose message set no `payloadRetentionPeriod` is expunged
    /// this long after it was created.
    pub payload_retention: Duration,
    /// Saved idempotency responses older than this are pruned: the shorter
    /// of the replay window and the retention period (a key that is no
    /// longer replayed is dead weight; one that outlives its message would
    /// replay a message that no longer exists).
    pub idempotency: Duration,
    /// Time between passes; the first pass starts after the shorter of this
    /// and [`FIRST_PASS_MAX_DELAY`].
    pub interval: Duration,
    /// Rows per batch: one store write each.
    pub batch: usize,
    /// Pause between batches, which leaves the writer to ingest.
    pub pause: Duration,
}

/// A pass shortly after start, not a whole interval later, so a node that
/// was down catches up; not at once, so it does not compete with start-up.
pub const FIRST_PASS_MAX_DELAY: Duration = Duration::from_secs(10);

impl RetentionConfig {
    /// Settings for a retention period: a pass every tenth of it, at most
    /// hourly (and at least every 50 ms, for tests' tiny periods).
    pub fn for_period(retention: Duration, idempotency_window: Duration) -> Self {
        Self {
            retention,
            payload_retention: DEFAULT_PAYLOAD_RETENTION,
            idempotency: idempotency_window.min(retention),
            interval: (retention / 10).clamp(Duration::from_millis(50), Duration::from_secs(3600)),
            batch: 500,
            pause: Duration::from_millis(20),
        }
    }
}

/// What one pass did, for the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Pass {
    messages: u64,
    attempts: u64,
    payloads: u64,
    idempotency: u64,
    tokens: u64,
}

impl Pass {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Runs passes until `shutdown` is cancelled or the store closes. Returns
/// promptly on shutdown: at most one batch is in flight, and it commits or
/// not as a whole.
pub async fn run(store: Arc<dyn Store>, cfg: RetentionConfig, shutdown: CancellationToken) {
    let mut wait = cfg.interval.min(FIRST_PASS_MAX_DELAY);
    // Every message before this has no payload left to expunge by age: a
    // pass starts there rather than at the oldest message, so a long
    // retention period does not make each pass re-read old history.
    let mut payloads_from = PruneCursor::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = cfg.interval;
        let mut pass = Pass::default();
        match one_pass(&*store, &cfg, &shutdown, &mut payloads_from, &mut pass).await {
            Ok(()) => {}
            Err(StoreError::Closed) => return,
            // The next pass tries again; what this one did is committed.
            Err(e) => tracing::warn!(error = %e, "retention pass failed"),
        }
        if !pass.is_empty() {
            tracing::info!(
                messages = pass.messages,
                attempts = pass.attempts,
                payloads_expunged = pass.payloads,
                idempotency_keys = pass.idempotency,
                expired_tokens = pass.tokens,
                "retention: pruned history"
            );
        }
    }
}

async fn one_pass(
    store: &dyn Store,
    cfg: &RetentionConfig,
    shutdown: &CancellationToken,
    payloads_from: &mut PruneCursor,
    pass: &mut Pass,
) -> Result<(), StoreError> {
    let batch = cfg.batch.max(1);
    let full = |n: u64| n >= batch as u64;
    // Payloads first: they are due before their messages are.
    let mut cursor = *payloads_from;
    let mut settled = true;
    loop {
        let p = store.expunge_payloads(cfg.payload_retention, batch, cursor).await?;
        pass.payloads += p.payloads;
        // Up to the first payload kept for a pending message, the next pass
        // need not look again (from the batch before it, conservatively).
        settled &= !p.kept_pending;
        if settled {
            *payloads_from = p.cursor;
        }
        cursor = p.cursor;
        if !p.more || !breathe(cfg, shutdown).await {
            break;
        }
    }
    let mut cursor = PruneCursor::default();
    loop {
        let p = store.prune_messages(cfg.retention, batch, cursor).await?;
        pass.messages += p.messages;
        pass.attempts += p.attempts;
        let Some(next) = p.next else { break };
        if !breathe(cfg, shutdown).await {
            break;
        }
        cursor = next;
    }
    loop {
        let n = store.prune_idempotency(cfg.idempotency, batch).await?;
        pass.idempotency += n;
        if !full(n) || !breathe(cfg, shutdown).await {
            break;
        }
    }
    loop {
        let n = store.prune_expired_tokens(batch).await?;
        pass.tokens += n;
        if !full(n) || !breathe(cfg, shutdown).await {
            break;
        }
    }
    Ok(())
}

/// The pause between batches; false once shutdown has begun.
async fn breathe(cfg: &RetentionConfig, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(cfg.pause) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_interval_follows_the_period() {
        let day = Duration::from_secs(86_400);
        let window = Duration::from_secs(24 * 3600);
        let default = RetentionConfig::for_period(30 * day, window);
        assert_eq!(default.interval, Duration::from_secs(3600));
        assert_eq!(default.idempotency, window);
        let tiny = RetentionConfig::for_period(Duration::from_secs(8), window);
        assert_eq!(tiny.interval, Duration::from_millis(800));
        assert_eq!(tiny.idempotency, Duration::from_secs(8));
        assert_eq!(
            RetentionConfig::for_period(Duration::from_millis(10), window).interval,
            Duration::from_millis(50)
        );
    }
}
