//! The embedded SQLite store: what `herald serve` uses with no setup.
//!
//! Every write goes to one writer thread, which drains whatever is queued and
//! commits it as one transaction (each request inside its own savepoint so
//! one failure does not sink the others). One fsync (`synchronous=FULL` in
//! WAL mode) then serves hundreds of messages: this is the group commit the
//! ingest throughput rests on. Reads run on a small pool of read-only
//! connections, which WAL lets proceed while the writer commits.
//!
//! The SQLite store serves a single node: claims are never contended, so
//! [`Store::release_claims`] with `None` at start-up returns every delivery a
//! crashed process held to the pool.

mod schema;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use herald_core::model::{
    Application, Attempt, AttemptErrorKind, DeliveryStatus, DeliveryTarget, Endpoint, EventType, Message, TriggerType,
    subscribers,
};
use herald_core::retry::RetrySchedule;
use herald_core::signing::EndpointSecret;
use herald_core::transform::PayloadTemplate;
use herald_core::validate::{EndpointUrl, EventTypeName, Uid};
use herald_core::{AppId, AttemptId, EndpointId, MessageId};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use tokio::sync::Semaphore;

use crate::{
    AttemptFilter, DeliveryCounts, DeliveryJob, DeliveryState, EncryptionKey, Ingested, MessageFilter, NewApplication,
    NewEndpoint, NewMessage, Order, Outcome, Page, PageRequest, Result, SavedResponse, Store, StoreError,
};
use writer::{Writer, WriterCtx};

const READERS: usize = 4;

pub struct SqliteStore {
    writer: Writer,
    readers: ReadPool,
    key: Arc<EncryptionKey>,
    closed: std::sync::atomic::AtomicBool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    pub fn open(path: &Path, key: EncryptionKey) -> Result<Self> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let mut conn = Connection::open(path)?;
        schema::configure(&conn)?;
        schema::migrate(&mut conn)?;
        let readers = (0..READERS).map(|_| open_reader(path)).collect::<Result<Vec<_>>>()?;
        Ok(Self {
            writer: Writer::spawn(conn),
            readers: ReadPool::new(readers),
            key: Arc::new(key),
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Applies migrations and returns without starting anything (`herald migrate`).
    pub fn migrate_only(path: &Path) -> Result<()> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let mut conn = Connection::open(path)?;
        schema::configure(&conn)?;
        schema::migrate(&mut conn)
    }

    /// The database file for a `sqlite://` URL.
    pub fn path_from_url(url: &str) -> Option<PathBuf> {
        let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
        let rest = rest.split('?').next().unwrap_or(rest);
        Some(PathBuf::from(rest))
    }

    async fn read<T: Send + 'static>(&self, f: impl FnOnce(&Connection) -> Result<T> + Send + 'static) -> Result<T> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        self.readers.run(f).await
    }
}

fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// A fixed set of read-only connections; a read borrows one on a blocking thread.
struct ReadPool {
    conns: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
}

impl ReadPool {
    fn new(conns: Vec<Connection>) -> Self {
        let n = conns.len();
        Self {
            conns: Arc::new(Mutex::new(conns)),
            permits: Arc::new(Semaphore::new(n)),
        }
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce(&Connection) -> Result<T> + Send + 'static) -> Result<T> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let conns = self.conns.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = conns
                .lock()
                .map_err(|_| StoreError::Closed)?
                .pop()
                .ok_or(StoreError::Closed)?;
            let result = f(&conn);
            if let Ok(mut pool) = conns.lock() {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

// ---------- conversions ----------

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn opt_json<T: serde::Serialize>(v: &Option<T>) -> Option<String> {
    v.as_ref().map(to_json)
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

fn opt_from_json<T: serde::de::DeserializeOwned>(text: Option<String>) -> rusqlite::Result<Option<T>> {
    text.map(|t| from_json(&t)).transpose()
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(err, _) if err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
        || err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

fn conflict(e: rusqlite::Error, what: &str) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict(what.to_owned())
    } else {
        StoreError::Database(e)
    }
}

const APP_COLS: &str = "id, uid, name, metadata, throttle_rate, created_at, updated_at";

fn app_row(r: &Row) -> rusqlite::Result<Application> {
    Ok(Application {
        id: AppId::from_trusted(r.get(0)?),
        uid: r.get::<_, Option<String>>(1)?.map(Uid::from_trusted),
        name: r.get(2)?,
        metadata: from_json(&r.get::<_, String>(3)?)?,
        throttle_rate: r.get(4)?,
        created_at: from_ms(r.get(5)?),
        updated_at: from_ms(r.get(6)?),
    })
}

const EP_COLS: &str = "id, app_id, uid, url, description, metadata, disabled, filter_types, channels, \
    throttle_rate, headers, timeout_ms, created_at, updated_at, payload_template";
/// The column after [`EP_COLS`] when the secret is selected too.
const EP_SECRET_COL: usize = 15;

fn ep_row(r: &Row) -> rusqlite::Result<Endpoint> {
    Ok(Endpoint {
        id: EndpointId::from_trusted(r.get(0)?),
        app_id: AppId::from_trusted(r.get(1)?),
        uid: r.get::<_, Option<String>>(2)?.map(Uid::from_trusted),
        url: EndpointUrl::from_trusted(r.get(3)?),
        description: r.get(4)?,
        metadata: from_json(&r.get::<_, String>(5)?)?,
        disabled: r.get(6)?,
        filter_types: opt_from_json(r.get(7)?)?,
        channels: opt_from_json(r.get(8)?)?,
        throttle_rate: r.get(9)?,
        headers: from_json(&r.get::<_, String>(10)?)?,
        timeout: Duration::from_millis(r.get::<_, i64>(11)?.max(1) as u64),
        created_at: from_ms(r.get(12)?),
        updated_at: from_ms(r.get(13)?),
        payload_template: r
            .get::<_, Option<String>>(14)?
            .map(|source| {
                PayloadTemplate::parse(&source).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(14, rusqlite::types::Type::Text, Box::new(e))
                })
            })
            .transpose()?,
    })
}

const ET_COLS: &str =
    "name, description, archived, deprecated, schemas, feature_flags, group_name, created_at, updated_at";

fn et_row(r: &Row) -> rusqlite::Result<EventType> {
    Ok(EventType {
        name: EventTypeName::from_trusted(r.get(0)?),
        description: r.get(1)?,
        archived: r.get(2)?,
        deprecated: r.get(3)?,
        schemas: opt_from_json(r.get(4)?)?,
        feature_flags: opt_from_json(r.get(5)?)?,
        group_name: r.get(6)?,
        created_at: from_ms(r.get(7)?),
        updated_at: from_ms(r.get(8)?),
    })
}

const MSG_COLS: &str = "m.id, m.app_id, m.event_type, m.event_id, m.channels, m.tags, m.payload, m.created_at";

fn msg_row(r: &Row) -> rusqlite::Result<Message> {
    Ok(Message {
        id: MessageId::from_trusted(r.get(0)?),
        app_id: AppId::from_trusted(r.get(1)?),
        event_type: EventTypeName::from_trusted(r.get(2)?),
        event_id: r.get::<_, Option<String>>(3)?.map(Uid::from_trusted),
        channels: opt_from_json(r.get(4)?)?,
        tags: opt_from_json(r.get(5)?)?,
        payload: Bytes::from(r.get::<_, Vec<u8>>(6)?),
        created_at: from_ms(r.get(7)?),
    })
}

const ATTEMPT_COLS: &str = "a.id, a.msg_id, a.endpoint_id, a.app_id, a.url, a.status_code, a.response, \
    a.duration_ms, a.status, a.error_kind, a.trigger_type, a.attempt_number, a.created_at";

fn attempt_row(r: &Row) -> rusqlite::Result<Attempt> {
    Ok(Attempt {
        id: AttemptId::from_trusted(r.get(0)?),
        msg_id: MessageId::from_trusted(r.get(1)?),
        endpoint_id: EndpointId::from_trusted(r.get(2)?),
        app_id: AppId::from_trusted(r.get(3)?),
        url: r.get(4)?,
        response_status_code: r.get(5)?,
        response: r.get(6)?,
        response_duration_ms: r.get::<_, i64>(7)?.max(0) as u64,
        status: DeliveryStatus::from_code(r.get(8)?).unwrap_or(DeliveryStatus::Fail),
        error_kind: r
            .get::<_, Option<String>>(9)?
            .as_deref()
            .and_then(AttemptErrorKind::parse),
        trigger_type: if r.get::<_, i64>(10)? == 1 {
            TriggerType::Manual
        } else {
            TriggerType::Scheduled
        },
        attempt_number: r.get(11)?,
        created_at: from_ms(r.get(12)?),
    })
}

// ---------- pagination ----------

/// A WHERE clause under construction, with its positional parameters.
#[derive(Default)]
struct Filter {
    clauses: Vec<String>,
    params: Vec<Value>,
}

impl Filter {
    fn push(&mut self, clause: &str, values: impl IntoIterator<Item = Value>) {
        self.clauses.push(clause.to_owned());
        self.params.extend(values);
    }

    fn any_of(&mut self, column: &str, values: &[String]) {
        if values.is_empty() {
            return;
        }
        let marks = vec!["?"; values.len()].join(",");
        self.push(
            &format!("{column} IN ({marks})"),
            values.iter().map(|v| Value::Text(v.clone())),
        );
    }

    fn time_range(&mut self, column: &str, before: Option<DateTime<Utc>>, after: Option<DateTime<Utc>>) {
        if let Some(b) = before {
            self.push(&format!("{column} < ?"), [Value::Integer(ms(b))]);
        }
        if let Some(a) = after {
            self.push(&format!("{column} > ?"), [Value::Integer(ms(a))]);
        }
    }
}

/// What a list query selects, from where, keyed on which id column (ids sort
/// by creation time, so the key orders by age).
struct Listing {
    cols: &'static str,
    from: &'static str,
    key: &'static str,
}

const APPS: Listing = Listing {
    cols: APP_COLS,
    from: "application",
    key: "id",
};
const ENDPOINTS: Listing = Listing {
    cols: EP_COLS,
    from: "endpoint",
    key: "id",
};
const EVENT_TYPES: Listing = Listing {
    cols: ET_COLS,
    from: "event_type",
    key: "name",
};
const MESSAGES: Listing = Listing {
    cols: MSG_COLS,
    from: "message m",
    key: "m.id",
};
const ATTEMPTS: Listing = Listing {
    cols: ATTEMPT_COLS,
    from: "attempt a",
    key: "a.id",
};

/// Runs `SELECT {cols} FROM {from} WHERE {filter} ORDER BY {key}` one page at
/// a time.
fn paginate<T>(
    conn: &Connection,
    Listing { cols, from, key }: &Listing,
    mut filter: Filter,
    page: &PageRequest,
    map: impl Fn(&Row) -> rusqlite::Result<T>,
    id_of: impl Fn(&T) -> String,
) -> Result<Page<T>> {
    let limit = page.limit.clamp(1, 250);
    let (backwards, cursor) = match page.iterator.as_deref() {
        Some(it) if it.starts_with('-') => (true, Some(it[1..].to_owned())),
        Some(it) if !it.is_empty() => (false, Some(it.to_owned())),
        _ => (false, None),
    };
    let ascending = (page.order == Order::Ascending) != backwards;
    if let Some(c) = &cursor {
        filter.push(
            &format!("{key} {} ?", if ascending { ">" } else { "<" }),
            [Value::Text(c.clone())],
        );
    }
    let where_sql = if filter.clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", filter.clauses.join(" AND "))
    };
    let sql = format!(
        "SELECT {cols} FROM {from} {where_sql} ORDER BY {key} {} LIMIT {}",
        if ascending { "ASC" } else { "DESC" },
        limit + 1
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut data = stmt
        .query_map(rusqlite::params_from_iter(filter.params.iter()), &map)?
        .collect::<rusqlite::Result<Vec<T>>>()?;
    let more = data.len() > limit;
    data.truncate(limit);
    if backwards {
        data.reverse();
    }
    let iterator = data
        .last()
        .map(&id_of)
        .or_else(|| if backwards { cursor.clone() } else { None });
    let prev_iterator = data.first().map(|t| format!("-{}", id_of(t)));
    // "done": nothing further in the direction of travel.
    let done = !more;
    Ok(Page {
        data,
        iterator,
        prev_iterator,
        done,
    })
}

pub(crate) fn resolve_app(conn: &Connection, id_or_uid: &str) -> Result<AppId> {
    conn.prepare_cached(
        "SELECT id FROM application WHERE id = ?1 UNION ALL SELECT id FROM application WHERE uid = ?1 LIMIT 1",
    )?
    .query_row([id_or_uid], |r| r.get::<_, String>(0))
    .optional()?
    .map(AppId::from_trusted)
    .ok_or(StoreError::NotFound("application"))
}

fn decrypt_secret(key: &EncryptionKey, sealed: &[u8]) -> Result<EndpointSecret> {
    let plain = key.open(sealed).ok_or_else(|| {
        StoreError::Crypto("endpoint secret does not decrypt with the configured encryption key".into())
    })?;
    EndpointSecret::from_storage_bytes(&plain).map_err(|e| StoreError::Corrupt(format!("endpoint secret: {e}")))
}

fn select_app(conn: &Connection, id: &AppId) -> Result<Application> {
    conn.prepare_cached(&format!("SELECT {APP_COLS} FROM application WHERE id = ?1"))?
        .query_row([id.as_str()], app_row)
        .optional()?
        .ok_or(StoreError::NotFound("application"))
}

fn select_endpoint(conn: &Connection, app_id: &AppId, id_or_uid: &str) -> Result<Endpoint> {
    conn.prepare_cached(&format!(
        "SELECT {EP_COLS} FROM endpoint WHERE app_id = ?1 AND id = ?2 \
         UNION ALL SELECT {EP_COLS} FROM endpoint WHERE app_id = ?1 AND uid = ?2 LIMIT 1"
    ))?
    .query_row([app_id.as_str(), id_or_uid], ep_row)
    .optional()?
    .ok_or(StoreError::NotFound("endpoint"))
}

fn select_event_type(conn: &Connection, name: &str) -> Result<EventType> {
    conn.prepare_cached(&format!("SELECT {ET_COLS} FROM event_type WHERE name = ?1"))?
        .query_row([name], et_row)
        .optional()?
        .ok_or(StoreError::NotFound("event type"))
}

fn insert_message_with_fanout(ctx: &mut WriterCtx, msg: NewMessage, now: DateTime<Utc>) -> Result<Ingested> {
    let app_id = ctx.resolve_app(&msg.app.0)?;
    let id = MessageId::new();
    let channels_json = opt_json(&msg.channels);
    ctx.conn
        .prepare_cached(
            "INSERT INTO message (id, app_id, event_type, event_id, channels, tags, payload, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            id.as_str(),
            app_id.as_str(),
            msg.event_type.as_str(),
            msg.event_id.as_ref().map(Uid::as_str),
            channels_json,
            opt_json(&msg.tags),
            &msg.payload[..],
            ms(now)
        ])
        .map_err(|e| conflict(e, "a message with this eventId already exists"))?;

    let endpoints = ctx.endpoints_of(&app_id)?;
    let claim = msg.claim_until.map(ms);
    let mut deliveries = Vec::new();
    let mut insert = ctx.conn.prepare_cached(
        "INSERT INTO delivery (msg_id, endpoint_id, app_id, status, attempts, next_attempt_at, claim_until, updated_at) \
         VALUES (?1, ?2, ?3, 1, 0, ?4, ?5, ?4)",
    )?;
    for ep in subscribers(&endpoints, msg.event_type.as_str(), msg.channels.as_deref()) {
        insert.execute(params![id.as_str(), ep.id.as_str(), app_id.as_str(), ms(now), claim])?;
        deliveries.push(DeliveryJob {
            delivery_id: ctx.conn.last_insert_rowid(),
            msg_id: id.clone(),
            app_id: app_id.clone(),
            endpoint_id: ep.id.clone(),
            event_type: msg.event_type.clone(),
            payload: msg.payload.clone(),
            attempts: 0,
            due_at: now,
            msg_created_at: now,
            first_attempt_at: None,
        });
    }
    let message = Message {
        id,
        app_id,
        event_type: msg.event_type,
        event_id: msg.event_id,
        channels: msg.channels,
        tags: msg.tags,
        payload: msg.payload,
        created_at: now,
    };
    Ok(Ingested { message, deliveries })
}

fn record_outcome(conn: &Connection, o: &Outcome, now: i64) -> Result<()> {
    if let Some(a) = &o.attempt {
        conn.prepare_cached(
            "INSERT INTO attempt (id, msg_id, endpoint_id, app_id, delivery_id, url, status_code, response, \
             duration_ms, status, error_kind, trigger_type, attempt_number, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?
        .execute(params![
            a.id.as_str(),
            a.msg_id.as_str(),
            a.endpoint_id.as_str(),
            a.app_id.as_str(),
            o.delivery_id,
            a.url,
            a.response_status_code,
            a.response,
            a.response_duration_ms as i64,
            a.status.code(),
            a.error_kind.map(AttemptErrorKind::as_str),
            a.trigger_type as i64,
            a.attempt_number,
            ms(a.created_at)
        ])?;
    }
    let tried = i64::from(o.attempt.is_some());
    // The first attempt's start is kept (templates can show it); later ones leave it.
    let started = o.attempt.as_ref().map(|a| ms(a.created_at));
    match &o.state {
        DeliveryState::Succeeded => conn
            .prepare_cached(
                "UPDATE delivery SET status = 0, attempts = attempts + ?2, claim_until = NULL, updated_at = ?3, \
                 first_attempt_at = COALESCE(first_attempt_at, ?4) WHERE id = ?1 AND status = 1",
            )?
            .execute(params![o.delivery_id, tried, now, started])?,
        DeliveryState::Failed => conn
            .prepare_cached(
                "UPDATE delivery SET status = 2, attempts = attempts + ?2, claim_until = NULL, updated_at = ?3, \
                 first_attempt_at = COALESCE(first_attempt_at, ?4) WHERE id = ?1 AND status = 1",
            )?
            .execute(params![o.delivery_id, tried, now, started])?,
        DeliveryState::Retry { at, keep_claim_until } => conn
            .prepare_cached(
                "UPDATE delivery SET status = 1, attempts = attempts + ?2, next_attempt_at = ?3, claim_until = ?4, \
                 updated_at = ?5, first_attempt_at = COALESCE(first_attempt_at, ?6) WHERE id = ?1 AND status = 1",
            )?
            .execute(params![
                o.delivery_id,
                tried,
                ms(*at),
                keep_claim_until.map(ms),
                now,
                started
            ])?,
    };
    Ok(())
}

#[async_trait::async_trait]
impl Store for SqliteStore {
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
                        to_json(&out.metadata),
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
                        to_json(&app.metadata),
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
                // History goes through the application's messages (their
                // index), then the messages and endpoints themselves.
                for sql in [
                    "DELETE FROM attempt WHERE msg_id IN (SELECT id FROM message WHERE app_id = ?1)",
                    "DELETE FROM delivery WHERE msg_id IN (SELECT id FROM message WHERE app_id = ?1)",
                    "DELETE FROM message WHERE app_id = ?1",
                    "DELETE FROM endpoint WHERE app_id = ?1",
                ] {
                    ctx.conn.execute(sql, [id.as_str()])?;
                }
                ctx.forget_app(&id);
                ctx.forget_app_names();
                Ok(())
            })
            .await
    }

    async fn create_endpoint(&self, app_id: &AppId, ep: NewEndpoint) -> Result<Endpoint> {
        let app_id = app_id.clone();
        let sealed = self.key.seal(&ep.secret.to_storage_bytes());
        self.writer
            .run(move |ctx| {
                select_app(&ctx.conn, &app_id)?;
                let now = Utc::now();
                let out = Endpoint {
                    id: EndpointId::new(),
                    app_id: app_id.clone(),
                    uid: ep.uid,
                    url: ep.url,
                    description: ep.description,
                    metadata: ep.metadata,
                    disabled: ep.disabled,
                    filter_types: ep.filter_types,
                    channels: ep.channels,
                    throttle_rate: ep.throttle_rate,
                    headers: ep.headers,
                    timeout: ep.timeout,
                    payload_template: ep.payload_template,
                    created_at: now,
                    updated_at: now,
                };
                ctx.conn
                    .prepare_cached(&format!(
                        "INSERT INTO endpoint ({EP_COLS}, secret) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
                    ))?
                    .execute(params![
                        out.id.as_str(),
                        out.app_id.as_str(),
                        out.uid.as_ref().map(Uid::as_str),
                        out.url.as_str(),
                        out.description,
                        to_json(&out.metadata),
                        out.disabled,
                        opt_json(&out.filter_types),
                        opt_json(&out.channels),
                        out.throttle_rate,
                        to_json(&out.headers),
                        out.timeout.as_millis() as i64,
                        ms(now),
                        ms(now),
                        out.payload_template.as_ref().map(PayloadTemplate::source),
                        sealed
                    ])
                    .map_err(|e| conflict(e, "an endpoint with this uid already exists in this application"))?;
                ctx.forget_app(&app_id);
                Ok(out)
            })
            .await
    }

    async fn get_endpoint(&self, app_id: &AppId, id_or_uid: &str) -> Result<Endpoint> {
        let (app_id, key) = (app_id.clone(), id_or_uid.to_owned());
        self.read(move |c| select_endpoint(c, &app_id, &key)).await
    }

    async fn list_endpoints(&self, app_id: &AppId, page: PageRequest) -> Result<Page<Endpoint>> {
        let app_id = app_id.clone();
        self.read(move |c| {
            let mut f = Filter::default();
            f.push("app_id = ?", [Value::Text(app_id.to_string())]);
            paginate(c, &ENDPOINTS, f, &page, ep_row, |e| e.id.to_string())
        })
        .await
    }

    async fn update_endpoint(&self, ep: Endpoint) -> Result<Endpoint> {
        self.writer
            .run(move |ctx| {
                let mut ep = ep;
                ep.updated_at = Utc::now();
                let n = ctx
                    .conn
                    .prepare_cached(
                        "UPDATE endpoint SET uid = ?3, url = ?4, description = ?5, metadata = ?6, disabled = ?7, \
                         filter_types = ?8, channels = ?9, throttle_rate = ?10, headers = ?11, timeout_ms = ?12, \
                         updated_at = ?13, payload_template = ?14 WHERE id = ?1 AND app_id = ?2",
                    )?
                    .execute(params![
                        ep.id.as_str(),
                        ep.app_id.as_str(),
                        ep.uid.as_ref().map(Uid::as_str),
                        ep.url.as_str(),
                        ep.description,
                        to_json(&ep.metadata),
                        ep.disabled,
                        opt_json(&ep.filter_types),
                        opt_json(&ep.channels),
                        ep.throttle_rate,
                        to_json(&ep.headers),
                        ep.timeout.as_millis() as i64,
                        ms(ep.updated_at),
                        ep.payload_template.as_ref().map(PayloadTemplate::source)
                    ])
                    .map_err(|e| conflict(e, "an endpoint with this uid already exists in this application"))?;
                if n == 0 {
                    return Err(StoreError::NotFound("endpoint"));
                }
                ctx.forget_app(&ep.app_id);
                Ok(ep)
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
                // Pending work for a deleted endpoint can never be delivered.
                ctx.conn.execute(
                    "UPDATE delivery SET status = 4, claim_until = NULL WHERE endpoint_id = ?1 AND status = 1",
                    [id.as_str()],
                )?;
                ctx.forget_app(&app_id);
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

    async fn delivery_targets(&self, ids: Vec<EndpointId>) -> Result<Vec<DeliveryTarget>> {
        let key = self.key.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!("SELECT {EP_COLS}, secret FROM endpoint WHERE id = ?1"))?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let row = stmt
                    .query_row([id.as_str()], |r| Ok((ep_row(r)?, r.get::<_, Vec<u8>>(EP_SECRET_COL)?)))
                    .optional()?;
                if let Some((ep, sealed)) = row {
                    out.push(DeliveryTarget {
                        endpoint_id: ep.id,
                        app_id: ep.app_id,
                        url: ep.url,
                        disabled: ep.disabled,
                        secrets: vec![decrypt_secret(&key, &sealed)?],
                        headers: ep.headers,
                        timeout: ep.timeout,
                        retry: RetrySchedule::standard(),
                        payload_template: ep.payload_template,
                    });
                }
            }
            Ok(out)
        })
        .await
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
                    None => {}
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
                        opt_json(&et.schemas),
                        opt_json(&et.feature_flags),
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
                        opt_json(&et.schemas),
                        opt_json(&et.feature_flags),
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

    async fn ingest(&self, msg: NewMessage) -> Result<Ingested> {
        self.writer
            .run_fast(move |ctx| insert_message_with_fanout(ctx, msg, Utc::now()))
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
            f.any_of("m.event_type", &filter.event_types);
            f.time_range("m.created_at", filter.before, filter.after);
            if let Some(ch) = filter.channel {
                f.push(
                    "EXISTS (SELECT 1 FROM json_each(m.channels) WHERE value = ?)",
                    [Value::Text(ch)],
                );
            }
            if let Some(tag) = filter.tag {
                f.push(
                    "EXISTS (SELECT 1 FROM json_each(m.tags) WHERE value = ?)",
                    [Value::Text(tag)],
                );
            }
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

    async fn claim_due(
        &self,
        due_by: DateTime<Utc>,
        claim_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DeliveryJob>> {
        self.writer
            .run_fast(move |ctx| {
                let now = ms(Utc::now());
                // Unclaimed due work, and work whose claim lapsed (its holder
                // died or could not record the outcome); each query walks its
                // own index, and the earliest `limit` of both are taken.
                let mut rows: Vec<(i64, i64)> = Vec::with_capacity(limit);
                let mut unclaimed = ctx.conn.prepare_cached(
                    "SELECT id, next_attempt_at FROM delivery \
                     WHERE status = 1 AND claim_until IS NULL AND next_attempt_at <= ?1 \
                     ORDER BY next_attempt_at LIMIT ?2",
                )?;
                for row in unclaimed.query_map(params![ms(due_by), limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))? {
                    rows.push(row?);
                }
                let mut lapsed = ctx.conn.prepare_cached(
                    "SELECT id, next_attempt_at FROM delivery \
                     WHERE claim_until IS NOT NULL AND claim_until < ?3 AND status = 1 AND next_attempt_at <= ?1 \
                     LIMIT ?2",
                )?;
                for row in lapsed.query_map(params![ms(due_by), limit as i64, now], |r| Ok((r.get(0)?, r.get(1)?)))? {
                    rows.push(row?);
                }
                rows.sort_by_key(|&(id, due)| (due, id));
                rows.truncate(limit);

                let mut load = ctx.conn.prepare_cached(
                    "SELECT d.msg_id, d.app_id, d.endpoint_id, d.attempts, d.next_attempt_at, m.event_type, m.payload, \
                     m.created_at, d.first_attempt_at FROM delivery d JOIN message m ON m.app_id = d.app_id AND m.id = d.msg_id WHERE d.id = ?1",
                )?;
                let mut claim = ctx
                    .conn
                    .prepare_cached("UPDATE delivery SET claim_until = ?2 WHERE id = ?1")?;
                // Deliveries of one message share one copy of its payload.
                let mut payloads: HashMap<String, Bytes> = HashMap::new();
                let mut jobs = Vec::with_capacity(rows.len());
                for (id, _) in rows {
                    let job = load
                        .query_row([id], |r| {
                            let msg_id: String = r.get(0)?;
                            let payload = match payloads.get(&msg_id) {
                                Some(p) => p.clone(),
                                None => {
                                    let p = Bytes::from(r.get::<_, Vec<u8>>(6)?);
                                    payloads.insert(msg_id.clone(), p.clone());
                                    p
                                }
                            };
                            Ok(DeliveryJob {
                                delivery_id: id,
                                msg_id: MessageId::from_trusted(msg_id),
                                app_id: AppId::from_trusted(r.get(1)?),
                                endpoint_id: EndpointId::from_trusted(r.get(2)?),
                                attempts: r.get(3)?,
                                due_at: from_ms(r.get(4)?),
                                event_type: EventTypeName::from_trusted(r.get(5)?),
                                payload,
                                msg_created_at: from_ms(r.get(7)?),
                                first_attempt_at: r.get::<_, Option<i64>>(8)?.map(from_ms),
                            })
                        })
                        .optional()?;
                    if let Some(job) = job {
                        claim.execute(params![id, ms(claim_until)])?;
                        jobs.push(job);
                    }
                }
                Ok(jobs)
            })
            .await
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        self.read(|c| {
            let v: Option<i64> = c
                .prepare_cached("SELECT MIN(next_attempt_at) FROM delivery WHERE status = 1 AND claim_until IS NULL")?
                .query_row([], |r| r.get(0))?;
            Ok(v.map(from_ms))
        })
        .await
    }

    async fn extend_claims(&self, delivery_ids: Vec<i64>, until: DateTime<Utc>) -> Result<u64> {
        self.writer
            .run_fast(move |ctx| {
                let mut stmt = ctx.conn.prepare_cached(
                    "UPDATE delivery SET claim_until = ?2 WHERE id = ?1 AND status = 1 AND claim_until IS NOT NULL",
                )?;
                let mut n = 0;
                for id in delivery_ids {
                    n += stmt.execute(params![id, ms(until)])?;
                }
                Ok(n as u64)
            })
            .await
    }

    async fn record_outcomes(&self, outcomes: Vec<Outcome>) -> Result<()> {
        self.writer
            .run_fast(move |ctx| {
                let now = ms(Utc::now());
                for o in &outcomes {
                    record_outcome(&ctx.conn, o, now)?;
                }
                Ok(())
            })
            .await
    }

    async fn release_claims(&self, delivery_ids: Option<Vec<i64>>) -> Result<u64> {
        self.writer
            .run(move |ctx| {
                let n = match delivery_ids {
                    None => ctx.conn.execute(
                        "UPDATE delivery SET claim_until = NULL WHERE claim_until IS NOT NULL",
                        [],
                    )?,
                    Some(ids) => {
                        let mut stmt = ctx
                            .conn
                            .prepare_cached("UPDATE delivery SET claim_until = NULL WHERE id = ?1")?;
                        let mut n = 0;
                        for id in ids {
                            n += stmt.execute([id])?;
                        }
                        n
                    }
                };
                Ok(n as u64)
            })
            .await
    }

    async fn saved_response(&self, key: &str, max_age: Duration) -> Result<Option<SavedResponse>> {
        let key = key.to_owned();
        let oldest = ms(Utc::now()) - max_age.as_millis() as i64;
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT status, body FROM idempotency WHERE key = ?1 AND created_at >= ?2")?
                    .query_row(params![key, oldest], |r| {
                        Ok(SavedResponse {
                            status: r.get(0)?,
                            body: Bytes::from(r.get::<_, Vec<u8>>(1)?),
                        })
                    })
                    .optional()?,
            )
        })
        .await
    }

    async fn save_response(&self, key: &str, response: SavedResponse) -> Result<()> {
        let key = key.to_owned();
        self.writer
            .run(move |ctx| {
                ctx.conn
                    .prepare_cached(
                        "INSERT OR REPLACE INTO idempotency (key, status, body, created_at) VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![key, response.status, &response.body[..], ms(Utc::now())])?;
                Ok(())
            })
            .await
    }

    async fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::Release);
        self.writer.close().await;
    }
}

fn attempt_filter(filter: AttemptFilter) -> Filter {
    let mut f = Filter::default();
    if let Some(s) = filter.status {
        f.push("a.status = ?", [Value::Integer(s.code())]);
    }
    if let Some(class) = filter.status_code_class {
        let lo = i64::from(class);
        let hi = if class == 0 { 100 } else { lo + 100 };
        f.push(
            "a.status_code >= ? AND a.status_code < ?",
            [Value::Integer(lo), Value::Integer(hi)],
        );
    }
    f.time_range("a.created_at", filter.before, filter.after);
    if let Some(ep) = filter.endpoint_id {
        f.push("a.endpoint_id = ?", [Value::Text(ep)]);
    }
    if !filter.event_types.is_empty() || filter.channel.is_some() {
        let mut sub = Filter::default();
        sub.any_of("m.event_type", &filter.event_types);
        if let Some(ch) = filter.channel {
            sub.push(
                "EXISTS (SELECT 1 FROM json_each(m.channels) WHERE value = ?)",
                [Value::Text(ch)],
            );
        }
        f.push(
            &format!(
                "EXISTS (SELECT 1 FROM message m WHERE m.app_id = a.app_id AND m.id = a.msg_id AND {})",
                sub.clauses.join(" AND ")
            ),
            sub.params,
        );
    }
    f
}

/// Endpoints per application, cached by the writer thread. Every endpoint
/// write goes through the same thread and drops the entry, so the cache can
/// never serve a stale fan-out.
pub(crate) type EndpointCache = HashMap<AppId, Arc<Vec<Endpoint>>>;

pub(crate) fn load_endpoints(conn: &Connection, app_id: &AppId) -> Result<Vec<Endpoint>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {EP_COLS} FROM endpoint WHERE app_id = ?1"))?;
    let rows = stmt
        .query_map([app_id.as_str()], ep_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}
