//! PostgreSQL: HistoryStore.

use crate::{DeliveryCounts, MessageFilter, Page, PageRequest, Result};
use chrono::{DateTime, Utc};
use herald_core::model::{Attempt, DeliveryStatus, Endpoint, Message};
use herald_core::{AppId, AttemptId, EndpointId, MessageId};

use super::PgStore;
#[allow(unused_imports)]
use crate::*;

#[async_trait::async_trait]
impl crate::HistoryStore for PgStore {
    async fn get_attempt(&self, app_id: &AppId, msg_id: &MessageId, attempt_id: &str) -> Result<Attempt> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn expunge_message_content(&self, app_id: &AppId, msg_id: &MessageId) -> Result<()> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn expunge_attempt_content(&self, app_id: &AppId, msg_id: &MessageId, attempt_id: &AttemptId) -> Result<()> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn list_attempted_messages(
        &self,
        app_id: &AppId,
        endpoint_id: &EndpointId,
        filter: MessageFilter,
        status: Option<DeliveryStatus>,
        page: PageRequest,
    ) -> Result<Page<EndpointMessage>> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn list_attempted_destinations(
        &self,
        app_id: &AppId,
        msg_id: &MessageId,
        page: PageRequest,
    ) -> Result<Page<MessageDestination>> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn endpoint_stats(
        &self,
        app_id: &AppId,
        endpoint_id: &EndpointId,
        range: TimeRange,
    ) -> Result<DeliveryCounts> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
}
