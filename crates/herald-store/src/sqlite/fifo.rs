//! Ordered (`fifo`) endpoints on SQLite. Their deliveries carry `fifo = 1`
//! and stay out of the due index the loader walks: they are handed out only
//! in id order, as a run from the endpoint's oldest pending delivery, by
//! [`crate::DeliveryQueue::claim_fifo`]. A live claim on one of them by
//! another holder stops the run there, so whoever holds the head holds the
//! endpoint's order.

use std::time::Duration;

use herald_core::{AppId, EndpointId};
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use super::claims::claim_rows;
use super::rows::db_now_ms;
use crate::{DeliveryJob, FifoDue, Lease, Result};

/// Whether `endpoint` is ordered now, for what makes a delivery pending
/// again outside ingest (resend, recover, replay).
pub(crate) fn is_fifo(conn: &Connection, endpoint: &EndpointId) -> Result<bool> {
    let fifo: Option<bool> = conn
        .prepare_cached("SELECT json_extract(settings, '$.fifo') IS 1 FROM endpoint WHERE id = ?1")?
        .query_row([endpoint.as_str()], |r| r.get(0))
        .optional()?;
    Ok(fifo.unwrap_or(false))
}

/// An endpoint turned `fifo` on or off: its pending deliveries follow.
pub(crate) fn set_pending(conn: &Connection, endpoint: &EndpointId, fifo: bool) -> Result<()> {
    conn.prepare_cached("UPDATE delivery SET fifo = ?2 WHERE endpoint_id = ?1 AND status = 1 AND fifo != ?2")?
        .execute(params![endpoint.as_str(), fifo])?;
    Ok(())
}

/// Each ordered endpoint's oldest pending delivery: a loose index scan, one
/// probe of `delivery_fifo` per endpoint rather than a walk of backlogs.
pub(crate) const HEADS: &str = "WITH RECURSIVE ep(id) AS ( \
        SELECT MIN(endpoint_id) FROM delivery WHERE status = 1 AND fifo = 1 \
        UNION ALL \
        SELECT (SELECT MIN(endpoint_id) FROM delivery WHERE status = 1 AND fifo = 1 AND endpoint_id > ep.id) \
        FROM ep WHERE ep.id IS NOT NULL) \
     SELECT d.app_id, d.endpoint_id, d.next_attempt_at, d.claim_until FROM ep \
     JOIN delivery d ON d.id = (SELECT MIN(id) FROM delivery WHERE status = 1 AND fifo = 1 AND endpoint_id = ep.id) \
     WHERE ep.id IS NOT NULL";

fn fifo_due(conn: &Connection) -> Result<FifoDue> {
    let now = db_now_ms(conn)?;
    let mut due = FifoDue::default();
    let mut stmt = conn.prepare_cached(HEADS)?;
    let rows = stmt.query_map([], |r| {
        Ok((
            AppId::from_trusted(r.get(0)?),
            EndpointId::from_trusted(r.get(1)?),
            r.get::<_, i64>(2)?,
            r.get::<_, Option<i64>>(3)?,
        ))
    })?;
    for row in rows {
        let (app, endpoint, next_at, claim_until) = row?;
        if claim_until.is_some_and(|until| until >= now) {
            // Its holder sends it, and what follows.
            continue;
        }
        if next_at <= now {
            due.ready.push((app, endpoint));
        } else {
            let wait = Duration::from_millis(u64::try_from(next_at - now).unwrap_or(0));
            due.next = Some(due.next.map_or(wait, |n: Duration| n.min(wait)));
        }
    }
    Ok(due)
}

/// The run of `endpoint`'s pending deliveries, in id order, that the
/// caller may send next: its own live claims are skipped (it holds them),
/// and the run stops at the first delivery that is not due or that another
/// holder's live claim holds.
fn claim_fifo(
    conn: &Connection,
    lease: &Lease,
    endpoint: &EndpointId,
    now: i64,
    limit: usize,
    max_bytes: usize,
) -> Result<Vec<DeliveryJob>> {
    let mut ids = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT id, next_attempt_at, claimed_by, claim_until FROM delivery \
         WHERE endpoint_id = ?1 AND status = 1 AND fifo = 1 ORDER BY id",
    )?;
    let mut rows = stmt.query([endpoint.as_str()])?;
    while ids.len() < limit
        && let Some(r) = rows.next()?
    {
        let (id, next_at, by, until): (i64, i64, Option<String>, Option<i64>) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        if until.is_some_and(|u| u >= now) {
            if by.as_deref() == Some(lease.owner.as_str()) {
                continue;
            }
            break;
        }
        if next_at > now {
            break;
        }
        ids.push(id);
    }
    drop(rows);
    claim_rows(conn, lease, now, ids, max_bytes)
}

impl SqliteStore {
    pub(crate) async fn fifo_due_now(&self) -> Result<FifoDue> {
        self.read(fifo_due).await
    }

    pub(crate) async fn claim_fifo_now(
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
                claim_fifo(&ctx.conn, &lease, &endpoint, now, limit, max_bytes)
            })
            .await
    }
}
