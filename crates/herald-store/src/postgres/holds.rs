//! Endpoint holds (see [`crate::DeliveryQueue::hold_endpoints`]): a row per
//! held endpoint naming its owner and, by the database's clock, when the
//! hold lapses. And the bell that tells every node when deliveries were
//! left due for someone else, debounced so that a busy node sends at most
//! one notification per [`DEBOUNCE`], not one per commit (a `NOTIFY`
//! takes PostgreSQL's notification queue lock as its transaction commits).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};
use herald_core::EndpointId;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::PgStore;
use super::claims::sat_add;
use super::rows::ttl_ms;
use crate::{Lease, Result};

/// The shortest time between two `Change::Due` notifications of one node.
const DEBOUNCE: Duration = Duration::from_millis(20);

/// Whether a delivery's endpoint (aliased `endpoint_id` of `$1`'s row) is
/// held by an owner other than `$1` whose hold has not lapsed at `now.t`:
/// such deliveries are left for that owner.
pub(crate) const HELD_ELSEWHERE: &str = "EXISTS (SELECT 1 FROM endpoint_hold h \
     WHERE h.endpoint_id = delivery.endpoint_id AND h.owner <> $1::text AND h.until > (SELECT t FROM now))";

impl PgStore {
    pub(super) async fn take_holds(&self, lease: &Lease, endpoints: Vec<EndpointId>) -> Result<Vec<bool>> {
        if endpoints.is_empty() {
            return Ok(Vec::new());
        }
        // One row per endpoint: an upsert may not touch a row twice.
        let mut unique: Vec<&str> = endpoints.iter().map(EndpointId::as_str).collect();
        unique.sort_unstable();
        unique.dedup();
        let c = self.client().await?;
        let until = sat_add("now.t", "$3::bigint");
        let stmt = c
            .prepare_cached(&format!(
                "WITH now AS MATERIALIZED (SELECT herald_now_ms() AS t) \
                 INSERT INTO endpoint_hold (endpoint_id, owner, until) \
                 SELECT e, $1::text, {until} FROM UNNEST($2::text[]) AS e, now \
                 ON CONFLICT (endpoint_id) DO UPDATE SET owner = EXCLUDED.owner, until = EXCLUDED.until \
                 WHERE endpoint_hold.owner = EXCLUDED.owner OR endpoint_hold.until <= (SELECT t FROM now) \
                 RETURNING endpoint_id"
            ))
            .await?;
        let rows = c
            .query(&stmt, &[&lease.owner.as_str(), &unique, &ttl_ms(lease.ttl)])
            .await?;
        let held: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
        Ok(endpoints.iter().map(|e| held.contains(e.as_str())).collect())
    }

    pub(super) async fn drop_holds(&self, lease: &Lease, endpoints: Vec<EndpointId>) -> Result<()> {
        if endpoints.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = endpoints.iter().map(EndpointId::as_str).collect();
        let c = self.client().await?;
        // Lapsed holds of anyone go too, so the table keeps only live ones
        // (and those a dead node left since the last release).
        let stmt = c
            .prepare_cached(
                "DELETE FROM endpoint_hold WHERE (owner = $1 AND endpoint_id = ANY($2)) OR until <= herald_now_ms()",
            )
            .await?;
        c.execute(&stmt, &[&lease.owner.as_str(), &ids]).await?;
        Ok(())
    }
}

/// Rings [`crate::Change::Due`] to every node: `ring` marks that
/// deliveries were left due for others, and a task of its own sends the
/// notification, at most once per [`DEBOUNCE`] however often it is rung.
#[derive(Clone)]
pub(crate) struct DueBell {
    rung: Arc<Notify>,
}

impl DueBell {
    pub fn spawn(pool: Pool, stop: CancellationToken) -> Self {
        let rung = Arc::new(Notify::new());
        tokio::spawn(ring_loop(pool, rung.clone(), stop));
        Self { rung }
    }

    pub fn ring(&self) {
        // A ring while a notification is being sent is kept (one permit)
        // and sent after the pause.
        self.rung.notify_one();
    }
}

async fn ring_loop(pool: Pool, rung: Arc<Notify>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = rung.notified() => {}
            _ = stop.cancelled() => return,
        }
        let sent = async {
            let c = pool.get().await.map_err(super::pool_error)?;
            let stmt = c.prepare_cached("SELECT pg_notify('herald_change', 'due')").await?;
            c.execute(&stmt, &[]).await?;
            Ok::<_, crate::StoreError>(())
        };
        if let Err(e) = sent.await {
            // Loaders also look for due work every quarter lease.
            tracing::warn!(error = %e, "could not tell other nodes of due deliveries");
        }
        tokio::select! {
            _ = tokio::time::sleep(DEBOUNCE) => {}
            _ = stop.cancelled() => return,
        }
    }
}
