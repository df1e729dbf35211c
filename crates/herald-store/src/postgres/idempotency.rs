//! PostgreSQL: IdempotencyStore.

use crate::Result;
use bytes::Bytes;
use std::time::Duration;

use super::PgStore;
#[allow(unused_imports)]
use crate::*;

#[async_trait::async_trait]
impl crate::IdempotencyStore for PgStore {
    async fn saved_response(&self, key: &str, max_age: Duration) -> Result<Option<SavedResponse>> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn save_response(&self, key: &str, response: SavedResponse) -> Result<()> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
}
