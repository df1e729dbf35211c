//! Recording outcomes on SQLite, in the writer's transaction. Each is
//! written only while its caller still holds the delivery (owner and fence).
//! Finished deliveries, the bulk of every batch, take one multi-row `UPDATE
//! … FROM (VALUES …)` and one multi-row attempt insert per chunk rather than
//! two statements each: the writer thread is the bound on a batching
//! endpoint's drain, and every statement opens a cursor on each index.

use std::collections::HashSet;

use herald_core::model::{Attempt, AttemptErrorKind};
use rusqlite::{Connection, params};

use super::queue::why_not;
use super::rows::{after, ms};
use crate::{DeliveryState, Held, Lease, LeaseResult, Outcome, Result, RetryHold};

/// Rows per multi-row statement, largest first: a batch is cut greedily, so
/// only these few statement texts are ever prepared (and cached).
const CHUNKS: [usize; 4] = [64, 16, 4, 1];

/// Cuts `items` greedily into slices of [`CHUNKS`] sizes.
fn chunks<T>(mut items: &[T]) -> Vec<&[T]> {
    let mut out = Vec::new();
    for size in CHUNKS {
        while items.len() >= size {
            let (head, tail) = items.split_at(size);
            out.push(head);
            items = tail;
        }
    }
    out
}

/// Each outcome's result, in order.
pub(crate) fn record_outcomes(
    conn: &Connection,
    lease: &Lease,
    outcomes: &[Outcome],
    now: i64,
) -> Result<Vec<LeaseResult>> {
    let mut results: Vec<Option<LeaseResult>> = vec![None; outcomes.len()];
    // Finished deliveries go set-wise; a delivery named twice in one call
    // (the second is then answered `Finished`) and retries go one by one.
    let mut seen = HashSet::with_capacity(outcomes.len());
    let finished: Vec<usize> = (0..outcomes.len())
        .filter(|&i| {
            let o = &outcomes[i];
            matches!(o.state, DeliveryState::Succeeded | DeliveryState::Failed) && seen.insert(o.held.id)
        })
        .collect();
    let mut done: HashSet<i64> = HashSet::with_capacity(finished.len());
    for chunk in chunks(&finished) {
        finish_chunk(conn, lease, outcomes, chunk, now, &mut done)?;
    }
    let recorded: Vec<(i64, &Attempt)> = finished
        .iter()
        .map(|&i| &outcomes[i])
        .filter(|o| done.contains(&o.held.id))
        .filter_map(|o| Some((o.held.id, o.attempt.as_ref()?)))
        .collect();
    for chunk in chunks(&recorded) {
        insert_attempts(conn, chunk)?;
    }
    for &i in &finished {
        let id = outcomes[i].held.id;
        results[i] = Some(if done.contains(&id) {
            LeaseResult::Done
        } else {
            why_not(conn, id)?
        });
    }
    for (i, o) in outcomes.iter().enumerate() {
        if results[i].is_none() {
            results[i] = Some(record_one(conn, lease, o, now)?);
        }
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every outcome answered"))
        .collect())
}

/// Finishes the deliveries of `chunk` (indexes into `outcomes`) that the
/// caller still holds, adding each one finished to `done`.
fn finish_chunk(
    conn: &Connection,
    lease: &Lease,
    outcomes: &[Outcome],
    chunk: &[usize],
    now: i64,
    done: &mut HashSet<i64>,
) -> Result<()> {
    const COLS: usize = 5;
    let rows = (0..chunk.len())
        .map(|r| {
            let p = 3 + r * COLS;
            format!("(?{},?{},?{},?{},?{})", p, p + 1, p + 2, p + 3, p + 4)
        })
        .collect::<Vec<_>>()
        .join(",");
    // The first attempt's start is kept (templates can show it); later ones leave it.
    let mut stmt = conn.prepare_cached(&format!(
        "WITH o(id, fence, tried, status, started) AS (VALUES {rows}) \
         UPDATE delivery SET status = o.status, attempts = delivery.attempts + o.tried, claimed_by = NULL, \
         claim_until = NULL, manual = delivery.manual * (1 - o.tried), updated_at = ?2, \
         first_attempt_at = COALESCE(delivery.first_attempt_at, o.started) \
         FROM o WHERE delivery.id = o.id AND delivery.fence = o.fence AND delivery.claimed_by = ?1 \
         AND delivery.status = 1 RETURNING delivery.id"
    ))?;
    stmt.raw_bind_parameter(1, lease.owner.as_str())?;
    stmt.raw_bind_parameter(2, now)?;
    for (r, &i) in chunk.iter().enumerate() {
        let o = &outcomes[i];
        let p = 3 + r * COLS;
        let status: i64 = if matches!(o.state, DeliveryState::Succeeded) {
            0
        } else {
            2
        };
        stmt.raw_bind_parameter(p, o.held.id)?;
        stmt.raw_bind_parameter(p + 1, o.held.fence)?;
        stmt.raw_bind_parameter(p + 2, i64::from(o.attempt.is_some()))?;
        stmt.raw_bind_parameter(p + 3, status)?;
        stmt.raw_bind_parameter(p + 4, o.attempt.as_ref().map(|a| ms(a.created_at)))?;
    }
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next()? {
        done.insert(row.get(0)?);
    }
    Ok(())
}

/// Attempt columns, in the order [`bind_attempt`] binds them.
const ATTEMPT_COLUMNS: &str = "id, msg_id, endpoint_id, app_id, delivery_id, url, status_code, response, \
     duration_ms, status, error_kind, trigger_type, attempt_number, created_at";
const ATTEMPT_COLS: usize = 14;

/// Binds one attempt of delivery `id` from parameter `p` on.
fn bind_attempt(stmt: &mut rusqlite::Statement<'_>, p: usize, id: i64, a: &Attempt) -> rusqlite::Result<()> {
    stmt.raw_bind_parameter(p, a.id.as_str())?;
    stmt.raw_bind_parameter(p + 1, a.msg_id.as_str())?;
    stmt.raw_bind_parameter(p + 2, a.endpoint_id.as_str())?;
    stmt.raw_bind_parameter(p + 3, a.app_id.as_str())?;
    stmt.raw_bind_parameter(p + 4, id)?;
    stmt.raw_bind_parameter(p + 5, &a.url)?;
    stmt.raw_bind_parameter(p + 6, a.response_status_code)?;
    stmt.raw_bind_parameter(p + 7, &a.response)?;
    stmt.raw_bind_parameter(p + 8, i64::try_from(a.response_duration_ms).unwrap_or(i64::MAX))?;
    stmt.raw_bind_parameter(p + 9, a.status.code())?;
    stmt.raw_bind_parameter(p + 10, a.error_kind.map(AttemptErrorKind::as_str))?;
    stmt.raw_bind_parameter(p + 11, a.trigger_type as i64)?;
    stmt.raw_bind_parameter(p + 12, a.attempt_number)?;
    stmt.raw_bind_parameter(p + 13, ms(a.created_at))
}

/// One multi-row insert of these attempts (delivery id, attempt).
fn insert_attempts(conn: &Connection, attempts: &[(i64, &Attempt)]) -> Result<()> {
    let rows = (0..attempts.len())
        .map(|r| {
            let p = 1 + r * ATTEMPT_COLS;
            let cols: Vec<String> = (p..p + ATTEMPT_COLS).map(|i| format!("?{i}")).collect();
            format!("({})", cols.join(","))
        })
        .collect::<Vec<_>>()
        .join(",");
    let mut stmt = conn.prepare_cached(&format!("INSERT INTO attempt ({ATTEMPT_COLUMNS}) VALUES {rows}"))?;
    for (r, (id, a)) in attempts.iter().enumerate() {
        bind_attempt(&mut stmt, 1 + r * ATTEMPT_COLS, *id, a)?;
    }
    stmt.raw_execute()?;
    Ok(())
}

/// One outcome, written only while the caller still holds the delivery:
/// the state change first, guarded by owner and fence, then the attempt.
fn record_one(conn: &Connection, lease: &Lease, o: &Outcome, now: i64) -> Result<LeaseResult> {
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
        insert_attempts(conn, &[(id, a)])?;
    }
    Ok(LeaseResult::Done)
}
