//! Applications, endpoints, event types, and the read side of messages and
//! attempts: what the API reads and writes.

use chrono::{DateTime, Utc};
use herald_core::model::{
    Application, Attempt, DeliveryStatus, DeliveryTarget, Endpoint, EndpointSettings, EventType, Message, Metadata,
};
use herald_core::signing::EndpointSecret;
use herald_core::validate::{EventTypeName, Uid};
use herald_core::{AppId, EndpointId, MessageId};

use crate::Result;

/// Listing order; Svix lists applications and endpoints oldest first and
/// messages and attempts newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Ascending,
    Descending,
}

/// A page request. `iterator` is an id from a previous page; a leading `-`
/// (as handed out in `prev_iterator`) walks back towards the start.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub limit: usize,
    pub iterator: Option<String>,
    pub order: Order,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub iterator: Option<String>,
    pub prev_iterator: Option<String>,
    pub done: bool,
}

pub struct NewApplication {
    pub uid: Option<Uid>,
    pub name: String,
    pub metadata: Metadata,
    pub throttle_rate: Option<u32>,
}

/// An endpoint as the API hands it to the store; the store adds ids and times.
pub struct NewEndpoint {
    pub uid: Option<Uid>,
    pub settings: EndpointSettings,
    pub secret: EndpointSecret,
}

#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub channel: Option<String>,
    pub before: Option<DateTime<Utc>>,
    pub after: Option<DateTime<Utc>>,
    pub event_types: Vec<String>,
    pub tag: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AttemptFilter {
    pub status: Option<DeliveryStatus>,
    /// 0 (no response), 100, 200, 300, 400 or 500.
    pub status_code_class: Option<u16>,
    pub before: Option<DateTime<Utc>>,
    pub after: Option<DateTime<Utc>>,
    pub event_types: Vec<String>,
    pub endpoint_id: Option<String>,
    pub channel: Option<String>,
    /// Only attempts of messages carrying this tag.
    pub tag: Option<String>,
}

/// Per-status delivery counts for one endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    pub success: u64,
    pub pending: u64,
    pub sending: u64,
    pub fail: u64,
    pub canceled: u64,
}

#[async_trait::async_trait]
pub trait ResourceStore: Send + Sync {
    async fn create_app(&self, app: NewApplication) -> Result<Application>;
    async fn get_app(&self, id_or_uid: &str) -> Result<Application>;
    async fn list_apps(&self, page: PageRequest) -> Result<Page<Application>>;
    /// Replaces every mutable field; the id and creation time stay.
    async fn update_app(&self, app: Application) -> Result<Application>;
    /// Deletes the application with its endpoints, messages and history.
    async fn delete_app(&self, id: &AppId) -> Result<()>;

    // Endpoints
    async fn create_endpoint(&self, app_id: &AppId, ep: NewEndpoint) -> Result<Endpoint>;
    async fn get_endpoint(&self, app_id: &AppId, id_or_uid: &str) -> Result<Endpoint>;
    async fn list_endpoints(&self, app_id: &AppId, page: PageRequest) -> Result<Page<Endpoint>>;
    /// Replaces the uid and the settings; the id, application and creation
    /// time stay.
    async fn update_endpoint(&self, ep: Endpoint) -> Result<Endpoint>;
    /// Disables the endpoint unless it already is, changing nothing else:
    /// the engine's own change (an endpoint that answered `410 Gone`), made
    /// without reading the settings first so a concurrent update is never
    /// overwritten. `true` when this call disabled it.
    async fn disable_endpoint(&self, app_id: &AppId, id: &EndpointId) -> Result<bool>;
    async fn delete_endpoint(&self, app_id: &AppId, id: &EndpointId) -> Result<()>;
    async fn get_endpoint_secret(&self, app_id: &AppId, id: &EndpointId) -> Result<EndpointSecret>;
    /// Makes `new` the endpoint's secret; the one it replaces keeps signing
    /// beside it for `grace` from the database's now (SPEC §4). Secrets
    /// whose grace ended are dropped. With [`crate::MAX_RETIRING_SECRETS`]
    /// still in grace, a rotation with a grace period is refused
    /// ([`crate::StoreError::Refused`]): every one of them signs each request.
    async fn rotate_endpoint_secret(
        &self,
        app_id: &AppId,
        id: &EndpointId,
        new: EndpointSecret,
        grace: std::time::Duration,
    ) -> Result<()>;
    /// What the engine needs to deliver to these endpoints, with the
    /// secrets still in a rotation's grace period; missing ids are left out.
    async fn delivery_targets(&self, ids: Vec<EndpointId>) -> Result<Vec<DeliveryTarget>>;
    async fn endpoint_counts(&self, app_id: &AppId, id: &EndpointId) -> Result<DeliveryCounts>;

    // Event types
    async fn create_event_type(&self, et: EventType) -> Result<EventType>;
    async fn get_event_type(&self, name: &str) -> Result<EventType>;
    async fn list_event_types(&self, page: PageRequest, include_archived: bool) -> Result<Page<EventType>>;
    async fn update_event_type(&self, et: EventType) -> Result<EventType>;
    async fn delete_event_type(&self, name: &str, expunge: bool) -> Result<()>;
    /// Which of `names` are not event types (archived ones count as
    /// existing), in the order given; linear in the number of names.
    async fn missing_event_types(&self, names: Vec<EventTypeName>) -> Result<Vec<EventTypeName>>;

    // Messages
    async fn get_message(&self, app_id: &AppId, id_or_event_id: &str) -> Result<Message>;
    async fn list_messages(&self, app_id: &AppId, filter: MessageFilter, page: PageRequest) -> Result<Page<Message>>;

    // Attempts
    async fn list_attempts_by_endpoint(
        &self,
        app_id: &AppId,
        endpoint_id: &EndpointId,
        filter: AttemptFilter,
        page: PageRequest,
    ) -> Result<Page<Attempt>>;
    async fn list_attempts_by_msg(
        &self,
        app_id: &AppId,
        msg_id: &MessageId,
        filter: AttemptFilter,
        page: PageRequest,
    ) -> Result<Page<Attempt>>;
}
