//! Batching endpoints: a lane sends when its batch is full or its oldest
//! job has waited `maxWaitMs`; a timer wakes it for the latter.

use herald_core::EndpointId;
use herald_core::model::BatchPolicy;
use tokio::time::Instant;

use super::Scheduler;
use super::timers::Wake;
use crate::attempt;

impl Scheduler {
    /// Whether a batching lane sends now: its batch is full, or its oldest
    /// job has waited `maxWaitMs` (scaled); otherwise a wake is set for then.
    pub(super) fn batch_ready(&mut self, id: &EndpointId, batch: BatchPolicy, now: Instant) -> bool {
        let Some(ls) = self.lanes.get_mut(id) else { return false };
        if ls.lane.queued() >= batch.max_events as usize {
            return true;
        }
        let Some(oldest) = ls.lane.front() else { return false };
        let at = oldest.queued_at + attempt::scaled(batch.max_wait(), self.cfg.time_scale);
        if at <= now {
            return true;
        }
        if !ls.batch_wake {
            ls.batch_wake = true;
            self.timers.schedule(Wake::Batch(id.clone()), at);
        }
        false
    }
}
