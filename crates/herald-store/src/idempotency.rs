//! Responses saved for `idempotency-key`s.

use std::time::Duration;

use bytes::Bytes;

use crate::Result;

/// A response saved for an `idempotency-key`, replayed to a repeated request.
#[derive(Debug, Clone)]
pub struct SavedResponse {
    pub status: u16,
    pub body: Bytes,
    /// A digest of the request that got this response, so a repeat of the
    /// key with another body is told apart; `None` for responses saved
    /// before digests were kept (migration 7).
    pub request_digest: Option<[u8; 32]>,
}

#[async_trait::async_trait]
pub trait IdempotencyStore: Send + Sync {
    async fn saved_response(&self, key: &str, max_age: Duration) -> Result<Option<SavedResponse>>;
    async fn save_response(&self, key: &str, response: SavedResponse) -> Result<()>;
}
