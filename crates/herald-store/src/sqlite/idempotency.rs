//! Responses saved for `idempotency-key`s.

use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use super::rows::ms;
use crate::{IdempotencyStore, Result, SavedResponse};

#[async_trait::async_trait]
impl IdempotencyStore for SqliteStore {
    async fn saved_response(&self, key: &str, max_age: Duration) -> Result<Option<SavedResponse>> {
        let key = key.to_owned();
        let oldest = ms(Utc::now()) - max_age.as_millis() as i64;
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT status, body, request_digest FROM idempotency WHERE key = ?1 AND created_at >= ?2",
            )?
            .query_row(params![key, oldest], |r| {
                let digest: Option<Vec<u8>> = r.get(2)?;
                Ok(SavedResponse {
                    status: r.get(0)?,
                    body: Bytes::from(r.get::<_, Vec<u8>>(1)?),
                    request_digest: digest
                        .map(|d| {
                            <[u8; 32]>::try_from(d.as_slice()).map_err(|_| {
                                rusqlite::Error::FromSqlConversionFailure(
                                    2,
                                    rusqlite::types::Type::Blob,
                                    "request digest is not 32 bytes".into(),
                                )
                            })
                        })
                        .transpose()?,
                })
            })
            .optional()?)
        })
        .await
    }

    async fn save_response(&self, key: &str, response: SavedResponse) -> Result<()> {
        let key = key.to_owned();
        self.writer
            .run(move |ctx| {
                ctx.conn
                    .prepare_cached(
                        "INSERT OR REPLACE INTO idempotency (key, status, body, created_at, request_digest) \
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![
                        key,
                        response.status,
                        &response.body[..],
                        ms(Utc::now()),
                        response.request_digest.as_ref().map(|d| &d[..])
                    ])?;
                Ok(())
            })
            .await
    }
}
