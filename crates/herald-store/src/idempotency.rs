//! Responses saved for `idempotency-key`s.

use std::time::Duration;

use bytes::Bytes;

use crate::Result;

/// A response saved for an `idempotency-key`, replayed to a repeated request.
#[derive(Debug, Clone)]
pub struct SavedResponse {
    pub status: u16,
    pub body: Bytes,
}

#[async_trait::async_trait]
pub trait IdempotencyStore: Send + Sync {
    async fn saved_response(&self, key: &str, max_age: Duration) -> Result<Option<SavedResponse>>;
    async fn save_response(&self, key: &str, response: SavedResponse) -> Result<()>;
}
