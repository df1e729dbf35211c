//! What a finished attempt changes: the lane's limits and circuit, the
//! delivery's state (succeeded, retried from memory or from the store,
//! parked behind an open circuit, or given up), and its record.

use std::sync::atomic::Ordering;

use herald_core::model::AttemptErrorKind;
use herald_core::{AppId, EndpointId};
use herald_store::{DeliveryState, Outcome, RetryHold, StoreError};
use tokio::time::Instant;

use super::Scheduler;
use super::timers::Wake;
use crate::attempt::{self, Done};
use crate::lane::Transition;
use crate::recorder::PARK_HOLD;

const GONE: u16 = 410;

impl Scheduler {
    pub(super) fn on_done(&mut self, done: Done) {
        self.in_flight -= 1;
        self.shared.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        let id = done.job.job.endpoint_id.clone();
        let now = Instant::now();
        let Some(reply) = done.reply.clone() else {
            // Canceled: the endpoint is gone, and so is the delivery.
            self.held.remove(&done.job.job.delivery_id);
            if let Some(ls) = self.lanes.get_mut(&id) {
                ls.lane.abandoned(now);
            }
            self.refresh(&id);
            self.forget_idle_lane(&id);
            self.serve_ready();
            return;
        };
        let answer = attempt::answer(&reply, done.target.spec.timeout);
        let transition = match self.lanes.get_mut(&id) {
            Some(ls) => ls.lane.finished(&self.lane_cfg, now, answer),
            None => Transition::None,
        };
        let open = self.lanes.get(&id).is_some_and(|l| l.lane.is_open());
        let stats = &self.shared.stats;
        let record = attempt::record(&done, &reply);
        let number = record.attempt_number;
        let success = reply.is_success();
        let counter = if success {
            &stats.attempts_succeeded
        } else {
            &stats.attempts_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        stats.attempt_durations.observe(success, reply.duration);
        if success {
            self.failing.succeeded(&id);
        } else {
            self.failing.failed(&id, now);
            tracing::debug!(msg_id = %record.msg_id, endpoint_id = %id, status = reply.status,
                error = ?reply.error, attempt = number, "delivery attempt failed");
        }
        let Done {
            mut job,
            target,
            started_at,
            ..
        } = done;
        let held = self.held_of(&job);
        // `410 Gone`: the receiver says the endpoint is no more. It is
        // disabled at once, and this delivery is given up rather than
        // retried (re-enable, then `recover`, to send it again).
        let gone = reply.error == Some(AttemptErrorKind::Status) && reply.status == GONE;
        if gone {
            self.disable(&job.job.app_id, &id, reply.status);
        }
        let delay = (!success && !gone)
            .then(|| attempt::retry_delay(&target.spec, number, &reply, self.cfg.time_scale))
            .flatten();
        match (success, delay) {
            (true, _) => {
                stats.deliveries_delivered.fetch_add(1, Ordering::Relaxed);
                self.record(
                    Outcome {
                        held,
                        attempt: Some(record),
                        state: DeliveryState::Succeeded,
                    },
                    Some(job),
                )
            }
            (false, None) => {
                stats.deliveries_exhausted.fetch_add(1, Ordering::Relaxed);
                if self.shared.exhausted.receiver_count() > 0 {
                    let _ = self.shared.exhausted.send(record.clone());
                }
                self.record(
                    Outcome {
                        held,
                        attempt: Some(record),
                        state: DeliveryState::Failed,
                    },
                    Some(job),
                );
            }
            (false, Some(wait)) => {
                let hold = if open {
                    // Waits parked for its own next attempt, parked by the
                    // same write that records this one.
                    RetryHold::Park(PARK_HOLD)
                } else if wait <= self.cfg.retry_horizon && !self.stopping {
                    RetryHold::Keep
                } else {
                    RetryHold::Release
                };
                let outcome = Outcome {
                    held,
                    attempt: Some(record),
                    state: DeliveryState::Retry { after: wait, hold },
                };
                match hold {
                    RetryHold::Release => self.record(outcome, Some(job)),
                    RetryHold::Park(_) => {
                        if let Some(ls) = self.lanes.get_mut(&id) {
                            ls.parked = true;
                        }
                        self.record(outcome, Some(job));
                    }
                    RetryHold::Keep => {
                        self.record(outcome, None);
                        job.job.attempts = number;
                        job.job.manual = false;
                        job.job.first_attempt_at.get_or_insert(started_at);
                        self.timers.schedule(Wake::Retry(job), now + wait);
                    }
                }
            }
        }
        match transition {
            Transition::Opened => self.circuit_opened(&id),
            Transition::Closed => self.circuit_closed(&id),
            Transition::None => {
                // A failed probe: the next one is due at the lane's new probe time.
                if let Some(at) = self
                    .lanes
                    .get(&id)
                    .filter(|l| l.lane.in_flight() == 0)
                    .and_then(|l| l.lane.probe_at())
                {
                    self.schedule_probe(id.clone(), at);
                }
            }
        }
        self.pump(&id);
        self.forget_idle_lane(&id);
        self.serve_ready();
    }

    /// Disables the endpoint in the store, off the scheduler's loop. The
    /// store's change feed then brings the disabled target back here, which
    /// ends its other queued work without a request; listeners hear of it
    /// once, from the call that changed it.
    fn disable(&self, app_id: &AppId, endpoint_id: &EndpointId, status: u16) {
        let (store, shared) = (self.store.clone(), self.shared.clone());
        let (app_id, endpoint_id) = (app_id.clone(), endpoint_id.clone());
        tokio::spawn(async move {
            match store.disable_endpoint(&app_id, &endpoint_id).await {
                Ok(true) => {
                    tracing::warn!(endpoint_id = %endpoint_id, status, "endpoint answered 410 Gone; disabled");
                    let _ = shared.disabled.send(crate::EndpointDisabled {
                        app_id,
                        endpoint_id,
                        status,
                    });
                }
                // Disabled already, or deleted since: nothing to do.
                Ok(false) | Err(StoreError::NotFound(_)) => {}
                Err(e) => tracing::warn!(endpoint_id = %endpoint_id, error = %e, "disabling a gone endpoint failed"),
            }
        });
    }
}
