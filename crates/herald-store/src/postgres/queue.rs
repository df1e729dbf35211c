//! The delivery queue on PostgreSQL: claims, renewals, outcomes and
//! releases under owned, fenced leases (see [`crate::DeliveryQueue`]), each
//! one set-wise statement (a round trip) however many deliveries it names.
//! Times come from the database's clock (`herald_now_ms()`), read once per
//! statement; claims lock what they take `FOR UPDATE SKIP LOCKED`, so nodes
//! claiming at once split the due work between them instead of queueing on
//! it. Ingest is `ingest.rs`, parked claims `parking.rs`, ordered endpoints
//! `fifo.rs`, and what these share `claims.rs`.

use std::sync::LazyLock;
use std::time::Duration;

use herald_core::EndpointId;
use herald_core::model::AttemptErrorKind;

use super::PgStore;
use super::claims::{
    WRITTEN_AND_STATUS, big, claim_tail, guarded, jobs_from, lease_results, only_if, query_batch, rounds, sat_add,
};
use super::holds::HELD_ELSEWHERE;
use super::rows::{count, get, ms, ttl_ms};
use crate::{
    DeliveryJob, DeliveryQueue, DeliveryState, FifoDue, Held, Ingested, Lease, LeaseResult, NewMessage, NodeId,
    Outcome, Result, RetryHold,
};
use tokio_postgres::types::Type;

/// Pending deliveries: two walks of partial indexes that hold only pending
/// rows, the unclaimed ones and every claim (only a pending delivery is
/// ever claimed, as every way out of pending clears the claim in the same
/// statement); finished deliveries are never read. As in the SQLite store.
const BACKLOG: &str = "SELECT (SELECT count(*) FROM delivery WHERE status = 1 AND claim_until IS NULL AND NOT fifo) \
     + (SELECT count(*) FROM delivery WHERE status = 1 AND fifo AND claim_until IS NULL) \
     + (SELECT count(*) FROM delivery WHERE claim_until IS NOT NULL)";

/// Unclaimed due work and work whose claim lapsed (its holder died or could
/// not record the outcome), each from its own partial index, less what is
/// left for another endpoint holder, and the earliest `$2` of both
/// claimed: `$1` owner, `$3` byte budget, `$4` TTL.
static CLAIM_DUE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH now AS MATERIALIZED (SELECT herald_now_ms() AS t), \
         due AS (SELECT id, next_attempt_at, msg_id, app_id FROM delivery \
             WHERE status = 1 AND claim_until IS NULL AND NOT fifo AND next_attempt_at <= (SELECT t FROM now) \
             AND NOT {held} \
             ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED), \
         lapsed AS (SELECT id, next_attempt_at, msg_id, app_id FROM delivery \
             WHERE claim_until IS NOT NULL AND claim_until < (SELECT t FROM now) AND status = 1 AND NOT fifo \
             AND next_attempt_at <= (SELECT t FROM now) AND NOT {held} \
             ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED), \
         picked AS (SELECT id, msg_id, app_id, row_number() OVER (ORDER BY next_attempt_at, id) AS ord \
             FROM (SELECT * FROM due UNION ALL SELECT * FROM lapsed) c \
             ORDER BY next_attempt_at, id LIMIT $2) \
         {tail}",
        held = HELD_ELSEWHERE,
        tail = claim_tail("d.status = 1")
    )
});

/// The earliest unclaimed pending delivery's due time that `$1` would
/// claim, and the database's now.
static NEXT_DUE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH now AS MATERIALIZED (SELECT herald_now_ms() AS t) \
         SELECT (SELECT MIN(next_attempt_at) FROM delivery \
             WHERE status = 1 AND claim_until IS NULL AND NOT fifo AND NOT {HELD_ELSEWHERE}), (SELECT t FROM now)"
    )
});

/// Never shortens a claim: a renewal sent before its delivery was parked
/// (a hold of minutes) lands after the park.
static RENEW: LazyLock<String> = LazyLock::new(|| {
    guarded(&format!(
        "claim_until = GREATEST(COALESCE(d.claim_until, 0), {})",
        sat_add("now.t", "$4::bigint")
    ))
});

static RELEASE: LazyLock<String> = LazyLock::new(|| guarded("claimed_by = NULL, claim_until = NULL, parked = FALSE"));

pub(crate) static PARK: LazyLock<String> = LazyLock::new(|| {
    guarded(&format!(
        "parked = TRUE, claim_until = {}",
        sat_add("now.t", "$4::bigint")
    ))
});

/// Outcomes, one per input row: the state change guarded by owner and
/// fence, and the attempt written only for a delivery whose change was
/// (one statement, so both or neither). Per outcome: `$2` id, `$3` fence,
/// `$4` new status, `$5` whether a request was made, `$6` the retry wait
/// (NULL once it ended), `$7` the hold (0 release, 1 keep, 2 park; NULL
/// once ended), `$8` the TTL kept or the park's hold, `$9` the attempt's
/// start; then its attempt's columns from `$10` (NULL where no request was
/// made). The update returns the attempts of the deliveries it changed, so
/// they are written without a join (see [`guarded`] for why joins between
/// parameter sets are avoided). An ended delivery keeps its `parked` flag
/// and next attempt time, as on SQLite.
static OUTCOMES: LazyLock<String> = LazyLock::new(|| {
    let at = sat_add("now.t", "i.wait");
    let kept = sat_add("p.at", "p.hold_ms");
    let parked = sat_add("now.t", "p.hold_ms");
    let guard = only_if("d.claimed_by = $1::text AND d.status = 1", "d.fence", "p.fence");
    format!(
        "WITH now AS MATERIALIZED (SELECT herald_now_ms() AS t), \
         upd AS (UPDATE delivery d SET \
                 status = p.status, \
                 attempts = d.attempts + CASE WHEN p.tried THEN 1 ELSE 0 END, \
                 next_attempt_at = COALESCE(p.at, d.next_attempt_at), \
                 claimed_by = CASE WHEN p.hold IN (1, 2) THEN $1::text END, \
                 claim_until = CASE p.hold WHEN 1 THEN {kept} WHEN 2 THEN {parked} END, \
                 parked = CASE WHEN p.hold IS NULL THEN d.parked ELSE p.hold = 2 END, \
                 manual = d.manual AND NOT p.tried, \
                 updated_at = now.t, \
                 first_attempt_at = COALESCE(d.first_attempt_at, p.started) \
             FROM (SELECT i.*, CASE WHEN i.wait IS NOT NULL THEN {at} END AS at \
                 FROM UNNEST($2::bigint[], $3::bigint[], $4::bigint[], $5::bool[], $6::bigint[], $7::bigint[], \
                     $8::bigint[], $9::bigint[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], \
                     $15::bigint[], $16::bytea[], $17::bigint[], $18::bigint[], $19::text[], $20::bigint[], \
                     $21::bigint[], $22::bigint[]) WITH ORDINALITY \
                     AS i(id, fence, status, tried, wait, hold, hold_ms, started, a_id, a_msg_id, a_endpoint_id, \
                         a_app_id, a_url, a_status_code, a_response, a_duration_ms, a_status, a_error_kind, \
                         a_trigger_type, a_attempt_number, a_created_at, ord), now) p, now \
             WHERE d.id = p.id AND {guard} \
             RETURNING d.id, p.ord, p.a_id, p.a_msg_id, p.a_endpoint_id, p.a_app_id, p.a_url, p.a_status_code, \
                 p.a_response, p.a_duration_ms, p.a_status, p.a_error_kind, p.a_trigger_type, p.a_attempt_number, \
                 p.a_created_at), \
         att AS (INSERT INTO attempt (id, msg_id, endpoint_id, app_id, delivery_id, url, status_code, response, \
                 duration_ms, status, error_kind, trigger_type, attempt_number, created_at) \
             SELECT a_id, a_msg_id, a_endpoint_id, a_app_id, id, a_url, a_status_code, a_response, a_duration_ms, \
                 a_status, a_error_kind, a_trigger_type, a_attempt_number, a_created_at \
             FROM upd WHERE a_id IS NOT NULL ORDER BY ord) \
         {WRITTEN_AND_STATUS}"
    )
});

#[async_trait::async_trait]
impl DeliveryQueue for PgStore {
    async fn ingest(&self, msg: NewMessage) -> Result<Ingested> {
        self.ensure_open()?;
        self.committer.submit(msg).await
    }

    async fn claim_due(&self, lease: &Lease, limit: usize, max_bytes: usize) -> Result<Vec<DeliveryJob>> {
        let c = self.client().await?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let client: &tokio_postgres::Client = &c;
        let rows = query_batch(
            client,
            &CLAIM_DUE,
            &[
                (&lease.owner.as_str(), Type::TEXT),
                (&big(limit), Type::INT8),
                (&big(max_bytes), Type::INT8),
                (&ttl_ms(lease.ttl), Type::INT8),
            ],
        )
        .await?;
        jobs_from(&rows)
    }

    async fn next_due(&self, owner: &NodeId) -> Result<Option<Duration>> {
        let c = self.client().await?;
        let stmt = c.prepare_cached(&NEXT_DUE).await?;
        let row = c.query_one(&stmt, &[&owner.as_str()]).await?;
        let (next, now): (Option<i64>, i64) = (get(&row, 0)?, get(&row, 1)?);
        Ok(next.map(|at| Duration::from_millis(u64::try_from(at.saturating_sub(now)).unwrap_or(0))))
    }

    async fn backlog(&self) -> Result<u64> {
        let c = self.client().await?;
        let stmt = c.prepare_cached(BACKLOG).await?;
        count(&c.query_one(&stmt, &[]).await?, 0)
    }

    async fn renew(&self, lease: &Lease, held: Vec<Held>) -> Result<Vec<LeaseResult>> {
        self.guarded_write(&RENEW, lease.owner.as_str(), &held, Some(ttl_ms(lease.ttl)))
            .await
    }

    async fn record_outcomes(&self, lease: &Lease, outcomes: Vec<Outcome>) -> Result<Vec<LeaseResult>> {
        self.ensure_open()?;
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.client().await?;
        let rounds = rounds(outcomes.iter().map(|o| o.held.id));
        if rounds.len() == 1 {
            let client: &tokio_postgres::Client = &c;
            return record_round(client, lease, &outcomes, &rounds[0]).await;
        }
        // A delivery named twice: its outcomes in order, as the SQLite loop
        // records them, in one commit.
        let mut out = vec![LeaseResult::Finished; outcomes.len()];
        let tx = c.transaction().await?;
        for idx in &rounds {
            let t: &tokio_postgres::Transaction<'_> = &tx;
            for (&i, r) in idx.iter().zip(record_round(t, lease, &outcomes, idx).await?) {
                out[i] = r;
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn release(&self, lease: &Lease, held: Vec<Held>) -> Result<Vec<LeaseResult>> {
        let results = self.guarded_write(&RELEASE, lease.owner.as_str(), &held, None).await?;
        if results.contains(&LeaseResult::Done) {
            // Handed back: any node may take them now.
            self.bell.ring();
        }
        Ok(results)
    }

    async fn recover(&self, owner: &NodeId) -> Result<u64> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "UPDATE delivery SET claimed_by = NULL, claim_until = NULL, parked = FALSE \
                 WHERE claim_until IS NOT NULL AND claimed_by = $1",
            )
            .await?;
        Ok(c.execute(&stmt, &[&owner.as_str()]).await?)
    }

    async fn park(&self, lease: &Lease, hold: Duration, held: Vec<Held>) -> Result<Vec<LeaseResult>> {
        self.guarded_write(&PARK, lease.owner.as_str(), &held, Some(ttl_ms(hold)))
            .await
    }

    async fn park_endpoints(&self, lease: &Lease, hold: Duration, endpoints: Vec<EndpointId>) -> Result<u64> {
        self.park_endpoints_now(lease, hold, endpoints).await
    }

    async fn claim_parked(
        &self,
        lease: &Lease,
        endpoint: EndpointId,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<DeliveryJob>> {
        self.claim_parked_now(lease, &endpoint, limit, max_bytes).await
    }

    async fn probe_parked(&self, lease: &Lease, endpoint: EndpointId) -> Result<Option<DeliveryJob>> {
        self.probe_parked_now(lease, &endpoint).await
    }

    async fn renew_parked(&self, lease: &Lease, hold: Duration, endpoints: Vec<EndpointId>) -> Result<u64> {
        self.renew_parked_now(lease, hold, endpoints).await
    }

    async fn unpark(&self, lease: &Lease, endpoints: Vec<EndpointId>) -> Result<u64> {
        let n = self.unpark_now(lease, endpoints).await?;
        if n > 0 {
            self.bell.ring();
        }
        Ok(n)
    }

    async fn hold_endpoints(&self, lease: &Lease, endpoints: Vec<EndpointId>) -> Result<Vec<bool>> {
        self.take_holds(lease, endpoints).await
    }

    async fn release_endpoints(&self, lease: &Lease, endpoints: Vec<EndpointId>) -> Result<()> {
        self.drop_holds(lease, endpoints).await
    }

    async fn fifo_due(&self) -> Result<FifoDue> {
        self.fifo_due_now().await
    }

    async fn claim_fifo(
        &self,
        lease: &Lease,
        endpoint: EndpointId,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<DeliveryJob>> {
        self.claim_fifo_now(lease, &endpoint, limit, max_bytes).await
    }
}

/// The outcomes at `idx` (no delivery twice) in one statement.
async fn record_round(
    c: &(impl tokio_postgres::GenericClient + Sync),
    lease: &Lease,
    outcomes: &[Outcome],
    idx: &[usize],
) -> Result<Vec<LeaseResult>> {
    let mut s = OutcomeCols::default();
    for &i in idx {
        s.push(lease, &outcomes[i]);
    }
    let a = &s.attempts;
    let (text, int8, bool, bytea) = (Type::TEXT_ARRAY, Type::INT8_ARRAY, Type::BOOL_ARRAY, Type::BYTEA_ARRAY);
    let rows = query_batch(
        c,
        &OUTCOMES,
        &[
            (&lease.owner.as_str(), Type::TEXT),
            (&s.id, int8.clone()),
            (&s.fence, int8.clone()),
            (&s.status, int8.clone()),
            (&s.tried, bool),
            (&s.wait, int8.clone()),
            (&s.hold, int8.clone()),
            (&s.hold_ms, int8.clone()),
            (&s.started, int8.clone()),
            (&a.id, text.clone()),
            (&a.msg_id, text.clone()),
            (&a.endpoint_id, text.clone()),
            (&a.app_id, text.clone()),
            (&a.url, text.clone()),
            (&a.status_code, int8.clone()),
            (&a.response, bytea),
            (&a.duration_ms, int8.clone()),
            (&a.status, int8.clone()),
            (&a.error_kind, text),
            (&a.trigger_type, int8.clone()),
            (&a.attempt_number, int8.clone()),
            (&a.created_at, int8),
        ],
    )
    .await?;
    lease_results(&rows, &s.id)
}

/// The [`OUTCOMES`] arrays for a round.
#[derive(Default)]
struct OutcomeCols<'a> {
    id: Vec<i64>,
    fence: Vec<i64>,
    status: Vec<i64>,
    tried: Vec<bool>,
    wait: Vec<Option<i64>>,
    hold: Vec<Option<i64>>,
    hold_ms: Vec<Option<i64>>,
    started: Vec<Option<i64>>,
    attempts: AttemptCols<'a>,
}

impl<'a> OutcomeCols<'a> {
    fn push(&mut self, lease: &Lease, o: &'a Outcome) {
        let (status, wait, hold, hold_ms) = match &o.state {
            DeliveryState::Succeeded => (0, None, None, None),
            DeliveryState::Failed => (2, None, None, None),
            DeliveryState::Retry { after, hold } => {
                let (code, ms) = match hold {
                    RetryHold::Release => (0, None),
                    RetryHold::Keep => (1, Some(ttl_ms(lease.ttl))),
                    RetryHold::Park(h) => (2, Some(ttl_ms(*h))),
                };
                (1, Some(ttl_ms(*after)), Some(code), ms)
            }
        };
        self.id.push(o.held.id);
        self.fence.push(o.held.fence);
        self.status.push(status);
        self.tried.push(o.attempt.is_some());
        self.wait.push(wait);
        self.hold.push(hold);
        self.hold_ms.push(hold_ms);
        // The first attempt's start is kept (templates can show it).
        self.started.push(o.attempt.as_ref().map(|a| ms(a.created_at)));
        self.attempts.push(o.attempt.as_ref());
    }
}

/// Each outcome's attempt, column by column: NULLs where it made none.
#[derive(Default)]
struct AttemptCols<'a> {
    id: Vec<Option<&'a str>>,
    msg_id: Vec<Option<&'a str>>,
    endpoint_id: Vec<Option<&'a str>>,
    app_id: Vec<Option<&'a str>>,
    url: Vec<Option<&'a str>>,
    status_code: Vec<Option<i64>>,
    response: Vec<Option<&'a [u8]>>,
    duration_ms: Vec<Option<i64>>,
    status: Vec<Option<i64>>,
    error_kind: Vec<Option<&'static str>>,
    trigger_type: Vec<Option<i64>>,
    attempt_number: Vec<Option<i64>>,
    created_at: Vec<Option<i64>>,
}

impl<'a> AttemptCols<'a> {
    fn push(&mut self, a: Option<&'a herald_core::model::Attempt>) {
        self.id.push(a.map(|a| a.id.as_str()));
        self.msg_id.push(a.map(|a| a.msg_id.as_str()));
        self.endpoint_id.push(a.map(|a| a.endpoint_id.as_str()));
        self.app_id.push(a.map(|a| a.app_id.as_str()));
        self.url.push(a.map(|a| a.url.as_str()));
        self.status_code.push(a.map(|a| i64::from(a.response_status_code)));
        // BYTEA, not text: PostgreSQL text cannot hold NUL, which a
        // response body may.
        self.response.push(a.map(|a| a.response.as_bytes()));
        self.duration_ms
            .push(a.map(|a| i64::try_from(a.response_duration_ms).unwrap_or(i64::MAX)));
        self.status.push(a.map(|a| a.status.code()));
        self.error_kind
            .push(a.and_then(|a| a.error_kind.map(AttemptErrorKind::as_str)));
        self.trigger_type.push(a.map(|a| a.trigger_type as i64));
        self.attempt_number.push(a.map(|a| i64::from(a.attempt_number)));
        self.created_at.push(a.map(|a| ms(a.created_at)));
    }
}
