//! Responses saved for `idempotency-key`s, on PostgreSQL. Their age is
//! told by the database's clock, both when saved and when looked up, so
//! nodes whose clocks differ agree on when a key expires.

use std::time::Duration;

use bytes::Bytes;

use super::PgStore;
use super::rows::{get, int, ttl_ms};
use crate::{IdempotencyStore, Result, SavedResponse, StoreError};

#[async_trait::async_trait]
impl IdempotencyStore for PgStore {
    async fn saved_response(&self, key: &str, max_age: Duration) -> Result<Option<SavedResponse>> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "SELECT status, body, request_digest FROM idempotency \
                 WHERE key = $1 AND created_at >= herald_now_ms() - $2",
            )
            .await?;
        let Some(r) = c.query_opt(&stmt, &[&key, &ttl_ms(max_age)]).await? else {
            return Ok(None);
        };
        let digest: Option<&[u8]> = get(&r, 2)?;
        Ok(Some(SavedResponse {
            status: int(&r, 0)?,
            body: Bytes::copy_from_slice(get::<&[u8]>(&r, 1)?),
            request_digest: digest
                .map(|d| {
                    <[u8; 32]>::try_from(d)
                        .map_err(|_| StoreError::Corrupt("column request_digest: not 32 bytes".into()))
                })
                .transpose()?,
        }))
    }

    async fn save_response(&self, key: &str, response: SavedResponse) -> Result<()> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "INSERT INTO idempotency (key, status, body, created_at, request_digest) \
                 VALUES ($1, $2, $3, herald_now_ms(), $4) \
                 ON CONFLICT (key) DO UPDATE SET status = EXCLUDED.status, body = EXCLUDED.body, \
                 created_at = EXCLUDED.created_at, request_digest = EXCLUDED.request_digest",
            )
            .await?;
        c.execute(
            &stmt,
            &[
                &key,
                &i64::from(response.status),
                &&response.body[..],
                &response.request_digest.as_ref().map(|d| &d[..]),
            ],
        )
        .await?;
        Ok(())
    }
}
