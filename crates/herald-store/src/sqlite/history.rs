//! History views over deliveries joined with messages or endpoints, stats,
//! and expunging content.

use herald_core::model::{Attempt, DeliveryStatus};
use herald_core::{AppId, AttemptId, EndpointId, MessageId};
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Row, params};

use super::SqliteStore;
use super::paging::{Filter, Listing, message_filter, paginate};
use super::rows::{ATTEMPT_COLS, attempt_row, ep_row, ms, msg_row, opt_time_at};
use crate::{
    DeliveryCounts, EndpointMessage, HistoryStore, MessageDestination, MessageFilter, Page, PageRequest, Result,
    StoreError, TimeRange, shown_status,
};

/// Messages with their delivery to one endpoint (`d`); `MSG_COLS` then the
/// delivery's state.
const ATTEMPTED_MESSAGES: Listing = Listing {
    cols: "m.id, m.app_id, m.event_type, m.event_id, m.channels, m.tags, m.payload, m.created_at, \
           d.status, d.attempts, d.next_attempt_at",
    from: "delivery d JOIN message m ON m.app_id = d.app_id AND m.id = d.msg_id",
    key: "m.id",
};

/// Endpoints with their delivery of one message; `EP_COLS` then the state.
const DESTINATIONS: Listing = Listing {
    cols: "e.id, e.app_id, e.uid, e.settings, e.created_at, e.updated_at, e.credentials, \
           d.status, d.attempts, d.next_attempt_at",
    from: "delivery d JOIN endpoint e ON e.id = d.endpoint_id",
    key: "e.id",
};

/// The delivery state in columns `col..col+3`: status, attempts, next due time.
fn delivery_state(r: &Row, col: usize) -> rusqlite::Result<(DeliveryStatus, Option<chrono::DateTime<chrono::Utc>>)> {
    let code: i64 = r.get(col)?;
    let stored = DeliveryStatus::from_code(code).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Integer, "unknown delivery status".into())
    })?;
    let attempts: u32 = r.get(col + 1)?;
    let next = if stored == DeliveryStatus::Pending {
        opt_time_at(r, col + 2)?
    } else {
        None
    };
    Ok((shown_status(stored, attempts), next))
}

/// SQL for a delivery whose state, as shown, is `status` (`d` the delivery).
fn status_clause(f: &mut Filter, status: DeliveryStatus) {
    match status {
        DeliveryStatus::Pending => f.push("d.status = 1 AND d.attempts = 0", []),
        DeliveryStatus::Sending => f.push("d.status = 1 AND d.attempts > 0", []),
        other => f.push("d.status = ?", [Value::Integer(other.code())]),
    }
}

#[async_trait::async_trait]
impl HistoryStore for SqliteStore {
    async fn get_attempt(&self, app_id: &AppId, msg_id: &MessageId, attempt_id: &str) -> Result<Attempt> {
        let (app_id, msg_id, attempt_id) = (app_id.clone(), msg_id.clone(), attempt_id.to_owned());
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {ATTEMPT_COLS} FROM attempt a WHERE a.msg_id = ?1 AND a.id = ?2 AND a.app_id = ?3"
            ))?
            .query_row([msg_id.as_str(), &attempt_id, app_id.as_str()], attempt_row)
            .optional()?
            .ok_or(StoreError::NotFound("attempt"))
        })
        .await
    }

    async fn expunge_message_content(&self, app_id: &AppId, msg_id: &MessageId) -> Result<()> {
        let (app_id, msg_id) = (app_id.clone(), msg_id.clone());
        self.writer
            .run(move |ctx| {
                let pending: bool = ctx
                    .conn
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM delivery WHERE msg_id = ?1 AND status = 1)")?
                    .query_row([msg_id.as_str()], |r| r.get(0))?;
                if pending {
                    return Err(StoreError::Refused(
                        "the message is still being delivered; expunge its content once delivery ends".into(),
                    ));
                }
                let n = ctx
                    .conn
                    .prepare_cached(
                        "UPDATE message SET payload = X'', payload_expires_at = NULL WHERE app_id = ?1 AND id = ?2",
                    )?
                    .execute([app_id.as_str(), msg_id.as_str()])?;
                if n == 0 {
                    return Err(StoreError::NotFound("message"));
                }
                Ok(())
            })
            .await
    }

    async fn expunge_attempt_content(&self, app_id: &AppId, msg_id: &MessageId, attempt_id: &AttemptId) -> Result<()> {
        let (app_id, msg_id, attempt_id) = (app_id.clone(), msg_id.clone(), attempt_id.clone());
        self.writer
            .run(move |ctx| {
                let n = ctx
                    .conn
                    .prepare_cached("UPDATE attempt SET response = '' WHERE msg_id = ?1 AND id = ?2 AND app_id = ?3")?
                    .execute([msg_id.as_str(), attempt_id.as_str(), app_id.as_str()])?;
                if n == 0 {
                    return Err(StoreError::NotFound("attempt"));
                }
                Ok(())
            })
            .await
    }

    async fn list_attempted_messages(
        &self,
        app_id: &AppId,
        endpoint_id: &EndpointId,
        filter: MessageFilter,
        status: Option<DeliveryStatus>,
        page: PageRequest,
    ) -> Result<Page<EndpointMessage>> {
        let (app_id, endpoint_id) = (app_id.clone(), endpoint_id.clone());
        self.read(move |c| {
            let mut f = Filter::default();
            f.push("d.endpoint_id = ?", [Value::Text(endpoint_id.to_string())]);
            f.push("d.app_id = ?", [Value::Text(app_id.to_string())]);
            message_filter(&mut f, filter);
            if let Some(status) = status {
                status_clause(&mut f, status);
            }
            paginate(
                c,
                &ATTEMPTED_MESSAGES,
                f,
                &page,
                |r| {
                    let (status, next_attempt) = delivery_state(r, 8)?;
                    Ok(EndpointMessage {
                        message: msg_row(r)?,
                        status,
                        next_attempt,
                    })
                },
                |m| m.message.id.to_string(),
            )
        })
        .await
    }

    async fn list_attempted_destinations(
        &self,
        app_id: &AppId,
        msg_id: &MessageId,
        page: PageRequest,
    ) -> Result<Page<MessageDestination>> {
        let (app_id, msg_id, key) = (app_id.clone(), msg_id.clone(), self.key.clone());
        self.read(move |c| {
            let mut f = Filter::default();
            f.push("d.msg_id = ?", [Value::Text(msg_id.to_string())]);
            f.push("d.app_id = ?", [Value::Text(app_id.to_string())]);
            paginate(
                c,
                &DESTINATIONS,
                f,
                &page,
                |r| {
                    let (status, next_attempt) = delivery_state(r, 7)?;
                    Ok(MessageDestination {
                        endpoint: ep_row(r, &key)?,
                        status,
                        next_attempt,
                    })
                },
                |d| d.endpoint.id.to_string(),
            )
        })
        .await
    }

    async fn endpoint_stats(
        &self,
        app_id: &AppId,
        endpoint_id: &EndpointId,
        range: TimeRange,
    ) -> Result<DeliveryCounts> {
        let (app_id, endpoint_id) = (app_id.clone(), endpoint_id.clone());
        self.read(move |c| {
            let since = range.since.map(ms).unwrap_or(i64::MIN);
            let until = range.until.map(ms).unwrap_or(i64::MAX);
            let mut stmt = c.prepare_cached(
                "SELECT d.status, d.attempts > 0, COUNT(*) FROM delivery d \
                 JOIN message m ON m.app_id = d.app_id AND m.id = d.msg_id \
                 WHERE d.endpoint_id = ?1 AND d.app_id = ?2 AND m.created_at >= ?3 AND m.created_at < ?4 \
                 GROUP BY d.status, d.attempts > 0",
            )?;
            let rows = stmt.query_map(params![endpoint_id.as_str(), app_id.as_str(), since, until], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, bool>(1)?, r.get::<_, i64>(2)?))
            })?;
            let mut counts = DeliveryCounts::default();
            for row in rows {
                let (code, tried, n) = row?;
                let stored = DeliveryStatus::from_code(code)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown delivery status {code}")))?;
                let n = u64::try_from(n).unwrap_or(0);
                match shown_status(stored, u32::from(tried)) {
                    DeliveryStatus::Success => counts.success += n,
                    DeliveryStatus::Pending => counts.pending += n,
                    DeliveryStatus::Sending => counts.sending += n,
                    DeliveryStatus::Fail => counts.fail += n,
                    DeliveryStatus::Canceled => counts.canceled += n,
                }
            }
            Ok(counts)
        })
        .await
    }
}
