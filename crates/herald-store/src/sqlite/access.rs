//! App-scoped token rows: digests only, with what each token may do.

use std::collections::BTreeSet;

use herald_core::access::{Capability, TokenPermissions};
use herald_core::{AppId, TokenId};
use rusqlite::types::Type;
use rusqlite::{OptionalExtension, Row, params};

use super::SqliteStore;
use super::rows::{from_ms, opt_time_at, select_app, time_at};
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
fn capabilities_at(r: &Row, col: usize) -> rusqlite::Result<Option<BTreeSet<Capability>>> {
    let Some(text) = r.get::<_, Option<String>>(col)? else {
        return Ok(None);
    };
    text.split(',')
        .filter(|n| !n.is_empty())
        .map(|n| {
            Capability::parse(n).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(col, Type::Text, format!("unknown capability '{n}'").into())
            })
        })
        .collect::<rusqlite::Result<BTreeSet<_>>>()
        .map(Some)
}

#[async_trait::async_trait]
impl AccessStore for SqliteStore {
    async fn create_token(
        &self,
        app_id: &AppId,
        digest: [u8; 32],
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
        permissions: TokenPermissions,
    ) -> Result<AppToken> {
        let app_id = app_id.clone();
        self.writer
            .run(move |ctx| {
                select_app(&ctx.conn, &app_id)?;
                let now = ctx.now()?;
                let token = AppToken {
                    id: TokenId::new(),
                    app_id,
                    expires_at,
                    created_at: from_ms(now)
                        .ok_or_else(|| StoreError::Corrupt("the database clock is out of range".into()))?,
                    permissions,
                };
                ctx.conn
                    .prepare_cached(
                        "INSERT INTO api_token (id, digest, app_id, expires_at, created_at, read_only, capabilities) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?
                    .execute(params![
                        token.id.as_str(),
                        &digest[..],
                        token.app_id.as_str(),
                        expires_at.map(|t| t.timestamp_millis()),
                        now,
                        token.permissions.read_only,
                        capabilities_text(&token.permissions),
                    ])?;
                Ok(token)
            })
            .await
    }

    async fn token_by_digest(&self, digest: [u8; 32]) -> Result<Option<AppToken>> {
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT id, app_id, expires_at, created_at, read_only, capabilities FROM api_token WHERE digest = ?1",
            )?
            .query_row([&digest[..]], |r| {
                Ok(AppToken {
                    id: TokenId::from_trusted(r.get(0)?),
                    app_id: AppId::from_trusted(r.get(1)?),
                    expires_at: opt_time_at(r, 2)?,
                    created_at: time_at(r, 3)?,
                    permissions: TokenPermissions {
                        read_only: r.get(4)?,
                        capabilities: capabilities_at(r, 5)?,
                    },
                })
            })
            .optional()?)
        })
        .await
    }

    async fn revoke_token(&self, id: &TokenId) -> Result<()> {
        let id = id.clone();
        self.writer
            .run(move |ctx| {
                let n = ctx
                    .conn
                    .prepare_cached("DELETE FROM api_token WHERE id = ?1")?
                    .execute([id.as_str()])?;
                if n == 0 {
                    return Err(StoreError::NotFound("token"));
                }
                Ok(())
            })
            .await
    }

    async fn revoke_app_tokens(&self, app_id: &AppId) -> Result<u64> {
        let app_id = app_id.clone();
        self.writer
            .run(move |ctx| {
                let n = ctx
                    .conn
                    .prepare_cached("DELETE FROM api_token WHERE app_id = ?1")?
                    .execute([app_id.as_str()])?;
                Ok(n as u64)
            })
            .await
    }
}
