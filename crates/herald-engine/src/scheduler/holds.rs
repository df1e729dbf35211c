//! Endpoint holds: an endpoint whose policy must hold across nodes sharing
//! a database is sent to by one node at a time, the one that holds it in
//! the store (`DeliveryQueue::hold_endpoints`). Two policies need it:
//! - a `rateLimit`, so the spacing is the endpoint's, not each node's;
//! - an open circuit, so one node probes a dead endpoint and parks its
//!   backlog, rather than every node finding it dead on its own.
//!
//! A lane that needs its endpoint's hold starts no request until the store
//! grants it. Refused (another node holds it), the lane hands everything it
//! has of the endpoint back to the store, unclaimed and due: while the hold
//! lasts, other nodes' ingests leave new deliveries unclaimed too and their
//! loaders skip them, so the holder, woken by `Change::Due`, claims them.
//! Holds are renewed with the claims, every quarter lease, while the lane
//! lives, and released once it is gone.

use herald_core::EndpointId;

use super::Scheduler;
use super::targets::TargetEntry;
use crate::Event;
use crate::recorder::Record;
use crate::ticket::Job;

/// Where this node stands with an endpoint's hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hold {
    /// Asked for; no answer yet.
    Asking,
    /// Granted (and renewed since).
    Held,
}

impl Scheduler {
    /// Whether the lane may start a request: yes unless its endpoint's
    /// policy needs the hold and this node does not have it yet, in which
    /// case it is asked for (once).
    pub(super) fn hold_allows(&mut self, id: &EndpointId, rate_limited: bool) -> bool {
        let Some(ls) = self.lanes.get(id) else { return false };
        if ls.lane.is_serial() || !(rate_limited || ls.lane.is_open()) {
            return true;
        }
        match self.holds.get(id) {
            Some(Hold::Held) => true,
            Some(Hold::Asking) => false,
            None => {
                self.ask_hold(id);
                false
            }
        }
    }

    /// Asks for the hold unless it is held or asked for already (a circuit
    /// that opened takes it at once, so that other nodes' new deliveries
    /// come here to be parked).
    pub(super) fn want_hold(&mut self, id: &EndpointId) {
        if !self.holds.contains_key(id) {
            self.ask_hold(id);
        }
    }

    fn ask_hold(&mut self, id: &EndpointId) {
        self.holds.insert(id.clone(), Hold::Asking);
        let (store, lease, events, id) = (self.store.clone(), self.cfg.lease(), self.events.clone(), id.clone());
        tokio::spawn(async move {
            let answer = match store.hold_endpoints(&lease, vec![id.clone()]).await {
                Ok(held) => Some(held.first().copied().unwrap_or(false)),
                Err(e) => {
                    tracing::warn!(error = %e, endpoint_id = %id, "could not take the endpoint's hold");
                    None
                }
            };
            let _ = events.send(Event::HoldAnswered {
                endpoints: vec![(id, answer)],
            });
        });
    }

    /// The store's answers: granted, refused (`Some(false)`: another node
    /// holds the endpoint), or unknown (`None`: the store failed; asked
    /// again when the lane next has something to send).
    pub(super) fn on_holds(&mut self, answers: Vec<(EndpointId, Option<bool>)>) {
        for (id, answer) in answers {
            match answer {
                Some(true) => {
                    self.holds.insert(id.clone(), Hold::Held);
                    self.pump(&id);
                }
                Some(false) => {
                    self.holds.remove(&id);
                    self.hand_over(&id);
                }
                None => {
                    self.holds.remove(&id);
                }
            }
        }
        self.serve_ready();
    }

    /// Another node holds the endpoint: what this node has of it that is
    /// not in flight (queued, awaiting a retry, parked) goes back to the
    /// store, unclaimed and due when it was, for the holder to take.
    fn hand_over(&mut self, id: &EndpointId) {
        let mut jobs: Vec<Job> = self.timers.remove_endpoint(id);
        let Some(ls) = self.lanes.get_mut(id) else {
            return self.release_jobs(jobs);
        };
        jobs.extend(ls.lane.drain());
        let parked = std::mem::take(&mut ls.parked);
        let idle = ls.lane.in_flight() == 0 && !ls.claiming;
        tracing::info!(endpoint_id = %id, deliveries = jobs.len(), "another node holds this endpoint; its deliveries go there");
        self.release_jobs(jobs);
        if parked {
            let _ = self.records.send(Record::Unpark(id.clone()));
        }
        if idle {
            self.remove_lane(id);
        } else if let Some(ls) = self.lanes.get_mut(id) {
            // Its timers went with the retries.
            ls.pace_wake = false;
            ls.batch_wake = false;
            self.refresh(id);
        }
    }

    fn release_jobs(&mut self, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        let released: Vec<_> = jobs.into_iter().map(|j| (self.held_of(&j), j)).collect();
        for (h, _) in &released {
            self.held.remove(&h.id);
        }
        let _ = self.records.send(Record::Release(released));
    }

    /// A closed circuit gives up the hold it took, unless the endpoint's
    /// rate limit still needs it.
    pub(super) fn circuit_hold_done(&mut self, id: &EndpointId) {
        let rate_limited = matches!(self.targets.get(id), Some(TargetEntry::Ready(t)) if t.spec.rate_limit.is_some());
        if !rate_limited && self.holds.remove(id).is_some() {
            self.release_holds(vec![id.clone()]);
        }
    }

    /// Every quarter lease: renews the holds of endpoints this node still
    /// has a lane for, and releases the others. A renewal refused (the hold
    /// lapsed and another node took it) hands the lane's work over.
    pub(super) fn renew_holds(&mut self) {
        let (mut keep, mut gone) = (Vec::new(), Vec::new());
        for (id, hold) in &self.holds {
            match (hold, self.lanes.contains_key(id)) {
                (Hold::Held, true) => keep.push(id.clone()),
                (Hold::Held, false) => gone.push(id.clone()),
                (Hold::Asking, _) => {}
            }
        }
        for id in &gone {
            self.holds.remove(id);
        }
        self.release_holds(gone);
        if keep.is_empty() {
            return;
        }
        let (store, lease, events) = (self.store.clone(), self.cfg.lease(), self.events.clone());
        tokio::spawn(async move {
            match store.hold_endpoints(&lease, keep.clone()).await {
                Ok(held) => {
                    let lost: Vec<_> = keep
                        .into_iter()
                        .zip(held)
                        .filter(|(_, held)| !held)
                        .map(|(id, _)| (id, Some(false)))
                        .collect();
                    if !lost.is_empty() {
                        let _ = events.send(Event::HoldAnswered { endpoints: lost });
                    }
                }
                // Kept as held: the next renewal tries again, well within the lease.
                Err(e) => tracing::warn!(error = %e, "could not renew endpoint holds"),
            }
        });
    }

    pub(super) fn release_holds(&self, endpoints: Vec<EndpointId>) {
        if endpoints.is_empty() {
            return;
        }
        let (store, lease) = (self.store.clone(), self.cfg.lease());
        tokio::spawn(async move {
            if let Err(e) = store.release_endpoints(&lease, endpoints).await {
                tracing::warn!(error = %e, "could not release endpoint holds; they lapse by themselves");
            }
        });
    }
}
