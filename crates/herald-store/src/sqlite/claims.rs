//! Claiming due deliveries on SQLite, in the writer's transaction. The
//! common case, a backlog of unclaimed due work, is one `UPDATE …
//! RETURNING` for the whole batch and one message read per message: a
//! batching endpoint drains tens of thousands of deliveries a second, and
//! each statement per delivery is writer time nobody else gets.

use std::collections::HashMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use herald_core::validate::EventTypeName;
use herald_core::{AppId, EndpointId, MessageId};
use rusqlite::{Connection, OptionalExtension, params};

use super::holds::HELD_ELSEWHERE;
use super::rows::{after, opt_time_at, time_at};
use crate::{DeliveryJob, Lease, Result};

/// Claims up to `limit` due deliveries, earliest first, until their payloads
/// reach `max_bytes` (at least one is taken).
pub(crate) fn claim_due(
    conn: &Connection,
    lease: &Lease,
    now: i64,
    limit: usize,
    max_bytes: usize,
) -> Result<Vec<DeliveryJob>> {
    // Work whose claim lapsed (its holder died, or could not record the
    // outcome) is rare; while there is some, it and the unclaimed work are
    // taken together by due time, row by row, so neither starves the other.
    let lapsed: Option<i64> = conn
        .prepare_cached(&format!(
            "SELECT id FROM delivery \
             WHERE claim_until IS NOT NULL AND claim_until < ?1 AND status = 1 AND fifo = 0 AND next_attempt_at <= ?1 \
             AND NOT {HELD_ELSEWHERE} LIMIT 1"
        ))?
        .query_row(params![now, None::<i64>, lease.owner.as_str()], |r| r.get(0))
        .optional()?;
    if lapsed.is_some() {
        return claim_merged(conn, lease, now, limit, max_bytes);
    }
    claim_unclaimed(conn, lease, now, limit, max_bytes)
}

/// A delivery as its claim returned it, before its message is read.
struct Claimed {
    id: i64,
    fence: i64,
    due: i64,
    msg_id: String,
    app_id: String,
    endpoint_id: String,
    attempts: u32,
    first_attempt_at: Option<DateTime<Utc>>,
    manual: bool,
}

/// What a job needs of its message, read once per message.
struct MessageFields {
    event_type: EventTypeName,
    created_at: DateTime<Utc>,
    payload: Bytes,
}

fn claim_unclaimed(
    conn: &Connection,
    lease: &Lease,
    now: i64,
    limit: usize,
    max_bytes: usize,
) -> Result<Vec<DeliveryJob>> {
    let owner = lease.owner.as_str();
    let mut claim = conn.prepare_cached(&format!(
        "UPDATE delivery SET claimed_by = ?3, claim_until = ?4, fence = fence + 1, parked = 0 \
         WHERE id IN (SELECT id FROM delivery \
           WHERE status = 1 AND claim_until IS NULL AND fifo = 0 AND next_attempt_at <= ?1 AND NOT {HELD_ELSEWHERE} \
           ORDER BY next_attempt_at LIMIT ?2) \
         RETURNING id, fence, next_attempt_at, msg_id, app_id, endpoint_id, attempts, first_attempt_at, manual"
    ))?;
    let mut claimed = claim
        .query_map(params![now, limit as i64, owner, after(now, lease.ttl)], |r| {
            Ok(Claimed {
                id: r.get(0)?,
                fence: r.get(1)?,
                due: r.get(2)?,
                msg_id: r.get(3)?,
                app_id: r.get(4)?,
                endpoint_id: r.get(5)?,
                attempts: r.get(6)?,
                first_attempt_at: opt_time_at(r, 7)?,
                manual: r.get(8)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    // RETURNING gives no order; the loader hands work out earliest first.
    claimed.sort_unstable_by_key(|c| (c.due, c.id));

    // The payload is read only once the budget has room for it; deliveries
    // of one message share one copy of it, counted once.
    let mut read = conn.prepare_cached(
        "SELECT event_type, created_at, length(payload), payload FROM message WHERE app_id = ?1 AND id = ?2",
    )?;
    let mut messages: HashMap<String, MessageFields> = HashMap::new();
    let mut bytes = 0usize;
    let mut jobs = Vec::with_capacity(claimed.len());
    let mut rest = claimed.into_iter();
    for c in rest.by_ref() {
        if !messages.contains_key(&c.msg_id) {
            let fields = read
                .query_row(params![c.app_id, c.msg_id], |r| {
                    let len = usize::try_from(r.get::<_, i64>(2)?).unwrap_or(usize::MAX);
                    if !jobs.is_empty() && bytes.saturating_add(len) > max_bytes {
                        return Ok(None);
                    }
                    bytes = bytes.saturating_add(len);
                    Ok(Some(MessageFields {
                        event_type: EventTypeName::from_trusted(r.get(0)?),
                        created_at: time_at(r, 1)?,
                        payload: Bytes::from(r.get::<_, Vec<u8>>(3)?),
                    }))
                })
                .optional()?;
            match fields {
                Some(Some(fields)) => {
                    messages.insert(c.msg_id.clone(), fields);
                }
                // Over the byte budget: this and the rest wait for the next round.
                Some(None) => {
                    hand_back(conn, std::iter::once(c).chain(rest))?;
                    break;
                }
                // A message deleted under its delivery: nothing to send.
                None => {
                    hand_back(conn, std::iter::once(c))?;
                    continue;
                }
            }
        }
        let m = &messages[&c.msg_id];
        jobs.push(DeliveryJob {
            delivery_id: c.id,
            fence: c.fence,
            msg_id: MessageId::from_trusted(c.msg_id),
            app_id: AppId::from_trusted(c.app_id),
            endpoint_id: EndpointId::from_trusted(c.endpoint_id),
            attempts: c.attempts,
            event_type: m.event_type.clone(),
            msg_created_at: m.created_at,
            first_attempt_at: c.first_attempt_at,
            payload: m.payload.clone(),
            manual: c.manual,
        });
    }
    Ok(jobs)
}

/// Undoes claims this transaction made but will not hand out.
fn hand_back(conn: &Connection, claimed: impl Iterator<Item = Claimed>) -> Result<()> {
    let mut release =
        conn.prepare_cached("UPDATE delivery SET claimed_by = NULL, claim_until = NULL WHERE id = ?1 AND fence = ?2")?;
    for c in claimed {
        release.execute(params![c.id, c.fence])?;
    }
    Ok(())
}

fn claim_merged(
    conn: &Connection,
    lease: &Lease,
    now: i64,
    limit: usize,
    max_bytes: usize,
) -> Result<Vec<DeliveryJob>> {
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
pub(crate) fn load_job(conn: &Connection, id: i64) -> Result<Option<DeliveryJob>> {
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
