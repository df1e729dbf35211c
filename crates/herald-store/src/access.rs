//! App-scoped API tokens. The store keeps only a digest of each token (the
//! API hashes it; tokens are random, so a plain SHA-256 cannot be reversed),
//! the application it is scoped to, when it expires, and what it may do
//! there (Svix's `readOnly` and `capabilities`).

use chrono::{DateTime, Utc};
use herald_core::access::TokenPermissions;
use herald_core::{AppId, TokenId};

use crate::Result;

#[derive(Debug, Clone, PartialEq)]
pub struct AppToken {
    pub id: TokenId,
    pub app_id: AppId,
    /// `None`: until revoked.
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub permissions: TokenPermissions,
}

#[async_trait::async_trait]
pub trait AccessStore: Send + Sync {
    /// Stores a token's digest, scoped to an existing application, with
    /// what it may do there.
    async fn create_token(
        &self,
        app_id: &AppId,
        digest: [u8; 32],
        expires_at: Option<DateTime<Utc>>,
        permissions: TokenPermissions,
    ) -> Result<AppToken>;
    /// The token with this digest, expired or not (the caller compares the
    /// expiry); `None` when there is none, or it was revoked.
    async fn token_by_digest(&self, digest: [u8; 32]) -> Result<Option<AppToken>>;
    async fn revoke_token(&self, id: &TokenId) -> Result<()>;
    /// Revokes every token of an application; answers how many.
    async fn revoke_app_tokens(&self, app_id: &AppId) -> Result<u64>;
}
