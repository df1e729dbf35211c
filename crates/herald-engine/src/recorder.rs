//! The recorder and the renewer: the scheduler's two writers.
//!
//! The recorder writes attempt outcomes in batches, in the order the
//! scheduler produced them, with parks, releases and unparks in between;
//! a job that leaves memory keeps its ticket (and stays held, so its claim
//! is renewed) until its record is durable. A batch that fails to commit
//! leaves its deliveries claimed; they are sent again once the claim lapses
//! (at least once), never lost.
//!
//! The renewer extends the claims on everything held, on its own, so a
//! renewal never waits behind a queue of outcome writes.

use std::sync::Arc;
use std::time::Duration;

use herald_core::EndpointId;
use herald_store::{DeliveryState, Held, Lease, LeaseResult, Outcome, RetryHold, Store};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::Event;
use crate::ticket::{Job, Shared};

/// How long a parked claim lasts unrenewed: long, since renewing touches
/// every parked row; a dead node's parked work is taken over after this.
pub(crate) const PARK_HOLD: Duration = Duration::from_secs(600);

/// What the recorder writes.
// Outcomes are nearly every record; boxing them would cost an allocation
// per delivery to save space on the rare others.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Record {
    Outcome {
        outcome: Outcome,
        /// The job, when this outcome takes it out of memory.
        leaving: Option<Job>,
    },
    /// Claims to park (an open circuit) until released or renewed.
    Park(Vec<(Held, Job)>),
    /// Claims on deliveries the scheduler will not send (shutdown).
    Release(Vec<(Held, Job)>),
    /// An endpoint's parked claims, released (its circuit closed).
    Unpark(EndpointId),
    /// An endpoint's unclaimed backlog, parked where it lies (its circuit
    /// is open).
    ParkBacklog(EndpointId),
}

/// What the renewer keeps alive: every claim held in memory, and the
/// endpoints whose deliveries this node has parked.
pub(crate) struct Renewal {
    pub held: Vec<Held>,
    pub parked: Vec<EndpointId>,
}

pub(crate) async fn record(
    store: Arc<dyn Store>,
    lease: Lease,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Event>,
    mut rx: mpsc::UnboundedReceiver<Record>,
) {
    let mut buf = Vec::with_capacity(1024);
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(1024);
    let mut leaving: Vec<Job> = Vec::new();
    let mut parks: Vec<(Held, Job)> = Vec::new();
    let mut rest: Vec<Record> = Vec::new();
    while rx.recv_many(&mut buf, 1024).await > 0 {
        // One write for all outcomes, one for all parks, then the rest in
        // order. Outcomes go first: a retry that keeps its claim is then
        // parked, and the park must see the claim the outcome kept.
        let mut handed_back = false;
        for record in buf.drain(..) {
            match record {
                Record::Outcome { outcome, leaving: job } => {
                    handed_back |= matches!(
                        outcome.state,
                        DeliveryState::Retry {
                            hold: RetryHold::Release,
                            ..
                        }
                    );
                    leaving.extend(job);
                    outcomes.push(outcome);
                }
                Record::Park(parked) => parks.extend(parked),
                other => rest.push(other),
            }
        }
        flush(&store, &lease, &events, &mut outcomes, &mut leaving).await;
        if !parks.is_empty() {
            let held = parks.iter().map(|(h, _)| *h).collect();
            match store.park(&lease, PARK_HOLD, held).await {
                Ok(results) => warn_lost(&results, "parking"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not park deliveries; they are taken up again when their claims lapse")
                }
            }
            parks.clear();
        }
        // The rest in order; a run of one kind over many endpoints (circuits
        // that opened or closed together) shares its writes.
        let mut ordered = rest.drain(..).peekable();
        while let Some(record) = ordered.next() {
            match record {
                Record::Outcome { .. } | Record::Park(_) => {}
                Record::Release(released) => {
                    let held = released.iter().map(|(h, _)| *h).collect();
                    if let Err(e) = store.release(&lease, held).await {
                        tracing::error!(error = %e, "could not return claims; they are taken up again when they lapse");
                    }
                    handed_back = true;
                }
                Record::ParkBacklog(first) => {
                    let mut endpoints = vec![first];
                    while let Some(Record::ParkBacklog(next)) = ordered.next_if(|r| matches!(r, Record::ParkBacklog(_)))
                    {
                        endpoints.push(next);
                    }
                    match store.park_endpoints(&lease, PARK_HOLD, endpoints).await {
                        Ok(n) if n > 0 => tracing::debug!(deliveries = n, "parked unreachable endpoints' backlogs"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "could not park unreachable endpoints' backlogs"),
                    }
                }
                Record::Unpark(first) => {
                    let mut endpoints = vec![first];
                    while let Some(Record::Unpark(next)) = ordered.next_if(|r| matches!(r, Record::Unpark(_))) {
                        endpoints.push(next);
                    }
                    if let Err(e) = store.unpark(&lease, endpoints).await {
                        tracing::warn!(error = %e, "could not release parked deliveries; they are taken up again when their hold lapses");
                    }
                    handed_back = true;
                }
            }
        }
        if handed_back {
            shared.wake_loader.notify_one();
        }
    }
}

/// Writes the outcomes gathered so far; then the jobs they took out of
/// memory leave it (dropping their tickets).
async fn flush(
    store: &Arc<dyn Store>,
    lease: &Lease,
    events: &mpsc::UnboundedSender<Event>,
    outcomes: &mut Vec<Outcome>,
    leaving: &mut Vec<Job>,
) {
    if !outcomes.is_empty() {
        let n = outcomes.len();
        match store.record_outcomes(lease, std::mem::take(outcomes)).await {
            Ok(results) => warn_lost(&results, "recording"),
            Err(e) => tracing::error!(error = %e, outcomes = n,
                "could not record attempt results; those deliveries will be retried"),
        }
    }
    if !leaving.is_empty() {
        let ids = leaving.iter().map(|j| j.job.delivery_id).collect();
        let _ = events.send(Event::Recorded(ids));
        leaving.clear();
    }
}

fn warn_lost(results: &[LeaseResult], doing: &str) {
    let lost = results.iter().filter(|r| **r == LeaseResult::Lost).count();
    if lost > 0 {
        tracing::warn!(deliveries = lost, "{doing}: claims were taken over by another holder");
    }
}

/// Renews what the scheduler says it holds, newest snapshot first; claims
/// found lost are reported back so the scheduler stops sending them.
pub(crate) async fn renew(
    store: Arc<dyn Store>,
    lease: Lease,
    events: mpsc::UnboundedSender<Event>,
    mut rx: mpsc::UnboundedReceiver<Renewal>,
) {
    let mut parked_renewed: Option<Instant> = None;
    while let Some(mut renewal) = rx.recv().await {
        while let Ok(newer) = rx.try_recv() {
            renewal = newer;
        }
        if !renewal.held.is_empty() {
            let held = renewal.held;
            match store.renew(&lease, held.clone()).await {
                Ok(results) => {
                    let lost: Vec<i64> = held
                        .iter()
                        .zip(results)
                        .filter(|(_, r)| *r == LeaseResult::Lost)
                        .map(|(h, _)| h.id)
                        .collect();
                    if !lost.is_empty() && events.send(Event::Lost(lost)).is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not renew claims"),
            }
        }
        // Parked claims last long; renewing them touches every parked row.
        let due = parked_renewed.is_none_or(|at| at.elapsed() >= PARK_HOLD / 4);
        if due && !renewal.parked.is_empty() {
            match store.renew_parked(&lease, PARK_HOLD, renewal.parked).await {
                Ok(_) => parked_renewed = Some(Instant::now()),
                Err(e) => tracing::warn!(error = %e, "could not renew parked claims"),
            }
        }
    }
}
