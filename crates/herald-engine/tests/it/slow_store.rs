//! A store whose outcome writes are slow: everything else goes straight to
//! the SQLite store inside. It shows what the engine does while an outcome
//! is not yet durable.

use std::sync::Arc;
use std::time::Duration;

use herald_core::model::{Application, Attempt, DeliveryTarget, Endpoint, EventType, Message};
use herald_core::signing::EndpointSecret;
use herald_core::{AppId, EndpointId, MessageId};
use herald_store::{
    AttemptFilter, Change, DeliveryCounts, DeliveryJob, DeliveryQueue, Held, IdempotencyStore, Ingested, Lease,
    LeaseResult, MessageFilter, NewApplication, NewEndpoint, NewMessage, NodeId, Outcome, Page, PageRequest,
    PruneCursor, PrunedMessages, ResourceStore, Result, RetentionStore, SavedResponse, Store,
};
use tokio::sync::broadcast;

pub struct SlowRecords {
    pub inner: Arc<dyn Store>,
    /// How long every `record_outcomes` waits before it writes.
    pub delay: Duration,
}

#[async_trait::async_trait]
impl Store for SlowRecords {
    fn changes(&self) -> broadcast::Receiver<Change> {
        self.inner.changes()
    }
    async fn close(&self) {
        self.inner.close().await
    }
}

#[async_trait::async_trait]
impl ResourceStore for SlowRecords {
    async fn create_app(&self, app: NewApplication) -> Result<Application> {
        self.inner.create_app(app).await
    }
    async fn get_app(&self, id_or_uid: &str) -> Result<Application> {
        self.inner.get_app(id_or_uid).await
    }
    async fn list_apps(&self, page: PageRequest) -> Result<Page<Application>> {
        self.inner.list_apps(page).await
    }
    async fn update_app(&self, app: Application) -> Result<Application> {
        self.inner.update_app(app).await
    }
    async fn delete_app(&self, id: &AppId) -> Result<()> {
        self.inner.delete_app(id).await
    }
    async fn create_endpoint(&self, app_id: &AppId, ep: NewEndpoint) -> Result<Endpoint> {
        self.inner.create_endpoint(app_id, ep).await
    }
    async fn get_endpoint(&self, app_id: &AppId, id_or_uid: &str) -> Result<Endpoint> {
        self.inner.get_endpoint(app_id, id_or_uid).await
    }
    async fn list_endpoints(&self, app_id: &AppId, page: PageRequest) -> Result<Page<Endpoint>> {
        self.inner.list_endpoints(app_id, page).await
    }
    async fn update_endpoint(&self, ep: Endpoint) -> Result<Endpoint> {
        self.inner.update_endpoint(ep).await
    }
    async fn delete_endpoint(&self, app_id: &AppId, id: &EndpointId) -> Result<()> {
        self.inner.delete_endpoint(app_id, id).await
    }
    async fn get_endpoint_secret(&self, app_id: &AppId, id: &EndpointId) -> Result<EndpointSecret> {
        self.inner.get_endpoint_secret(app_id, id).await
    }
    async fn delivery_targets(&self, ids: Vec<EndpointId>) -> Result<Vec<DeliveryTarget>> {
        self.inner.delivery_targets(ids).await
    }
    async fn endpoint_counts(&self, app_id: &AppId, id: &EndpointId) -> Result<DeliveryCounts> {
        self.inner.endpoint_counts(app_id, id).await
    }
    async fn create_event_type(&self, et: EventType) -> Result<EventType> {
        self.inner.create_event_type(et).await
    }
    async fn get_event_type(&self, name: &str) -> Result<EventType> {
        self.inner.get_event_type(name).await
    }
    async fn list_event_types(&self, page: PageRequest, include_archived: bool) -> Result<Page<EventType>> {
        self.inner.list_event_types(page, include_archived).await
    }
    async fn update_event_type(&self, et: EventType) -> Result<EventType> {
        self.inner.update_event_type(et).await
    }
    async fn delete_event_type(&self, name: &str, expunge: bool) -> Result<()> {
        self.inner.delete_event_type(name, expunge).await
    }
    async fn get_message(&self, app_id: &AppId, id_or_event_id: &str) -> Result<Message> {
        self.inner.get_message(app_id, id_or_event_id).await
    }
    async fn list_messages(&self, app_id: &AppId, filter: MessageFilter, page: PageRequest) -> Result<Page<Message>> {
        self.inner.list_messages(app_id, filter, page).await
    }
    async fn list_attempts_by_endpoint(
        &self,
        app_id: &AppId,
        endpoint_id: &EndpointId,
        filter: AttemptFilter,
        page: PageRequest,
    ) -> Result<Page<Attempt>> {
        self.inner
            .list_attempts_by_endpoint(app_id, endpoint_id, filter, page)
            .await
    }
    async fn list_attempts_by_msg(
        &self,
        app_id: &AppId,
        msg_id: &MessageId,
        filter: AttemptFilter,
        page: PageRequest,
    ) -> Result<Page<Attempt>> {
        self.inner.list_attempts_by_msg(app_id, msg_id, filter, page).await
    }
}

#[async_trait::async_trait]
impl DeliveryQueue for SlowRecords {
    async fn ingest(&self, msg: NewMessage) -> Result<Ingested> {
        self.inner.ingest(msg).await
    }
    async fn claim_due(&self, lease: &Lease, limit: usize, max_bytes: usize) -> Result<Vec<DeliveryJob>> {
        self.inner.claim_due(lease, limit, max_bytes).await
    }
    async fn next_due(&self) -> Result<Option<Duration>> {
        self.inner.next_due().await
    }
    async fn renew(&self, lease: &Lease, held: Vec<Held>) -> Result<Vec<LeaseResult>> {
        self.inner.renew(lease, held).await
    }
    async fn record_outcomes(&self, lease: &Lease, outcomes: Vec<Outcome>) -> Result<Vec<LeaseResult>> {
        tokio::time::sleep(self.delay).await;
        self.inner.record_outcomes(lease, outcomes).await
    }
    async fn release(&self, lease: &Lease, held: Vec<Held>) -> Result<Vec<LeaseResult>> {
        self.inner.release(lease, held).await
    }
    async fn recover(&self, owner: &NodeId) -> Result<u64> {
        self.inner.recover(owner).await
    }
    async fn park(&self, lease: &Lease, hold: Duration, held: Vec<Held>) -> Result<Vec<LeaseResult>> {
        self.inner.park(lease, hold, held).await
    }
    async fn park_endpoints(&self, lease: &Lease, hold: Duration, endpoints: Vec<EndpointId>) -> Result<u64> {
        self.inner.park_endpoints(lease, hold, endpoints).await
    }
    async fn claim_parked(
        &self,
        lease: &Lease,
        endpoint: EndpointId,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<DeliveryJob>> {
        self.inner.claim_parked(lease, endpoint, limit, max_bytes).await
    }
    async fn renew_parked(&self, lease: &Lease, hold: Duration, endpoints: Vec<EndpointId>) -> Result<u64> {
        self.inner.renew_parked(lease, hold, endpoints).await
    }
    async fn probe_parked(&self, lease: &Lease, endpoint: EndpointId) -> Result<Option<DeliveryJob>> {
        self.inner.probe_parked(lease, endpoint).await
    }
    async fn unpark(&self, lease: &Lease, endpoints: Vec<EndpointId>) -> Result<u64> {
        self.inner.unpark(lease, endpoints).await
    }
}

#[async_trait::async_trait]
impl IdempotencyStore for SlowRecords {
    async fn saved_response(&self, key: &str, max_age: Duration) -> Result<Option<SavedResponse>> {
        self.inner.saved_response(key, max_age).await
    }
    async fn save_response(&self, key: &str, response: SavedResponse) -> Result<()> {
        self.inner.save_response(key, response).await
    }
}

#[async_trait::async_trait]
impl RetentionStore for SlowRecords {
    async fn prune_messages(&self, max_age: Duration, batch: usize, from: PruneCursor) -> Result<PrunedMessages> {
        self.inner.prune_messages(max_age, batch, from).await
    }
    async fn expunge_payloads(&self, batch: usize) -> Result<u64> {
        self.inner.expunge_payloads(batch).await
    }
    async fn prune_idempotency(&self, max_age: Duration, batch: usize) -> Result<u64> {
        self.inner.prune_idempotency(max_age, batch).await
    }
}
