//! Ordered (`fifo`) endpoints on PostgreSQL. Their deliveries carry
//! `fifo` and stay out of the due index: they are handed out only in id
//! order, as a run from the endpoint's oldest pending delivery, by
//! [`crate::DeliveryQueue::claim_fifo`]. A live claim on one of them by
//! another holder stops the run there, so whoever holds the head holds the
//! endpoint's order. Nodes claiming one endpoint's run take turns on a
//! transaction-scoped advisory lock, and each reads the run only once it
//! holds the lock, so two can never claim the same run.

use std::sync::LazyLock;
use std::time::Duration;

use herald_core::{AppId, EndpointId};

use super::PgStore;
use super::claims::{big, claim_tail, jobs_from, query_batch, wanted};
use super::rows::get;
use crate::{DeliveryJob, FifoDue, Lease, Result};
use tokio_postgres::types::Type;

/// The advisory-lock namespace (the first key of the two-key form, which
/// never meets the one-key form the migrations use): "fifo" in ASCII.
const FIFO_LOCK: i32 = 0x6669_666f;

/// Each ordered endpoint's oldest pending delivery: a loose index scan, one
/// probe of `delivery_fifo` per endpoint rather than a walk of backlogs.
const HEADS: &str = "WITH RECURSIVE ep(id) AS ( \
        SELECT MIN(endpoint_id) FROM delivery WHERE status = 1 AND fifo \
        UNION ALL \
        SELECT (SELECT MIN(endpoint_id) FROM delivery WHERE status = 1 AND fifo AND endpoint_id > ep.id) \
        FROM ep WHERE ep.id IS NOT NULL), \
     now AS MATERIALIZED (SELECT herald_now_ms() AS t) \
     SELECT d.app_id, d.endpoint_id, d.next_attempt_at, d.claim_until, now.t FROM ep \
     JOIN delivery d ON d.id = (SELECT MIN(id) FROM delivery WHERE status = 1 AND fifo AND endpoint_id = ep.id) \
     CROSS JOIN now \
     WHERE ep.id IS NOT NULL ORDER BY d.endpoint_id";

/// A slice of an endpoint's pending ordered deliveries after id `$2`.
const RUN: &str = "SELECT id, next_attempt_at, claimed_by, claim_until FROM delivery \
     WHERE endpoint_id = $1 AND status = 1 AND fifo AND id > $2 ORDER BY id LIMIT $3";

/// These deliveries (`$2`, in order) claimed as by `claim_due`. They were
/// read, not locked, so the claim checks again that each is pending and
/// held by no live claim. Each id is looked up by primary key (no second
/// `= ANY($2)` condition, which let a generic plan join the two sets in a
/// nested loop: see [`super::claims::guarded`]).
static CLAIM_RUN: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH now AS MATERIALIZED (SELECT herald_now_ms() AS t), \
         picked AS (SELECT d.id, d.msg_id, d.app_id, t.ord FROM UNNEST($2::bigint[]) WITH ORDINALITY AS t(id, ord) \
             JOIN delivery d ON d.id = t.id) \
         {}",
        claim_tail("d.status = 1 AND (d.claim_until IS NULL OR d.claim_until < now.t)")
    )
});

/// Times a run is read again when a holder's write changed it between the
/// read and the claim (a lapsed holder recording late): rare, and each
/// retry sees the write.
const ATTEMPTS: usize = 3;

impl PgStore {
    pub(crate) async fn fifo_due_now(&self) -> Result<FifoDue> {
        let c = self.client().await?;
        let stmt = c.prepare_cached(HEADS).await?;
        let mut due = FifoDue::default();
        for r in c.query(&stmt, &[]).await? {
            let (next_at, claim_until, now): (i64, Option<i64>, i64) = (get(&r, 2)?, get(&r, 3)?, get(&r, 4)?);
            if claim_until.is_some_and(|until| until >= now) {
                // Its holder sends it, and what follows.
                continue;
            }
            if next_at <= now {
                due.ready
                    .push((AppId::from_trusted(get(&r, 0)?), EndpointId::from_trusted(get(&r, 1)?)));
            } else {
                let wait = Duration::from_millis(u64::try_from(next_at - now).unwrap_or(0));
                due.next = Some(due.next.map_or(wait, |n: Duration| n.min(wait)));
            }
        }
        Ok(due)
    }

    pub(crate) async fn claim_fifo_now(
        &self,
        lease: &Lease,
        endpoint: &EndpointId,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<DeliveryJob>> {
        let mut c = self.client().await?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        for _ in 0..ATTEMPTS {
            let tx = c.transaction().await?;
            let lock = tx
                .prepare_cached("SELECT herald_now_ms() FROM pg_advisory_xact_lock($1, hashtext($2))")
                .await?;
            let now: i64 = get(&tx.query_one(&lock, &[&FIFO_LOCK, &endpoint.as_str()]).await?, 0)?;
            let ids = run(&tx, lease, endpoint, now, limit).await?;
            if ids.is_empty() {
                tx.commit().await?;
                return Ok(Vec::new());
            }
            let t: &tokio_postgres::Transaction<'_> = &tx;
            let rows = query_batch(
                t,
                &CLAIM_RUN,
                &[
                    (&lease.owner.as_str(), Type::TEXT),
                    (&ids, Type::INT8_ARRAY),
                    (&big(max_bytes), Type::INT8),
                    (&super::rows::ttl_ms(lease.ttl), Type::INT8),
                ],
            )
            .await?;
            if rows.len() == wanted(&rows)? {
                let jobs = jobs_from(&rows)?;
                tx.commit().await?;
                return Ok(jobs);
            }
            // A delivery of the run changed after it was read: claiming
            // the rest would send out of order.
            tx.rollback().await?;
        }
        tracing::debug!(%endpoint, "an ordered run kept changing under its claim; trying later");
        Ok(Vec::new())
    }
}

/// The run of `endpoint`'s pending deliveries, in id order, that the
/// caller may send next: its own live claims are skipped (it holds them),
/// and the run stops at the first delivery that is not due or that another
/// holder's live claim holds. Read in slices, usually one.
async fn run(
    tx: &deadpool_postgres::Transaction<'_>,
    lease: &Lease,
    endpoint: &EndpointId,
    now: i64,
    limit: usize,
) -> Result<Vec<i64>> {
    let stmt = tx.prepare_cached(RUN).await?;
    // Room for the caller's own claims ahead of what it may take.
    let slice = limit.min(1_000) + 32;
    let mut ids = Vec::new();
    let mut last = 0i64;
    loop {
        let rows = tx.query(&stmt, &[&endpoint.as_str(), &last, &big(slice)]).await?;
        for r in &rows {
            let (id, next_at, by, until): (i64, i64, Option<&str>, Option<i64>) =
                (get(r, 0)?, get(r, 1)?, get(r, 2)?, get(r, 3)?);
            last = id;
            if until.is_some_and(|u| u >= now) {
                if by == Some(lease.owner.as_str()) {
                    continue;
                }
                return Ok(ids);
            }
            if next_at > now {
                return Ok(ids);
            }
            ids.push(id);
            if ids.len() >= limit {
                return Ok(ids);
            }
        }
        if rows.len() < slice {
            return Ok(ids);
        }
    }
}

/// An endpoint turned `fifo` on or off: its pending deliveries follow (in
/// the transaction that changes the endpoint).
pub(crate) async fn set_pending(
    client: &impl deadpool_postgres::GenericClient,
    endpoint: &EndpointId,
    fifo: bool,
) -> Result<()> {
    let stmt = client
        .prepare_cached("UPDATE delivery SET fifo = $2 WHERE endpoint_id = $1 AND status = 1 AND fifo <> $2")
        .await?;
    client.execute(&stmt, &[&endpoint.as_str(), &fifo]).await?;
    Ok(())
}
