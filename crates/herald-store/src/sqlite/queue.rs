//! The delivery queue on SQLite: claims, renewals, outcomes and releases
//! under owned, fenced leases (see [`crate::DeliveryQueue`]). Every write
//! goes through the writer thread without a savepoint, so each of these is
//! one job in the next group commit; times come from the database's clock,
//! read once per transaction.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use herald_core::model::AttemptErrorKind;
use herald_core::validate::EventTypeName;
use herald_core::{AppId, EndpointId, MessageId};
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use super::holds::HELD_ELSEWHERE;
use super::ingest::insert_message_with_fanout;
use super::rows::{after, count, db_now_ms, ms, opt_time_at, time_at};
use crate::{
    DeliveryJob, DeliveryQueue, DeliveryState, Held, Ingested, Lease, LeaseResult, NewMessage, NodeId, Outcome, Result,
    RetryHold,
};

/// Pending deliveries: two walks of partial indexes that hold only pending
/// rows, the unclaimed ones (`delivery_due`) and every claim
/// (`delivery_claimed`; only a pending delivery is ever claimed, as every
/// way out of pending clears the claim in the same statement). About 0.1 s
/// of a core per million pending; finished deliveries are never read.
pub(crate) const BACKLOG: &str = "SELECT (SELECT count(*) FROM delivery WHERE status = 1 AND claim_until IS NULL AND fifo = 0) \
     + (SELECT count(*) FROM delivery WHERE status = 1 AND fifo = 1 AND claim_until IS NULL) \
     + (SELECT count(*) FROM delivery WHERE claim_until IS NOT NULL)";

#[async_trait::async_trait]
impl DeliveryQueue for SqliteStore {
    async fn ingest(&self, msg: NewMessage) -> Result<Ingested> {
        self.writer
            .run_fast(move |ctx| insert_message_with_fanout(ctx, msg))
            .await
    }

    async fn claim_due(&self, lease: &Lease, limit: usize, max_bytes: usize) -> Result<Vec<DeliveryJob>> {
        let lease = lease.clone();
        self.writer
            .run_fast(move |ctx| {
                let now = ctx.now()?;
                claim_due(&ctx.conn, &lease, now, limit, max_bytes)
            })
            .await
    }

    async fn next_due(&self, owner: &NodeId) -> Result<Option<Duration>> {
        let owner = owner.clone();
        self.read(move |c| {
            let now = db_now_ms(c)?;
            let next: Option<i64> = c
                .prepare_cached(&format!(
                    "SELECT MIN(next_attempt_at) FROM delivery \
                     WHERE status = 1 AND claim_until IS NULL AND fifo = 0 AND NOT {HELD_ELSEWHERE}"
                ))?
                .query_row(params![now, None::<i64>, owner.as_str()], |r| r.get(0))?;
            Ok(next.map(|at| Duration::from_millis(u64::try_from(at - now).unwrap_or(0))))
        })
        .await
    }

    async fn backlog(&self) -> Result<u64> {
        self.read(|c| Ok(c.prepare_cached(BACKLOG)?.query_row([], |r| count(r, 0))?))
            .await
    }

    async fn renew(&self, lease: &Lease, held: Vec<Held>) -> Result<Vec<LeaseResult>> {
        let lease = lease.clone();
        self.writer
            .run_fast(move |ctx| {
                let until = after(ctx.now()?, lease.ttl);
                // Never shortens a claim: a renewal sent before its delivery
                // was parked (a hold of minutes) lands after the park.
                let mut renew = ctx.conn.prepare_cached(
                    "UPDATE delivery SET claim_until = MAX(COALESCE(claim_until, 0), ?4) \
                     WHERE id = ?1 AND fence = ?2 AND claimed_by = ?3 AND status = 1",
                )?;
                per_delivery(&ctx.conn, held, |h| {
                    renew.execute(params![h.id, h.fence, lease.owner.as_str(), until])
                })
            })
            .await
    }

    async fn record_outcomes(&self, lease: &Lease, outcomes: Vec<Outcome>) -> Result<Vec<LeaseResult>> {
        let lease = lease.clone();
        self.writer
            .run_fast(move |ctx| {
                let now = ctx.now()?;
                let mut results = Vec::with_capacity(outcomes.len());
                for o in &outcomes {
                    results.push(record_outcome(&ctx.conn, &lease, o, now)?);
                }
                Ok(results)
            })
            .await
    }

    async fn release(&self, lease: &Lease, held: Vec<Held>) -> Result<Vec<LeaseResult>> {
        let owner = lease.owner.clone();
        self.writer
            .run_fast(move |ctx| {
                let mut release = ctx.conn.prepare_cached(
                    "UPDATE delivery SET claimed_by = NULL, claim_until = NULL, parked = 0 \
                     WHERE id = ?1 AND fence = ?2 AND claimed_by = ?3 AND status = 1",
                )?;
                per_delivery(&ctx.conn, held, |h| {
                    release.execute(params![h.id, h.fence, owner.as_str()])
                })
            })
            .await
    }

    async fn recover(&self, owner: &NodeId) -> Result<u64> {
        let owner = owner.clone();
        self.writer
            .run(move |ctx| {
                let n = ctx.conn.execute(
                    "UPDATE delivery SET claimed_by = NULL, claim_until = NULL, parked = 0 \
                     WHERE claim_until IS NOT NULL AND claimed_by = ?1",
                    [owner.as_str()],
                )?;
                Ok(n as u64)
            })
            .await
    }

    async fn park(&self, lease: &Lease, hold: Duration, held: Vec<Held>) -> Result<Vec<LeaseResult>> {
        let owner = lease.owner.clone();
        self.writer
            .run_fast(move |ctx| {
                let until = after(ctx.now()?, hold);
                let mut park = ctx.conn.prepare_cached(
                    "UPDATE delivery SET parked = 1, claim_until = ?4 \
                     WHERE id = ?1 AND fence = ?2 AND claimed_by = ?3 AND status = 1",
                )?;
                per_delivery(&ctx.conn, held, |h| {
                    park.execute(params![h.id, h.fence, owner.as_str(), until])
                })
            })
            .await
    }

    async fn fifo_due(&self) -> Result<crate::FifoDue> {
        self.fifo_due_now().await
    }

    async fn claim_fifo(
        &self,
        lease: &Lease,
        endpoint: EndpointId,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<DeliveryJob>> {
        self.claim_fifo_now(lease, endpoint, limit, max_bytes).await
    }

    async fn park_endpoints(&self, lease: &Lease, hold: Duration, endpoints: Vec<EndpointId>) -> Result<u64> {
        let owner = lease.owner.clone();
        self.per_endpoint_in_batches(endpoints, move |ctx, endpoint, limit| {
            let until = after(ctx.now()?, hold);
            let n = ctx
                .conn
                .prepare_cached(
                    "UPDATE delivery SET parked = 1, claimed_by = ?2, claim_until = ?3 WHERE id IN \
                     (SELECT id FROM delivery WHERE endpoint_id = ?1 AND status = 1 AND claim_until IS NULL LIMIT ?4)",
                )?
                .execute(params![endpoint.as_str(), owner.as_str(), until, limit as i64])?;
            Ok(n)
        })
        .await
    }

    async fn claim_parked(
        &self,
        lease: &Lease,
        endpoint: EndpointId,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<DeliveryJob>> {
        let lease = lease.clone();
        self.writer
            .run_fast(move |ctx| {
                let now = ctx.now()?;
                let ids = earliest_parked(&ctx.conn, &lease.owner, &endpoint, now, limit)?
                    .into_iter()
                    .map(|(id, ..)| id)
                    .collect();
                claim_rows(&ctx.conn, &lease, now, ids, max_bytes)
            })
            .await
    }

    async fn probe_parked(&self, lease: &Lease, endpoint: EndpointId) -> Result<Option<DeliveryJob>> {
        let (owner, ttl, ep) = (lease.owner.clone(), lease.ttl, endpoint.clone());
        let standing = self
            .read(move |conn| {
                let now = db_now_ms(conn)?;
                let Some((id, fence, until)) = earliest_parked(conn, &owner, &ep, now, 1)?.pop() else {
                    return Ok(None);
                };
                if until < after(now, ttl) {
                    // Too little of the parked claim is left to send under it.
                    return Ok(Some(None));
                }
                Ok(Some(load_job(conn, id)?.map(|job| DeliveryJob { fence, ..job })))
            })
            .await?;
        match standing {
            None => Ok(None),
            Some(Some(job)) => Ok(Some(job)),
            Some(None) => Ok(self.claim_parked(lease, endpoint, 1, usize::MAX).await?.pop()),
        }
    }

    async fn renew_parked(&self, lease: &Lease, hold: Duration, endpoints: Vec<EndpointId>) -> Result<u64> {
        // One `until` for every batch (by the database's clock), so a row
        // renewed in one batch is not picked again by the next.
        let until = after(self.read(db_now_ms).await?, hold);
        let owner = lease.owner.clone();
        self.per_endpoint_in_batches(endpoints, move |ctx, endpoint, limit| {
            let n = ctx
                .conn
                .prepare_cached(
                    "UPDATE delivery SET claim_until = ?3 WHERE id IN (SELECT id FROM delivery \
                     WHERE endpoint_id = ?1 AND status = 1 AND parked = 1 AND claimed_by = ?2 \
                     AND claim_until < ?3 LIMIT ?4)",
                )?
                .execute(params![endpoint.as_str(), owner.as_str(), until, limit as i64])?;
            Ok(n)
        })
        .await
    }

    async fn unpark(&self, lease: &Lease, endpoints: Vec<EndpointId>) -> Result<u64> {
        let owner = lease.owner.clone();
        self.per_endpoint_in_batches(endpoints, move |ctx, endpoint, limit| {
            let n = ctx
                .conn
                .prepare_cached(
                    "UPDATE delivery SET parked = 0, claimed_by = NULL, claim_until = NULL WHERE id IN \
                     (SELECT id FROM delivery WHERE endpoint_id = ?1 AND status = 1 AND parked = 1 \
                     AND claimed_by = ?2 LIMIT ?3)",
                )?
                .execute(params![endpoint.as_str(), owner.as_str(), limit as i64])?;
            Ok(n)
        })
        .await
    }

    async fn hold_endpoints(&self, lease: &Lease, endpoints: Vec<EndpointId>) -> Result<Vec<bool>> {
        self.take_holds(lease, endpoints).await
    }

    async fn release_endpoints(&self, lease: &Lease, endpoints: Vec<EndpointId>) -> Result<()> {
        self.drop_holds(lease, endpoints).await
    }
}

/// Rows one bulk write (parking or releasing an endpoint's backlog) touches
/// per transaction: one statement over a million rows kept its whole undo
/// in memory (a 280 MB peak), and held the writer from everyone else.
const BULK_BATCH: usize = 10_000;

impl SqliteStore {
    /// Runs `write(ctx, endpoint, limit)` (which touches at most `limit`
    /// rows of that endpoint's) over the endpoints in order, as writer jobs
    /// of at most [`BULK_BATCH`] rows each, many endpoints to a job; an
    /// endpoint is done once a write touches fewer rows than it may. The
    /// total touched.
    async fn per_endpoint_in_batches(
        &self,
        endpoints: Vec<EndpointId>,
        write: impl Fn(&mut super::writer::WriterCtx, &EndpointId, usize) -> Result<usize> + Clone + Send + Sync + 'static,
    ) -> Result<u64> {
        let mut rest: VecDeque<EndpointId> = endpoints.into();
        let mut total = 0;
        while !rest.is_empty() {
            let write = write.clone();
            let (n, left) = self
                .writer
                .run_fast(move |ctx| {
                    let mut room = BULK_BATCH;
                    while let Some(endpoint) = rest.front() {
                        let n = write(ctx, endpoint, room)?;
                        if n >= room {
                            // The job is full; this endpoint may have more.
                            room = 0;
                            break;
                        }
                        room -= n;
                        rest.pop_front();
                    }
                    Ok(((BULK_BATCH - room) as u64, rest))
                })
                .await?;
            total += n;
            rest = left;
        }
        Ok(total)
    }
}

/// Runs a write guarded by owner and fence for each delivery and answers
/// per delivery: `Done` when it touched the row, else why not.
fn per_delivery(
    conn: &Connection,
    held: Vec<Held>,
    mut write: impl FnMut(&Held) -> rusqlite::Result<usize>,
) -> Result<Vec<LeaseResult>> {
    let mut results = Vec::with_capacity(held.len());
    for h in held {
        results.push(if write(&h)? == 1 {
            LeaseResult::Done
        } else {
            why_not(conn, h.id)?
        });
    }
    Ok(results)
}

/// Why a guarded write touched no row: the delivery is finished (or gone),
/// or the caller's claim on it is.
fn why_not(conn: &Connection, id: i64) -> Result<LeaseResult> {
    let status: Option<i64> = conn
        .prepare_cached("SELECT status FROM delivery WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    Ok(match status {
        Some(1) => LeaseResult::Lost,
        _ => LeaseResult::Finished,
    })
}

fn claim_due(conn: &Connection, lease: &Lease, now: i64, limit: usize, max_bytes: usize) -> Result<Vec<DeliveryJob>> {
    // Unclaimed due work, and work whose claim lapsed (its holder died or
    // could not record the outcome); each query walks its own index, and the
    // earliest `limit` of both are taken.
    let mut rows: Vec<(i64, i64)> = Vec::with_capacity(limit);
    // Both skip what is left for another endpoint holder.
    let mut unclaimed = conn.prepare_cached(&format!(
        "SELECT id, next_attempt_at FROM delivery \
         WHERE status = 1 AND claim_until IS NULL AND fifo = 0 AND next_attempt_at <= ?1 AND NOT {HELD_ELSEWHERE} \
         ORDER BY next_attempt_at LIMIT ?2"
    ))?;
    let owner = lease.owner.as_str();
    for row in unclaimed.query_map(params![now, limit as i64, owner], |r| Ok((r.get(0)?, r.get(1)?)))? {
        rows.push(row?);
    }
    let mut lapsed = conn.prepare_cached(&format!(
        "SELECT id, next_attempt_at FROM delivery \
         WHERE claim_until IS NOT NULL AND claim_until < ?1 AND status = 1 AND fifo = 0 AND next_attempt_at <= ?1 \
         AND NOT {HELD_ELSEWHERE} \
         ORDER BY next_attempt_at LIMIT ?2"
    ))?;
    for row in lapsed.query_map(params![now, limit as i64, owner], |r| Ok((r.get(0)?, r.get(1)?)))? {
        rows.push(row?);
    }
    rows.sort_by_key(|&(id, due)| (due, id));
    rows.truncate(limit);
    claim_rows(
        conn,
        lease,
        now,
        rows.into_iter().map(|(id, _)| id).collect(),
        max_bytes,
    )
}

/// The caller's parked deliveries to `endpoint` that are due at `now`,
/// earliest first: id, fence and claim expiry.
fn earliest_parked(
    conn: &Connection,
    owner: &NodeId,
    endpoint: &EndpointId,
    now: i64,
    limit: usize,
) -> Result<Vec<(i64, i64, i64)>> {
    let mut due = conn.prepare_cached(
        "SELECT id, fence, claim_until FROM delivery WHERE endpoint_id = ?1 AND status = 1 AND parked = 1 \
         AND next_attempt_at <= ?2 AND claimed_by = ?3 ORDER BY next_attempt_at LIMIT ?4",
    )?;
    let rows = due
        .query_map(params![endpoint.as_str(), now, owner.as_str(), limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// A delivery with its message, for sending; the payload's length (column
/// 7) comes from the record header, so a caller can decide on its budget
/// before the payload (column 8) is read.
const LOAD_JOB: &str = "SELECT d.msg_id, d.app_id, d.endpoint_id, d.attempts, m.event_type, m.created_at, \
     d.first_attempt_at, length(m.payload), m.payload, d.manual FROM delivery d \
     JOIN message m ON m.app_id = d.app_id AND m.id = d.msg_id WHERE d.id = ?1";

/// The job for a [`LOAD_JOB`] row, with the given payload and a fence the
/// caller sets.
fn job_from_row(id: i64, r: &rusqlite::Row<'_>, payload: Bytes) -> rusqlite::Result<DeliveryJob> {
    Ok(DeliveryJob {
        delivery_id: id,
        fence: 0,
        msg_id: MessageId::from_trusted(r.get(0)?),
        app_id: AppId::from_trusted(r.get(1)?),
        endpoint_id: EndpointId::from_trusted(r.get(2)?),
        attempts: r.get(3)?,
        event_type: EventTypeName::from_trusted(r.get(4)?),
        msg_created_at: time_at(r, 5)?,
        first_attempt_at: opt_time_at(r, 6)?,
        payload,
        manual: r.get(9)?,
    })
}

/// One delivery as a job, whatever its payload's size; `None` when its
/// message is gone.
fn load_job(conn: &Connection, id: i64) -> Result<Option<DeliveryJob>> {
    Ok(conn
        .prepare_cached(LOAD_JOB)?
        .query_row([id], |r| job_from_row(id, r, Bytes::from(r.get::<_, Vec<u8>>(8)?)))
        .optional()?)
}

/// Loads and claims these deliveries, in order, until their payloads reach
/// `max_bytes` (at least one is taken).
pub(crate) fn claim_rows(
    conn: &Connection,
    lease: &Lease,
    now: i64,
    ids: Vec<i64>,
    max_bytes: usize,
) -> Result<Vec<DeliveryJob>> {
    // The payload itself is read only once the budget has room for it.
    let mut load = conn.prepare_cached(LOAD_JOB)?;
    let mut claim = conn.prepare_cached(
        "UPDATE delivery SET claimed_by = ?2, claim_until = ?3, fence = fence + 1, parked = 0 WHERE id = ?1 \
         RETURNING fence",
    )?;
    let until = after(now, lease.ttl);
    // Deliveries of one message share one copy of its payload, counted once.
    let mut payloads: HashMap<String, Bytes> = HashMap::new();
    let mut bytes = 0usize;
    let mut jobs = Vec::with_capacity(ids.len());
    for id in ids {
        let job = load
            .query_row([id], |r| {
                let msg_id: String = r.get(0)?;
                let payload = match payloads.get(&msg_id) {
                    Some(p) => p.clone(),
                    None => {
                        let len = usize::try_from(r.get::<_, i64>(7)?).unwrap_or(usize::MAX);
                        if !jobs.is_empty() && bytes.saturating_add(len) > max_bytes {
                            return Ok(None);
                        }
                        bytes = bytes.saturating_add(len);
                        let p = Bytes::from(r.get::<_, Vec<u8>>(8)?);
                        payloads.insert(msg_id, p.clone());
                        p
                    }
                };
                job_from_row(id, r, payload).map(Some)
            })
            .optional()?;
        match job {
            // A message deleted under its delivery: nothing to claim.
            None => continue,
            // Over the byte budget: this and the rest wait for the next round.
            Some(None) => break,
            Some(Some(mut job)) => {
                job.fence = claim.query_row(params![id, lease.owner.as_str(), until], |r| r.get(0))?;
                jobs.push(job);
            }
        }
    }
    Ok(jobs)
}

/// One outcome, written only while the caller still holds the delivery:
/// the state change first, guarded by owner and fence, then the attempt.
fn record_outcome(conn: &Connection, lease: &Lease, o: &Outcome, now: i64) -> Result<LeaseResult> {
    let tried = i64::from(o.attempt.is_some());
    // The first attempt's start is kept (templates can show it); later ones leave it.
    let started = o.attempt.as_ref().map(|a| ms(a.created_at));
    let (owner, Held { id, fence }) = (lease.owner.as_str(), o.held);
    let n = match &o.state {
        DeliveryState::Succeeded | DeliveryState::Failed => {
            let status = if matches!(o.state, DeliveryState::Succeeded) {
                0
            } else {
                2
            };
            conn.prepare_cached(
                "UPDATE delivery SET status = ?5, attempts = attempts + ?4, claimed_by = NULL, claim_until = NULL, \
                 manual = manual * (1 - ?4), updated_at = ?6, first_attempt_at = COALESCE(first_attempt_at, ?7) \
                 WHERE id = ?1 AND fence = ?2 AND claimed_by = ?3 AND status = 1",
            )?
            .execute(params![id, fence, owner, tried, status, now, started])?
        }
        DeliveryState::Retry { after: wait, hold } => {
            let at = after(now, *wait);
            let (claimed_by, until, parked) = match hold {
                RetryHold::Release => (None, None, 0),
                RetryHold::Keep => (Some(owner), Some(after(at, lease.ttl)), 0),
                RetryHold::Park(hold) => (Some(owner), Some(after(now, *hold)), 1),
            };
            conn.prepare_cached(
                "UPDATE delivery SET attempts = attempts + ?4, next_attempt_at = ?5, claimed_by = ?6, \
                 claim_until = ?7, parked = ?10, manual = manual * (1 - ?4), updated_at = ?8, \
                 first_attempt_at = COALESCE(first_attempt_at, ?9) \
                 WHERE id = ?1 AND fence = ?2 AND claimed_by = ?3 AND status = 1",
            )?
            .execute(params![
                id, fence, owner, tried, at, claimed_by, until, now, started, parked
            ])?
        }
    };
    if n == 0 {
        return why_not(conn, id);
    }
    if let Some(a) = &o.attempt {
        conn.prepare_cached(
            "INSERT INTO attempt (id, msg_id, endpoint_id, app_id, delivery_id, url, status_code, response, \
             duration_ms, status, error_kind, trigger_type, attempt_number, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?
        .execute(params![
            a.id.as_str(),
            a.msg_id.as_str(),
            a.endpoint_id.as_str(),
            a.app_id.as_str(),
            id,
            a.url,
            a.response_status_code,
            a.response,
            i64::try_from(a.response_duration_ms).unwrap_or(i64::MAX),
            a.status.code(),
            a.error_kind.map(AttemptErrorKind::as_str),
            a.trigger_type as i64,
            a.attempt_number,
            ms(a.created_at)
        ])?;
    }
    Ok(LeaseResult::Done)
}
