//! PostgreSQL: AccessStore.

use crate::Result;
use chrono::{DateTime, Utc};
use herald_core::access::TokenPermissions;
use herald_core::{AppId, TokenId};

use super::PgStore;
#[allow(unused_imports)]
use crate::*;

#[async_trait::async_trait]
impl crate::AccessStore for PgStore {
    async fn create_token(
        &self,
        app_id: &AppId,
        digest: [u8; 32],
        expires_at: Option<DateTime<Utc>>,
        permissions: TokenPermissions,
    ) -> Result<AppToken> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn token_by_digest(&self, digest: [u8; 32]) -> Result<Option<AppToken>> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn revoke_token(&self, id: &TokenId) -> Result<()> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn revoke_app_tokens(&self, app_id: &AppId) -> Result<u64> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
}
