//! Applications, event types and the read side of messages and attempts on
//! PostgreSQL; endpoints are in `endpoints.rs` and delivery targets in
//! `targets.rs`. Changes that alter what nodes may deliver are announced
//! in the transaction that makes them.

use chrono::Utc;
use herald_core::model::{Application, Attempt, DeliveryStatus, DeliveryTarget, Endpoint, EventType, Message};
use herald_core::signing::EndpointSecret;
use herald_core::validate::{EventTypeName, Uid};
use herald_core::{AppId, EndpointId, MessageId};

use super::PgStore;
use super::changes::announce;
use super::paging::{APPS, ATTEMPTS, EVENT_TYPES, Filter, MESSAGES, Param, attempt_filter, message_filter, paginate};
use super::rows::{
    APP_COLS, ET_COLS, MSG_COLS, app_row, attempt_row, conflict, count, et_row, get, ms, msg_row, opt_json,
    select_event_type, to_json,
};
use crate::metrics::Tally;
use crate::{
    AttemptFilter, Change, DeliveryCounts, MessageFilter, NewApplication, NewEndpoint, Page, PageRequest,
    ResourceStore, Result, StoreError,
};

const APP_UID_TAKEN: &str = "an application with this uid already exists";

#[async_trait::async_trait]
impl ResourceStore for PgStore {
    async fn create_app(&self, app: NewApplication) -> Result<Application> {
        let now = Utc::now();
        let out = Application {
            id: AppId::new(),
            uid: app.uid,
            name: app.name,
            metadata: app.metadata,
            throttle_rate: app.throttle_rate,
            created_at: now,
            updated_at: now,
        };
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(&format!(
                "INSERT INTO application ({APP_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ))
            .await?;
        c.execute(
            &stmt,
            &[
                &out.id.as_str(),
                &out.uid.as_ref().map(Uid::as_str),
                &out.name,
                &to_json(&out.metadata)?,
                &out.throttle_rate.map(i64::from),
                &ms(now),
                &ms(now),
            ],
        )
        .await
        .map_err(|e| conflict(e, APP_UID_TAKEN))?;
        Ok(out)
    }

    async fn get_app(&self, id_or_uid: &str) -> Result<Application> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {APP_COLS} FROM application WHERE id = $1 \
                 UNION ALL SELECT {APP_COLS} FROM application WHERE uid = $1 LIMIT 1"
            ))
            .await?;
        c.query_opt(&stmt, &[&id_or_uid])
            .await?
            .map(|r| app_row(&r))
            .transpose()?
            .ok_or(StoreError::NotFound("application"))
    }

    async fn list_apps(&self, page: PageRequest) -> Result<Page<Application>> {
        let c = self.client().await?;
        paginate(&c, &APPS, Filter::default(), &page, app_row, |a| a.id.to_string()).await
    }

    async fn update_app(&self, app: Application) -> Result<Application> {
        let mut app = app;
        app.updated_at = Utc::now();
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "UPDATE application SET uid = $2, name = $3, metadata = $4, throttle_rate = $5, updated_at = $6 \
                 WHERE id = $1",
            )
            .await?;
        let n = c
            .execute(
                &stmt,
                &[
                    &app.id.as_str(),
                    &app.uid.as_ref().map(Uid::as_str),
                    &app.name,
                    &to_json(&app.metadata)?,
                    &app.throttle_rate.map(i64::from),
                    &ms(app.updated_at),
                ],
            )
            .await
            .map_err(|e| conflict(e, APP_UID_TAKEN))?;
        if n == 0 {
            return Err(StoreError::NotFound("application"));
        }
        Ok(app)
    }

    async fn delete_app(&self, id: &AppId) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // First and on its own: it waits for whoever holds the application
        // (an ingest, an endpoint being created), and what follows reads
        // with a fresh snapshot that has what they added.
        let stmt = tx.prepare_cached("DELETE FROM application WHERE id = $1").await?;
        if tx.execute(&stmt, &[&id.as_str()]).await? == 0 {
            return Err(StoreError::NotFound("application"));
        }
        // Everything it owns, in one statement. History goes through the
        // application's messages (their index); its pending deliveries end
        // with it and are counted for `/metrics`.
        let stmt = tx
            .prepare_cached(
                "WITH msgs AS (SELECT id FROM message WHERE app_id = $1), \
                 attempts AS (DELETE FROM attempt WHERE msg_id IN (SELECT id FROM msgs) AND app_id = $1), \
                 deliveries AS (DELETE FROM delivery WHERE msg_id IN (SELECT id FROM msgs) AND app_id = $1 \
                   RETURNING status), \
                 messages AS (DELETE FROM message WHERE app_id = $1), \
                 endpoints AS (DELETE FROM endpoint WHERE app_id = $1), \
                 secrets AS (DELETE FROM endpoint_retired_secret WHERE app_id = $1), \
                 health AS (DELETE FROM endpoint_health WHERE app_id = $1), \
                 tokens AS (DELETE FROM api_token WHERE app_id = $1), \
                 tasks AS (DELETE FROM background_task WHERE app_id = $1) \
                 SELECT count(*) FROM deliveries WHERE status = 1",
            )
            .await?;
        let cancelled = count(&tx.query_one(&stmt, &[&id.as_str()]).await?, 0)?;
        announce(&tx, &Change::AppDeleted { app_id: id.clone() }).await?;
        tx.commit().await?;
        self.metrics.committed(Tally { messages: 0, cancelled });
        Ok(())
    }

    async fn create_endpoint(&self, app_id: &AppId, ep: NewEndpoint) -> Result<Endpoint> {
        self.pg_create_endpoint(app_id, ep).await
    }

    async fn get_endpoint(&self, app_id: &AppId, id_or_uid: &str) -> Result<Endpoint> {
        self.pg_get_endpoint(app_id, id_or_uid).await
    }

    async fn list_endpoints(&self, app_id: &AppId, page: PageRequest) -> Result<Page<Endpoint>> {
        self.pg_list_endpoints(app_id, page).await
    }

    async fn update_endpoint(&self, ep: Endpoint) -> Result<Endpoint> {
        self.pg_update_endpoint(ep).await
    }

    async fn disable_endpoint(&self, app_id: &AppId, id: &EndpointId) -> Result<bool> {
        self.pg_disable_endpoint(app_id, id).await
    }

    async fn delete_endpoint(&self, app_id: &AppId, id: &EndpointId) -> Result<()> {
        self.pg_delete_endpoint(app_id, id).await
    }

    async fn get_endpoint_secret(&self, app_id: &AppId, id: &EndpointId) -> Result<EndpointSecret> {
        self.pg_get_endpoint_secret(app_id, id).await
    }

    async fn rotate_endpoint_secret(
        &self,
        app_id: &AppId,
        id: &EndpointId,
        new: EndpointSecret,
        grace: std::time::Duration,
    ) -> Result<()> {
        self.pg_rotate_endpoint_secret(app_id, id, new, grace).await
    }

    async fn delivery_targets(&self, ids: Vec<EndpointId>) -> Result<Vec<DeliveryTarget>> {
        self.pg_delivery_targets(ids).await
    }

    async fn endpoint_counts(&self, app_id: &AppId, id: &EndpointId) -> Result<DeliveryCounts> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "SELECT status, count(*) FROM delivery WHERE endpoint_id = $1 AND app_id = $2 GROUP BY status",
            )
            .await?;
        let mut counts = DeliveryCounts::default();
        for r in c.query(&stmt, &[&id.as_str(), &app_id.as_str()]).await? {
            let status: i64 = get(&r, 0)?;
            let n = count(&r, 1)?;
            match DeliveryStatus::from_code(status) {
                Some(DeliveryStatus::Success) => counts.success = n,
                Some(DeliveryStatus::Pending) => counts.pending = n,
                Some(DeliveryStatus::Sending) => counts.sending = n,
                Some(DeliveryStatus::Fail) => counts.fail = n,
                Some(DeliveryStatus::Canceled) => counts.canceled = n,
                None => return Err(StoreError::Corrupt(format!("unknown delivery status {status}"))),
            }
        }
        Ok(counts)
    }

    async fn create_event_type(&self, et: EventType) -> Result<EventType> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(&format!(
                "INSERT INTO event_type ({ET_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ))
            .await?;
        c.execute(
            &stmt,
            &[
                &et.name.as_str(),
                &et.description,
                &et.archived,
                &et.deprecated,
                &opt_json(&et.schemas)?,
                &opt_json(&et.feature_flags)?,
                &et.group_name,
                &ms(et.created_at),
                &ms(et.updated_at),
            ],
        )
        .await
        .map_err(|e| conflict(e, "an event type with this name already exists"))?;
        Ok(et)
    }

    async fn get_event_type(&self, name: &str) -> Result<EventType> {
        let c = self.client().await?;
        select_event_type(&c, name).await
    }

    async fn list_event_types(&self, page: PageRequest, include_archived: bool) -> Result<Page<EventType>> {
        let c = self.client().await?;
        let mut f = Filter::default();
        if !include_archived {
            f.push("NOT archived", []);
        }
        paginate(&c, &EVENT_TYPES, f, &page, et_row, |e| e.name.to_string()).await
    }

    async fn update_event_type(&self, et: EventType) -> Result<EventType> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "UPDATE event_type SET description = $2, archived = $3, deprecated = $4, schemas = $5, \
                 feature_flags = $6, group_name = $7, updated_at = $8 WHERE name = $1",
            )
            .await?;
        let n = c
            .execute(
                &stmt,
                &[
                    &et.name.as_str(),
                    &et.description,
                    &et.archived,
                    &et.deprecated,
                    &opt_json(&et.schemas)?,
                    &opt_json(&et.feature_flags)?,
                    &et.group_name,
                    &ms(et.updated_at),
                ],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound("event type"));
        }
        Ok(et)
    }

    async fn delete_event_type(&self, name: &str, expunge: bool) -> Result<()> {
        let c = self.client().await?;
        let n = if expunge {
            let stmt = c.prepare_cached("DELETE FROM event_type WHERE name = $1").await?;
            c.execute(&stmt, &[&name]).await?
        } else {
            let stmt = c
                .prepare_cached("UPDATE event_type SET archived = TRUE, updated_at = $2 WHERE name = $1")
                .await?;
            c.execute(&stmt, &[&name, &ms(Utc::now())]).await?
        };
        if n == 0 {
            return Err(StoreError::NotFound("event type"));
        }
        Ok(())
    }

    async fn missing_event_types(&self, names: Vec<EventTypeName>) -> Result<Vec<EventTypeName>> {
        if names.is_empty() {
            return Ok(names);
        }
        let c = self.client().await?;
        let stmt = c
            .prepare_cached("SELECT name FROM event_type WHERE name = ANY($1)")
            .await?;
        let asked: Vec<&str> = names.iter().map(EventTypeName::as_str).collect();
        let rows = c.query(&stmt, &[&asked]).await?;
        let known = rows
            .iter()
            .map(|r| get::<String>(r, 0))
            .collect::<Result<std::collections::HashSet<_>>>()?;
        Ok(names.into_iter().filter(|n| !known.contains(n.as_str())).collect())
    }

    async fn get_message(&self, app_id: &AppId, id_or_event_id: &str) -> Result<Message> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {MSG_COLS} FROM message m WHERE m.app_id = $1 AND m.id = $2 \
                 UNION ALL SELECT {MSG_COLS} FROM message m WHERE m.app_id = $1 AND m.event_id = $2 LIMIT 1"
            ))
            .await?;
        c.query_opt(&stmt, &[&app_id.as_str(), &id_or_event_id])
            .await?
            .map(|r| msg_row(&r))
            .transpose()?
            .ok_or(StoreError::NotFound("message"))
    }

    async fn list_messages(&self, app_id: &AppId, filter: MessageFilter, page: PageRequest) -> Result<Page<Message>> {
        let c = self.client().await?;
        let mut f = Filter::default();
        f.push("m.app_id = $?", [Box::new(app_id.to_string()) as Param]);
        message_filter(&mut f, filter);
        paginate(&c, &MESSAGES, f, &page, msg_row, |m| m.id.to_string()).await
    }

    async fn list_attempts_by_endpoint(
        &self,
        app_id: &AppId,
        endpoint_id: &EndpointId,
        filter: AttemptFilter,
        page: PageRequest,
    ) -> Result<Page<Attempt>> {
        let c = self.client().await?;
        let mut f = attempt_filter(filter);
        f.push("a.app_id = $?", [Box::new(app_id.to_string()) as Param]);
        f.push("a.endpoint_id = $?", [Box::new(endpoint_id.to_string()) as Param]);
        paginate(&c, &ATTEMPTS, f, &page, attempt_row, |a| a.id.to_string()).await
    }

    async fn list_attempts_by_msg(
        &self,
        app_id: &AppId,
        msg_id: &MessageId,
        filter: AttemptFilter,
        page: PageRequest,
    ) -> Result<Page<Attempt>> {
        let c = self.client().await?;
        let mut f = attempt_filter(filter);
        f.push("a.app_id = $?", [Box::new(app_id.to_string()) as Param]);
        f.push("a.msg_id = $?", [Box::new(msg_id.to_string()) as Param]);
        paginate(&c, &ATTEMPTS, f, &page, attempt_row, |a| a.id.to_string()).await
    }
}
