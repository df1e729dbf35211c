//! History views over deliveries joined with messages or endpoints, stats,
//! and expunging content: the SQLite store's queries, on PostgreSQL.

use chrono::{DateTime, Utc};
use herald_core::model::{Attempt, DeliveryStatus};
use herald_core::{AppId, AttemptId, EndpointId, MessageId};
use tokio_postgres::Row;

use super::PgStore;
use super::paging::{Filter, Listing, Param, message_filter, paginate};
use super::rows::{ATTEMPT_COLS, attempt_row, count, ep_row, get, int, ms, msg_row, opt_time_at};
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

/// The delivery state in columns `col..col+3`: status, attempts, next due
/// time (shown only while pending).
fn delivery_state(r: &Row, col: usize) -> Result<(DeliveryStatus, Option<DateTime<Utc>>)> {
    let code: i64 = get(r, col)?;
    let stored = DeliveryStatus::from_code(code)
        .ok_or_else(|| StoreError::Corrupt(format!("column status: unknown delivery status {code}")))?;
    let attempts: u32 = int(r, col + 1)?;
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
        other => f.push("d.status = $?", [Box::new(other.code()) as Param]),
    }
}

#[async_trait::async_trait]
impl HistoryStore for PgStore {
    async fn get_attempt(&self, app_id: &AppId, msg_id: &MessageId, attempt_id: &str) -> Result<Attempt> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {ATTEMPT_COLS} FROM attempt a WHERE a.msg_id = $1 AND a.id = $2 AND a.app_id = $3"
            ))
            .await?;
        c.query_opt(&stmt, &[&msg_id.as_str(), &attempt_id, &app_id.as_str()])
            .await?
            .map(|r| attempt_row(&r))
            .transpose()?
            .ok_or(StoreError::NotFound("attempt"))
    }

    async fn expunge_message_content(&self, app_id: &AppId, msg_id: &MessageId) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // The message row is locked before the pending check, and the check
        // is a statement of its own, so it sees any redelivery that held the
        // row (they take it FOR SHARE) and committed while this waited: a
        // message made pending again never loses its payload.
        let lock = tx
            .prepare_cached("SELECT 1 FROM message WHERE app_id = $1 AND id = $2 FOR NO KEY UPDATE")
            .await?;
        let found = tx.query_opt(&lock, &[&app_id.as_str(), &msg_id.as_str()]).await?;
        let pending = tx
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM delivery WHERE msg_id = $1 AND status = 1)")
            .await?;
        if tx
            .query_one(&pending, &[&msg_id.as_str()])
            .await?
            .try_get::<_, bool>(0)?
        {
            return Err(StoreError::Refused(
                "the message is still being delivered; expunge its content once delivery ends".into(),
            ));
        }
        if found.is_none() {
            return Err(StoreError::NotFound("message"));
        }
        let expunge = tx
            .prepare_cached(
                "UPDATE message SET payload = '\\x'::bytea, payload_expires_at = NULL WHERE app_id = $1 AND id = $2",
            )
            .await?;
        tx.execute(&expunge, &[&app_id.as_str(), &msg_id.as_str()]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn expunge_attempt_content(&self, app_id: &AppId, msg_id: &MessageId, attempt_id: &AttemptId) -> Result<()> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached("UPDATE attempt SET response = ''::bytea WHERE msg_id = $1 AND id = $2 AND app_id = $3")
            .await?;
        let n = c
            .execute(&stmt, &[&msg_id.as_str(), &attempt_id.as_str(), &app_id.as_str()])
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound("attempt"));
        }
        Ok(())
    }

    async fn list_attempted_messages(
        &self,
        app_id: &AppId,
        endpoint_id: &EndpointId,
        filter: MessageFilter,
        status: Option<DeliveryStatus>,
        page: PageRequest,
    ) -> Result<Page<EndpointMessage>> {
        let mut f = Filter::default();
        f.push("d.endpoint_id = $?", [Box::new(endpoint_id.to_string()) as Param]);
        f.push("d.app_id = $?", [Box::new(app_id.to_string()) as Param]);
        message_filter(&mut f, filter);
        if let Some(status) = status {
            status_clause(&mut f, status);
        }
        let c = self.client().await?;
        paginate(
            &c,
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
        .await
    }

    async fn list_attempted_destinations(
        &self,
        app_id: &AppId,
        msg_id: &MessageId,
        page: PageRequest,
    ) -> Result<Page<MessageDestination>> {
        let mut f = Filter::default();
        f.push("d.msg_id = $?", [Box::new(msg_id.to_string()) as Param]);
        f.push("d.app_id = $?", [Box::new(app_id.to_string()) as Param]);
        let c = self.client().await?;
        let key = &self.key;
        paginate(
            &c,
            &DESTINATIONS,
            f,
            &page,
            |r| {
                let (status, next_attempt) = delivery_state(r, 7)?;
                Ok(MessageDestination {
                    endpoint: ep_row(r, key)?,
                    status,
                    next_attempt,
                })
            },
            |d| d.endpoint.id.to_string(),
        )
        .await
    }

    async fn endpoint_stats(
        &self,
        app_id: &AppId,
        endpoint_id: &EndpointId,
        range: TimeRange,
    ) -> Result<DeliveryCounts> {
        let since = range.since.map(ms).unwrap_or(i64::MIN);
        let until = range.until.map(ms).unwrap_or(i64::MAX);
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "SELECT d.status, d.attempts > 0, COUNT(*) FROM delivery d \
                 JOIN message m ON m.app_id = d.app_id AND m.id = d.msg_id \
                 WHERE d.endpoint_id = $1 AND d.app_id = $2 AND m.created_at >= $3 AND m.created_at < $4 \
                 GROUP BY d.status, d.attempts > 0",
            )
            .await?;
        let rows = c
            .query(&stmt, &[&endpoint_id.as_str(), &app_id.as_str(), &since, &until])
            .await?;
        let mut counts = DeliveryCounts::default();
        for r in &rows {
            let code: i64 = get(r, 0)?;
            let tried: bool = get(r, 1)?;
            let n = count(r, 2)?;
            let stored = DeliveryStatus::from_code(code)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown delivery status {code}")))?;
            match shown_status(stored, u32::from(tried)) {
                DeliveryStatus::Success => counts.success += n,
                DeliveryStatus::Pending => counts.pending += n,
                DeliveryStatus::Sending => counts.sending += n,
                DeliveryStatus::Fail => counts.fail += n,
                DeliveryStatus::Canceled => counts.canceled += n,
            }
        }
        Ok(counts)
    }
}
