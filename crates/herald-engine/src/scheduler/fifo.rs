//! Ordered (`fifo`) endpoints: message n+1 is not sent before message n
//! succeeded or was given up, across retries and restarts.
//!
//! The order lives in the store. An ordered endpoint's deliveries are never
//! born claimed and never in the loader's due work: its lane claims them
//! itself, a run at a time in id order ([`herald_store::DeliveryQueue::claim_fifo`]),
//! whenever it knows the store holds more (after an ingest, when the loader
//! finds its oldest delivery due, or when a full run came back) and its
//! queue is below half a run. The lane is serial ([`crate::lane`]): one
//! request at a time, and a failed head keeps its claim and blocks the
//! lane until its retry goes out. After a restart the claims are gone, and
//! the store hands the run out again from the oldest pending delivery, the
//! one that was being retried, once it is due.

use herald_core::{AppId, EndpointId};

use super::{LaneState, Scheduler};
use crate::Event;
use crate::ticket::Job;

/// Deliveries an ordered lane claims at most at once: enough that a fast
/// receiver never waits on a claim (the next run is claimed when half is
/// sent), few enough that memory holds many ordered lanes.
const FIFO_RUN: usize = 256;

impl Scheduler {
    /// Ordered endpoints with work in the store.
    pub(super) fn on_fifo_work(&mut self, endpoints: Vec<(AppId, EndpointId)>) {
        for (app_id, id) in endpoints {
            if self.stopping {
                return;
            }
            let cfg = &self.lane_cfg;
            let ls = self
                .lanes
                .entry(id.clone())
                .or_insert_with(|| LaneState::new(cfg, app_id));
            ls.lane.set_serial(cfg, true);
            ls.fifo_more = true;
            self.fifo_fill(&id);
        }
    }

    /// A lane's target turned `fifo` on or off. Turning on, what is queued
    /// goes on one at a time, and the rest is in the store, to be claimed
    /// in order.
    pub(super) fn set_fifo(&mut self, id: &EndpointId, fifo: bool) {
        let Some(ls) = self.lanes.get_mut(id) else { return };
        ls.lane.set_serial(&self.lane_cfg, fifo);
        ls.fifo_more = fifo;
        self.refresh(id);
    }

    /// Claims an ordered lane's next run when the store may hold more and
    /// its queue is below half a run.
    pub(super) fn fifo_fill(&mut self, id: &EndpointId) {
        if self.stopping {
            return;
        }
        let Some(ls) = self.lanes.get_mut(id) else { return };
        let queued = ls.lane.queued();
        if !ls.lane.is_serial() || !ls.fifo_more || ls.claiming || queued >= FIFO_RUN / 2 {
            return;
        }
        ls.claiming = true;
        ls.fifo_more = false;
        let (room, byte_room) = self.shared.room();
        // At least one, so an ordered lane moves even while memory is full.
        let limit = (FIFO_RUN - queued).min(room).max(1);
        let max_bytes = byte_room.clamp(1, crate::loader::LOAD_MAX_BYTES);
        let (store, lease, shared, events, id) = (
            self.store.clone(),
            self.cfg.lease(),
            self.shared.clone(),
            self.events.clone(),
            id.clone(),
        );
        tokio::spawn(async move {
            let jobs = match store.claim_fifo(&lease, id.clone(), limit, max_bytes).await {
                Ok(jobs) => shared.admit(jobs),
                Err(e) => {
                    // The loader finds the endpoint's oldest delivery due
                    // again and hands it back here.
                    tracing::warn!(error = %e, endpoint_id = %id, "could not claim an ordered endpoint's deliveries");
                    Vec::new()
                }
            };
            let _ = events.send(Event::FifoClaimed {
                endpoint: id,
                jobs,
                asked: limit,
            });
        });
    }

    /// An ordered lane's run arrived: queued behind what it holds, in order.
    pub(super) fn on_fifo_claimed(&mut self, id: EndpointId, jobs: Vec<Job>, asked: usize) {
        if let Some(ls) = self.lanes.get_mut(&id) {
            ls.claiming = false;
            // A full run: more may follow it.
            ls.fifo_more |= jobs.len() >= asked;
        }
        if jobs.is_empty() {
            self.fifo_fill(&id);
            self.forget_idle_lane(&id);
            return;
        }
        self.on_event(Event::Jobs(jobs));
    }
}
