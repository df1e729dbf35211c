//! PostgreSQL: ResourceStore.

use crate::Result;
use chrono::{DateTime, Utc};
use herald_core::model::{
    Application, Attempt, DeliveryStatus, DeliveryTarget, Endpoint, EndpointSettings, EventType, Message, Metadata,
};
use herald_core::signing::EndpointSecret;
use herald_core::validate::{EventTypeName, Uid};
use herald_core::{AppId, EndpointId, MessageId};

use super::PgStore;
#[allow(unused_imports)]
use crate::*;

#[async_trait::async_trait]
impl crate::ResourceStore for PgStore {
    async fn create_app(&self, app: NewApplication) -> Result<Application> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn get_app(&self, id_or_uid: &str) -> Result<Application> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn list_apps(&self, page: PageRequest) -> Result<Page<Application>> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn update_app(&self, app: Application) -> Result<Application> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn delete_app(&self, id: &AppId) -> Result<()> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn create_endpoint(&self, app_id: &AppId, ep: NewEndpoint) -> Result<Endpoint> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn get_endpoint(&self, app_id: &AppId, id_or_uid: &str) -> Result<Endpoint> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn list_endpoints(&self, app_id: &AppId, page: PageRequest) -> Result<Page<Endpoint>> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn update_endpoint(&self, ep: Endpoint) -> Result<Endpoint> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn disable_endpoint(&self, app_id: &AppId, id: &EndpointId) -> Result<bool> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn delete_endpoint(&self, app_id: &AppId, id: &EndpointId) -> Result<()> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn get_endpoint_secret(&self, app_id: &AppId, id: &EndpointId) -> Result<EndpointSecret> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn rotate_endpoint_secret(
        &self,
        app_id: &AppId,
        id: &EndpointId,
        new: EndpointSecret,
        grace: std::time::Duration,
    ) -> Result<()> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn delivery_targets(&self, ids: Vec<EndpointId>) -> Result<Vec<DeliveryTarget>> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn endpoint_counts(&self, app_id: &AppId, id: &EndpointId) -> Result<DeliveryCounts> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn create_event_type(&self, et: EventType) -> Result<EventType> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn get_event_type(&self, name: &str) -> Result<EventType> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn list_event_types(&self, page: PageRequest, include_archived: bool) -> Result<Page<EventType>> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn update_event_type(&self, et: EventType) -> Result<EventType> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn delete_event_type(&self, name: &str, expunge: bool) -> Result<()> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn missing_event_types(&self, names: Vec<EventTypeName>) -> Result<Vec<EventTypeName>> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn get_message(&self, app_id: &AppId, id_or_event_id: &str) -> Result<Message> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn list_messages(&self, app_id: &AppId, filter: MessageFilter, page: PageRequest) -> Result<Page<Message>> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn list_attempts_by_endpoint(
        &self,
        app_id: &AppId,
        endpoint_id: &EndpointId,
        filter: AttemptFilter,
        page: PageRequest,
    ) -> Result<Page<Attempt>> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn list_attempts_by_msg(
        &self,
        app_id: &AppId,
        msg_id: &MessageId,
        filter: AttemptFilter,
        page: PageRequest,
    ) -> Result<Page<Attempt>> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
}
