//! The dispatcher, the loader and the recorder: the three tasks of the engine.
//!
//! The dispatcher owns all in-memory delivery state and is the only task
//! that touches it, so it needs no locks: every change arrives as a message
//! (new jobs, finished attempts, loaded endpoint targets, fired timers).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_core::model::{Attempt, AttemptErrorKind, DeliveryStatus, DeliveryTarget, TriggerType, truncate_response};
use herald_core::retry::{jittered, parse_retry_after};
use herald_core::{AttemptId, EndpointId};
use herald_store::{DeliveryJob, DeliveryState, Held, LeaseResult, Outcome, Store};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::transport::{Outbound, Reply, Transport, wire_uri};
use crate::{EngineConfig, Event, Shared, request};

/// Endpoint targets kept in memory; past this the cache starts over, which
/// costs one batched read per active endpoint.
const TARGET_CACHE_LIMIT: usize = 10_000;
/// How many due deliveries the loader claims per round.
const LOAD_BATCH: usize = 1000;
/// How long the loader sleeps at most when it knows of no due work: a safety
/// net, not the mechanism (it is woken when work is handed back).
const LOADER_MAX_SLEEP: Duration = Duration::from_secs(30);
const JITTER: f64 = 0.2;

/// What the recorder writes, in the order the dispatcher produced it.
pub(crate) enum Record {
    Outcome {
        outcome: Outcome,
        /// The delivery leaves memory once this is written.
        leaves_memory: bool,
    },
    /// Claims on deliveries the dispatcher will not send (shutdown).
    Release(Vec<Held>),
    /// Claims on deliveries still held, extended so no one else takes them.
    Renew(Vec<Held>),
}

/// An endpoint's delivery settings with its URL already in wire form.
pub(crate) struct Target {
    pub spec: DeliveryTarget,
    /// Why the URL cannot be sent to, if it cannot.
    pub uri: Result<http::Uri, String>,
}

impl Target {
    fn new(spec: DeliveryTarget) -> Self {
        let uri = wire_uri(spec.url.as_str());
        Self { spec, uri }
    }
}

enum TargetEntry {
    Loading,
    Ready(Arc<Target>),
    /// Deleted: its jobs can never be delivered.
    Gone,
}

#[derive(Default)]
struct Lane {
    queue: VecDeque<DeliveryJob>,
    in_flight: usize,
    /// Waiting in `blocked` for a global slot.
    blocked: bool,
}

struct Timed {
    at: Instant,
    seq: u64,
    job: DeliveryJob,
}

impl PartialEq for Timed {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Timed {}
impl PartialOrd for Timed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Done {
    job: DeliveryJob,
    target: Arc<Target>,
    started_at: DateTime<Utc>,
    reply: Reply,
}

type TargetsLoaded = (Vec<EndpointId>, Vec<DeliveryTarget>);

pub(crate) struct Dispatcher {
    store: Arc<dyn Store>,
    transport: Arc<Transport>,
    cfg: EngineConfig,
    shared: Arc<Shared>,
    records: mpsc::UnboundedSender<Record>,
    lanes: HashMap<EndpointId, Lane>,
    blocked: VecDeque<EndpointId>,
    targets: HashMap<EndpointId, TargetEntry>,
    timers: BinaryHeap<Reverse<Timed>>,
    /// Every delivery held in memory (queued, waiting, in flight) with the
    /// fence of its newest claim, so a delivery claimed twice is sent once
    /// and claims can be renewed.
    held: HashMap<i64, i64>,
    seq: u64,
    in_flight: usize,
    stopping: bool,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    loaded_tx: mpsc::UnboundedSender<TargetsLoaded>,
    loaded_rx: mpsc::UnboundedReceiver<TargetsLoaded>,
}

impl Dispatcher {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        transport: Arc<Transport>,
        cfg: EngineConfig,
        shared: Arc<Shared>,
        records: mpsc::UnboundedSender<Record>,
    ) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (loaded_tx, loaded_rx) = mpsc::unbounded_channel();
        Self {
            store,
            transport,
            cfg,
            shared,
            records,
            lanes: HashMap::new(),
            blocked: VecDeque::new(),
            targets: HashMap::new(),
            timers: BinaryHeap::new(),
            held: HashMap::new(),
            seq: 0,
            in_flight: 0,
            stopping: false,
            done_tx,
            done_rx,
            loaded_tx,
            loaded_rx,
        }
    }

    pub(crate) async fn run(mut self, mut events: mpsc::UnboundedReceiver<Event>, shutdown: CancellationToken) {
        let every = self.cfg.claim_ttl / 4;
        let mut renew = tokio::time::interval_at(Instant::now() + every, every);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_timer = self.timers.peek().map(|Reverse(t)| t.at);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = renew.tick() => self.renew_claims(),
                Some(done) = self.done_rx.recv() => self.on_done(done),
                Some(event) = events.recv() => self.on_event(event),
                Some(loaded) = self.loaded_rx.recv() => self.on_targets(loaded),
                _ = sleep_until_opt(next_timer), if next_timer.is_some() => self.fire_timers(),
            }
        }
        self.stop(events).await;
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Jobs(jobs) => {
                let mut touched = Vec::new();
                for job in jobs {
                    if let Some(fence) = self.held.get_mut(&job.delivery_id) {
                        // Already held: its claim lapsed and was taken again.
                        // The copy in memory is sent under the newer claim.
                        *fence = (*fence).max(job.fence);
                        self.shared.resident.fetch_sub(1, Ordering::Relaxed);
                        continue;
                    }
                    self.held.insert(job.delivery_id, job.fence);
                    touched.push(job.endpoint_id.clone());
                    self.enqueue(job);
                }
                self.pump_lanes(touched);
            }
            Event::EndpointChanged(id) => {
                self.targets.remove(&id);
                if self.lanes.get(&id).is_some_and(|l| !l.queue.is_empty()) {
                    self.pump_lanes(vec![id]);
                }
            }
            Event::AppDeleted(app_id) => {
                let gone: Vec<EndpointId> = self
                    .targets
                    .iter()
                    .filter(|(_, t)| matches!(t, TargetEntry::Ready(t) if t.spec.app_id == app_id))
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in gone {
                    self.on_event(Event::EndpointChanged(id));
                }
            }
            Event::Resync => {
                self.targets.clear();
                let ids: Vec<EndpointId> = self.lanes.keys().cloned().collect();
                self.pump_lanes(ids);
            }
        }
    }

    fn enqueue(&mut self, job: DeliveryJob) {
        self.lanes
            .entry(job.endpoint_id.clone())
            .or_default()
            .queue
            .push_back(job);
    }

    fn schedule(&mut self, job: DeliveryJob, at: Instant) {
        self.seq += 1;
        self.timers.push(Reverse(Timed { at, seq: self.seq, job }));
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        let mut touched = Vec::new();
        while self.timers.peek().is_some_and(|Reverse(t)| t.at <= now) {
            if let Some(Reverse(t)) = self.timers.pop() {
                touched.push(t.job.endpoint_id.clone());
                self.enqueue(t.job);
            }
        }
        self.pump_lanes(touched);
    }

    /// Loads the targets these lanes lack (one batched read), then starts
    /// what the others can send.
    fn pump_lanes(&mut self, mut ids: Vec<EndpointId>) {
        ids.sort();
        ids.dedup();
        let missing: Vec<EndpointId> = ids
            .iter()
            .filter(|id| !self.targets.contains_key(*id))
            .cloned()
            .collect();
        self.load_targets(missing);
        for id in &ids {
            self.pump(id);
        }
    }

    /// Starts one batched read of these endpoints' targets.
    fn load_targets(&mut self, missing: Vec<EndpointId>) {
        if missing.is_empty() {
            return;
        }
        if self.targets.len() + missing.len() > TARGET_CACHE_LIMIT {
            self.targets.retain(|_, t| matches!(t, TargetEntry::Loading));
        }
        for id in &missing {
            self.targets.insert(id.clone(), TargetEntry::Loading);
        }
        let (store, tx) = (self.store.clone(), self.loaded_tx.clone());
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                match store.delivery_targets(missing.clone()).await {
                    Ok(targets) => {
                        let _ = tx.send((missing, targets));
                        return;
                    }
                    Err(herald_store::StoreError::Closed) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "loading endpoint targets failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
    }

    fn on_targets(&mut self, (asked, found): TargetsLoaded) {
        let mut found: HashMap<EndpointId, DeliveryTarget> =
            found.into_iter().map(|t| (t.endpoint_id.clone(), t)).collect();
        let mut pump = Vec::with_capacity(asked.len());
        for id in asked {
            // A change that arrived while loading removed the entry; this
            // answer may predate it, so pumping the lane loads it again.
            if !matches!(self.targets.get(&id), Some(TargetEntry::Loading)) {
                pump.push(id);
                continue;
            }
            let entry = match found.remove(&id) {
                Some(t) => TargetEntry::Ready(Arc::new(Target::new(t))),
                None => TargetEntry::Gone,
            };
            self.targets.insert(id.clone(), entry);
            pump.push(id);
        }
        self.pump_lanes(pump);
    }

    /// Starts as many attempts for this lane as its limits allow.
    fn pump(&mut self, id: &EndpointId) {
        if self.stopping {
            return;
        }
        let target = match self.targets.get(id) {
            Some(TargetEntry::Ready(t)) => t.clone(),
            Some(TargetEntry::Gone) => {
                self.drop_lane_jobs(id);
                return;
            }
            Some(TargetEntry::Loading) => return,
            // Dropped by a change while work was in flight: load it again.
            None => {
                if self.lanes.get(id).is_some_and(|l| !l.queue.is_empty()) {
                    self.load_targets(vec![id.clone()]);
                }
                return;
            }
        };
        if target.spec.disabled {
            self.drop_lane_jobs(id);
            return;
        }
        let Some(lane) = self.lanes.get_mut(id) else {
            return;
        };
        while lane.in_flight < self.cfg.max_in_flight_per_endpoint && !lane.queue.is_empty() {
            if self.in_flight >= self.cfg.max_in_flight {
                if !lane.blocked {
                    lane.blocked = true;
                    self.blocked.push_back(id.clone());
                }
                return;
            }
            let Some(job) = lane.queue.pop_front() else {
                break;
            };
            lane.in_flight += 1;
            self.in_flight += 1;
            self.shared.stats.in_flight.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(attempt(
                self.transport.clone(),
                target.clone(),
                job,
                self.done_tx.clone(),
            ));
        }
    }

    /// Jobs for a deleted or disabled endpoint end without a request.
    fn drop_lane_jobs(&mut self, id: &EndpointId) {
        let Some(lane) = self.lanes.get_mut(id) else {
            return;
        };
        let jobs: Vec<DeliveryJob> = lane.queue.drain(..).collect();
        for job in jobs {
            let held = self.held_of(&job);
            self.record(
                Outcome {
                    held,
                    attempt: None,
                    state: DeliveryState::Failed,
                },
                true,
            );
        }
        self.forget_idle_lane(id);
    }

    fn forget_idle_lane(&mut self, id: &EndpointId) {
        if self
            .lanes
            .get(id)
            .is_some_and(|l| l.queue.is_empty() && l.in_flight == 0 && !l.blocked)
        {
            self.lanes.remove(id);
        }
    }

    fn renew_claims(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let held = self.held.iter().map(|(&id, &fence)| Held { id, fence }).collect();
        let _ = self.records.send(Record::Renew(held));
    }

    /// The claim under which `job` is held now (it may have been claimed again).
    fn held_of(&self, job: &DeliveryJob) -> Held {
        Held {
            id: job.delivery_id,
            fence: self.held.get(&job.delivery_id).copied().unwrap_or(job.fence),
        }
    }

    fn record(&mut self, outcome: Outcome, leaves_memory: bool) {
        if leaves_memory {
            self.held.remove(&outcome.held.id);
        }
        if self.records.send(Record::Outcome { outcome, leaves_memory }).is_err() {
            tracing::error!("the recorder has stopped; an attempt result was not saved");
        }
    }

    fn on_done(&mut self, done: Done) {
        let Done {
            mut job,
            target,
            started_at,
            reply,
        } = done;
        self.in_flight -= 1;
        let stats = &self.shared.stats;
        stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(lane) = self.lanes.get_mut(&job.endpoint_id) {
            lane.in_flight -= 1;
        }
        let number = job.attempts + 1;
        let success = reply.is_success();
        let attempt = Attempt {
            id: AttemptId::new(),
            msg_id: job.msg_id.clone(),
            endpoint_id: job.endpoint_id.clone(),
            app_id: job.app_id.clone(),
            url: target.spec.url.as_str().to_owned(),
            response_status_code: reply.status,
            response: truncate_response(&reply.body),
            response_duration_ms: reply.duration.as_millis() as u64,
            status: if success {
                DeliveryStatus::Success
            } else {
                DeliveryStatus::Fail
            },
            error_kind: reply.error,
            trigger_type: TriggerType::Scheduled,
            attempt_number: number,
            created_at: started_at,
        };
        let counter = if success {
            &stats.attempts_succeeded
        } else {
            &stats.attempts_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        // `held_for`: the wait before a retry this dispatcher keeps in memory.
        let (state, held_for) = if success {
            (DeliveryState::Succeeded, None)
        } else {
            match self.retry_delay(&target.spec, number, &reply) {
                None => {
                    stats.deliveries_exhausted.fetch_add(1, Ordering::Relaxed);
                    (DeliveryState::Failed, None)
                }
                Some(wait) => {
                    let keep_claim = wait <= self.cfg.retry_horizon && !self.stopping;
                    (
                        DeliveryState::Retry {
                            after: wait,
                            keep_claim,
                        },
                        keep_claim.then_some(wait),
                    )
                }
            }
        };
        if !success {
            tracing::debug!(msg_id = %job.msg_id, endpoint_id = %job.endpoint_id, status = reply.status,
                error = ?reply.error, attempt = number, "delivery attempt failed");
        }
        let id = job.endpoint_id.clone();
        let held = self.held_of(&job);
        if let Some(wait) = held_for {
            job.attempts = number;
            job.first_attempt_at.get_or_insert(started_at);
            self.schedule(job, Instant::now() + wait);
        }
        self.record(
            Outcome {
                held,
                attempt: Some(attempt),
                state,
            },
            held_for.is_none(),
        );
        self.pump(&id);
        self.forget_idle_lane(&id);
        while self.in_flight < self.cfg.max_in_flight {
            let Some(next) = self.blocked.pop_front() else {
                break;
            };
            if let Some(lane) = self.lanes.get_mut(&next) {
                lane.blocked = false;
            }
            self.pump(&next);
        }
    }

    /// The wait before the next attempt, in real (scaled) time; `None` when
    /// the schedule is exhausted.
    fn retry_delay(&self, target: &DeliveryTarget, failed_attempts: u32, reply: &Reply) -> Option<Duration> {
        let step = target.retry.next_delay(failed_attempts)?;
        let mut wait = jittered(step, JITTER, &mut rand::rng());
        if matches!(reply.status, 429 | 503)
            && let Some(asked) = reply
                .retry_after
                .as_deref()
                .and_then(|v| parse_retry_after(v, Utc::now(), target.retry.max_step()))
        {
            wait = wait.max(asked);
        }
        Some(wait.div_f64(self.cfg.time_scale.max(f64::MIN_POSITIVE)))
    }

    /// Shutdown: start nothing new, let requests in flight finish within the
    /// grace period, and hand every claim on unsent work back to the store.
    async fn stop(mut self, mut events: mpsc::UnboundedReceiver<Event>) {
        self.stopping = true;
        let deadline = Instant::now() + self.cfg.shutdown_grace;
        while self.in_flight > 0 {
            tokio::select! {
                Some(done) = self.done_rx.recv() => self.on_done(done),
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(in_flight = self.in_flight, "stopping with requests still in flight; they will be retried");
                    break;
                }
            }
        }
        events.close();
        let mut unsent: Vec<Held> = Vec::new();
        while let Ok(event) = events.try_recv() {
            if let Event::Jobs(jobs) = event {
                unsent.extend(jobs.iter().map(DeliveryJob::held));
            }
        }
        let queued = self.lanes.values().flat_map(|l| l.queue.iter());
        let waiting = self.timers.iter().map(|Reverse(t)| &t.job);
        let queued: Vec<Held> = queued.chain(waiting).map(|j| self.held_of(j)).collect();
        unsent.extend(queued);
        if !unsent.is_empty() {
            tracing::info!(deliveries = unsent.len(), "returning unsent deliveries to the store");
            let _ = self.records.send(Record::Release(unsent));
        }
        // Dropping `self.records` lets the recorder finish once it has written everything.
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One attempt: sign, send, report back. Runs as its own task so a slow
/// endpoint holds only its own slot.
async fn attempt(transport: Arc<Transport>, target: Arc<Target>, job: DeliveryJob, done: mpsc::UnboundedSender<Done>) {
    let span = tracing::debug_span!("delivery.attempt", msg_id = %job.msg_id, endpoint_id = %job.endpoint_id);
    async move {
        let started_at = Utc::now();
        let reply = match &target.uri {
            Ok(uri) => {
                let spec = &target.spec;
                let body = request::body(spec, &job, started_at);
                let headers = request::headers(spec, job.msg_id.as_str(), started_at.timestamp(), &body);
                transport
                    .post(Outbound {
                        uri,
                        headers,
                        body,
                        timeout: spec.timeout,
                    })
                    .await
            }
            Err(why) => Reply::failed(AttemptErrorKind::Other, why.clone(), Duration::ZERO),
        };
        let _ = done.send(Done {
            job,
            target,
            started_at,
            reply,
        });
    }
    .instrument(span)
    .await
}

/// The recorder: writes outcomes in batches, in order. A batch that fails to
/// commit leaves its deliveries claimed; they are sent again once the claim
/// lapses (at-least-once), never lost.
pub(crate) async fn record(
    store: Arc<dyn Store>,
    lease: herald_store::Lease,
    shared: Arc<Shared>,
    max_resident: usize,
    mut rx: mpsc::UnboundedReceiver<Record>,
) {
    let mut buf = Vec::with_capacity(1024);
    while rx.recv_many(&mut buf, 1024).await > 0 {
        let mut outcomes = Vec::with_capacity(buf.len());
        let mut leaving = 0usize;
        let mut handed_back = false;
        for record in buf.drain(..) {
            match record {
                Record::Outcome { outcome, leaves_memory } => {
                    leaving += usize::from(leaves_memory);
                    handed_back |= matches!(outcome.state, DeliveryState::Retry { keep_claim: false, .. });
                    outcomes.push(outcome);
                }
                Record::Renew(held) => {
                    if !outcomes.is_empty() {
                        write_outcomes(&store, &lease, std::mem::take(&mut outcomes)).await;
                    }
                    match store.renew(&lease, held).await {
                        Ok(results) => warn_lost(&results, "renewing"),
                        Err(e) => tracing::warn!(error = %e, "could not renew claims"),
                    }
                }
                Record::Release(held) => {
                    if !outcomes.is_empty() {
                        write_outcomes(&store, &lease, std::mem::take(&mut outcomes)).await;
                    }
                    leaving += held.len();
                    if let Err(e) = store.release(&lease, held).await {
                        tracing::error!(error = %e, "could not return claims; they lapse at the next start");
                    }
                }
            }
        }
        if !outcomes.is_empty() {
            write_outcomes(&store, &lease, outcomes).await;
        }
        let before = shared.resident.fetch_sub(leaving, Ordering::Relaxed);
        if handed_back || before >= max_resident {
            shared.wake_loader.notify_one();
        }
    }
}

async fn write_outcomes(store: &Arc<dyn Store>, lease: &herald_store::Lease, outcomes: Vec<Outcome>) {
    let n = outcomes.len();
    match store.record_outcomes(lease, outcomes).await {
        Ok(results) => warn_lost(&results, "recording"),
        Err(e) => tracing::error!(error = %e, outcomes = n,
            "could not record attempt results; those deliveries will be retried"),
    }
}

fn warn_lost(results: &[LeaseResult], doing: &str) {
    let lost = results.iter().filter(|r| **r == LeaseResult::Lost).count();
    if lost > 0 {
        tracing::warn!(deliveries = lost, "{doing}: claims were taken over by another holder");
    }
}

/// The loader: claims due deliveries from the store while there is room in
/// memory, then sleeps until the next one is due or it is woken.
pub(crate) async fn load(
    store: Arc<dyn Store>,
    cfg: EngineConfig,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Event>,
    shutdown: CancellationToken,
) {
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let room = cfg.max_resident.saturating_sub(shared.resident.load(Ordering::Relaxed));
        let mut wait = LOADER_MAX_SLEEP;
        if room > 0 {
            let limit = room.min(LOAD_BATCH);
            match store.claim_due(&cfg.lease(), limit, usize::MAX).await {
                Ok(jobs) => {
                    let n = jobs.len();
                    if n > 0 {
                        shared.resident.fetch_add(n, Ordering::Relaxed);
                        shared.stats.deliveries_loaded.fetch_add(n as u64, Ordering::Relaxed);
                        if events.send(Event::Jobs(jobs)).is_err() {
                            return;
                        }
                    }
                    if n == limit {
                        continue;
                    }
                    match store.next_due().await {
                        Ok(Some(until)) => {
                            wait = wait.min(until.max(Duration::from_millis(1)));
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "could not read the next due time");
                            wait = Duration::from_secs(1);
                        }
                    }
                }
                Err(herald_store::StoreError::Closed) => return,
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
