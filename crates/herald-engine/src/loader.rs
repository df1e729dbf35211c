//! The loader: claims due deliveries from the store while memory has room,
//! by count and by bytes, then sleeps until the next one is due or it is
//! woken (work handed back, room freed) instead of polling.

use std::sync::Arc;
use std::time::Duration;

use herald_store::{Store, StoreError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::ticket::Shared;
use crate::{EngineConfig, Event};

/// How many due deliveries the loader claims per round.
const LOAD_BATCH: usize = 1000;
/// Payload bytes one claim may read, so no transaction reads a gigabyte.
pub(crate) const LOAD_MAX_BYTES: usize = 16 * 1024 * 1024;
/// How long the loader sleeps at most when it knows of no due work: a
/// safety net, not the mechanism, for what no wake-up announces (another
/// node's lapsed claims).
const LOADER_MAX_SLEEP: Duration = Duration::from_secs(30);

/// The loader's longest sleep under `claim_ttl`: a quarter of a lease, so a
/// dead node's lapsed claims are taken over within a lease and a quarter of
/// its last renewal, never two leases.
pub(crate) fn max_sleep(claim_ttl: Duration) -> Duration {
    (claim_ttl / 4).clamp(Duration::from_millis(100), LOADER_MAX_SLEEP)
}

pub(crate) async fn run(
    store: Arc<dyn Store>,
    cfg: EngineConfig,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Event>,
    shutdown: CancellationToken,
) {
    let lease = cfg.lease();
    let max_sleep = max_sleep(cfg.claim_ttl);
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let (room, byte_room) = shared.room();
        let mut wait = max_sleep;
        if room > 0 && byte_room > 0 {
            let limit = room.min(LOAD_BATCH);
            match store.claim_due(&lease, limit, byte_room.min(LOAD_MAX_BYTES)).await {
                Ok(jobs) => {
                    let n = jobs.len();
                    if n > 0 {
                        shared
                            .stats
                            .deliveries_loaded
                            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                        if events.send(Event::Jobs(shared.admit(jobs))).is_err() {
                            return;
                        }
                        // A full batch, or one cut short by its bytes: more may be due.
                        continue;
                    }
                    match store.next_due(&lease.owner).await {
                        Ok(Some(until)) => wait = wait.min(until.max(Duration::from_millis(1))),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "could not read the next due time");
                            wait = Duration::from_secs(1);
                        }
                    }
                    // Ordered endpoints' lanes claim their own work, in order.
                    match store.fifo_due().await {
                        Ok(due) => {
                            if let Some(until) = due.next {
                                wait = wait.min(until.max(Duration::from_millis(1)));
                            }
                            if !due.ready.is_empty() && events.send(Event::FifoWork(due.ready)).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not read the ordered endpoints' due work");
                            wait = Duration::from_secs(1);
                        }
                    }
                }
                Err(StoreError::Closed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming due deliveries failed");
                    wait = Duration::from_secs(1);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.wake_loader.notified() => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
