//! Herald's storage: one [`Store`] trait that the API and the delivery engine
//! talk to, and its implementations. This is the only crate that knows SQL.
//!
//! The trait is shaped by the delivery engine's needs as much as by the API's:
//! messages are ingested with their fan-out in one call (so an implementation
//! can group-commit many of them under one fsync), due deliveries are claimed
//! in batches with a lease, and attempt outcomes are recorded in batches.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use herald_core::model::{
    Application, Attempt, DeliveryStatus, DeliveryTarget, Endpoint, EventType, Message, Metadata,
};
use herald_core::signing::EndpointSecret;
use herald_core::transform::PayloadTemplate;
use herald_core::validate::{Channel, EndpointUrl, EventTypeName, Uid};
use herald_core::{AppId, EndpointId, MessageId};

mod crypto;
pub mod sqlite;

pub use crypto::{EncryptionKey, KeyError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("the store is shut down")]
    Closed,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("could not commit: {0}")]
    Commit(String),
    #[error("storage I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("secret encryption: {0}")]
    Crypto(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

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
    pub url: EndpointUrl,
    pub description: String,
    pub metadata: Metadata,
    pub disabled: bool,
    pub filter_types: Option<Vec<EventTypeName>>,
    pub channels: Option<Vec<Channel>>,
    pub throttle_rate: Option<u32>,
    pub headers: BTreeMap<String, String>,
    pub timeout: Duration,
    pub payload_template: Option<PayloadTemplate>,
    pub secret: EndpointSecret,
}

pub struct NewMessage {
    pub app: AppRef,
    pub event_type: EventTypeName,
    pub event_id: Option<Uid>,
    pub channels: Option<Vec<Channel>>,
    pub tags: Option<Vec<String>>,
    pub payload: Bytes,
    /// Claim the fanned-out deliveries for this node until this time, so the
    /// engine can send them straight from memory without reading them back.
    /// `None` leaves them for whichever node claims due work next.
    pub claim_until: Option<DateTime<Utc>>,
}

/// How a request names an application: its id or its `uid`.
#[derive(Debug, Clone)]
pub struct AppRef(pub String);

/// A message just committed, with the deliveries its fan-out created.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub message: Message,
    pub deliveries: Vec<DeliveryJob>,
}

/// One message on its way to one endpoint: what the engine holds in memory.
#[derive(Debug, Clone)]
pub struct DeliveryJob {
    pub delivery_id: i64,
    pub msg_id: MessageId,
    pub app_id: AppId,
    pub endpoint_id: EndpointId,
    pub event_type: EventTypeName,
    pub payload: Bytes,
    /// Attempts already made.
    pub attempts: u32,
    pub due_at: DateTime<Utc>,
    /// When the message was created.
    pub msg_created_at: DateTime<Utc>,
    /// When the first attempt of this delivery started; `None` before it.
    pub first_attempt_at: Option<DateTime<Utc>>,
}

/// What became of a delivery after an attempt.
#[derive(Debug, Clone)]
pub enum DeliveryState {
    Succeeded,
    /// Try again at `at`. `keep_claim_until` keeps this node's claim (the
    /// engine holds the retry in memory); `None` hands it back to the store.
    Retry {
        at: DateTime<Utc>,
        keep_claim_until: Option<DateTime<Utc>>,
    },
    /// The schedule is exhausted or the endpoint is gone.
    Failed,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub delivery_id: i64,
    /// `None` when no request was made (the endpoint was deleted, say).
    pub attempt: Option<Attempt>,
    pub state: DeliveryState,
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

/// A response saved for an `idempotency-key`, replayed to a repeated request.
#[derive(Debug, Clone)]
pub struct SavedResponse {
    pub status: u16,
    pub body: Bytes,
}

#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    // Applications
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
    async fn update_endpoint(&self, ep: Endpoint) -> Result<Endpoint>;
    async fn delete_endpoint(&self, app_id: &AppId, id: &EndpointId) -> Result<()>;
    async fn get_endpoint_secret(&self, app_id: &AppId, id: &EndpointId) -> Result<EndpointSecret>;
    /// What the engine needs to deliver to these endpoints; missing ids are left out.
    async fn delivery_targets(&self, ids: Vec<EndpointId>) -> Result<Vec<DeliveryTarget>>;
    async fn endpoint_counts(&self, app_id: &AppId, id: &EndpointId) -> Result<DeliveryCounts>;

    // Event types
    async fn create_event_type(&self, et: EventType) -> Result<EventType>;
    async fn get_event_type(&self, name: &str) -> Result<EventType>;
    async fn list_event_types(&self, page: PageRequest, include_archived: bool) -> Result<Page<EventType>>;
    async fn update_event_type(&self, et: EventType) -> Result<EventType>;
    async fn delete_event_type(&self, name: &str, expunge: bool) -> Result<()>;

    // Messages
    /// Stores a message and one delivery per subscribed endpoint, durably,
    /// before returning.
    async fn ingest(&self, msg: NewMessage) -> Result<Ingested>;
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

    // Delivery engine
    /// Claims up to `limit` pending deliveries due by `due_by` that no live
    /// claim holds (never claimed, released, or lapsed), marking them claimed
    /// until `claim_until`.
    async fn claim_due(
        &self,
        due_by: DateTime<Utc>,
        claim_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DeliveryJob>>;
    /// The earliest due time among unclaimed pending deliveries. Lapsed
    /// claims are rare (a holder died or could not record an outcome); the
    /// loader finds them on its periodic look rather than by this time.
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>>;
    /// Extends this node's live claims on deliveries it still holds; lapsed,
    /// released or finished deliveries are left alone.
    async fn extend_claims(&self, delivery_ids: Vec<i64>, until: DateTime<Utc>) -> Result<u64>;
    /// Records attempts and moves pending deliveries to their new state, in
    /// one commit. A delivery no longer pending (canceled) keeps its state.
    async fn record_outcomes(&self, outcomes: Vec<Outcome>) -> Result<()>;
    /// Drops claims so the deliveries can be claimed again (shutdown, or a
    /// single-node store starting up after a crash).
    async fn release_claims(&self, delivery_ids: Option<Vec<i64>>) -> Result<u64>;

    // Idempotency
    async fn saved_response(&self, key: &str, max_age: Duration) -> Result<Option<SavedResponse>>;
    async fn save_response(&self, key: &str, response: SavedResponse) -> Result<()>;

    /// Flushes and closes; later calls fail with [`StoreError::Closed`].
    async fn close(&self);
}
