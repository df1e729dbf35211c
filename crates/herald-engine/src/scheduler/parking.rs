//! Work a lane cannot take now waits parked in the store: claimed by this
//! node, out of memory, due for no one, costing nothing.
//!
//! Two things park a lane's work:
//! - **backpressure**: a lane holds at most its share of memory
//!   ([`Scheduler::lane_cap`]); beyond it, new jobs are parked, and they
//!   come back earliest-due first as the lane's queue drains below half.
//!   A hanging endpoint so fills its share of memory, not everyone's.
//! - **an open circuit**: everything is parked, the backlog in the store
//!   where it lies (no payload read), and one probe at a time goes out,
//!   the earliest-due parked delivery. When the circuit closes, the parked
//!   work is released to the loader at once.
//!
//! A parked delivery keeps its attempt count and its next attempt time:
//! parking pauses nothing but memory, and a delivery is never tried
//! earlier or more often because of it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use herald_core::EndpointId;
use herald_store::Held;
use tokio::time::Instant;

use super::Scheduler;
use super::timers::Wake;
use crate::Event;
use crate::recorder::Record;
use crate::ticket::Job;

/// What to take back from a lane's parked deliveries.
#[derive(Clone, Copy)]
enum Take {
    /// The earliest due, to probe an open circuit with.
    Probe,
    /// Up to this many due, earliest first, into a lane with room.
    Refill(usize),
}

impl Scheduler {
    /// Schedules an open circuit's next probe at `at`, plus up to a fifth of
    /// the wait again, so endpoints that failed together are not all probed
    /// in the same instant ever after; then on the next probe tick (a
    /// quarter of the first probe interval), so the probes of many dead
    /// endpoints go out, fail and are recorded together, a write for many
    /// outcomes rather than one each.
    pub(super) fn schedule_probe(&mut self, id: EndpointId, at: Instant) {
        use rand::Rng;
        let wait = at.saturating_duration_since(Instant::now());
        let spread = wait.mul_f64(rand::rng().random_range(0.0..0.2));
        let tick = (self.lane_cfg.first_probe / 4).max(Duration::from_millis(1));
        let since = (at + spread).saturating_duration_since(self.epoch);
        let rounded = since.as_nanos().div_ceil(tick.as_nanos()) * tick.as_nanos();
        let on_tick = self.epoch + Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX));
        self.timers.schedule(Wake::Probe(id), on_tick);
    }

    /// How many jobs a lane may hold in memory, queued or in flight: the
    /// resident budget less a reserve for the next lane to turn up (its fair
    /// share, but never more than a tenth of the budget, so that a lone busy
    /// endpoint keeps most of it), split over the active lanes.
    pub(super) fn lane_cap(&self) -> usize {
        let max = self.cfg.max_resident;
        let reserve = (max / (self.active + 1)).min(max / 10);
        ((max - reserve) / self.active.max(1)).max(1)
    }

    /// Parks jobs this lane will not hold in memory.
    pub(super) fn park(&mut self, id: &EndpointId, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        if let Some(ls) = self.lanes.get_mut(id) {
            ls.parked = true;
        }
        let parked: Vec<(Held, Job)> = jobs.into_iter().map(|j| (self.held_of(&j), j)).collect();
        for (h, _) in &parked {
            self.held.remove(&h.id);
        }
        let _ = self.records.send(Record::Park(parked));
    }

    /// A lane with parked work and room in its queue takes the next due
    /// batch back, unless its circuit is open (probes do that then).
    pub(super) fn refill(&mut self, id: &EndpointId) {
        let cap = self.lane_cap();
        let Some(ls) = self.lanes.get(id) else { return };
        let held = ls.lane.queued() + ls.lane.in_flight();
        if !ls.parked || ls.claiming || ls.lane.is_open() || self.stopping || held > cap / 2 {
            return;
        }
        let want = cap - held;
        self.take_parked(id, Take::Refill(want));
    }

    /// An open circuit's probe time: send what is queued, or take the
    /// earliest-due parked delivery to probe with (a read while its parked
    /// claim lasts: the store's `probe_parked`).
    pub(super) fn probe(&mut self, id: &EndpointId) {
        let Some(ls) = self.lanes.get(id) else { return };
        if !ls.lane.is_open() || ls.lane.in_flight() > 0 {
            return;
        }
        self.refresh(id);
        let Some(ls) = self.lanes.get(id) else { return };
        if ls.lane.queued() > 0 {
            self.pump(id);
        } else if !ls.claiming {
            self.take_parked(id, Take::Probe);
        }
    }

    /// Takes parked deliveries back from the store, off the scheduler's
    /// task; they arrive as [`Event::Claimed`].
    fn take_parked(&mut self, id: &EndpointId, take: Take) {
        let Some(ls) = self.lanes.get_mut(id) else { return };
        ls.claiming = true;
        let (store, lease, shared, events, id) = (
            self.store.clone(),
            self.cfg.lease(),
            self.shared.clone(),
            self.events.clone(),
            id.clone(),
        );
        tokio::spawn(async move {
            let (taken, asked) = match take {
                Take::Probe => (store.probe_parked(&lease, id.clone()).await.map(Vec::from_iter), 1),
                Take::Refill(limit) => {
                    // Within the memory left, and never a gigabyte in one transaction.
                    let max_bytes = shared.room().1.clamp(1, crate::loader::LOAD_MAX_BYTES);
                    (store.claim_parked(&lease, id.clone(), limit, max_bytes).await, limit)
                }
            };
            let jobs = match taken {
                Ok(jobs) => shared.admit(jobs),
                Err(e) => {
                    tracing::warn!(error = %e, endpoint_id = %id, "could not take parked deliveries back");
                    Vec::new()
                }
            };
            let _ = events.send(Event::Claimed {
                endpoint: id,
                jobs,
                asked,
            });
        });
    }

    /// Parked deliveries taken back for a probe or a refill.
    pub(super) fn on_claimed(&mut self, id: EndpointId, jobs: Vec<Job>, asked: usize) {
        let Some(ls) = self.lanes.get_mut(&id) else { return };
        ls.claiming = false;
        let short = jobs.len() < asked;
        if ls.lane.is_open() {
            if jobs.is_empty() {
                // Nothing parked is due yet: look again a (longer) probe
                // interval from now.
                ls.lane.probe_found_nothing(&self.lane_cfg, Instant::now());
                if let Some(at) = ls.lane.probe_at() {
                    self.schedule_probe(id, at);
                }
                return;
            }
        } else if short {
            // What is still parked is not due yet: back to the store's due
            // index, where the loader finds it when it is.
            ls.parked = false;
            let _ = self.records.send(Record::Unpark(id.clone()));
        }
        self.on_event(Event::Jobs(jobs));
    }

    pub(super) fn circuit_opened(&mut self, id: &EndpointId) {
        self.shared.stats.circuits_open.fetch_add(1, Ordering::Relaxed);
        let Some(ls) = self.lanes.get_mut(id) else { return };
        tracing::info!(endpoint_id = %id, "endpoint unreachable; circuit open, its deliveries wait in the store");
        let jobs: Vec<Job> = ls.lane.drain().collect();
        let at = ls.lane.probe_at();
        ls.parked = true;
        self.park(id, jobs);
        if let Some(at) = at {
            self.schedule_probe(id.clone(), at);
        }
        // The backlog in the store is parked where it lies, payloads unread.
        let _ = self.records.send(Record::ParkBacklog(id.clone()));
        self.refresh(id);
        // One circuit for the endpoint, whichever nodes send to it (`holds.rs`).
        self.want_hold(id);
    }

    pub(super) fn circuit_closed(&mut self, id: &EndpointId) {
        self.shared.stats.circuits_open.fetch_sub(1, Ordering::Relaxed);
        tracing::info!(endpoint_id = %id, "endpoint answers again; circuit closed");
        self.circuit_hold_done(id);
        if let Some(ls) = self.lanes.get_mut(id)
            && std::mem::take(&mut ls.parked)
        {
            let _ = self.records.send(Record::Unpark(id.clone()));
        }
    }
}
