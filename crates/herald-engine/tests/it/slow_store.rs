//! A store whose outcome writes are slow: everything else goes straight to
//! the SQLite store inside. It shows what the engine does while an outcome
//! is not yet durable.

use std::sync::Arc;
use std::time::Duration;

use herald_core::health::FailureStreak;
use herald_core::model::{Application, Attempt, DeliveryStatus, DeliveryTarget, Endpoint, EventType, Message};
use herald_core::signing::EndpointSecret;
use herald_core::{AppId, AttemptId, EndpointId, MessageId, TaskId, TokenId};
use herald_store::{
    AccessStore, AppToken, AttemptFilter, Change, DeliveryCounts, DeliveryJob, DeliveryQueue, ExpungedPayloads, Held,
    IdempotencyStore, Ingested, Lease, LeaseResult, MessageFilter, NewApplication, NewEndpoint, NewMessage, NodeId,
    Outcome, Page, PageRequest, PruneCursor, PrunedMessages, RedeliveryStore, ResourceStore, Result, RetentionStore,
    SavedResponse, Store, StoreMetrics, Task, TaskKind, TaskStatus, TaskStore, TimeRange,
};
use herald_store::{EndpointMessage, HealthStore, HistoryStore, MessageDestination};
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
    fn metrics(&self) -> &StoreMetrics {
        self.inner.metrics()
    }
    async fn close(&self) {
        self.inner.close().await
    }
}

#[async_trait::async_trait]
impl HistoryStore for SlowRecords {
    async fn get_attempt(&self, app_id: &AppId, msg_id: &MessageId, attempt_id: &str) -> Result<Attempt> {
        self.inner.get_attempt(app_id, msg_id, attempt_id).await
    }
    async fn expunge_message_content(&self, app_id: &AppId, msg_id: &MessageId) -> Result<()> {
        self.inner.expunge_message_content(app_id, msg_id).await
    }
    async fn expunge_attempt_content(&self, app_id: &AppId, msg_id: &MessageId, attempt_id: &AttemptId) -> Result<()> {
        self.inner.expunge_attempt_content(app_id, msg_id, attempt_id).await
    }
    async fn list_attempted_messages(
        &self,
        app_id: &AppId,
        endpoint_id: &EndpointId,
        filter: MessageFilter,
        status: Option<DeliveryStatus>,
        page: PageRequest,
    ) -> Result<Page<EndpointMessage>> {
        self.inner
            .list_attempted_messages(app_id, endpoint_id, filter, status, page)
            .await
    }
    async fn list_attempted_destinations(
        &self,
        app_id: &AppId,
        msg_id: &MessageId,
        page: PageRequest,
    ) -> Result<Page<MessageDestination>> {
        self.inner.list_attempted_destinations(app_id, msg_id, page).await
    }
    async fn endpoint_stats(
        &self,
        app_id: &AppId,
        endpoint_id: &EndpointId,
        range: TimeRange,
    ) -> Result<DeliveryCounts> {
        self.inner.endpoint_stats(app_id, endpoint_id, range).await
    }
}

#[async_trait::async_trait]
impl RedeliveryStore for SlowRecords {
    async fn resend(&self, app_id: &AppId, msg_id: &MessageId, endpoint_id: &EndpointId) -> Result<()> {
        self.inner.resend(app_id, msg_id, endpoint_id).await
    }
    async fn recover_failed(&self, app_id: &AppId, endpoint_id: &EndpointId, range: TimeRange) -> Result<u64> {
        self.inner.recover_failed(app_id, endpoint_id, range).await
    }
    async fn replay_missing(
        &self,
        app_id: &AppId,
        endpoint_id: &EndpointId,
        range: TimeRange,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<(u64, Option<MessageId>)> {
        self.inner
            .replay_missing(app_id, endpoint_id, range, after, limit)
            .await
    }
}

#[async_trait::async_trait]
impl TaskStore for SlowRecords {
    async fn create_task(&self, app_id: &AppId, kind: TaskKind, node: &NodeId) -> Result<Task> {
        self.inner.create_task(app_id, kind, node).await
    }
    async fn finish_task(&self, id: &TaskId, status: TaskStatus, data: serde_json::Value) -> Result<Task> {
        self.inner.finish_task(id, status, data).await
    }
    async fn get_task(&self, id: &TaskId) -> Result<Task> {
        self.inner.get_task(id).await
    }
    async fn list_tasks(&self, app_id: Option<&AppId>, page: PageRequest) -> Result<Page<Task>> {
        self.inner.list_tasks(app_id, page).await
    }
    async fn fail_interrupted_tasks(&self, node: &NodeId) -> Result<u64> {
        self.inner.fail_interrupted_tasks(node).await
    }
}

#[async_trait::async_trait]
impl AccessStore for SlowRecords {
    async fn create_token(
        &self,
        app_id: &AppId,
        digest: [u8; 32],
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
        permissions: herald_core::access::TokenPermissions,
    ) -> Result<AppToken> {
        self.inner.create_token(app_id, digest, expires_at, permissions).await
    }
    async fn token_by_digest(&self, digest: [u8; 32]) -> Result<Option<AppToken>> {
        self.inner.token_by_digest(digest).await
    }
    async fn revoke_token(&self, id: &TokenId) -> Result<()> {
        self.inner.revoke_token(id).await
    }
    async fn revoke_app_tokens(&self, app_id: &AppId) -> Result<u64> {
        self.inner.revoke_app_tokens(app_id).await
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
    async fn disable_endpoint(&self, app_id: &AppId, id: &EndpointId) -> Result<bool> {
        self.inner.disable_endpoint(app_id, id).await
    }
    async fn delete_endpoint(&self, app_id: &AppId, id: &EndpointId) -> Result<()> {
        self.inner.delete_endpoint(app_id, id).await
    }
    async fn rotate_endpoint_secret(
        &self,
        app_id: &AppId,
        id: &EndpointId,
        new: EndpointSecret,
        grace: Duration,
    ) -> Result<()> {
        self.inner.rotate_endpoint_secret(app_id, id, new, grace).await
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
    async fn missing_event_types(
        &self,
        names: Vec<herald_core::validate::EventTypeName>,
    ) -> Result<Vec<herald_core::validate::EventTypeName>> {
        self.inner.missing_event_types(names).await
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
    async fn next_due(&self, owner: &NodeId) -> Result<Option<Duration>> {
        self.inner.next_due(owner).await
    }
    async fn backlog(&self) -> Result<u64> {
        self.inner.backlog().await
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
    async fn fifo_due(&self) -> Result<herald_store::FifoDue> {
        self.inner.fifo_due().await
    }
    async fn hold_endpoints(&self, lease: &Lease, endpoints: Vec<EndpointId>) -> Result<Vec<bool>> {
        self.inner.hold_endpoints(lease, endpoints).await
    }
    async fn release_endpoints(&self, lease: &Lease, endpoints: Vec<EndpointId>) -> Result<()> {
        self.inner.release_endpoints(lease, endpoints).await
    }
    async fn claim_fifo(
        &self,
        lease: &Lease,
        endpoint: EndpointId,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<DeliveryJob>> {
        self.inner.claim_fifo(lease, endpoint, limit, max_bytes).await
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
    async fn expunge_payloads(
        &self,
        default_retention: Duration,
        batch: usize,
        from: PruneCursor,
    ) -> Result<ExpungedPayloads> {
        self.inner.expunge_payloads(default_retention, batch, from).await
    }
    async fn prune_idempotency(&self, max_age: Duration, batch: usize) -> Result<u64> {
        self.inner.prune_idempotency(max_age, batch).await
    }
    async fn prune_expired_tokens(&self, batch: usize) -> Result<u64> {
        self.inner.prune_expired_tokens(batch).await
    }
}

#[async_trait::async_trait]
impl HealthStore for SlowRecords {
    async fn endpoint_failed(&self, app_id: &AppId, id: &EndpointId, given_up: u32) -> Result<Option<FailureStreak>> {
        self.inner.endpoint_failed(app_id, id, given_up).await
    }
    async fn endpoint_succeeded(&self, id: &EndpointId) -> Result<()> {
        self.inner.endpoint_succeeded(id).await
    }
    async fn failure_streak(&self, id: &EndpointId) -> Result<Option<FailureStreak>> {
        self.inner.failure_streak(id).await
    }
}
