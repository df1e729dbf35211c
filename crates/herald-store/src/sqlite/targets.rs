//! What the engine sends with: endpoints as `DeliveryTarget`s, their
//! current secret, the retiring ones still in grace and their credentials
//! unsealed, and the failure streak the store holds for each.

use herald_core::EndpointId;
use herald_core::model::{DeliveryTarget, RetiringSecret};
use rusqlite::{Connection, OptionalExtension};

use super::rows::{EP_COLS, EP_SECRET_COL, decrypt_secret, ep_row, time_at};
use crate::{EncryptionKey, Result};

/// The targets of `ids` that still exist, in the order asked.
pub(crate) fn delivery_targets(
    c: &Connection,
    key: &EncryptionKey,
    ids: Vec<EndpointId>,
) -> Result<Vec<DeliveryTarget>> {
    let mut stmt = c.prepare_cached(&format!("SELECT {EP_COLS}, secret FROM endpoint WHERE id = ?1"))?;
    let mut retired = c.prepare_cached(
        "SELECT secret, expires_at FROM endpoint_retired_secret WHERE endpoint_id = ?1 \
         AND expires_at > CAST(unixepoch('subsec') * 1000 AS INTEGER) ORDER BY expires_at DESC",
    )?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let row = stmt
            .query_row([id.as_str()], |r| {
                Ok((ep_row(r, key)?, r.get::<_, Vec<u8>>(EP_SECRET_COL)?))
            })
            .optional()?;
        if let Some((ep, sealed)) = row {
            let retiring = retired
                .query_map([id.as_str()], |r| Ok((r.get::<_, Vec<u8>>(0)?, time_at(r, 1)?)))?
                .map(|row| {
                    let (sealed, until) = row?;
                    Ok(RetiringSecret {
                        secret: decrypt_secret(key, &sealed)?,
                        until,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let mut target = DeliveryTarget::new(ep, vec![decrypt_secret(key, &sealed)?]);
            target.retiring = retiring;
            target.streak = super::health::streak_of(c, &id)?;
            out.push(target);
        }
    }
    Ok(out)
}
