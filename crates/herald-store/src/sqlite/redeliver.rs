//! Resend, recover and replay-missing: deliveries made pending, unclaimed
//! and due at the database's now. A delivery some node holds is never
//! touched (its holder's outcome stays the one recorded).

use herald_core::ids::min_id_for_time;
use herald_core::{AppId, EndpointId, MessageId};
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use super::fifo::is_fifo;
use super::rows::{ms, select_endpoint};
use crate::{RedeliveryStore, Result, StoreError, TimeRange};

/// How far a message's id time may be from its `created_at`: the id is
/// made by the node, the time is the database's, read once per group commit.
const ID_CLOCK_SLACK_MS: i64 = 60_000;

/// The `[lo, hi)` bounds on message ids and creation times for `range`:
/// ids sort by creation time, so a (slightly wider) id bound lets the
/// `(app_id, id)` index find the range, and the time bound makes it exact.
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

#[async_trait::async_trait]
impl RedeliveryStore for SqliteStore {
    async fn resend(&self, app_id: &AppId, msg_id: &MessageId, endpoint_id: &EndpointId) -> Result<()> {
        let (app_id, msg_id, endpoint_id) = (app_id.clone(), msg_id.clone(), endpoint_id.clone());
        self.writer
            .run(move |ctx| {
                let now = ctx.now()?;
                let payload_len: Option<i64> = ctx
                    .conn
                    .prepare_cached("SELECT length(payload) FROM message WHERE app_id = ?1 AND id = ?2")?
                    .query_row([app_id.as_str(), msg_id.as_str()], |r| r.get(0))
                    .optional()?;
                match payload_len {
                    None => return Err(StoreError::NotFound("message")),
                    Some(0) => {
                        return Err(StoreError::Refused(
                            "the message's payload was expunged, so it cannot be sent again".into(),
                        ));
                    }
                    Some(_) => {}
                }
                let existing: Option<(i64, i64, bool)> = ctx
                    .conn
                    .prepare_cached(
                        "SELECT id, status, claim_until IS NOT NULL FROM delivery \
                         WHERE msg_id = ?1 AND endpoint_id = ?2 ORDER BY id DESC LIMIT 1",
                    )?
                    .query_row([msg_id.as_str(), endpoint_id.as_str()], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()?;
                match existing {
                    // Held by a node: it is being sent already.
                    Some((_, 1, true)) => {}
                    Some((id, 1, false)) => {
                        ctx.conn
                            .prepare_cached("UPDATE delivery SET next_attempt_at = ?2, manual = 1, updated_at = ?2 WHERE id = ?1")?
                            .execute(params![id, now])?;
                    }
                    Some((id, _, _)) => {
                        ctx.conn
                            .prepare_cached(
                                "UPDATE delivery SET status = 1, attempts = 0, next_attempt_at = ?2, claimed_by = NULL, \
                                 claim_until = NULL, parked = 0, manual = 1, updated_at = ?2, fifo = ?3 WHERE id = ?1",
                            )?
                            .execute(params![id, now, is_fifo(&ctx.conn, &endpoint_id)?])?;
                    }
                    None => {
                        ctx.conn
                            .prepare_cached(
                                "INSERT INTO delivery (msg_id, endpoint_id, app_id, status, attempts, next_attempt_at, \
                                 updated_at, manual, fifo) VALUES (?1, ?2, ?3, 1, 0, ?4, ?4, 1, ?5)",
                            )?
                            .execute(params![
                                msg_id.as_str(),
                                endpoint_id.as_str(),
                                app_id.as_str(),
                                now,
                                is_fifo(&ctx.conn, &endpoint_id)?
                            ])?;
                    }
                }
                Ok(())
            })
            .await
    }

    async fn recover_failed(&self, app_id: &AppId, endpoint_id: &EndpointId, range: TimeRange) -> Result<u64> {
        let (app_id, endpoint_id) = (app_id.clone(), endpoint_id.clone());
        let (lo, hi, since, until) = bounds(range);
        self.writer
            .run(move |ctx| {
                let now = ctx.now()?;
                let n = ctx
                    .conn
                    .prepare_cached(
                        "UPDATE delivery SET status = 1, attempts = 0, next_attempt_at = ?1, claimed_by = NULL, \
                         claim_until = NULL, parked = 0, manual = 1, updated_at = ?1, fifo = ?8 \
                         WHERE endpoint_id = ?2 AND status = 2 AND app_id = ?3 AND msg_id IN ( \
                             SELECT id FROM message WHERE app_id = ?3 AND id >= ?4 AND id < ?5 \
                             AND created_at >= ?6 AND created_at < ?7 AND length(payload) > 0)",
                    )?
                    .execute(params![
                        now,
                        endpoint_id.as_str(),
                        app_id.as_str(),
                        lo,
                        hi,
                        since,
                        until,
                        is_fifo(&ctx.conn, &endpoint_id)?
                    ])?;
                Ok(n as u64)
            })
            .await
    }

    async fn replay_missing(
        &self,
        app_id: &AppId,
        endpoint_id: &EndpointId,
        range: TimeRange,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<(u64, Option<MessageId>)> {
        let (app_id, endpoint_id) = (app_id.clone(), endpoint_id.clone());
        let (lo, hi, since, until) = bounds(range);
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        self.writer
            .run(move |ctx| {
                let ep = select_endpoint(&ctx.conn, &ctx.key, &app_id, endpoint_id.as_str())?;
                let now = ctx.now()?;
                let start = match &after {
                    Some(m) if m.as_str() >= lo.as_str() => m.to_string(),
                    _ => lo.clone(),
                };
                let inclusive = after.is_none() || start == lo;
                let sql = format!(
                    "SELECT m.id, m.event_type, m.channels, length(m.payload) > 0, \
                     EXISTS (SELECT 1 FROM delivery d WHERE d.msg_id = m.id AND d.endpoint_id = ?2) \
                     FROM message m WHERE m.app_id = ?1 AND m.id {} ?3 AND m.id < ?4 \
                     AND m.created_at >= ?5 AND m.created_at < ?6 ORDER BY m.id LIMIT ?7",
                    if inclusive { ">=" } else { ">" }
                );
                type Row = (String, String, Option<String>, bool, bool);
                let rows: Vec<Row> = ctx
                    .conn
                    .prepare_cached(&sql)?
                    .query_map(
                        params![app_id.as_str(), endpoint_id.as_str(), start, hi, since, until, limit],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                    )?
                    .collect::<rusqlite::Result<_>>()?;
                let mut created = 0;
                let mut insert = ctx.conn.prepare_cached(
                    "INSERT INTO delivery (msg_id, endpoint_id, app_id, status, attempts, next_attempt_at, updated_at, \
                     manual, fifo) VALUES (?1, ?2, ?3, 1, 0, ?4, ?4, 1, ?5)",
                )?;
                for (id, event_type, channels, has_payload, delivered) in &rows {
                    if *delivered || !*has_payload {
                        continue;
                    }
                    let channels: Option<Vec<herald_core::validate::Channel>> = channels
                        .as_deref()
                        .map(serde_json::from_str)
                        .transpose()
                        .map_err(|e| StoreError::Corrupt(format!("message {id}: channels: {e}")))?;
                    if ep.subscribes(event_type, channels.as_deref()) {
                        insert.execute(params![
                            id,
                            endpoint_id.as_str(),
                            app_id.as_str(),
                            now,
                            ep.settings.fifo
                        ])?;
                        created += 1;
                    }
                }
                let last = (rows.len() as i64 == limit)
                    .then(|| rows.last().map(|r| MessageId::from_trusted(r.0.clone())))
                    .flatten();
                Ok((created, last))
            })
            .await
    }
}
