//! Resend, recover and replay-missing: deliveries made pending, unclaimed
//! and due at the database's now. A delivery some node holds is never
//! touched (its holder's outcome stays the one recorded).
//!
//! Several nodes may do this at once, so each call locks what it reads its
//! decision from, in one order (endpoint, then messages, then deliveries):
//! - the endpoint row, `FOR NO KEY UPDATE`: redeliveries to one endpoint
//!   take turns (two replays cannot both find a message undelivered and
//!   both insert its delivery), and the `fifo` flag read from its settings
//!   cannot change before the deliveries written with it commit;
//! - the message rows, `FOR SHARE`: retention and expunging lock a message
//!   before they check it has no pending delivery, so a message made
//!   pending here is neither pruned nor emptied underneath.

use herald_core::ids::min_id_for_time;
use herald_core::validate::Channel;
use herald_core::{AppId, EndpointId, MessageId};

use super::PgStore;
use super::rows::{EP_COLS, ep_row, get, ms};
use crate::{RedeliveryStore, Result, StoreError, TimeRange};

/// How far a message's id time may be from its `created_at`: the id is
/// made by the node, the time is the database's.
const ID_CLOCK_SLACK_MS: i64 = 60_000;

/// The database's now, once per statement: `herald_now_ms()` reads the
/// clock each time it is called, and a delivery's due and update times
/// are the same instant.
const NOW: &str = "(SELECT herald_now_ms() AS now) n";

/// The `[lo, hi)` bounds on message ids and creation times for `range`:
/// ids sort by creation time, so a (slightly wider) id bound lets the
/// `(app_id, id)` key find the range, and the time bound makes it exact.
/// The queries write the time bound as `created_at + 0`, a filter only:
/// as an index condition it tempts a generic plan onto `message_created`,
/// which walks every application's messages in the range and sorts them.
fn bounds(range: TimeRange) -> (String, String, i64, i64) {
    let since = range.since.map(ms).unwrap_or(0).max(0);
    let until = range.until.map(ms).unwrap_or(i64::MAX);
    let lo = min_id_for_time(MessageId::PREFIX, since.saturating_sub(ID_CLOCK_SLACK_MS));
    let hi = if until == i64::MAX {
        // Above every id: base62 digits all sort below '~'.
        format!("{}_~", MessageId::PREFIX)
    } else {
        min_id_for_time(MessageId::PREFIX, until.saturating_add(ID_CLOCK_SLACK_MS))
    };
    (lo, hi, since, until)
}

/// Whether `endpoint` is ordered now (its settings say `fifo`), for what
/// makes a delivery pending again outside ingest; locks the endpoint row
/// for the rest of the transaction. An endpoint that is gone is not.
async fn lock_fifo(tx: &deadpool_postgres::Transaction<'_>, endpoint: &EndpointId) -> Result<bool> {
    let stmt = tx
        .prepare_cached(
            "SELECT COALESCE((settings::jsonb -> 'fifo') = 'true'::jsonb, FALSE) \
             FROM endpoint WHERE id = $1 FOR NO KEY UPDATE",
        )
        .await?;
    let row = tx.query_opt(&stmt, &[&endpoint.as_str()]).await?;
    row.map(|r| get::<bool>(&r, 0)).transpose().map(|f| f.unwrap_or(false))
}

#[async_trait::async_trait]
impl RedeliveryStore for PgStore {
    async fn resend(&self, app_id: &AppId, msg_id: &MessageId, endpoint_id: &EndpointId) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let fifo = lock_fifo(&tx, endpoint_id).await?;
        let payload = tx
            .prepare_cached("SELECT length(payload)::BIGINT FROM message WHERE app_id = $1 AND id = $2 FOR SHARE")
            .await?;
        let payload_len: Option<i64> = tx
            .query_opt(&payload, &[&app_id.as_str(), &msg_id.as_str()])
            .await?
            .map(|r| get(&r, 0))
            .transpose()?;
        match payload_len {
            None => return Err(StoreError::NotFound("message")),
            Some(0) => {
                return Err(StoreError::Refused(
                    "the message's payload was expunged, so it cannot be sent again".into(),
                ));
            }
            Some(_) => {}
        }
        // Locked, so no claim or outcome lands between reading it and
        // writing it.
        let latest = tx
            .prepare_cached(
                "SELECT id, status, claim_until IS NOT NULL FROM delivery \
                 WHERE msg_id = $1 AND endpoint_id = $2 ORDER BY id DESC LIMIT 1 FOR UPDATE",
            )
            .await?;
        let existing: Option<(i64, i64, bool)> = tx
            .query_opt(&latest, &[&msg_id.as_str(), &endpoint_id.as_str()])
            .await?
            .map(|r| Ok::<_, StoreError>((get(&r, 0)?, get(&r, 1)?, get(&r, 2)?)))
            .transpose()?;
        match existing {
            // Held by a node: it is being sent already.
            Some((_, 1, true)) => {}
            Some((id, 1, false)) => {
                let stmt = tx
                    .prepare_cached(&format!(
                        "UPDATE delivery SET next_attempt_at = n.now, manual = TRUE, updated_at = n.now \
                         FROM {NOW} WHERE id = $1"
                    ))
                    .await?;
                tx.execute(&stmt, &[&id]).await?;
            }
            Some((id, _, _)) => {
                let stmt = tx
                    .prepare_cached(&format!(
                        "UPDATE delivery SET status = 1, attempts = 0, next_attempt_at = n.now, claimed_by = NULL, \
                         claim_until = NULL, parked = FALSE, manual = TRUE, updated_at = n.now, fifo = $2 \
                         FROM {NOW} WHERE id = $1"
                    ))
                    .await?;
                tx.execute(&stmt, &[&id, &fifo]).await?;
            }
            None => {
                let stmt = tx
                    .prepare_cached(&format!(
                        "INSERT INTO delivery (msg_id, endpoint_id, app_id, status, attempts, next_attempt_at, \
                         updated_at, manual, fifo) SELECT $1, $2, $3, 1, 0, n.now, n.now, TRUE, $4 FROM {NOW}"
                    ))
                    .await?;
                tx.execute(
                    &stmt,
                    &[&msg_id.as_str(), &endpoint_id.as_str(), &app_id.as_str(), &fifo],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn recover_failed(&self, app_id: &AppId, endpoint_id: &EndpointId, range: TimeRange) -> Result<u64> {
        let (lo, hi, since, until) = bounds(range);
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let fifo = lock_fifo(&tx, endpoint_id).await?;
        // Only the messages with a failure here are locked, not the range.
        let stmt = tx
            .prepare_cached(&format!(
                "WITH kept AS ( \
                     SELECT m.id FROM message m WHERE m.app_id = $3 AND m.id >= $4 AND m.id < $5 \
                     AND m.created_at + 0 >= $6 AND m.created_at + 0 < $7 AND length(m.payload) > 0 \
                     AND EXISTS (SELECT 1 FROM delivery f WHERE f.msg_id = m.id AND f.endpoint_id = $2 \
                                 AND f.status = 2) \
                     FOR SHARE OF m) \
                 UPDATE delivery SET status = 1, attempts = 0, next_attempt_at = n.now, claimed_by = NULL, \
                 claim_until = NULL, parked = FALSE, manual = TRUE, updated_at = n.now, fifo = $1 \
                 FROM {NOW} \
                 WHERE endpoint_id = $2 AND status = 2 AND app_id = $3 AND msg_id IN (SELECT id FROM kept)"
            ))
            .await?;
        let n = tx
            .execute(
                &stmt,
                &[&fifo, &endpoint_id.as_str(), &app_id.as_str(), &lo, &hi, &since, &until],
            )
            .await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn replay_missing(
        &self,
        app_id: &AppId,
        endpoint_id: &EndpointId,
        range: TimeRange,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<(u64, Option<MessageId>)> {
        let (lo, hi, since, until) = bounds(range);
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let lock = tx
            .prepare_cached(&format!(
                "SELECT {EP_COLS} FROM endpoint WHERE app_id = $1 AND id = $2 FOR NO KEY UPDATE"
            ))
            .await?;
        let ep = tx
            .query_opt(&lock, &[&app_id.as_str(), &endpoint_id.as_str()])
            .await?
            .map(|r| ep_row(&r, &self.key))
            .transpose()?
            .ok_or(StoreError::NotFound("endpoint"))?;
        let start = match &after {
            Some(m) if m.as_str() >= lo.as_str() => m.to_string(),
            _ => lo.clone(),
        };
        let inclusive = after.is_none() || start == lo;
        let walk = tx
            .prepare_cached(&format!(
                "SELECT m.id, m.event_type, m.channels, length(m.payload) > 0, \
                 EXISTS (SELECT 1 FROM delivery d WHERE d.msg_id = m.id AND d.endpoint_id = $2 OFFSET 0) \
                 FROM message m WHERE m.app_id = $1 AND m.id {} $3 AND m.id < $4 \
                 AND m.created_at + 0 >= $5 AND m.created_at + 0 < $6 ORDER BY m.id LIMIT $7",
                if inclusive { ">=" } else { ">" }
            ))
            .await?;
        let rows = tx
            .query(
                &walk,
                &[
                    &app_id.as_str(),
                    &endpoint_id.as_str(),
                    &start,
                    &hi,
                    &since,
                    &until,
                    &limit,
                ],
            )
            .await?;
        let mut missing: Vec<&str> = Vec::new();
        for r in &rows {
            let (id, event_type, channels): (&str, &str, Option<&str>) = (get(r, 0)?, get(r, 1)?, get(r, 2)?);
            let (has_payload, delivered): (bool, bool) = (get(r, 3)?, get(r, 4)?);
            if delivered || !has_payload {
                continue;
            }
            let channels: Option<Vec<Channel>> = channels
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| StoreError::Corrupt(format!("message {id}: channels: {e}")))?;
            if ep.subscribes(event_type, channels.as_deref()) {
                missing.push(id);
            }
        }
        let created = if missing.is_empty() {
            0
        } else {
            // Locked as they get their deliveries; one whose payload went
            // meanwhile is passed over, as the walk would have.
            let insert = tx
                .prepare_cached(&format!(
                    "WITH kept AS (SELECT m.id FROM message m WHERE m.app_id = $1 AND m.id = ANY($2) \
                                   AND length(m.payload) > 0 ORDER BY m.id FOR SHARE OF m) \
                     INSERT INTO delivery (msg_id, endpoint_id, app_id, status, attempts, next_attempt_at, \
                     updated_at, manual, fifo) \
                     SELECT kept.id, $3, $1, 1, 0, n.now, n.now, TRUE, $4 FROM kept, {NOW} ORDER BY kept.id"
                ))
                .await?;
            tx.execute(
                &insert,
                &[&app_id.as_str(), &missing, &endpoint_id.as_str(), &ep.settings.fifo],
            )
            .await?
        };
        let last = (rows.len() as i64 == limit)
            .then(|| rows.last().map(|r| get::<String>(r, 0).map(MessageId::from_trusted)))
            .flatten()
            .transpose()?;
        tx.commit().await?;
        Ok((created, last))
    }
}
