//! Parked claims: deliveries an open circuit holds outside memory, still
//! claimed by their owner and due for nobody (see
//! [`crate::DeliveryQueue::park`]). The bulk writes over an endpoint's
//! backlog go in statements of at most [`BULK_BATCH`] rows, each its own
//! transaction, over every endpoint named at once (`endpoint_id = ANY`).

use std::sync::LazyLock;
use std::time::Duration;

use deadpool_postgres::GenericClient;
use herald_core::EndpointId;

use super::PgStore;
use super::claims::{JOB_COLS, big, claim_tail, jobs_from, query_batch, sat_add};
use super::rows::{after, db_now_ms, get, ttl_ms};
use crate::{DeliveryJob, Lease, Result};
use tokio_postgres::types::Type;

/// Rows one bulk write touches per statement: a million-row backlog parked
/// in one statement would hold its locks and its undo for as long as it
/// ran, and keep other nodes' claims waiting.
const BULK_BATCH: usize = 10_000;

/// The caller's (`$1`) parked deliveries to `$5` that are due, earliest
/// first, up to `$2`, claimed afresh as by `claim_due`.
static CLAIM_PARKED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH now AS MATERIALIZED (SELECT herald_now_ms() AS t), \
         cand AS (SELECT id, next_attempt_at, msg_id, app_id FROM delivery \
             WHERE endpoint_id = $5 AND status = 1 AND parked AND next_attempt_at <= (SELECT t FROM now) \
             AND claimed_by = $1::text ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED), \
         picked AS (SELECT id, msg_id, app_id, row_number() OVER (ORDER BY next_attempt_at, id) AS ord FROM cand) \
         {}",
        claim_tail("d.status = 1")
    )
});

/// The caller's (`$2`) earliest-due parked delivery to `$1`, with whether
/// its claim has at least `$3` ms left and whether its message is still there.
static PROBE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH now AS MATERIALIZED (SELECT herald_now_ms() AS t) \
         SELECT {JOB_COLS}, d.claim_until >= {}, m.id IS NOT NULL \
         FROM delivery d LEFT JOIN message m ON m.app_id = d.app_id AND m.id = d.msg_id \
         WHERE d.endpoint_id = $1 AND d.status = 1 AND d.parked AND d.next_attempt_at <= (SELECT t FROM now) \
         AND d.claimed_by = $2 ORDER BY d.next_attempt_at, d.id LIMIT 1",
        sat_add("(SELECT t FROM now)", "$3::bigint")
    )
});

/// Unclaimed pending deliveries to these endpoints (`$1`), parked under
/// `$2`'s claim for `$3` ms; rows another node is claiming right now are
/// its, and skipped.
static PARK_ENDPOINTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH now AS MATERIALIZED (SELECT herald_now_ms() AS t) \
         UPDATE delivery d SET parked = TRUE, claimed_by = $2, claim_until = {} FROM now \
         WHERE d.id IN (SELECT id FROM delivery WHERE endpoint_id = ANY($1) AND status = 1 AND claim_until IS NULL \
             LIMIT $4 FOR UPDATE SKIP LOCKED)",
        sat_add("now.t", "$3::bigint")
    )
});

const RENEW_PARKED: &str = "UPDATE delivery SET claim_until = $3 WHERE id IN (SELECT id FROM delivery \
     WHERE endpoint_id = ANY($1) AND status = 1 AND parked AND claimed_by = $2 AND claim_until < $3 \
     LIMIT $4 FOR UPDATE)";

const UNPARK: &str = "UPDATE delivery SET parked = FALSE, claimed_by = NULL, claim_until = NULL WHERE id IN \
     (SELECT id FROM delivery WHERE endpoint_id = ANY($1) AND status = 1 AND parked AND claimed_by = $2 \
     LIMIT $3 FOR UPDATE)";

impl PgStore {
    pub(crate) async fn claim_parked_now(
        &self,
        lease: &Lease,
        endpoint: &EndpointId,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<DeliveryJob>> {
        let c = self.client().await?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let client: &tokio_postgres::Client = &c;
        let rows = query_batch(
            client,
            &CLAIM_PARKED,
            &[
                (&lease.owner.as_str(), Type::TEXT),
                (&big(limit), Type::INT8),
                (&big(max_bytes), Type::INT8),
                (&ttl_ms(lease.ttl), Type::INT8),
                (&endpoint.as_str(), Type::TEXT),
            ],
        )
        .await?;
        jobs_from(&rows)
    }

    /// Handed out under its standing parked claim while that has the
    /// lease's TTL left (a read, no write), claimed afresh otherwise.
    pub(crate) async fn probe_parked_now(&self, lease: &Lease, endpoint: &EndpointId) -> Result<Option<DeliveryJob>> {
        let standing = {
            let c = self.client().await?;
            let stmt = c.prepare_cached(&PROBE).await?;
            let row = c
                .query_opt(&stmt, &[&endpoint.as_str(), &lease.owner.as_str(), &ttl_ms(lease.ttl)])
                .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            // Too little of the parked claim left to send under it, or its
            // message gone: a fresh claim decides.
            if get::<bool>(&row, 11)? && get::<bool>(&row, 12)? {
                jobs_from(std::slice::from_ref(&row))?.pop()
            } else {
                None
            }
        };
        match standing {
            Some(job) => Ok(Some(job)),
            None => Ok(self.claim_parked_now(lease, endpoint, 1, usize::MAX).await?.pop()),
        }
    }

    pub(crate) async fn park_endpoints_now(
        &self,
        lease: &Lease,
        hold: Duration,
        endpoints: Vec<EndpointId>,
    ) -> Result<u64> {
        let c = self.client().await?;
        if endpoints.is_empty() {
            return Ok(0);
        }
        let ids: Vec<&str> = endpoints.iter().map(EndpointId::as_str).collect();
        let stmt = c.prepare_cached(&PARK_ENDPOINTS).await?;
        let (owner, hold) = (lease.owner.as_str(), ttl_ms(hold));
        bulk(&c, &stmt, &[&ids, &owner, &hold, &big(BULK_BATCH)]).await
    }

    pub(crate) async fn renew_parked_now(
        &self,
        lease: &Lease,
        hold: Duration,
        endpoints: Vec<EndpointId>,
    ) -> Result<u64> {
        let c = self.client().await?;
        if endpoints.is_empty() {
            return Ok(0);
        }
        // One `until` for every batch (by the database's clock), so a row
        // renewed in one batch is not picked again by the next.
        let until = after(db_now_ms(&c).await?, hold);
        let ids: Vec<&str> = endpoints.iter().map(EndpointId::as_str).collect();
        let stmt = c.prepare_cached(RENEW_PARKED).await?;
        let owner = lease.owner.as_str();
        bulk(&c, &stmt, &[&ids, &owner, &until, &big(BULK_BATCH)]).await
    }

    pub(crate) async fn unpark_now(&self, lease: &Lease, endpoints: Vec<EndpointId>) -> Result<u64> {
        let c = self.client().await?;
        if endpoints.is_empty() {
            return Ok(0);
        }
        let ids: Vec<&str> = endpoints.iter().map(EndpointId::as_str).collect();
        let stmt = c.prepare_cached(UNPARK).await?;
        let owner = lease.owner.as_str();
        bulk(&c, &stmt, &[&ids, &owner, &big(BULK_BATCH)]).await
    }
}

/// Runs a bulk write of at most [`BULK_BATCH`] rows until one touches
/// fewer; the total touched.
async fn bulk(
    c: &impl GenericClient,
    stmt: &tokio_postgres::Statement,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64> {
    let mut total = 0;
    loop {
        let n = c.execute(stmt, params).await?;
        total += n;
        if n < BULK_BATCH as u64 {
            return Ok(total);
        }
    }
}
