//! PostgreSQL: RetentionStore.

use crate::Result;
use std::time::Duration;

use super::PgStore;
#[allow(unused_imports)]
use crate::*;

#[async_trait::async_trait]
impl crate::RetentionStore for PgStore {
    async fn prune_messages(&self, max_age: Duration, batch: usize, from: PruneCursor) -> Result<PrunedMessages> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn expunge_payloads(
        &self,
        default_retention: Duration,
        batch: usize,
        from: PruneCursor,
    ) -> Result<ExpungedPayloads> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn prune_idempotency(&self, max_age: Duration, batch: usize) -> Result<u64> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn prune_expired_tokens(&self, batch: usize) -> Result<u64> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
}
