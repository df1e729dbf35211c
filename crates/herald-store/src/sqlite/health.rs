//! [`HealthStore`] on SQLite: the `endpoint_health` table holds a row only
//! while an endpoint is failing.

use herald_core::health::FailureStreak;
use herald_core::{AppId, EndpointId};
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use super::rows::time_at;
use crate::{HealthStore, Result};

const SELECT_STREAK: &str = "SELECT failing_since, failed_messages FROM endpoint_health WHERE endpoint_id = ?1";

/// The endpoint's streak, read inside another read (the delivery targets).
pub(super) fn streak_of(c: &Connection, id: &EndpointId) -> Result<Option<FailureStreak>> {
    Ok(c.prepare_cached(SELECT_STREAK)?
        .query_row([id.as_str()], streak_row)
        .optional()?)
}

fn streak_row(r: &rusqlite::Row) -> rusqlite::Result<FailureStreak> {
    Ok(FailureStreak {
        since: time_at(r, 0)?,
        failed_messages: r.get::<_, i64>(1)?.clamp(0, u32::MAX.into()) as u32,
    })
}

#[async_trait::async_trait]
impl HealthStore for SqliteStore {
    async fn endpoint_failed(&self, app_id: &AppId, id: &EndpointId, given_up: u32) -> Result<Option<FailureStreak>> {
        let (app_id, id) = (app_id.clone(), id.clone());
        self.writer
            .run(move |ctx| {
                let now = ctx.now()?;
                // Only for an endpoint that exists: a late outcome of a
                // deleted one must not leave a row behind (no row, `None`).
                Ok(ctx
                    .conn
                    .prepare_cached(
                        "INSERT INTO endpoint_health (endpoint_id, app_id, failing_since, failed_messages) \
                         SELECT id, app_id, ?3, ?4 FROM endpoint WHERE id = ?1 AND app_id = ?2 \
                         ON CONFLICT (endpoint_id) DO UPDATE SET failed_messages = failed_messages + ?4 \
                         RETURNING failing_since, failed_messages",
                    )?
                    .query_row(params![id.as_str(), app_id.as_str(), now, given_up], streak_row)
                    .optional()?)
            })
            .await
    }

    async fn endpoint_succeeded(&self, id: &EndpointId) -> Result<()> {
        let id = id.clone();
        self.writer
            .run(move |ctx| {
                ctx.conn
                    .prepare_cached("DELETE FROM endpoint_health WHERE endpoint_id = ?1")?
                    .execute([id.as_str()])?;
                Ok(())
            })
            .await
    }

    async fn failure_streak(&self, id: &EndpointId) -> Result<Option<FailureStreak>> {
        let id = id.clone();
        self.read(move |c| streak_of(c, &id)).await
    }
}
