//! PostgreSQL: RedeliveryStore.

use crate::{Result, TimeRange};
use herald_core::{AppId, EndpointId, MessageId};

use super::PgStore;
#[allow(unused_imports)]
use crate::*;

#[async_trait::async_trait]
impl crate::RedeliveryStore for PgStore {
    async fn resend(&self, app_id: &AppId, msg_id: &MessageId, endpoint_id: &EndpointId) -> Result<()> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn recover_failed(&self, app_id: &AppId, endpoint_id: &EndpointId, range: TimeRange) -> Result<u64> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn replay_missing(
        &self,
        app_id: &AppId,
        endpoint_id: &EndpointId,
        range: TimeRange,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<(u64, Option<MessageId>)> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
}
