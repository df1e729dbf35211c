//! Applications, endpoints, event types and the read side of messages and
//! attempts. Endpoint and application changes are announced on the change
//! feed once committed, and invalidate the writer's fan-out caches.

use chrono::Utc;
use herald_core::model::{Application, Attempt, DeliveryStatus, DeliveryTarget, Endpoint, EventType, Message};
use herald_core::signing::EndpointSecret;
use herald_core::validate::{EventTypeName, Uid};
use herald_core::{AppId, EndpointId, MessageId};
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use super::paging::{
    APPS, ATTEMPTS, ENDPOINTS, EVENT_TYPES, Filter, MESSAGES, attempt_filter, message_filter, paginate,
};
use super::rows::{
    APP_COLS, EP_COLS, ET_COLS, MSG_COLS, after, app_row, attempt_row, conflict, decrypt_secret, ep_row, et_row, ms,
    msg_row, opt_json, resolve_app, seal_credentials, select_app, select_endpoint, select_event_type, to_json,
};
use crate::{
    AttemptFilter, Change, DeliveryCounts, MessageFilter, NewApplication, NewEndpoint, Page, PageRequest,
    ResourceStore, Result, StoreError,
};

#[async_trait::async_trait]
impl ResourceStore for SqliteStore {
    async fn create_app(&self, app: NewApplication) -> Result<Application> {
        self.writer
            .run(move |ctx| {
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
                ctx.conn
                    .prepare_cached(&format!(
                        "INSERT INTO application ({APP_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                    ))?
                    .execute(params![
                        out.id.as_str(),
                        out.uid.as_ref().map(Uid::as_str),
                        out.name,
                        to_json(&out.metadata)?,
                        out.throttle_rate,
                        ms(now),
                        ms(now)
                    ])
                    .map_err(|e| conflict(e, "an application with this uid already exists"))?;
                Ok(out)
            })
            .await
    }

    async fn get_app(&self, id_or_uid: &str) -> Result<Application> {
        let key = id_or_uid.to_owned();
        self.read(move |c| {
            let id = resolve_app(c, &key)?;
            select_app(c, &id)
        })
        .await
    }

    async fn list_apps(&self, page: PageRequest) -> Result<Page<Application>> {
        self.read(move |c| paginate(c, &APPS, Filter::default(), &page, app_row, |a| a.id.to_string()))
            .await
    }

    async fn update_app(&self, app: Application) -> Result<Application> {
        self.writer
            .run(move |ctx| {
                let mut app = app;
                app.updated_at = Utc::now();
                let n = ctx
                    .conn
                    .prepare_cached(
                        "UPDATE application SET uid = ?2, name = ?3, metadata = ?4, throttle_rate = ?5, updated_at = ?6 WHERE id = ?1",
                    )?
                    .execute(params![
                        app.id.as_str(),
                        app.uid.as_ref().map(Uid::as_str),
                        app.name,
                        to_json(&app.metadata)?,
                        app.throttle_rate,
                        ms(app.updated_at)
                    ])
                    .map_err(|e| conflict(e, "an application with this uid already exists"))?;
                if n == 0 {
                    return Err(StoreError::NotFound("application"));
                }
                ctx.forget_app_names();
                Ok(app)
            })
            .await
    }

    async fn delete_app(&self, id: &AppId) -> Result<()> {
        let id = id.clone();
        self.writer
            .run(move |ctx| {
                let n = ctx
                    .conn
                    .execute("DELETE FROM application WHERE id = ?1", [id.as_str()])?;
                if n == 0 {
                    return Err(StoreError::NotFound("application"));
                }
                // Its pending deliveries end with it (counted for
                // `/metrics`, through its endpoints' index). History goes
                // through the application's messages (their index), then
                // the messages and endpoints themselves.
                let cancelled: u64 = ctx
                    .conn
                    .prepare_cached(
                        "SELECT count(*) FROM delivery WHERE endpoint_id IN \
                         (SELECT id FROM endpoint WHERE app_id = ?1) AND status = 1",
                    )?
                    .query_row([id.as_str()], |r| super::rows::count(r, 0))?;
                ctx.tally.cancelled += cancelled;
                for sql in [
                    "DELETE FROM attempt WHERE msg_id IN (SELECT id FROM message WHERE app_id = ?1)",
                    "DELETE FROM delivery WHERE msg_id IN (SELECT id FROM message WHERE app_id = ?1)",
                    "DELETE FROM message WHERE app_id = ?1",
                    "DELETE FROM endpoint WHERE app_id = ?1",
                    "DELETE FROM endpoint_retired_secret WHERE app_id = ?1",
                    "DELETE FROM endpoint_health WHERE app_id = ?1",
                    "DELETE FROM api_token WHERE app_id = ?1",
                    "DELETE FROM background_task WHERE app_id = ?1",
                ] {
                    ctx.conn.execute(sql, [id.as_str()])?;
                }
                ctx.forget_app(&id);
                ctx.forget_app_names();
                ctx.announce(Change::AppDeleted { app_id: id.clone() });
                Ok(())
            })
            .await
    }

    async fn create_endpoint(&self, app_id: &AppId, ep: NewEndpoint) -> Result<Endpoint> {
        let app_id = app_id.clone();
        let sealed = self.key.seal(&ep.secret.to_storage_bytes());
        let credentials = seal_credentials(&self.key, &ep.settings)?;
        self.writer
            .run(move |ctx| {
                select_app(&ctx.conn, &app_id)?;
                let now = Utc::now();
                let out = Endpoint {
                    id: EndpointId::new(),
                    app_id: app_id.clone(),
                    uid: ep.uid,
                    settings: ep.settings,
                    created_at: now,
                    updated_at: now,
                };
                ctx.conn
                    .prepare_cached(&format!(
                        "INSERT INTO endpoint ({EP_COLS}, secret) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                    ))?
                    .execute(params![
                        out.id.as_str(),
                        out.app_id.as_str(),
                        out.uid.as_ref().map(Uid::as_str),
                        to_json(&out.settings)?,
                        ms(now),
                        ms(now),
                        credentials,
                        sealed
                    ])
                    .map_err(|e| conflict(e, "an endpoint with this uid already exists in this application"))?;
                ctx.forget_app(&app_id);
                Ok(out)
            })
            .await
    }

    async fn get_endpoint(&self, app_id: &AppId, id_or_uid: &str) -> Result<Endpoint> {
        let (app_id, id_or_uid, key) = (app_id.clone(), id_or_uid.to_owned(), self.key.clone());
        self.read(move |c| select_endpoint(c, &key, &app_id, &id_or_uid)).await
    }

    async fn list_endpoints(&self, app_id: &AppId, page: PageRequest) -> Result<Page<Endpoint>> {
        let (app_id, key) = (app_id.clone(), self.key.clone());
        self.read(move |c| {
            let mut f = Filter::default();
            f.push("app_id = ?", [Value::Text(app_id.to_string())]);
            paginate(c, &ENDPOINTS, f, &page, |r| ep_row(r, &key), |e| e.id.to_string())
        })
        .await
    }

    async fn update_endpoint(&self, ep: Endpoint) -> Result<Endpoint> {
        let credentials = seal_credentials(&self.key, &ep.settings)?;
        self.writer
            .run(move |ctx| {
                let mut ep = ep;
                ep.updated_at = Utc::now();
                if !ep.settings.disabled {
                    // Enabled again: its failure streak starts over.
                    ctx.conn
                        .prepare_cached(
                            "DELETE FROM endpoint_health WHERE endpoint_id = ?1 AND EXISTS (SELECT 1 FROM endpoint \
                             WHERE id = ?1 AND json_extract(settings, '$.disabled') IS 1)",
                        )?
                        .execute([ep.id.as_str()])?;
                }
                let n = ctx
                    .conn
                    .prepare_cached(
                        "UPDATE endpoint SET uid = ?3, settings = ?4, updated_at = ?5, credentials = ?6 \
                         WHERE id = ?1 AND app_id = ?2",
                    )?
                    .execute(params![
                        ep.id.as_str(),
                        ep.app_id.as_str(),
                        ep.uid.as_ref().map(Uid::as_str),
                        to_json(&ep.settings)?,
                        ms(ep.updated_at),
                        credentials
                    ])
                    .map_err(|e| conflict(e, "an endpoint with this uid already exists in this application"))?;
                if n == 0 {
                    return Err(StoreError::NotFound("endpoint"));
                }
                super::fifo::set_pending(&ctx.conn, &ep.id, ep.settings.fifo)?;
                ctx.forget_app(&ep.app_id);
                ctx.announce(Change::EndpointUpdated {
                    app_id: ep.app_id.clone(),
                    endpoint_id: ep.id.clone(),
                });
                Ok(ep)
            })
            .await
    }

    async fn disable_endpoint(&self, app_id: &AppId, id: &EndpointId) -> Result<bool> {
        let (app_id, id) = (app_id.clone(), id.clone());
        self.writer
            .run(move |ctx| {
                let now = ctx.now()?;
                let n = ctx
                    .conn
                    .prepare_cached(
                        "UPDATE endpoint SET settings = json_set(settings, '$.disabled', json('true')), \
                         updated_at = ?3 WHERE id = ?1 AND app_id = ?2 \
                         AND json_extract(settings, '$.disabled') IS NOT 1",
                    )?
                    .execute(params![id.as_str(), app_id.as_str(), now])?;
                if n == 0 {
                    let exists = ctx
                        .conn
                        .prepare_cached("SELECT 1 FROM endpoint WHERE id = ?1 AND app_id = ?2")?
                        .exists([id.as_str(), app_id.as_str()])?;
                    return if exists {
                        Ok(false)
                    } else {
                        Err(StoreError::NotFound("endpoint"))
                    };
                }
                ctx.forget_app(&app_id);
                ctx.announce(Change::EndpointUpdated {
                    app_id,
                    endpoint_id: id,
                });
                Ok(true)
            })
            .await
    }

    async fn delete_endpoint(&self, app_id: &AppId, id: &EndpointId) -> Result<()> {
        let (app_id, id) = (app_id.clone(), id.clone());
        self.writer
            .run(move |ctx| {
                let n = ctx.conn.execute(
                    "DELETE FROM endpoint WHERE id = ?1 AND app_id = ?2",
                    [id.as_str(), app_id.as_str()],
                )?;
                if n == 0 {
                    return Err(StoreError::NotFound("endpoint"));
                }
                ctx.conn
                    .execute("DELETE FROM endpoint_retired_secret WHERE endpoint_id = ?1", [id.as_str()])?;
                ctx.conn
                    .execute("DELETE FROM endpoint_health WHERE endpoint_id = ?1", [id.as_str()])?;
                // Pending work for a deleted endpoint can never be delivered.
                let cancelled = ctx.conn.execute(
                    "UPDATE delivery SET status = 4, claimed_by = NULL, claim_until = NULL WHERE endpoint_id = ?1 AND status = 1",
                    [id.as_str()],
                )?;
                ctx.tally.cancelled += cancelled as u64;
                ctx.forget_app(&app_id);
                ctx.announce(Change::EndpointDeleted {
                    app_id: app_id.clone(),
                    endpoint_id: id.clone(),
                });
                Ok(())
            })
            .await
    }

    async fn get_endpoint_secret(&self, app_id: &AppId, id: &EndpointId) -> Result<EndpointSecret> {
        let (app_id, id, key) = (app_id.clone(), id.clone(), self.key.clone());
        let sealed: Vec<u8> = self
            .read(move |c| {
                c.prepare_cached("SELECT secret FROM endpoint WHERE id = ?1 AND app_id = ?2")?
                    .query_row([id.as_str(), app_id.as_str()], |r| r.get(0))
                    .optional()?
                    .ok_or(StoreError::NotFound("endpoint"))
            })
            .await?;
        decrypt_secret(&key, &sealed)
    }

    async fn rotate_endpoint_secret(
        &self,
        app_id: &AppId,
        id: &EndpointId,
        new: EndpointSecret,
        grace: std::time::Duration,
    ) -> Result<()> {
        let (app_id, id) = (app_id.clone(), id.clone());
        let sealed = self.key.seal(&new.to_storage_bytes());
        self.writer
            .run(move |ctx| {
                let now = ctx.now()?;
                let old: Vec<u8> = ctx
                    .conn
                    .prepare_cached("SELECT secret FROM endpoint WHERE id = ?1 AND app_id = ?2")?
                    .query_row([id.as_str(), app_id.as_str()], |r| r.get(0))
                    .optional()?
                    .ok_or(StoreError::NotFound("endpoint"))?;
                ctx.conn
                    .prepare_cached("DELETE FROM endpoint_retired_secret WHERE endpoint_id = ?1 AND expires_at <= ?2")?
                    .execute(params![id.as_str(), now])?;
                let retiring: i64 = ctx
                    .conn
                    .prepare_cached("SELECT COUNT(*) FROM endpoint_retired_secret WHERE endpoint_id = ?1")?
                    .query_row([id.as_str()], |r| r.get(0))?;
                if !grace.is_zero() && retiring >= crate::MAX_RETIRING_SECRETS as i64 {
                    return Err(StoreError::Refused(format!(
                        "the endpoint already has {retiring} secrets in their grace period; \
                         rotate again once one expires, or with gracePeriodSeconds 0"
                    )));
                }
                if !grace.is_zero() {
                    ctx.conn
                        .prepare_cached(
                            "INSERT INTO endpoint_retired_secret (endpoint_id, app_id, secret, expires_at) \
                             VALUES (?1, ?2, ?3, ?4)",
                        )?
                        .execute(params![id.as_str(), app_id.as_str(), old, after(now, grace)])?;
                }
                ctx.conn
                    .prepare_cached("UPDATE endpoint SET secret = ?3, updated_at = ?4 WHERE id = ?1 AND app_id = ?2")?
                    .execute(params![id.as_str(), app_id.as_str(), sealed, now])?;
                ctx.forget_app(&app_id);
                ctx.announce(Change::EndpointUpdated {
                    app_id: app_id.clone(),
                    endpoint_id: id.clone(),
                });
                Ok(())
            })
            .await
    }

    async fn delivery_targets(&self, ids: Vec<EndpointId>) -> Result<Vec<DeliveryTarget>> {
        let key = self.key.clone();
        self.read(move |c| super::targets::delivery_targets(c, &key, ids)).await
    }

    async fn endpoint_counts(&self, app_id: &AppId, id: &EndpointId) -> Result<DeliveryCounts> {
        let (app_id, id) = (app_id.clone(), id.clone());
        self.read(move |c| {
            let mut counts = DeliveryCounts::default();
            let mut stmt = c.prepare_cached(
                "SELECT status, COUNT(*) FROM delivery WHERE endpoint_id = ?1 AND app_id = ?2 GROUP BY status",
            )?;
            let rows = stmt.query_map([id.as_str(), app_id.as_str()], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })?;
            for row in rows {
                let (status, n) = row?;
                let n = n.max(0) as u64;
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
        })
        .await
    }

    async fn create_event_type(&self, et: EventType) -> Result<EventType> {
        self.writer
            .run(move |ctx| {
                ctx.conn
                    .prepare_cached(&format!(
                        "INSERT INTO event_type ({ET_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                    ))?
                    .execute(params![
                        et.name.as_str(),
                        et.description,
                        et.archived,
                        et.deprecated,
                        opt_json(&et.schemas)?,
                        opt_json(&et.feature_flags)?,
                        et.group_name,
                        ms(et.created_at),
                        ms(et.updated_at)
                    ])
                    .map_err(|e| conflict(e, "an event type with this name already exists"))?;
                Ok(et)
            })
            .await
    }

    async fn get_event_type(&self, name: &str) -> Result<EventType> {
        let name = name.to_owned();
        self.read(move |c| select_event_type(c, &name)).await
    }

    async fn list_event_types(&self, page: PageRequest, include_archived: bool) -> Result<Page<EventType>> {
        self.read(move |c| {
            let mut f = Filter::default();
            if !include_archived {
                f.push("archived = 0", []);
            }
            paginate(c, &EVENT_TYPES, f, &page, et_row, |e| e.name.to_string())
        })
        .await
    }

    async fn update_event_type(&self, et: EventType) -> Result<EventType> {
        self.writer
            .run(move |ctx| {
                let n = ctx
                    .conn
                    .prepare_cached(
                        "UPDATE event_type SET description = ?2, archived = ?3, deprecated = ?4, schemas = ?5, \
                         feature_flags = ?6, group_name = ?7, updated_at = ?8 WHERE name = ?1",
                    )?
                    .execute(params![
                        et.name.as_str(),
                        et.description,
                        et.archived,
                        et.deprecated,
                        opt_json(&et.schemas)?,
                        opt_json(&et.feature_flags)?,
                        et.group_name,
                        ms(et.updated_at)
                    ])?;
                if n == 0 {
                    return Err(StoreError::NotFound("event type"));
                }
                Ok(et)
            })
            .await
    }

    async fn delete_event_type(&self, name: &str, expunge: bool) -> Result<()> {
        let name = name.to_owned();
        self.writer
            .run(move |ctx| {
                let n = if expunge {
                    ctx.conn.execute("DELETE FROM event_type WHERE name = ?1", [&name])?
                } else {
                    ctx.conn.execute(
                        "UPDATE event_type SET archived = 1, updated_at = ?2 WHERE name = ?1",
                        params![name, ms(Utc::now())],
                    )?
                };
                if n == 0 {
                    return Err(StoreError::NotFound("event type"));
                }
                Ok(())
            })
            .await
    }

    async fn missing_event_types(&self, names: Vec<EventTypeName>) -> Result<Vec<EventTypeName>> {
        /// Names per query: well under SQLite's parameter limit.
        const CHUNK: usize = 500;
        self.read(move |c| {
            let mut known = std::collections::HashSet::new();
            for chunk in names.chunks(CHUNK) {
                let marks = vec!["?"; chunk.len()].join(",");
                let mut stmt = c.prepare_cached(&format!("SELECT name FROM event_type WHERE name IN ({marks})"))?;
                let rows = stmt.query_map(rusqlite::params_from_iter(chunk.iter().map(|n| n.as_str())), |r| {
                    r.get::<_, String>(0)
                })?;
                for row in rows {
                    known.insert(row?);
                }
            }
            Ok(names.into_iter().filter(|n| !known.contains(n.as_str())).collect())
        })
        .await
    }

    async fn get_message(&self, app_id: &AppId, id_or_event_id: &str) -> Result<Message> {
        let (app_id, key) = (app_id.clone(), id_or_event_id.to_owned());
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {MSG_COLS} FROM message m WHERE m.app_id = ?1 AND m.id = ?2 \
                 UNION ALL SELECT {MSG_COLS} FROM message m WHERE m.app_id = ?1 AND m.event_id = ?2 LIMIT 1"
            ))?
            .query_row([app_id.as_str(), &key], msg_row)
            .optional()?
            .ok_or(StoreError::NotFound("message"))
        })
        .await
    }

    async fn list_messages(&self, app_id: &AppId, filter: MessageFilter, page: PageRequest) -> Result<Page<Message>> {
        let app_id = app_id.clone();
        self.read(move |c| {
            let mut f = Filter::default();
            f.push("m.app_id = ?", [Value::Text(app_id.to_string())]);
            message_filter(&mut f, filter);
            paginate(c, &MESSAGES, f, &page, msg_row, |m| m.id.to_string())
        })
        .await
    }

    async fn list_attempts_by_endpoint(
        &self,
        app_id: &AppId,
        endpoint_id: &EndpointId,
        filter: AttemptFilter,
        page: PageRequest,
    ) -> Result<Page<Attempt>> {
        let (app_id, endpoint_id) = (app_id.clone(), endpoint_id.clone());
        self.read(move |c| {
            let mut f = attempt_filter(filter);
            f.push("a.app_id = ?", [Value::Text(app_id.to_string())]);
            f.push("a.endpoint_id = ?", [Value::Text(endpoint_id.to_string())]);
            paginate(c, &ATTEMPTS, f, &page, attempt_row, |a| a.id.to_string())
        })
        .await
    }

    async fn list_attempts_by_msg(
        &self,
        app_id: &AppId,
        msg_id: &MessageId,
        filter: AttemptFilter,
        page: PageRequest,
    ) -> Result<Page<Attempt>> {
        let (app_id, msg_id) = (app_id.clone(), msg_id.clone());
        self.read(move |c| {
            let mut f = attempt_filter(filter);
            f.push("a.app_id = ?", [Value::Text(app_id.to_string())]);
            f.push("a.msg_id = ?", [Value::Text(msg_id.to_string())]);
            paginate(c, &ATTEMPTS, f, &page, attempt_row, |a| a.id.to_string())
        })
        .await
    }
}
