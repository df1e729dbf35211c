//! The delivery queue: ingest with fan-out, and the leases under which
//! nodes hold deliveries while they send them.
//!
//! The contract is the multi-node one even where a backend serves a single
//! node (SQLite): every claim is owned by a [`NodeId`] and carries a fencing
//! token ([`Held::fence`]) that changes whenever the delivery is claimed
//! anew, expiry is decided by the database's clock (callers pass a TTL, never
//! a time), and each method answers per delivery, so an owner whose lease
//! was taken over learns it and can neither renew nor overwrite it.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use herald_core::model::{Attempt, Message};
use herald_core::validate::{Channel, EventTypeName, Uid};
use herald_core::{AppId, EndpointId, MessageId};

use crate::Result;

/// A node's identity as a lease owner; stable across the node's restarts
/// so that it can take back its own claims, and only those, at start.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeId(String);

impl NodeId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a node asks for when it claims: who it is and how long the claim
/// lasts from the database's now.
#[derive(Debug, Clone)]
pub struct Lease {
    pub owner: NodeId,
    pub ttl: Duration,
}

/// A delivery as a lease holder knows it: its id and the fencing token of
/// the claim it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Held {
    pub id: i64,
    pub fence: i64,
}

/// What became of one delivery in a queue call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseResult {
    /// Done as asked: renewed, recorded or released.
    Done,
    /// The caller's claim is gone: another claim replaced it (the fence
    /// moved on) or it was released. Nothing was written.
    Lost,
    /// The delivery is no longer pending (finished, canceled because its
    /// endpoint was deleted, or deleted with its application). Nothing was
    /// written: in particular no attempt is recorded after a delete.
    Finished,
}

pub struct NewMessage {
    pub app: AppRef,
    pub event_type: EventTypeName,
    pub event_id: Option<Uid>,
    pub channels: Option<Vec<Channel>>,
    pub tags: Option<Vec<String>>,
    pub payload: Bytes,
    /// How long the payload is kept (`payloadRetentionPeriod`); `None` is
    /// the retention task's default ([`crate::DEFAULT_PAYLOAD_RETENTION`]),
    /// stored as no expiry at all. The message itself stays until
    /// the retention period prunes it.
    pub payload_retention: Option<Duration>,
    /// Deliver to this endpoint only, whatever its filters (a test event:
    /// `send-example`); `None` fans out by subscription.
    pub only_endpoint: Option<EndpointId>,
    /// Claim the fanned-out deliveries under this lease, so the engine can
    /// send them straight from memory without reading them back. `None`
    /// leaves them for whichever node claims due work next. A delivery to
    /// an endpoint another owner holds is born unclaimed, whatever the
    /// lease (see [`DeliveryQueue::hold_endpoints`]).
    pub lease: Option<Lease>,
}

/// How a request names an application: its id or its `uid`.
#[derive(Debug, Clone)]
pub struct AppRef(pub String);

/// A message just committed, with the deliveries its fan-out created.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub message: Message,
    /// Deliveries to unordered endpoints, claimed under the message's lease
    /// when it had one; those left for another endpoint holder are not here.
    pub deliveries: Vec<DeliveryJob>,
    /// Ordered (`fifo`) endpoints that got a delivery: those are never
    /// born claimed, and go out through [`DeliveryQueue::claim_fifo`].
    pub fifo: Vec<(AppId, EndpointId)>,
}

/// One message on its way to one endpoint: what the engine holds in memory.
#[derive(Debug, Clone)]
pub struct DeliveryJob {
    pub delivery_id: i64,
    /// The fencing token of the claim under which this job was handed out.
    pub fence: i64,
    pub msg_id: MessageId,
    pub app_id: AppId,
    pub endpoint_id: EndpointId,
    pub event_type: EventTypeName,
    pub payload: Bytes,
    /// Attempts already made.
    pub attempts: u32,
    /// When the message was created.
    pub msg_created_at: DateTime<Utc>,
    /// When the first attempt of this delivery started; `None` before it.
    pub first_attempt_at: Option<DateTime<Utc>>,
    /// Its next attempt was asked for by hand (resend, recover,
    /// replay-missing), and is recorded as a manual one.
    pub manual: bool,
}

impl DeliveryJob {
    pub fn held(&self) -> Held {
        Held {
            id: self.delivery_id,
            fence: self.fence,
        }
    }
}

/// What became of a delivery after an attempt.
#[derive(Debug, Clone)]
pub enum DeliveryState {
    Succeeded,
    /// Try again `after` this long from the database's now, waiting as
    /// `hold` says.
    Retry {
        after: Duration,
        hold: RetryHold,
    },
    /// The schedule is exhausted.
    Failed,
}

/// Where a delivery waits for its next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryHold {
    /// Unclaimed, back in the pool: whichever loader finds it due takes it.
    Release,
    /// Still claimed by the caller, for the wait plus a lease TTL: the
    /// engine holds the retry in memory.
    Keep,
    /// Still claimed by the caller and parked for this long (its endpoint's
    /// circuit is open): due for nobody, taken back by `claim_parked` or
    /// `unpark`. One write, where a kept claim parked after would be two.
    Park(Duration),
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub held: Held,
    /// `None` when no request was made.
    pub attempt: Option<Attempt>,
    pub state: DeliveryState,
}

#[async_trait::async_trait]
pub trait DeliveryQueue: Send + Sync {
    /// Stores a message and one delivery per subscribed endpoint, durably,
    /// before returning.
    async fn ingest(&self, msg: NewMessage) -> Result<Ingested>;
    /// Claims up to `limit` pending deliveries that are due and that no live
    /// claim holds (never claimed, released, or lapsed), earliest first,
    /// stopping once their payloads add up to `max_bytes` (at least one is
    /// claimed when any is due). Each claim gets a new fencing token.
    /// Deliveries to an endpoint another owner holds
    /// ([`DeliveryQueue::hold_endpoints`]) are left for that owner.
    async fn claim_due(&self, lease: &Lease, limit: usize, max_bytes: usize) -> Result<Vec<DeliveryJob>>;
    /// How long until the earliest unclaimed pending delivery is due, by the
    /// database's clock (zero when it is overdue); `None` when there is none.
    /// As [`DeliveryQueue::claim_due`], it counts none that `owner` would
    /// leave for another endpoint holder. Lapsed claims are rare (a holder
    /// died); the loader finds them on its periodic look rather than by
    /// this time.
    async fn next_due(&self, owner: &NodeId) -> Result<Option<Duration>>;
    /// How many deliveries are still to be delivered: pending (never tried
    /// or awaiting a retry) wherever they wait — unclaimed, held in a node's
    /// memory, or parked behind an open circuit — over every node. Its cost
    /// may grow with the backlog, never with the history: callers read it
    /// every few seconds, not per request.
    async fn backlog(&self) -> Result<u64>;
    /// Extends the caller's claims to at least the lease's TTL from now
    /// (never shortening one, such as a parked claim's longer hold); one
    /// answer per delivery, in order.
    async fn renew(&self, lease: &Lease, held: Vec<Held>) -> Result<Vec<LeaseResult>>;
    /// Records attempts and moves deliveries to their new state, in one
    /// commit, for the deliveries the caller still holds; one answer per
    /// outcome, in order.
    async fn record_outcomes(&self, lease: &Lease, outcomes: Vec<Outcome>) -> Result<Vec<LeaseResult>>;
    /// Drops the caller's claims so the deliveries can be claimed again at
    /// once (shutdown); one answer per delivery, in order.
    async fn release(&self, lease: &Lease, held: Vec<Held>) -> Result<Vec<LeaseResult>>;
    /// Drops every claim `owner` holds, parked ones included: a node
    /// starting up takes back the work its previous run held, and never
    /// another node's.
    async fn recover(&self, owner: &NodeId) -> Result<u64>;

    /// Parks the caller's claims for `hold` (an open circuit): the
    /// deliveries stay claimed without being in anyone's memory, are not
    /// due for anyone, and cost nothing until [`DeliveryQueue::unpark`] or
    /// until the hold lapses unrenewed (the holder died), when they are
    /// claimable again. One answer per delivery, in order.
    async fn park(&self, lease: &Lease, hold: Duration, held: Vec<Held>) -> Result<Vec<LeaseResult>>;
    /// Parks every unclaimed pending delivery to these endpoints under the
    /// caller's claim for `hold`, without reading a payload: the backlogs
    /// open circuits hold, swept out of everyone's due work. Endpoints
    /// whose circuits opened together share writes; the total parked.
    async fn park_endpoints(&self, lease: &Lease, hold: Duration, endpoints: Vec<EndpointId>) -> Result<u64>;
    /// Claims up to `limit` of the caller's parked deliveries to `endpoint`
    /// whose next attempt is due, earliest first, under a fresh claim (a new
    /// fence, the lease's TTL), stopping once their payloads reach
    /// `max_bytes` (at least one is taken): a lane taking its backlog back.
    async fn claim_parked(
        &self,
        lease: &Lease,
        endpoint: EndpointId,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<DeliveryJob>>;
    /// An open circuit's probe: the caller's earliest-due parked delivery
    /// to `endpoint`, `None` when none is due. It is handed out under its
    /// standing parked claim (same fence, still parked, nothing written)
    /// while that claim has at least the lease's TTL left by the
    /// database's clock, and claimed afresh as by `claim_parked` otherwise:
    /// an idle open circuit then costs a read per probe, not a write. The
    /// caller records its outcome (which parks it again) or releases it;
    /// until then it must not `unpark` the endpoint.
    async fn probe_parked(&self, lease: &Lease, endpoint: EndpointId) -> Result<Option<DeliveryJob>>;
    /// Extends the caller's parked claims on these endpoints' deliveries to
    /// `hold` from now, however large their backlogs, in writes shared
    /// between endpoints; the total renewed.
    async fn renew_parked(&self, lease: &Lease, hold: Duration, endpoints: Vec<EndpointId>) -> Result<u64>;
    /// Releases the caller's parked claims on these endpoints' deliveries,
    /// so they are due again at once (their circuits closed); the total.
    async fn unpark(&self, lease: &Lease, endpoints: Vec<EndpointId>) -> Result<u64>;

    /// Takes or renews endpoint holds. An endpoint whose policy must hold
    /// across nodes (a `rateLimit`, an open circuit) is sent to by one node
    /// at a time: the one holding it. A hold is granted when no other
    /// owner's live hold has the endpoint (none, lapsed, or the caller's
    /// own), and lasts the lease's TTL from the database's now. While it
    /// lasts, other owners' ingests leave their deliveries to the endpoint
    /// unclaimed and announce [`crate::Change::Due`], and their `claim_due`
    /// skips them, so the holder gets them. One answer per endpoint, in
    /// order: whether the caller holds it now.
    async fn hold_endpoints(&self, lease: &Lease, endpoints: Vec<EndpointId>) -> Result<Vec<bool>>;
    /// Drops the caller's holds on these endpoints (it has no work for them
    /// left, or their circuits closed); anyone else's stay.
    async fn release_endpoints(&self, lease: &Lease, endpoints: Vec<EndpointId>) -> Result<()>;

    /// Ordered (`fifo`) endpoints whose oldest pending delivery is due and
    /// held by no live claim, and how long until the first of the others'
    /// is due. Their deliveries are never handed out by `claim_due`.
    async fn fifo_due(&self) -> Result<FifoDue>;
    /// Claims the run of `endpoint`'s pending deliveries, in order, that the
    /// caller may send next: from the oldest on, skipping the caller's own
    /// live claims, up to `limit` or until their payloads reach `max_bytes`
    /// (at least one), and stopping at the first that is not due or that
    /// another holder's live claim holds (it holds the endpoint's order).
    async fn claim_fifo(
        &self,
        lease: &Lease,
        endpoint: EndpointId,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<DeliveryJob>>;
}

/// What [`DeliveryQueue::fifo_due`] found.
#[derive(Debug, Clone, Default)]
pub struct FifoDue {
    pub ready: Vec<(AppId, EndpointId)>,
    pub next: Option<Duration>,
}
