//! What the queue's statements share: the claim that hands deliveries out
//! under a byte budget, the guarded write that answers per delivery, the
//! rounds that keep a batch naming one delivery twice sequential, and the
//! saturating time arithmetic leases of `Duration::MAX` need.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use herald_core::validate::EventTypeName;
use herald_core::{AppId, EndpointId, MessageId};
use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};

use std::sync::atomic::Ordering;

use super::PgStore;
use super::rows::{get, int, opt_time_at, time_at};
use crate::{DeliveryJob, Held, LeaseResult, Result, StoreError};

/// `a + b` for non-negative milliseconds, saturating at `i64::MAX` as
/// [`super::rows::after`] does: a lease or a wait of `Duration::MAX` means
/// never, not an overflow error.
pub(crate) fn sat_add(a: &str, b: &str) -> String {
    format!("(CASE WHEN {b} > 9223372036854775807 - {a} THEN 9223372036854775807 ELSE {a} + {b} END)")
}

/// A count or a byte budget as a `BIGINT` parameter.
pub(crate) fn big(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `cond` as part of a join between deliveries (`d`) and a batch's input:
/// `left = right` where `cond` holds, false elsewhere, written as one
/// condition on both sides so that the planner cannot apply it to `d`
/// alone. A queue's statistics are always stale, and a guard the planner
/// estimates on the deliveries' side (`claimed_by = $1 AND status = 1`)
/// makes that side look like one row: it then scans the deliveries (all
/// of them, or every pending one) as the outer side of a nested loop over
/// the input and rescans the input for each, a cost of the batch times
/// the table. With the guard on both sides, the deliveries' side is the
/// whole table to the planner, and it looks each input id up by primary
/// key instead.
pub(crate) fn only_if(cond: &str, left: &str, right: &str) -> String {
    format!("(CASE WHEN {cond} THEN {left} END) = {right}")
}

/// The tail of every claim statement. The statement before it defines
/// `now(t)` and `picked(id, msg_id, app_id, ord)`: the deliveries to claim,
/// in order. Deliveries whose message is gone are skipped; then they are
/// taken in order until their payloads (each message's counted once, at its
/// first delivery) exceed `$3` bytes, the first always taken, exactly as
/// the SQLite store's loop; each is claimed by `$1` for `$4` ms under a new
/// fence and unparked, if it passes `RECHECK` (which a statement whose
/// picks were not locked needs). The payload comes back once per message.
/// `wanted` is how many passed the budget, so a caller can tell whether the
/// recheck dropped any.
pub(crate) fn claim_tail(recheck: &str) -> String {
    let guard = only_if(recheck, "d.id", "k.id");
    let until = sat_add("now.t", "$4::bigint");
    format!(
        ", sized AS ( \
            SELECT p.id, p.ord, octet_length(m.payload) AS len, \
                   row_number() OVER (PARTITION BY p.msg_id ORDER BY p.ord) = 1 AS fresh, \
                   row_number() OVER (ORDER BY p.ord) AS n \
            FROM picked p JOIN message m ON m.app_id = p.app_id AND m.id = p.msg_id), \
        budget AS ( \
            SELECT id, ord, n, fresh, \
                   sum(CASE WHEN fresh THEN len ELSE 0 END) OVER (ORDER BY ord ROWS UNBOUNDED PRECEDING) AS used \
            FROM sized), \
        taken AS ( \
            SELECT id, ord FROM ( \
                SELECT id, ord, bool_or(n > 1 AND fresh AND used > $3::bigint) \
                       OVER (ORDER BY ord ROWS UNBOUNDED PRECEDING) AS over \
                FROM budget) b \
            WHERE NOT over), \
        claimed AS ( \
            UPDATE delivery d SET claimed_by = $1::text, claim_until = {until}, fence = d.fence + 1, parked = FALSE \
            FROM taken k, now \
            WHERE d.id = k.id AND {guard} \
            RETURNING d.id, d.fence, d.msg_id, d.app_id, d.endpoint_id, d.attempts, d.first_attempt_at, d.manual, k.ord) \
        SELECT c.id, c.fence, c.msg_id, c.app_id, c.endpoint_id, c.attempts, m.event_type, m.created_at, \
               c.first_attempt_at, c.manual, \
               CASE WHEN row_number() OVER (PARTITION BY c.msg_id ORDER BY c.ord) = 1 THEN m.payload END, \
               (SELECT count(*) FROM taken) \
        FROM claimed c JOIN message m ON m.app_id = c.app_id AND m.id = c.msg_id \
        ORDER BY c.ord"
    )
}

/// The columns [`claim_tail`] and [`JOB_COLS`] return, in this order.
pub(crate) const JOB_COLS: &str = "d.id, d.fence, d.msg_id, d.app_id, d.endpoint_id, d.attempts, m.event_type, \
     m.created_at, d.first_attempt_at, d.manual, m.payload";

/// Jobs from rows of [`claim_tail`] (or [`JOB_COLS`]), in row order, with
/// how many the claim wanted (`None` for [`JOB_COLS`] rows). A row without
/// its payload shares that of an earlier row of the same message.
pub(crate) fn jobs_from(rows: &[Row]) -> Result<Vec<DeliveryJob>> {
    let mut payloads: HashMap<String, Bytes> = HashMap::new();
    let mut jobs = Vec::with_capacity(rows.len());
    for r in rows {
        let msg_id: String = get(r, 2)?;
        let payload = match get::<Option<&[u8]>>(r, 10)? {
            Some(p) => {
                let p = Bytes::copy_from_slice(p);
                payloads.insert(msg_id.clone(), p.clone());
                p
            }
            None => payloads
                .get(&msg_id)
                .cloned()
                .ok_or_else(|| StoreError::Corrupt(format!("claimed a delivery of {msg_id} without its payload")))?,
        };
        jobs.push(DeliveryJob {
            delivery_id: get(r, 0)?,
            fence: get(r, 1)?,
            msg_id: MessageId::from_trusted(msg_id),
            app_id: AppId::from_trusted(get(r, 3)?),
            endpoint_id: EndpointId::from_trusted(get(r, 4)?),
            attempts: int(r, 5)?,
            event_type: EventTypeName::from_trusted(get(r, 6)?),
            msg_created_at: time_at(r, 7)?,
            first_attempt_at: opt_time_at(r, 8)?,
            manual: get(r, 9)?,
            payload,
        });
    }
    Ok(jobs)
}

/// How many deliveries a [`claim_tail`] statement meant to claim.
pub(crate) fn wanted(rows: &[Row]) -> Result<usize> {
    match rows.first() {
        Some(r) => Ok(usize::try_from(get::<i64>(r, 11)?).unwrap_or(usize::MAX)),
        None => Ok(0),
    }
}

/// A write guarded by owner and fence over `$2` (ids) and `$3` (fences),
/// answered per delivery by [`lease_results`]: `SET` is the assignment,
/// which may use `now.t` (the database's now) and parameters from `$4` on.
/// The deliveries the write touched, and the status of every one before the
/// statement (what tells a lost claim from a finished delivery), come back
/// in one round trip.
///
/// **No join between two sets the planner cannot count.** A prepared
/// statement soon runs a generic plan, which guesses 10 rows for an
/// `UNNEST` of a parameter; joining such a set with another (a CTE, or the
/// deliveries found by `id = ANY($2)`) then plans as a nested loop, which
/// costs the square of the batch (a million comparisons for 1,024
/// outcomes). So the input drives one primary-key lookup per row, the
/// snapshot's statuses are a second lookup by `ANY`, and the two are
/// matched up in Rust: linear whatever the estimate.
pub(crate) fn guarded(set: &str) -> String {
    let guard = only_if("d.claimed_by = $1::text AND d.status = 1", "d.fence", "i.fence");
    format!(
        "WITH now AS MATERIALIZED (SELECT herald_now_ms() AS t), \
         upd AS (UPDATE delivery d SET {set} FROM UNNEST($2::bigint[], $3::bigint[]) AS i(id, fence), now \
             WHERE d.id = i.id AND {guard} RETURNING d.id) \
         {WRITTEN_AND_STATUS}"
    )
}

/// The tail of a guarded write whose update is the CTE `upd` returning
/// `id`: rows `(id, true, NULL)` for each delivery written, then `(id,
/// false, status)` for each of `$2` as the statement's snapshot had it
/// (before the write); [`lease_results`] reads them.
pub(crate) const WRITTEN_AND_STATUS: &str = "SELECT id, TRUE, NULL::bigint FROM upd \
     UNION ALL SELECT id, FALSE, status FROM delivery WHERE id = ANY($2::bigint[])";

/// The answers of a statement ending in [`WRITTEN_AND_STATUS`], one per id
/// of `ids` (the statement's `$2`), in order. The status is read from the
/// statement's snapshot: a delivery still pending there and not written
/// lost its claim; one gone or ended is finished.
pub(crate) fn lease_results(rows: &[Row], ids: &[i64]) -> Result<Vec<LeaseResult>> {
    let mut written: HashSet<i64> = HashSet::new();
    let mut status: HashMap<i64, i64> = HashMap::with_capacity(ids.len());
    for r in rows {
        let id: i64 = get(r, 0)?;
        if get::<bool>(r, 1)? {
            written.insert(id);
        } else if let Some(s) = get::<Option<i64>>(r, 2)? {
            status.insert(id, s);
        }
    }
    Ok(ids
        .iter()
        .map(|id| {
            if written.contains(id) {
                LeaseResult::Done
            } else if status.get(id) == Some(&1) {
                LeaseResult::Lost
            } else {
                LeaseResult::Finished
            }
        })
        .collect())
}

/// Splits a batch into rounds in which no delivery appears twice, keeping
/// order within each: the n-th mention of a delivery goes in round n. One
/// statement per round, in one transaction, then answers as the SQLite
/// store's one-by-one loop does (a delivery recorded twice is recorded
/// once, and the second answer says why not). Almost every batch is one round.
pub(crate) fn rounds(ids: impl Iterator<Item = i64>) -> Vec<Vec<usize>> {
    let mut seen: HashMap<i64, usize> = HashMap::new();
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (i, id) in ids.enumerate() {
        let n = seen.entry(id).or_insert(0);
        if rounds.len() <= *n {
            rounds.push(Vec::new());
        }
        rounds[*n].push(i);
        *n += 1;
    }
    rounds
}

/// Runs a statement over a batch (arrays of ids, outcomes or rows to
/// insert) as an unnamed statement, in one round trip, so that PostgreSQL
/// plans it for these values every time rather than once per connection:
/// a cached generic plan guesses 10 rows for every `UNNEST` and `= ANY` of
/// a parameter, and keeps the table sizes of when it was made. A plan made
/// while the tables were small (a new database, a quiet hour) then hashes
/// or scans whole tables, or nests loops over the input, long after they
/// have grown: batch statements measured tens to hundreds of milliseconds
/// where a fresh plan takes one. Planning afresh costs a fraction of a
/// millisecond per batch, not per delivery.
pub(crate) async fn query_batch(
    c: &(impl tokio_postgres::GenericClient + Sync),
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
) -> Result<Vec<Row>> {
    Ok(c.query_typed(sql, params).await?)
}

/// Runs one round of a guarded write: `sql` over these ids and fences,
/// with `extra` as `$4`, on a client or transaction.
pub(crate) async fn guarded_round(
    c: &(impl tokio_postgres::GenericClient + Sync),
    sql: &str,
    owner: &str,
    ids: &[i64],
    fences: &[i64],
    extra: Option<i64>,
) -> Result<Vec<LeaseResult>> {
    let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![
        (&owner, Type::TEXT),
        (&ids, Type::INT8_ARRAY),
        (&fences, Type::INT8_ARRAY),
    ];
    if let Some(x) = &extra {
        params.push((x, Type::INT8));
    }
    let rows = query_batch(c, sql, &params).await?;
    lease_results(&rows, ids)
}

impl PgStore {
    /// Fails with [`StoreError::Closed`] after close, for calls that may
    /// answer without touching the database (an empty batch).
    pub(crate) fn ensure_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        Ok(())
    }

    /// A [`guarded`] write over `held`, answering per delivery in order; a
    /// batch naming a delivery twice runs in rounds, in one transaction.
    pub(crate) async fn guarded_write(
        &self,
        sql: &str,
        owner: &str,
        held: &[Held],
        extra: Option<i64>,
    ) -> Result<Vec<LeaseResult>> {
        self.ensure_open()?;
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.client().await?;
        let rounds = rounds(held.iter().map(|h| h.id));
        let pick = |idx: &[usize]| -> (Vec<i64>, Vec<i64>) { idx.iter().map(|&i| (held[i].id, held[i].fence)).unzip() };
        if rounds.len() == 1 {
            let (ids, fences) = pick(&rounds[0]);
            let client: &tokio_postgres::Client = &c;
            return guarded_round(client, sql, owner, &ids, &fences, extra).await;
        }
        let mut out = vec![LeaseResult::Finished; held.len()];
        let tx = c.transaction().await?;
        for idx in &rounds {
            let (ids, fences) = pick(idx);
            let t: &tokio_postgres::Transaction<'_> = &tx;
            let results = guarded_round(t, sql, owner, &ids, &fences, extra).await?;
            for (&i, r) in idx.iter().zip(results) {
                out[i] = r;
            }
        }
        tx.commit().await?;
        Ok(out)
    }
}
