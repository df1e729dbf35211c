//! App-scoped token rows on PostgreSQL: digests only, with what each token
//! may do.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use herald_core::access::{Capability, TokenPermissions};
use herald_core::{AppId, TokenId};
use tokio_postgres::Row;

use super::PgStore;
use super::endpoints::hold_app;
use super::rows::{from_ms, get, opt_time_at, time_at};
use crate::{AccessStore, AppToken, Result, StoreError};

/// `capabilities` as stored: NULL for no list, else names joined by commas
/// (no capability name has one).
fn capabilities_text(p: &TokenPermissions) -> Option<String> {
    p.capabilities
        .as_ref()
        .map(|set| set.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(","))
}

/// The stored list back; a name this build does not know is corrupt data,
/// never a right quietly dropped or granted.
fn capabilities_at(r: &Row, col: usize) -> Result<Option<BTreeSet<Capability>>> {
    let Some(text) = get::<Option<&str>>(r, col)? else {
        return Ok(None);
    };
    text.split(',')
        .filter(|n| !n.is_empty())
        .map(|n| {
            Capability::parse(n)
                .ok_or_else(|| StoreError::Corrupt(format!("column capabilities: unknown capability '{n}'")))
        })
        .collect::<Result<BTreeSet<_>>>()
        .map(Some)
}

fn token_row(r: &Row) -> Result<AppToken> {
    Ok(AppToken {
        id: TokenId::from_trusted(get(r, 0)?),
        app_id: AppId::from_trusted(get(r, 1)?),
        expires_at: opt_time_at(r, 2)?,
        created_at: time_at(r, 3)?,
        permissions: TokenPermissions {
            read_only: get(r, 4)?,
            capabilities: capabilities_at(r, 5)?,
        },
    })
}

#[async_trait::async_trait]
impl AccessStore for PgStore {
    async fn create_token(
        &self,
        app_id: &AppId,
        digest: [u8; 32],
        expires_at: Option<DateTime<Utc>>,
        permissions: TokenPermissions,
    ) -> Result<AppToken> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // Held until commit, so a concurrent delete of the application
        // cannot leave this token behind.
        hold_app(&tx, app_id).await?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO api_token (id, digest, app_id, expires_at, created_at, read_only, capabilities) \
                 VALUES ($1, $2, $3, $4, herald_now_ms(), $5, $6) RETURNING created_at",
            )
            .await?;
        let id = TokenId::new();
        let row = tx
            .query_one(
                &stmt,
                &[
                    &id.as_str(),
                    &&digest[..],
                    &app_id.as_str(),
                    &expires_at.map(|t| t.timestamp_millis()),
                    &permissions.read_only,
                    &capabilities_text(&permissions),
                ],
            )
            .await?;
        let now: i64 = get(&row, 0)?;
        tx.commit().await?;
        Ok(AppToken {
            id,
            app_id: app_id.clone(),
            expires_at,
            created_at: from_ms(now).ok_or_else(|| StoreError::Corrupt("the database clock is out of range".into()))?,
            permissions,
        })
    }

    async fn token_by_digest(&self, digest: [u8; 32]) -> Result<Option<AppToken>> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "SELECT id, app_id, expires_at, created_at, read_only, capabilities FROM api_token WHERE digest = $1",
            )
            .await?;
        c.query_opt(&stmt, &[&&digest[..]])
            .await?
            .map(|r| token_row(&r))
            .transpose()
    }

    async fn revoke_token(&self, id: &TokenId) -> Result<()> {
        let c = self.client().await?;
        let stmt = c.prepare_cached("DELETE FROM api_token WHERE id = $1").await?;
        if c.execute(&stmt, &[&id.as_str()]).await? == 0 {
            return Err(StoreError::NotFound("token"));
        }
        Ok(())
    }

    async fn revoke_app_tokens(&self, app_id: &AppId) -> Result<u64> {
        let c = self.client().await?;
        let stmt = c.prepare_cached("DELETE FROM api_token WHERE app_id = $1").await?;
        Ok(c.execute(&stmt, &[&app_id.as_str()]).await?)
    }
}
