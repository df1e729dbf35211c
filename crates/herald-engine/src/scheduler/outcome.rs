//! What a finished attempt changes: the lane's limits and circuit, the
//! delivery's state (succeeded, retried from memory or from the store,
//! parked behind an open circuit, or given up), and its record.

use std::sync::atomic::Ordering;

use herald_core::model::AttemptErrorKind;
use herald_store::{DeliveryState, Outcome, RetryHold};
use tokio::time::Instant;

use chrono::{DateTime, Utc};

use super::Scheduler;
use super::timers::Wake;
use crate::attempt::{self, Done, Target};
use crate::lane::Transition;
use crate::recorder::PARK_HOLD;
use crate::ticket::Job;
use crate::transport::Reply;
use crate::{AttemptEvent, AttemptEventKind, FAILING_AFTER_ATTEMPTS};

const GONE: u16 = 410;

impl Scheduler {
    /// A finished request: the lane's limits and circuit learn from it
    /// once, and each delivery it carried (one, or a batch's) moves on by
    /// its own schedule.
    pub(super) fn on_done(&mut self, done: Done) {
        self.in_flight -= 1;
        self.shared.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        let id = done.target.spec.endpoint_id.clone();
        let now = Instant::now();
        let Some(reply) = done.reply.clone() else {
            // Canceled: the endpoint is gone, and so are the deliveries.
            for job in &done.jobs {
                self.held.remove(&job.job.delivery_id);
            }
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
        let success = reply.is_success();
        self.shared.stats.attempt_durations.observe(success, reply.duration);
        if success {
            self.failing.succeeded(&id);
        } else {
            self.failing.failed(&id, now);
        }
        let Done {
            jobs,
            target,
            started_at,
            ..
        } = done;
        for job in jobs {
            self.delivery_done(job, &target, started_at, &reply, now);
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
}

impl Scheduler {
    /// What one delivery's attempt changes: its state (succeeded, retried
    /// from memory or from the store, parked behind an open circuit, or
    /// given up), its record, the endpoint's health and the operational
    /// events about it.
    fn delivery_done(&mut self, mut job: Job, target: &Target, started_at: DateTime<Utc>, reply: &Reply, now: Instant) {
        let id = job.job.endpoint_id.clone();
        let open = self.lanes.get(&id).is_some_and(|l| l.lane.is_open());
        let stats = &self.shared.stats;
        let record = attempt::record(&job, target, started_at, reply);
        let number = record.attempt_number;
        let success = reply.is_success();
        let counter = if success {
            &stats.attempts_succeeded
        } else {
            &stats.attempts_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if !success {
            tracing::debug!(msg_id = %record.msg_id, endpoint_id = %id, status = reply.status,
                error = ?reply.error, attempt = number, "delivery attempt failed");
        }
        let held = self.held_of(&job);
        // `410 Gone`: the receiver says the endpoint is no more. It is
        // disabled at once, and this delivery is given up rather than
        // retried (re-enable, then `recover`, to send it again).
        let gone = reply.error == Some(AttemptErrorKind::Status) && reply.status == GONE;
        let delay = (!success && !gone)
            .then(|| attempt::retry_delay(&target.spec, number, reply, self.cfg.time_scale))
            .flatten();
        if success {
            self.health.succeeded(&id);
        } else if gone {
            self.health.gone(&target.spec);
        } else {
            self.health.failed(&target.spec, delay.is_none());
        }
        let told = match (success, delay) {
            (true, _) if number > FAILING_AFTER_ATTEMPTS => Some(AttemptEventKind::Recovered),
            (false, None) => Some(AttemptEventKind::Exhausted),
            (false, Some(_)) if number == FAILING_AFTER_ATTEMPTS => Some(AttemptEventKind::Failing),
            _ => None,
        };
        if let Some(kind) = told
            && self.shared.attempt_events.receiver_count() > 0
        {
            let _ = self.shared.attempt_events.send(AttemptEvent {
                kind,
                attempt: record.clone(),
            });
        }
        let stats = &self.shared.stats;
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
                let serial = self.lanes.get(&id).is_some_and(|l| l.lane.is_serial());
                let hold = if serial && !self.stopping {
                    // An ordered lane's head blocks it until its retry, in
                    // memory however long the wait: what follows waits in
                    // the store, and renewals keep the head's claim.
                    RetryHold::Keep
                } else if open {
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
                        if let Some(ls) = self.lanes.get_mut(&id) {
                            ls.lane.await_retry();
                        }
                        self.record(outcome, None);
                        job.job.attempts = number;
                        job.job.manual = false;
                        job.job.first_attempt_at.get_or_insert(started_at);
                        self.timers.schedule(Wake::Retry(job), now + wait);
                    }
                }
            }
        }
    }
}
