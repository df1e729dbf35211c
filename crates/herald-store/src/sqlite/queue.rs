//! The delivery queue on SQLite: claims, renewals, outcomes and releases
//! under owned, fenced leases (see [`crate::DeliveryQueue`]). Every write
//! goes through the writer thread without a savepoint, so each of these is
//! one job in the next group commit; times come from the database's clock,
//! read once per transaction.

use std::collections::VecDeque;
use std::time::Duration;

use herald_core::EndpointId;
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use super::claims::{claim_due, claim_rows, load_job};
use super::holds::HELD_ELSEWHERE;
use super::ingest::insert_message_with_fanout;
use super::outcomes::record_outcomes;
use super::rows::{after, count, db_now_ms};
use crate::{DeliveryJob, DeliveryQueue, Held, Ingested, Lease, LeaseResult, NewMessage, NodeId, Outcome, Result};

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
                record_outcomes(&ctx.conn, &lease, &outcomes, now)
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
pub(crate) fn why_not(conn: &Connection, id: i64) -> Result<LeaseResult> {
    let status: Option<i64> = conn
        .prepare_cached("SELECT status FROM delivery WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    Ok(match status {
        Some(1) => LeaseResult::Lost,
        _ => LeaseResult::Finished,
    })
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
