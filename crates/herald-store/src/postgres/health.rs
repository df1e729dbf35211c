//! PostgreSQL: HealthStore.

use crate::Result;
use herald_core::health::FailureStreak;
use herald_core::{AppId, EndpointId};

use super::PgStore;
#[allow(unused_imports)]
use crate::*;

#[async_trait::async_trait]
impl crate::HealthStore for PgStore {
    async fn endpoint_failed(&self, app_id: &AppId, id: &EndpointId, given_up: u32) -> Result<Option<FailureStreak>> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn endpoint_succeeded(&self, id: &EndpointId) -> Result<()> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn failure_streak(&self, id: &EndpointId) -> Result<Option<FailureStreak>> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
}
