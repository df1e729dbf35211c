//! The history views Svix serves beside the attempt lists: one attempt, the
//! messages an endpoint was sent and the endpoints a message went to (each
//! with its delivery's state), per-endpoint stats over a time range, and
//! expunging what a message or an attempt carried.

use chrono::{DateTime, Utc};
use herald_core::model::{Attempt, DeliveryStatus, Endpoint, Message};
use herald_core::{AppId, AttemptId, EndpointId, MessageId};

use crate::{DeliveryCounts, MessageFilter, Page, PageRequest, Result};

/// A message as one endpoint sees it: the message and its delivery there.
#[derive(Debug, Clone)]
pub struct EndpointMessage {
    pub message: Message,
    pub status: DeliveryStatus,
    /// When the next attempt is due, while the delivery is pending.
    pub next_attempt: Option<DateTime<Utc>>,
}

/// An endpoint a message was fanned out to, with that delivery's state.
#[derive(Debug, Clone)]
pub struct MessageDestination {
    pub endpoint: Endpoint,
    pub status: DeliveryStatus,
    pub next_attempt: Option<DateTime<Utc>>,
}

/// Which deliveries a stats or list call counts: those of messages created
/// in `[since, until)`; `None` leaves that side open.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeRange {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// How a delivery's stored state reads in Svix's terms: a pending delivery
/// that has already been tried is `Sending` (being retried).
pub fn shown_status(stored: DeliveryStatus, attempts: u32) -> DeliveryStatus {
    match stored {
        DeliveryStatus::Pending if attempts > 0 => DeliveryStatus::Sending,
        other => other,
    }
}

#[async_trait::async_trait]
pub trait HistoryStore: Send + Sync {
    async fn get_attempt(&self, app_id: &AppId, msg_id: &MessageId, attempt_id: &str) -> Result<Attempt>;
    /// Empties the stored payload (it then reads as expunged); the message,
    /// its deliveries and attempts stay. A message still pending delivery
    /// is refused ([`crate::StoreError::Refused`]): it could not be sent.
    async fn expunge_message_content(&self, app_id: &AppId, msg_id: &MessageId) -> Result<()>;
    /// Empties the response body recorded with an attempt.
    async fn expunge_attempt_content(&self, app_id: &AppId, msg_id: &MessageId, attempt_id: &AttemptId) -> Result<()>;
    /// The messages fanned out to an endpoint, newest first by default, with
    /// each delivery's state; `status` filters on the state as shown.
    async fn list_attempted_messages(
        &self,
        app_id: &AppId,
        endpoint_id: &EndpointId,
        filter: MessageFilter,
        status: Option<DeliveryStatus>,
        page: PageRequest,
    ) -> Result<Page<EndpointMessage>>;
    /// The endpoints a message was fanned out to, with each delivery's state.
    async fn list_attempted_destinations(
        &self,
        app_id: &AppId,
        msg_id: &MessageId,
        page: PageRequest,
    ) -> Result<Page<MessageDestination>>;
    /// Delivery counts for an endpoint, by state as shown (pending, sending
    /// = pending and already tried), over messages created in `range`.
    async fn endpoint_stats(
        &self,
        app_id: &AppId,
        endpoint_id: &EndpointId,
        range: TimeRange,
    ) -> Result<DeliveryCounts>;
}
