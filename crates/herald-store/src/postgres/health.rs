//! [`HealthStore`] on PostgreSQL: the `endpoint_health` table holds a row
//! only while an endpoint is failing. Nodes sharing an endpoint add to one
//! streak: the upsert is a single statement, so concurrent failures each
//! count once and the first one starts the streak.

use herald_core::health::FailureStreak;
use herald_core::{AppId, EndpointId};
use tokio_postgres::Row;

use super::PgStore;
use super::rows::{get, time_at};
use crate::{HealthStore, Result};

fn streak_row(r: &Row) -> Result<FailureStreak> {
    Ok(FailureStreak {
        since: time_at(r, 0)?,
        // Saturating, as on SQLite: the count only ever grows from zero.
        failed_messages: get::<i64>(r, 1)?.clamp(0, u32::MAX.into()) as u32,
    })
}

#[async_trait::async_trait]
impl HealthStore for PgStore {
    async fn endpoint_failed(&self, app_id: &AppId, id: &EndpointId, given_up: u32) -> Result<Option<FailureStreak>> {
        let c = self.client().await?;
        // Only for an endpoint that exists: a late outcome of a deleted one
        // must not leave a row behind (no row, `None`).
        let stmt = c
            .prepare_cached(
                "INSERT INTO endpoint_health (endpoint_id, app_id, failing_since, failed_messages) \
                 SELECT id, app_id, herald_now_ms(), $3 FROM endpoint WHERE id = $1 AND app_id = $2 \
                 ON CONFLICT (endpoint_id) DO UPDATE \
                 SET failed_messages = endpoint_health.failed_messages + EXCLUDED.failed_messages \
                 RETURNING failing_since, failed_messages",
            )
            .await?;
        c.query_opt(&stmt, &[&id.as_str(), &app_id.as_str(), &i64::from(given_up)])
            .await?
            .map(|r| streak_row(&r))
            .transpose()
    }

    async fn endpoint_succeeded(&self, id: &EndpointId) -> Result<()> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached("DELETE FROM endpoint_health WHERE endpoint_id = $1")
            .await?;
        c.execute(&stmt, &[&id.as_str()]).await?;
        Ok(())
    }

    async fn failure_streak(&self, id: &EndpointId) -> Result<Option<FailureStreak>> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached("SELECT failing_since, failed_messages FROM endpoint_health WHERE endpoint_id = $1")
            .await?;
        c.query_opt(&stmt, &[&id.as_str()])
            .await?
            .map(|r| streak_row(&r))
            .transpose()
    }
}
