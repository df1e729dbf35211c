//! The backlog gauge: how many deliveries are pending in the store, counted
//! by the store ([`herald_store::DeliveryQueue::backlog`]) every
//! `backlog_refresh` (5 s) on its own task, and cached in [`crate::Stats`].
//!
//! A scrape reads the cached number and never touches the database, so
//! its cost is the same with one scraper or ten, and the count's cost (an
//! index walk over the pending rows, about 0.1 s per million on a reader
//! thread, never on the async workers) is paid once per interval. The
//! price is staleness: the gauge is at most one interval old, and its
//! time is published beside it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use herald_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::Stats;
use crate::ticket::Shared;

/// Counts the backlog once and publishes it.
pub(crate) async fn count(store: &Arc<dyn Store>, stats: &Stats) -> Result<(), StoreError> {
    let n = store.backlog().await?;
    stats.backlog.store(n, Ordering::Relaxed);
    let now = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
    stats.backlog_counted_at_ms.store(now, Ordering::Relaxed);
    Ok(())
}

/// Counts the backlog every `every` until `shutdown`. A failed count keeps
/// the last value, whose time then shows its age.
pub(crate) async fn run(store: Arc<dyn Store>, shared: Arc<Shared>, every: Duration, shutdown: CancellationToken) {
    // Configuration refuses a zero interval; an interval of zero would panic.
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate, and the engine counted at start.
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        match count(&store, &shared.stats).await {
            Ok(()) => {}
            Err(StoreError::Closed) => return,
            Err(e) => tracing::warn!(error = %e, "could not count the backlog; /metrics shows the last count"),
        }
    }
}
