//! Between rows and domain types: column lists, row mapping, the small
//! lookups every part of the store shares. A value that does not map back
//! (a time out of range, an unknown status code) is an error naming the
//! column, never a plausible default.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use herald_core::model::{
    Application, Attempt, AttemptErrorKind, DeliveryStatus, Endpoint, EndpointSettings, EventType, Message, TriggerType,
};
use herald_core::validate::{EventTypeName, Uid};
use herald_core::{AppId, AttemptId, EndpointId, MessageId};
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row};

use crate::crypto::open_credentials;
pub(crate) use crate::crypto::{decrypt_secret, seal_credentials};
use crate::{EncryptionKey, Result, StoreError};

/// The database's clock in Unix milliseconds: leases and due times are
/// decided by it, never by a node's own clock.
pub(crate) fn db_now_ms(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER)")?
        .query_row([], |r| r.get(0))?)
}

/// A column whose stored value does not map to its domain type.
fn bad_column(col: usize, what: impl Into<String>) -> rusqlite::Error {
    let msg: String = what.into();
    rusqlite::Error::FromSqlConversionFailure(col, Type::Integer, msg.into())
}

/// A `count(*)` column as a count.
pub(crate) fn count(r: &rusqlite::Row<'_>, col: usize) -> rusqlite::Result<u64> {
    u64::try_from(r.get::<_, i64>(col)?).map_err(|_| bad_column(col, "a negative count"))
}

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn ttl_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `d` after the time `at` (milliseconds), saturating: a lease or a wait of
/// `Duration::MAX` means never, not a time that wrapped into the past.
pub(crate) fn after(at: i64, d: Duration) -> i64 {
    at.saturating_add(ttl_ms(d))
}

/// A stored time; `col` names the column when it is out of range.
pub(crate) fn time_at(r: &Row, col: usize) -> rusqlite::Result<DateTime<Utc>> {
    from_ms(r.get(col)?).ok_or_else(|| bad_column(col, "time out of range"))
}

pub(crate) fn opt_time_at(r: &Row, col: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    r.get::<_, Option<i64>>(col)?
        .map(|v| from_ms(v).ok_or_else(|| bad_column(col, "time out of range")))
        .transpose()
}

pub(crate) fn from_ms(v: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(v).single()
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Encode(e.to_string()))
}

pub(crate) fn opt_json<T: serde::Serialize>(v: &Option<T>) -> Result<Option<String>> {
    v.as_ref().map(to_json).transpose()
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

/// The JSON in column `col`; a document that does not decode (including a
/// stored payload template that no longer parses) names the column.
pub(crate) fn json_at<T: serde::de::DeserializeOwned>(r: &Row, col: usize) -> rusqlite::Result<T> {
    let text: String = r.get(col)?;
    serde_json::from_str(&text).map_err(|e| rusqlite::Error::FromSqlConversionFailure(col, Type::Text, Box::new(e)))
}

pub(crate) fn opt_from_json<T: serde::de::DeserializeOwned>(text: Option<String>) -> rusqlite::Result<Option<T>> {
    text.map(|t| from_json(&t)).transpose()
}

pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(err, _) if err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
        || err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

pub(crate) fn conflict(e: rusqlite::Error, what: &str) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict(what.to_owned())
    } else {
        StoreError::Database(e)
    }
}

pub(crate) const APP_COLS: &str = "id, uid, name, metadata, throttle_rate, created_at, updated_at";

pub(crate) fn app_row(r: &Row) -> rusqlite::Result<Application> {
    Ok(Application {
        id: AppId::from_trusted(r.get(0)?),
        uid: r.get::<_, Option<String>>(1)?.map(Uid::from_trusted),
        name: r.get(2)?,
        metadata: from_json(&r.get::<_, String>(3)?)?,
        throttle_rate: r.get(4)?,
        created_at: time_at(r, 5)?,
        updated_at: time_at(r, 6)?,
    })
}

/// Endpoint settings live in one JSON document (`settings`, in the serde
/// shape of `EndpointSettings`); only what queries look up by is a column
/// of its own. A new setting therefore touches no column list here. The
/// secret halves of its credentials are sealed apart (`credentials`).
pub(crate) const EP_COLS: &str = "id, app_id, uid, settings, created_at, updated_at, credentials";
/// The column after [`EP_COLS`] when the secret is selected too.
pub(crate) const EP_SECRET_COL: usize = 7;

/// An endpoint, its credentials unsealed with `key`: every endpoint read
/// is whole, so writing back one that was read keeps its credentials.
pub(crate) fn ep_row(r: &Row, key: &EncryptionKey) -> rusqlite::Result<Endpoint> {
    let mut settings: EndpointSettings = json_at(r, 3)?;
    let sealed: Option<Vec<u8>> = r.get(6)?;
    open_credentials(key, sealed.as_deref(), &mut settings).map_err(|e| bad_column(6, e))?;
    Ok(Endpoint {
        id: EndpointId::from_trusted(r.get(0)?),
        app_id: AppId::from_trusted(r.get(1)?),
        uid: r.get::<_, Option<String>>(2)?.map(Uid::from_trusted),
        settings,
        created_at: time_at(r, 4)?,
        updated_at: time_at(r, 5)?,
    })
}

pub(crate) const ET_COLS: &str =
    "name, description, archived, deprecated, schemas, feature_flags, group_name, created_at, updated_at";

pub(crate) fn et_row(r: &Row) -> rusqlite::Result<EventType> {
    Ok(EventType {
        name: EventTypeName::from_trusted(r.get(0)?),
        description: r.get(1)?,
        archived: r.get(2)?,
        deprecated: r.get(3)?,
        schemas: opt_from_json(r.get(4)?)?,
        feature_flags: opt_from_json(r.get(5)?)?,
        group_name: r.get(6)?,
        created_at: time_at(r, 7)?,
        updated_at: time_at(r, 8)?,
    })
}

pub(crate) const MSG_COLS: &str =
    "m.id, m.app_id, m.event_type, m.event_id, m.channels, m.tags, m.payload, m.created_at";

pub(crate) fn msg_row(r: &Row) -> rusqlite::Result<Message> {
    Ok(Message {
        id: MessageId::from_trusted(r.get(0)?),
        app_id: AppId::from_trusted(r.get(1)?),
        event_type: EventTypeName::from_trusted(r.get(2)?),
        event_id: r.get::<_, Option<String>>(3)?.map(Uid::from_trusted),
        channels: opt_from_json(r.get(4)?)?,
        tags: opt_from_json(r.get(5)?)?,
        payload: Bytes::from(r.get::<_, Vec<u8>>(6)?),
        created_at: time_at(r, 7)?,
    })
}

pub(crate) const ATTEMPT_COLS: &str = "a.id, a.msg_id, a.endpoint_id, a.app_id, a.url, a.status_code, a.response, \
    a.duration_ms, a.status, a.error_kind, a.trigger_type, a.attempt_number, a.created_at";

pub(crate) fn attempt_row(r: &Row) -> rusqlite::Result<Attempt> {
    Ok(Attempt {
        id: AttemptId::from_trusted(r.get(0)?),
        msg_id: MessageId::from_trusted(r.get(1)?),
        endpoint_id: EndpointId::from_trusted(r.get(2)?),
        app_id: AppId::from_trusted(r.get(3)?),
        url: r.get(4)?,
        response_status_code: r.get(5)?,
        response: r.get(6)?,
        response_duration_ms: u64::try_from(r.get::<_, i64>(7)?).map_err(|_| bad_column(7, "negative duration"))?,
        status: DeliveryStatus::from_code(r.get(8)?).ok_or_else(|| bad_column(8, "unknown attempt status"))?,
        error_kind: r
            .get::<_, Option<String>>(9)?
            .map(|kind| {
                AttemptErrorKind::parse(&kind).ok_or_else(|| bad_column(9, format!("unknown error kind {kind}")))
            })
            .transpose()?,
        trigger_type: match r.get::<_, i64>(10)? {
            0 => TriggerType::Scheduled,
            1 => TriggerType::Manual,
            other => return Err(bad_column(10, format!("unknown trigger type {other}"))),
        },
        attempt_number: r.get(11)?,
        created_at: time_at(r, 12)?,
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

pub(crate) fn select_app(conn: &Connection, id: &AppId) -> Result<Application> {
    conn.prepare_cached(&format!("SELECT {APP_COLS} FROM application WHERE id = ?1"))?
        .query_row([id.as_str()], app_row)
        .optional()?
        .ok_or(StoreError::NotFound("application"))
}

pub(crate) fn select_endpoint(
    conn: &Connection,
    key: &EncryptionKey,
    app_id: &AppId,
    id_or_uid: &str,
) -> Result<Endpoint> {
    conn.prepare_cached(&format!(
        "SELECT {EP_COLS} FROM endpoint WHERE app_id = ?1 AND id = ?2 \
         UNION ALL SELECT {EP_COLS} FROM endpoint WHERE app_id = ?1 AND uid = ?2 LIMIT 1"
    ))?
    .query_row([app_id.as_str(), id_or_uid], |r| ep_row(r, key))
    .optional()?
    .ok_or(StoreError::NotFound("endpoint"))
}

pub(crate) fn select_event_type(conn: &Connection, name: &str) -> Result<EventType> {
    conn.prepare_cached(&format!("SELECT {ET_COLS} FROM event_type WHERE name = ?1"))?
        .query_row([name], et_row)
        .optional()?
        .ok_or(StoreError::NotFound("event type"))
}

/// Endpoints per application, cached by the writer thread. Every endpoint
/// write goes through the same thread and drops the entry, so the cache can
/// never serve a stale fan-out.
pub(crate) type EndpointCache = HashMap<AppId, Arc<Vec<Endpoint>>>;

pub(crate) fn load_endpoints(conn: &Connection, key: &EncryptionKey, app_id: &AppId) -> Result<Vec<Endpoint>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {EP_COLS} FROM endpoint WHERE app_id = ?1"))?;
    let rows = stmt
        .query_map([app_id.as_str()], |r| ep_row(r, key))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}
