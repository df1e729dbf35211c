//! Endpoint holds (see [`crate::DeliveryQueue::hold_endpoints`]): a row per
//! held endpoint naming its owner and when, by the database's clock, the
//! hold lapses. One node serves a SQLite file, so in practice it holds
//! whatever it asks for; the rules are the PostgreSQL store's all the same.

use herald_core::EndpointId;
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use super::rows::after;
use super::writer::WriterCtx;
use crate::{Lease, Result};

/// Whether a `delivery` row's endpoint is held by an owner other than `?3`
/// whose hold has not lapsed at `?1`: such deliveries are left for it.
pub(crate) const HELD_ELSEWHERE: &str = "EXISTS (SELECT 1 FROM endpoint_hold h \
     WHERE h.endpoint_id = delivery.endpoint_id AND h.owner <> ?3 AND h.until > ?1)";

impl SqliteStore {
    pub(super) async fn take_holds(&self, lease: &Lease, endpoints: Vec<EndpointId>) -> Result<Vec<bool>> {
        let lease = lease.clone();
        self.writer
            .run_fast(move |ctx| {
                let now = ctx.now()?;
                ctx.holds_changed();
                let until = after(now, lease.ttl);
                let mut take = ctx.conn.prepare_cached(
                    "INSERT INTO endpoint_hold (endpoint_id, owner, until) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (endpoint_id) DO UPDATE SET owner = excluded.owner, until = excluded.until \
                     WHERE owner = excluded.owner OR until <= ?4",
                )?;
                let mut held = Vec::with_capacity(endpoints.len());
                for e in &endpoints {
                    held.push(take.execute(params![e.as_str(), lease.owner.as_str(), until, now])? == 1);
                }
                Ok(held)
            })
            .await
    }

    pub(super) async fn drop_holds(&self, lease: &Lease, endpoints: Vec<EndpointId>) -> Result<()> {
        let owner = lease.owner.clone();
        self.writer
            .run_fast(move |ctx| {
                let now = ctx.now()?;
                ctx.holds_changed();
                let mut drop = ctx
                    .conn
                    .prepare_cached("DELETE FROM endpoint_hold WHERE endpoint_id = ?1 AND owner = ?2")?;
                for e in &endpoints {
                    drop.execute(params![e.as_str(), owner.as_str()])?;
                }
                // Lapsed holds of anyone go too, so the table keeps only live ones.
                ctx.conn
                    .prepare_cached("DELETE FROM endpoint_hold WHERE until <= ?1")?
                    .execute([now])?;
                Ok(())
            })
            .await
    }
}

/// Whether `endpoint` is held, live, by someone other than `owner` (`None`:
/// the delivery is born unclaimed anyway): ingest then leaves its delivery
/// unclaimed for the holder. One read per transaction while no hold is
/// live, the common case, and one per delivery otherwise.
pub(crate) fn held_elsewhere(ctx: &mut WriterCtx, endpoint: &EndpointId, owner: Option<&str>) -> Result<bool> {
    let now = ctx.now()?;
    if !ctx.any_live_hold(now)? {
        return Ok(false);
    }
    let holder: Option<String> = ctx
        .conn
        .prepare_cached("SELECT owner FROM endpoint_hold WHERE endpoint_id = ?1 AND until > ?2")?
        .query_row(params![endpoint.as_str(), now], |r| r.get(0))
        .optional()?;
    Ok(holder.is_some_and(|h| owner != Some(h.as_str())))
}
