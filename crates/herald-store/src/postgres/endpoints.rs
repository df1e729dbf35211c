//! Endpoint writes and secrets on PostgreSQL. Every change that alters what
//! a node may deliver is announced (`pg_notify`) in the transaction that
//! makes it, so every node hears it exactly when it commits.
//!
//! Writes that must not be overtaken by a concurrent ingest take the parent
//! row first, in a statement of their own: `DELETE` of the endpoint (or
//! application) waits for any transaction holding a share lock on it, and
//! the statements after it read with a fresh snapshot, so they see every
//! delivery such a transaction committed.

use chrono::Utc;
use deadpool_postgres::GenericClient;
use herald_core::model::Endpoint;
use herald_core::signing::EndpointSecret;
use herald_core::validate::Uid;
use herald_core::{AppId, EndpointId};

use super::PgStore;
use super::changes::announce;
use super::paging::{ENDPOINTS, Filter, Param, paginate};
use super::rows::{
    EP_COLS, after, conflict, count, decrypt_secret, ep_row, get, ms, seal_credentials, select_endpoint, to_json,
};
use crate::metrics::Tally;
use crate::{Change, NewEndpoint, Page, PageRequest, Result, StoreError};

const UID_TAKEN: &str = "an endpoint with this uid already exists in this application";

/// Locks the application against deletion until the transaction ends (a
/// delete waits for it, then finds what was added), or fails with
/// `NotFound("application")`.
pub(crate) async fn hold_app(tx: &impl GenericClient, app_id: &AppId) -> Result<()> {
    let stmt = tx
        .prepare_cached("SELECT 1 FROM application WHERE id = $1 FOR KEY SHARE")
        .await?;
    match tx.query_opt(&stmt, &[&app_id.as_str()]).await? {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound("application")),
    }
}

impl PgStore {
    pub(crate) async fn pg_create_endpoint(&self, app_id: &AppId, ep: NewEndpoint) -> Result<Endpoint> {
        let sealed = self.key.seal(&ep.secret.to_storage_bytes());
        let credentials = seal_credentials(&self.key, &ep.settings)?;
        let now = Utc::now();
        let out = Endpoint {
            id: EndpointId::new(),
            app_id: app_id.clone(),
            uid: ep.uid,
            settings: ep.settings,
            created_at: now,
            updated_at: now,
        };
        let settings = to_json(&out.settings)?;
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        hold_app(&tx, app_id).await?;
        let stmt = tx
            .prepare_cached(&format!(
                "INSERT INTO endpoint ({EP_COLS}, secret) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ))
            .await?;
        tx.execute(
            &stmt,
            &[
                &out.id.as_str(),
                &out.app_id.as_str(),
                &out.uid.as_ref().map(Uid::as_str),
                &settings,
                &ms(now),
                &ms(now),
                &credentials,
                &sealed,
            ],
        )
        .await
        .map_err(|e| conflict(e, UID_TAKEN))?;
        tx.commit().await?;
        Ok(out)
    }

    pub(crate) async fn pg_get_endpoint(&self, app_id: &AppId, id_or_uid: &str) -> Result<Endpoint> {
        let c = self.client().await?;
        select_endpoint(&c, &self.key, app_id, id_or_uid).await
    }

    pub(crate) async fn pg_list_endpoints(&self, app_id: &AppId, page: PageRequest) -> Result<Page<Endpoint>> {
        let c = self.client().await?;
        let mut f = Filter::default();
        f.push("app_id = $?", [Box::new(app_id.to_string()) as Param]);
        paginate(&c, &ENDPOINTS, f, &page, |r| ep_row(r, &self.key), |e| e.id.to_string()).await
    }

    pub(crate) async fn pg_update_endpoint(&self, ep: Endpoint) -> Result<Endpoint> {
        let credentials = seal_credentials(&self.key, &ep.settings)?;
        let mut ep = ep;
        ep.updated_at = Utc::now();
        let settings = to_json(&ep.settings)?;
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        if !ep.settings.disabled {
            // Enabled again: its failure streak starts over. Read before
            // the update, which replaces the stored `disabled`.
            let stmt = tx
                .prepare_cached(
                    "DELETE FROM endpoint_health WHERE endpoint_id = $1 AND EXISTS (SELECT 1 FROM endpoint \
                     WHERE id = $1 AND app_id = $2 AND settings::jsonb -> 'disabled' = 'true'::jsonb)",
                )
                .await?;
            tx.execute(&stmt, &[&ep.id.as_str(), &ep.app_id.as_str()]).await?;
        }
        let stmt = tx
            .prepare_cached(
                "UPDATE endpoint SET uid = $3, settings = $4, updated_at = $5, credentials = $6 \
                 WHERE id = $1 AND app_id = $2",
            )
            .await?;
        let n = tx
            .execute(
                &stmt,
                &[
                    &ep.id.as_str(),
                    &ep.app_id.as_str(),
                    &ep.uid.as_ref().map(Uid::as_str),
                    &settings,
                    &ms(ep.updated_at),
                    &credentials,
                ],
            )
            .await
            .map_err(|e| conflict(e, UID_TAKEN))?;
        if n == 0 {
            return Err(StoreError::NotFound("endpoint"));
        }
        super::fifo::set_pending(&tx, &ep.id, ep.settings.fifo).await?;
        announce(
            &tx,
            &Change::EndpointUpdated {
                app_id: ep.app_id.clone(),
                endpoint_id: ep.id.clone(),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(ep)
    }

    pub(crate) async fn pg_disable_endpoint(&self, app_id: &AppId, id: &EndpointId) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // Only `disabled` changes, in place: a concurrent update of the
        // other settings is never overwritten with what was read before it.
        let stmt = tx
            .prepare_cached(
                "UPDATE endpoint SET settings = jsonb_set(settings::jsonb, '{disabled}', 'true'::jsonb)::text, \
                 updated_at = herald_now_ms() WHERE id = $1 AND app_id = $2 \
                 AND settings::jsonb -> 'disabled' IS DISTINCT FROM 'true'::jsonb",
            )
            .await?;
        let n = tx.execute(&stmt, &[&id.as_str(), &app_id.as_str()]).await?;
        if n == 0 {
            let stmt = tx
                .prepare_cached("SELECT 1 FROM endpoint WHERE id = $1 AND app_id = $2")
                .await?;
            let exists = tx.query_opt(&stmt, &[&id.as_str(), &app_id.as_str()]).await?.is_some();
            return if exists {
                Ok(false)
            } else {
                Err(StoreError::NotFound("endpoint"))
            };
        }
        announce(
            &tx,
            &Change::EndpointUpdated {
                app_id: app_id.clone(),
                endpoint_id: id.clone(),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn pg_delete_endpoint(&self, app_id: &AppId, id: &EndpointId) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let stmt = tx
            .prepare_cached("DELETE FROM endpoint WHERE id = $1 AND app_id = $2")
            .await?;
        if tx.execute(&stmt, &[&id.as_str(), &app_id.as_str()]).await? == 0 {
            return Err(StoreError::NotFound("endpoint"));
        }
        // What it owns, and its pending work, which can never be delivered
        // now: one statement, after the delete (see the module's comment).
        let stmt = tx
            .prepare_cached(
                "WITH secrets AS (DELETE FROM endpoint_retired_secret WHERE endpoint_id = $1), \
                 health AS (DELETE FROM endpoint_health WHERE endpoint_id = $1), \
                 cancelled AS (UPDATE delivery SET status = 4, claimed_by = NULL, claim_until = NULL \
                   WHERE endpoint_id = $1 AND status = 1 RETURNING 1) \
                 SELECT count(*) FROM cancelled",
            )
            .await?;
        let cancelled = count(&tx.query_one(&stmt, &[&id.as_str()]).await?, 0)?;
        announce(
            &tx,
            &Change::EndpointDeleted {
                app_id: app_id.clone(),
                endpoint_id: id.clone(),
            },
        )
        .await?;
        tx.commit().await?;
        self.metrics.committed(Tally { messages: 0, cancelled });
        Ok(())
    }

    pub(crate) async fn pg_get_endpoint_secret(&self, app_id: &AppId, id: &EndpointId) -> Result<EndpointSecret> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached("SELECT secret FROM endpoint WHERE id = $1 AND app_id = $2")
            .await?;
        let row = c
            .query_opt(&stmt, &[&id.as_str(), &app_id.as_str()])
            .await?
            .ok_or(StoreError::NotFound("endpoint"))?;
        decrypt_secret(&self.key, get::<&[u8]>(&row, 0)?)
    }

    pub(crate) async fn pg_rotate_endpoint_secret(
        &self,
        app_id: &AppId,
        id: &EndpointId,
        new: EndpointSecret,
        grace: std::time::Duration,
    ) -> Result<()> {
        let sealed = self.key.seal(&new.to_storage_bytes());
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // The row lock makes concurrent rotations take turns: each retires
        // the secret the one before it set, and counts what it left.
        let stmt = tx
            .prepare_cached("SELECT secret, herald_now_ms() FROM endpoint WHERE id = $1 AND app_id = $2 FOR UPDATE")
            .await?;
        let row = tx
            .query_opt(&stmt, &[&id.as_str(), &app_id.as_str()])
            .await?
            .ok_or(StoreError::NotFound("endpoint"))?;
        let old: &[u8] = get(&row, 0)?;
        let now: i64 = get(&row, 1)?;
        // Secrets whose grace ended go; the rest are counted.
        let stmt = tx
            .prepare_cached(
                "WITH expired AS (DELETE FROM endpoint_retired_secret WHERE endpoint_id = $1 AND expires_at <= $2) \
                 SELECT count(*) FROM endpoint_retired_secret WHERE endpoint_id = $1 AND expires_at > $2",
            )
            .await?;
        let retiring = count(&tx.query_one(&stmt, &[&id.as_str(), &now]).await?, 0)?;
        if !grace.is_zero() {
            if retiring >= crate::MAX_RETIRING_SECRETS as u64 {
                return Err(StoreError::Refused(format!(
                    "the endpoint already has {retiring} secrets in their grace period; \
                     rotate again once one expires, or with gracePeriodSeconds 0"
                )));
            }
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO endpoint_retired_secret (endpoint_id, app_id, secret, expires_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .await?;
            tx.execute(&stmt, &[&id.as_str(), &app_id.as_str(), &old, &after(now, grace)])
                .await?;
        }
        let stmt = tx
            .prepare_cached("UPDATE endpoint SET secret = $3, updated_at = $4 WHERE id = $1 AND app_id = $2")
            .await?;
        tx.execute(&stmt, &[&id.as_str(), &app_id.as_str(), &sealed, &now])
            .await?;
        announce(
            &tx,
            &Change::EndpointUpdated {
                app_id: app_id.clone(),
                endpoint_id: id.clone(),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
