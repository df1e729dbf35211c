//! The scheduler: the one task that owns all in-memory delivery state, so
//! it needs no locks; every change arrives as a message (new jobs, finished
//! attempts, loaded targets, store changes, fired timers).
//!
//! Isolation rests on three rules:
//! - each endpoint has its own lane ([`crate::lane`]) with an adaptive
//!   limit and a circuit breaker;
//! - the global in-flight budget is shared fairly: while other lanes want a
//!   slot, no lane starts a request beyond its [`fair_share`], and when none
//!   does, a lane may go beyond it only while a share stays free for the
//!   next lane to want one (a hanging endpoint's requests cannot be taken
//!   back once started);
//! - an open circuit's work waits parked in the store, not in memory, and
//!   one probe at a time goes out (the earliest-due parked delivery).

mod batch;
mod failing;
mod fifo;
mod health;
mod holds;
mod outcome;
mod parking;
mod shutdown;
mod targets;
mod timers;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use herald_core::{AppId, EndpointId};
use herald_store::{DeliveryState, Held, Outcome, Store};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::attempt::{self, Done};
use crate::lane::{Lane, LaneConfig, fair_share};
use crate::pace::Pace;
use crate::recorder::{Record, Renewal};
use crate::ticket::{Job, Shared};
use crate::transforms::Transforms;
use crate::transport::Transport;
use crate::{EngineConfig, Event};
use failing::{FAILING_FOR, Failing};
use health::Health;
use holds::Hold;
use targets::{TargetEntry, TargetsLoaded};
use timers::{Timers, Wake};

/// Threads that run jq transformations (`transforms.rs`); one per core of
/// the machines Herald is measured on.
const TRANSFORM_THREADS: usize = 2;

struct LaneState {
    lane: Lane<Job>,
    app_id: AppId,
    /// Cancels the lane's requests in flight when its endpoint is deleted.
    cancel: CancellationToken,
    /// Waiting in `ready` for a slot.
    in_ready: bool,
    /// This node has deliveries of this endpoint parked in the store.
    parked: bool,
    /// Parked deliveries are being taken back (a probe or a refill).
    claiming: bool,
    /// Counted in `Scheduler::active` / `Scheduler::wanting`.
    active: bool,
    wanting: bool,
    /// The endpoint's `rateLimit`, and whether a wake for its next turn is
    /// already set.
    pace: Option<Pace>,
    pace_wake: bool,
    /// An ordered lane's store may hold more of its deliveries than it
    /// claimed (`fifo.rs`).
    fifo_more: bool,
    /// A wake is set for when the lane's batch has waited its longest.
    batch_wake: bool,
}

impl LaneState {
    fn new(cfg: &LaneConfig, app_id: AppId) -> Self {
        Self {
            lane: Lane::new(cfg),
            app_id,
            cancel: CancellationToken::new(),
            in_ready: false,
            parked: false,
            claiming: false,
            active: false,
            wanting: false,
            pace: None,
            pace_wake: false,
            fifo_more: false,
            batch_wake: false,
        }
    }
}

pub(crate) struct Scheduler {
    store: Arc<dyn Store>,
    transport: Arc<Transport>,
    /// Where attempts run their endpoints' jq transformations.
    transforms: Arc<Transforms>,
    cfg: EngineConfig,
    lane_cfg: LaneConfig,
    shared: Arc<Shared>,
    records: mpsc::UnboundedSender<Record>,
    renewals: mpsc::UnboundedSender<Renewal>,
    events: mpsc::UnboundedSender<Event>,
    lanes: HashMap<EndpointId, LaneState>,
    /// Lanes that want a slot and did not get one, in arrival order.
    ready: VecDeque<EndpointId>,
    targets: HashMap<EndpointId, TargetEntry>,
    timers: Timers,
    /// Every delivery held in memory (queued, waiting, in flight, or sent
    /// and awaiting its durable record) with the fence of its newest claim.
    held: HashMap<i64, i64>,
    in_flight: usize,
    /// Lanes holding or wanting slots, and lanes wanting one.
    active: usize,
    wanting: usize,
    stopping: bool,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    loaded_tx: mpsc::UnboundedSender<TargetsLoaded>,
    loaded_rx: mpsc::UnboundedReceiver<TargetsLoaded>,
    /// Where probe ticks are counted from (`parking.rs`).
    epoch: Instant,
    /// Endpoints failing now, for `/metrics` (`failing.rs`).
    failing: Failing,
    /// Failure streaks and the disable rule (`health.rs`).
    health: Health,
    /// Endpoint holds this node has or asked for (`holds.rs`).
    holds: HashMap<EndpointId, Hold>,
}

pub(crate) struct Channels {
    pub records: mpsc::UnboundedSender<Record>,
    pub renewals: mpsc::UnboundedSender<Renewal>,
    pub events: mpsc::UnboundedSender<Event>,
}

impl Scheduler {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        transport: Arc<Transport>,
        cfg: EngineConfig,
        shared: Arc<Shared>,
        channels: Channels,
    ) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (loaded_tx, loaded_rx) = mpsc::unbounded_channel();
        Self {
            failing: Failing::new(shared.clone(), attempt::scaled(FAILING_FOR, cfg.time_scale)),
            health: Health::start(store.clone(), shared.clone(), cfg.time_scale),
            lane_cfg: cfg.lane_config(),
            store,
            transport,
            transforms: Arc::new(Transforms::start(TRANSFORM_THREADS).expect("start the transformation threads")),
            cfg,
            shared,
            records: channels.records,
            renewals: channels.renewals,
            events: channels.events,
            lanes: HashMap::new(),
            ready: VecDeque::new(),
            targets: HashMap::new(),
            timers: Timers::default(),
            held: HashMap::new(),
            in_flight: 0,
            active: 0,
            wanting: 0,
            stopping: false,
            done_tx,
            done_rx,
            loaded_tx,
            loaded_rx,
            epoch: Instant::now(),
            holds: HashMap::new(),
        }
    }

    pub(crate) async fn run(mut self, mut events: mpsc::UnboundedReceiver<Event>, shutdown: CancellationToken) {
        let every = self.cfg.claim_ttl / 4;
        let mut renew = tokio::time::interval_at(Instant::now() + every, every);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Both made once: a new shutdown future or timer each turn of the
        // loop would register and deregister it, under a lock, for every
        // event the scheduler handles.
        let stop = shutdown.cancelled();
        tokio::pin!(stop);
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        let mut timer_at = None;
        loop {
            let next_timer = self.timers.next_at();
            if next_timer != timer_at
                && let Some(at) = next_timer
            {
                timer.as_mut().reset(at);
            }
            timer_at = next_timer;
            tokio::select! {
                _ = &mut stop => break,
                _ = renew.tick() => {
                    self.renew_claims();
                    self.renew_holds();
                    self.failing.expire(Instant::now());
                }
                Some(done) = self.done_rx.recv() => self.on_done(done),
                Some(event) = events.recv() => self.on_event(event),
                Some(loaded) = self.loaded_rx.recv() => self.on_targets(loaded),
                _ = &mut timer, if timer_at.is_some() => {
                    // Fired: set again next turn, even to the same instant.
                    timer_at = None;
                    self.fire_timers();
                }
            }
        }
        self.stop(events).await;
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Jobs(jobs) => {
                let mut touched = Vec::new();
                for job in jobs {
                    if let Some(fence) = self.held.get_mut(&job.job.delivery_id) {
                        // Already held: its claim lapsed and was taken again.
                        // The copy in memory is sent under the newer claim.
                        *fence = (*fence).max(job.job.fence);
                        continue;
                    }
                    self.held.insert(job.job.delivery_id, job.job.fence);
                    let id = job.job.endpoint_id.clone();
                    self.enqueue(job);
                    touched.push(id);
                }
                touched.dedup();
                for id in touched {
                    self.pump(&id);
                }
                self.serve_ready();
            }
            Event::Recorded(ids) => {
                for id in ids {
                    self.held.remove(&id);
                }
            }
            Event::Lost(ids) => {
                // Dropped from `held`, the jobs are skipped when their turn comes.
                tracing::warn!(deliveries = ids.len(), "claims were taken over by another holder");
                for id in ids {
                    self.held.remove(&id);
                }
            }
            Event::EndpointChanged(id) => {
                self.targets.remove(&id);
                // It may have turned `fifo` on or off: its stored work moved
                // between the loader's due work and the ordered kind.
                self.shared.wake_loader.notify_one();
                if self.lanes.get(&id).is_some_and(|l| l.lane.queued() > 0) {
                    self.pump(&id);
                }
            }
            Event::EndpointDeleted(id) => self.endpoint_deleted(&id),
            Event::AppDeleted(app_id) => {
                // A lane may be gone while its retries wait in the timers.
                let mut gone: Vec<EndpointId> = self
                    .lanes
                    .iter()
                    .filter(|(_, l)| l.app_id == app_id)
                    .map(|(id, _)| id.clone())
                    .chain(self.timers.endpoints_of_app(&app_id))
                    .collect();
                gone.sort();
                gone.dedup();
                for id in gone {
                    self.endpoint_deleted(&id);
                }
            }
            Event::Claimed { endpoint, jobs, asked } => self.on_claimed(endpoint, jobs, asked),
            Event::FifoWork(endpoints) => self.on_fifo_work(endpoints),
            Event::FifoClaimed { endpoint, jobs, asked } => self.on_fifo_claimed(endpoint, jobs, asked),
            Event::HoldAnswered { endpoints } => self.on_holds(endpoints),
            Event::Due => self.shared.wake_loader.notify_one(),
            Event::Resync => {
                self.targets.clear();
                let ids: Vec<EndpointId> = self.lanes.keys().cloned().collect();
                for id in ids {
                    self.pump(&id);
                }
            }
        }
    }

    /// A job into its lane. An open circuit parks it unless it can be the
    /// probe; a lane over its share of memory parks it.
    fn enqueue(&mut self, job: Job) {
        let id = job.job.endpoint_id.clone();
        let now = Instant::now();
        let cap = self.lane_cap();
        let ls = self
            .lanes
            .entry(id.clone())
            .or_insert_with(|| LaneState::new(&self.lane_cfg, job.job.app_id.clone()));
        if ls.lane.is_serial() {
            // Ordered work is claimed a run at a time, within memory: it
            // is neither parked nor held behind a circuit.
            ls.lane.push(job);
            self.refresh(&id);
            return;
        }
        let lane = &ls.lane;
        let may_probe = lane.probe_at().is_some_and(|at| now >= at) && lane.queued() == 0 && lane.in_flight() == 0;
        let held = lane.queued() + lane.in_flight();
        if (lane.is_open() && !may_probe) || (!lane.is_open() && held >= cap) {
            self.park(&id, vec![job]);
            return;
        }
        ls.lane.push(job);
        self.refresh(&id);
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        let mut touched = Vec::new();
        while let Some(wake) = self.timers.pop_due(now) {
            match wake {
                Wake::Retry(mut job) => {
                    let id = job.job.endpoint_id.clone();
                    job.queued_at = now;
                    match self.lanes.get_mut(&id) {
                        // An ordered lane's head goes back in front.
                        Some(ls) if ls.lane.is_awaiting_retry() => {
                            ls.lane.retry_head(job);
                            self.refresh(&id);
                        }
                        _ => self.enqueue(job),
                    }
                    touched.push(id);
                }
                Wake::Probe(id) => self.probe(&id),
                Wake::Batch(id) => {
                    if let Some(ls) = self.lanes.get_mut(&id) {
                        ls.batch_wake = false;
                    }
                    touched.push(id);
                }
                Wake::Pace(id) => {
                    if let Some(ls) = self.lanes.get_mut(&id) {
                        ls.pace_wake = false;
                    }
                    touched.push(id.clone());
                    self.forget_idle_lane(&id);
                }
            }
        }
        touched.dedup();
        for id in touched {
            self.pump(&id);
        }
        self.serve_ready();
    }

    /// Recomputes whether a lane holds or wants slots, for the fair share.
    fn refresh(&mut self, id: &EndpointId) {
        let now = Instant::now();
        let Some(ls) = self.lanes.get_mut(id) else { return };
        let wanting = ls.lane.wants_slot(now);
        let active = wanting || ls.lane.in_flight() > 0;
        if wanting != ls.wanting {
            ls.wanting = wanting;
            if wanting { self.wanting += 1 } else { self.wanting -= 1 }
        }
        if active != ls.active {
            ls.active = active;
            if active { self.active += 1 } else { self.active -= 1 }
        }
    }

    /// Starts as many of a lane's jobs as its limit, the global budget and
    /// the fair share allow.
    fn pump(&mut self, id: &EndpointId) {
        if self.stopping {
            return;
        }
        let now = Instant::now();
        loop {
            let Some(ls) = self.lanes.get(id) else { return };
            if !ls.lane.wants_slot(now) {
                break;
            }
            let target = match self.targets.get(id) {
                Some(TargetEntry::Ready(t)) => t.clone(),
                Some(TargetEntry::Loading) => break,
                Some(TargetEntry::Gone) => return self.endpoint_deleted(id),
                None => {
                    self.load_targets(vec![id.clone()]);
                    break;
                }
            };
            if target.spec.disabled {
                self.fail_queued(id);
                break;
            }
            if self
                .lanes
                .get(id)
                .is_some_and(|l| l.lane.is_serial() != target.spec.fifo)
            {
                self.set_fifo(id, target.spec.fifo);
                continue;
            }
            if let Some(ls) = self.lanes.get_mut(id) {
                ls.lane.set_cap(target.spec.max_in_flight);
                if !ls.lane.wants_slot(now) {
                    break;
                }
            }
            if let Some(batch) = target.spec.batch
                && !self.batch_ready(id, batch, now)
            {
                break;
            }
            if !self.hold_allows(id, target.spec.rate_limit.is_some()) {
                break;
            }
            let Some(ls) = self.lanes.get(id) else { return };
            let others_wanting = self.wanting - usize::from(ls.wanting);
            let share = fair_share(self.cfg.max_in_flight, self.active);
            let free_after = self.cfg.max_in_flight.saturating_sub(self.in_flight + 1);
            let over_share = ls.lane.in_flight() >= share && (others_wanting > 0 || free_after < share);
            if self.in_flight >= self.cfg.max_in_flight || over_share {
                if let Some(ls) = self.lanes.get_mut(id)
                    && !ls.in_ready
                {
                    ls.in_ready = true;
                    self.ready.push_back(id.clone());
                }
                break;
            }
            let Some(ls) = self.lanes.get_mut(id) else { return };
            if let Some(rate) = target.spec.rate_limit {
                let pace = ls.pace.get_or_insert_with(|| Pace::new(rate));
                if pace.per_sec() != rate {
                    *pace = Pace::new(rate);
                }
                if let Err(at) = pace.take(now) {
                    if !ls.pace_wake {
                        ls.pace_wake = true;
                        self.timers.schedule(Wake::Pace(id.clone()), at);
                    }
                    break;
                }
            }
            let mut jobs = match target.spec.batch {
                Some(batch) => ls.lane.start_batch(batch.max_events as usize),
                None => ls.lane.start().into_iter().collect(),
            };
            // Those whose claim was lost: another holder sends them.
            jobs.retain(|job| self.held.contains_key(&job.job.delivery_id));
            if jobs.is_empty() {
                ls.lane.abandoned(now);
                continue;
            }
            self.in_flight += 1;
            self.shared.stats.in_flight.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(attempt::run(
                self.transport.clone(),
                self.transforms.clone(),
                target,
                jobs,
                ls.cancel.clone(),
                self.done_tx.clone(),
            ));
            self.refresh(id);
        }
        self.refresh(id);
        self.refill(id);
        self.fifo_fill(id);
    }

    /// Gives freed slots to lanes that were waiting, in order.
    fn serve_ready(&mut self) {
        let mut turns = self.ready.len();
        while turns > 0 && self.in_flight < self.cfg.max_in_flight {
            turns -= 1;
            let Some(id) = self.ready.pop_front() else { break };
            if let Some(ls) = self.lanes.get_mut(&id) {
                ls.in_ready = false;
                self.pump(&id);
            }
        }
    }

    /// A deleted endpoint's work stops at once: requests in flight are
    /// canceled, queued and retrying jobs dropped. The store has already
    /// canceled its deliveries, so nothing is recorded for them.
    fn endpoint_deleted(&mut self, id: &EndpointId) {
        self.targets.insert(id.clone(), TargetEntry::Gone);
        // Its hold lapses; nothing is sent to it again.
        self.holds.remove(id);
        self.failing.forget(id);
        self.health.forget(id);
        for job in self.timers.remove_endpoint(id) {
            self.held.remove(&job.job.delivery_id);
        }
        let Some(ls) = self.lanes.get_mut(id) else { return };
        ls.cancel.cancel();
        for job in ls.lane.drain() {
            self.held.remove(&job.job.delivery_id);
        }
        self.remove_lane(id);
    }

    /// Forgets a lane, with its share of the counters.
    fn remove_lane(&mut self, id: &EndpointId) {
        let Some(ls) = self.lanes.remove(id) else { return };
        self.active -= usize::from(ls.active);
        self.wanting -= usize::from(ls.wanting);
        if ls.lane.is_open() {
            self.shared.stats.circuits_open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Jobs for a disabled endpoint end without a request.
    fn fail_queued(&mut self, id: &EndpointId) {
        self.failing.forget(id);
        self.health.forget(id);
        let Some(ls) = self.lanes.get_mut(id) else { return };
        let jobs: Vec<Job> = ls.lane.drain().collect();
        self.shared
            .stats
            .deliveries_disabled
            .fetch_add(jobs.len() as u64, Ordering::Relaxed);
        for job in jobs {
            let held = self.held_of(&job);
            self.record(
                Outcome {
                    held,
                    attempt: None,
                    state: DeliveryState::Failed,
                },
                Some(job),
            );
        }
        self.refresh(id);
    }

    fn forget_idle_lane(&mut self, id: &EndpointId) {
        if self
            .lanes
            .get(id)
            .is_some_and(|l| l.lane.is_idle() && !l.in_ready && !l.parked && !l.claiming)
        {
            // A rate-limited lane is kept until its next turn, so a message
            // that comes right after cannot jump the spacing.
            let now = Instant::now();
            if let Some(ls) = self.lanes.get_mut(id)
                && let Some(at) = ls.pace.as_ref().and_then(|p| p.next_turn(now))
            {
                if !ls.pace_wake {
                    ls.pace_wake = true;
                    self.timers.schedule(Wake::Pace(id.clone()), at);
                }
                return;
            }
            self.remove_lane(id);
        }
    }

    fn renew_claims(&mut self) {
        let held = self.held.iter().map(|(&id, &fence)| Held { id, fence }).collect();
        let parked = self
            .lanes
            .iter()
            .filter(|(_, l)| l.parked)
            .map(|(id, _)| id.clone())
            .collect();
        let _ = self.renewals.send(Renewal { held, parked });
    }

    /// The claim under which `job` is held now (it may have been claimed again).
    fn held_of(&self, job: &Job) -> Held {
        let id = job.job.delivery_id;
        Held {
            id,
            fence: self.held.get(&id).copied().unwrap_or(job.job.fence),
        }
    }

    /// Hands an outcome to the recorder; `leaving` is the job when it
    /// leaves memory, kept (and still renewed) until its record is durable.
    fn record(&mut self, outcome: Outcome, leaving: Option<Job>) {
        if self.records.send(Record::Outcome { outcome, leaving }).is_err() {
            tracing::error!("the recorder has stopped; an attempt result was not saved");
        }
    }
}
