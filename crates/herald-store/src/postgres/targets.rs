//! What the engine sends with: endpoints as `DeliveryTarget`s, their
//! current secret, the retiring ones still in grace and their credentials
//! unsealed, and the failure streak the store holds for each. One
//! statement for every id asked, so the secrets and streaks read are of
//! one moment (no rotation can fall between the current secret and the
//! retired ones).

use std::collections::HashMap;

use herald_core::EndpointId;
use herald_core::health::FailureStreak;
use herald_core::model::{DeliveryTarget, RetiringSecret};

use super::PgStore;
use super::rows::{EP_COLS, EP_SECRET_COL, decrypt_secret, ep_row, from_ms, get};
use crate::{Result, StoreError};

/// After the endpoint's columns and its sealed secret: its streak (if
/// failing) and the secrets in grace, newest expiry first, as two parallel
/// arrays. The joined relations rename what they expose, so the unqualified
/// `EP_COLS` stay unambiguous.
const JOINS: &str = "h.h_since, h.h_failed, r.retired_secrets, r.retired_until FROM endpoint \
    LEFT JOIN (SELECT endpoint_id AS h_endpoint, failing_since AS h_since, failed_messages AS h_failed \
      FROM endpoint_health) h ON h.h_endpoint = endpoint.id \
    LEFT JOIN LATERAL (SELECT array_agg(s.secret ORDER BY s.expires_at DESC) AS retired_secrets, \
      array_agg(s.expires_at ORDER BY s.expires_at DESC) AS retired_until \
      FROM endpoint_retired_secret s WHERE s.endpoint_id = endpoint.id AND s.expires_at > herald_now_ms()) r ON TRUE \
    WHERE id = ANY($1)";

impl PgStore {
    /// The targets of `ids` that still exist, in the order asked.
    pub(crate) async fn pg_delivery_targets(&self, ids: Vec<EndpointId>) -> Result<Vec<DeliveryTarget>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.client().await?;
        let stmt = c.prepare_cached(&format!("SELECT {EP_COLS}, secret, {JOINS}")).await?;
        let wanted: Vec<&str> = ids.iter().map(EndpointId::as_str).collect();
        let mut found = HashMap::with_capacity(ids.len());
        for r in c.query(&stmt, &[&wanted]).await? {
            let ep = ep_row(&r, &self.key)?;
            let sealed: &[u8] = get(&r, EP_SECRET_COL)?;
            let mut target = DeliveryTarget::new(ep, vec![decrypt_secret(&self.key, sealed)?]);
            target.streak = get::<Option<i64>>(&r, 8)?
                .map(|since| -> Result<FailureStreak> {
                    Ok(FailureStreak {
                        since: from_ms(since)
                            .ok_or_else(|| StoreError::Corrupt("column failing_since: time out of range".into()))?,
                        failed_messages: get::<i64>(&r, 9)?.clamp(0, u32::MAX.into()) as u32,
                    })
                })
                .transpose()?;
            let secrets: Vec<&[u8]> = get::<Option<Vec<&[u8]>>>(&r, 10)?.unwrap_or_default();
            let until: Vec<i64> = get::<Option<Vec<i64>>>(&r, 11)?.unwrap_or_default();
            target.retiring = secrets
                .into_iter()
                .zip(until)
                .map(|(sealed, until)| {
                    Ok(RetiringSecret {
                        secret: decrypt_secret(&self.key, sealed)?,
                        until: from_ms(until)
                            .ok_or_else(|| StoreError::Corrupt("column expires_at: time out of range".into()))?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            found.insert(target.endpoint_id.to_string(), target);
        }
        // An id asked twice is answered twice, as it was asked.
        let mut left: HashMap<&str, usize> = HashMap::new();
        for id in &wanted {
            *left.entry(id).or_default() += 1;
        }
        let mut out = Vec::with_capacity(found.len());
        for id in wanted {
            let n = left.entry(id).or_default();
            *n -= 1;
            let target = if *n == 0 {
                found.remove(id)
            } else {
                found.get(id).cloned()
            };
            out.extend(target);
        }
        Ok(out)
    }
}
