//! Between PostgreSQL rows and domain types: column lists, row mapping and
//! the small lookups every part of the store shares. The column lists and
//! their order are the SQLite store's, so queries read alike in both. A
//! value that does not map back (a time out of range, an unknown status
//! code, JSON that does not decode) is [`StoreError::Corrupt`] naming the
//! column, never a plausible default.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use deadpool_postgres::GenericClient;
use herald_core::model::{
    Application, Attempt, AttemptErrorKind, DeliveryStatus, Endpoint, EndpointSettings, EventType, Message, TriggerType,
};
use herald_core::validate::{EventTypeName, Uid};
use herald_core::{AppId, AttemptId, EndpointId, MessageId};
use tokio_postgres::Row;

use crate::crypto::open_credentials;
pub(crate) use crate::crypto::{decrypt_secret, seal_credentials};
use crate::{EncryptionKey, Result, StoreError};

/// The database's now, read on its own.
pub(crate) async fn db_now_ms(client: &impl GenericClient) -> Result<i64> {
    let stmt = client.prepare_cached("SELECT herald_now_ms()").await?;
    Ok(client.query_one(&stmt, &[]).await?.try_get(0)?)
}

fn corrupt(row: &Row, col: usize, what: impl std::fmt::Display) -> StoreError {
    let name = row.columns().get(col).map_or("?", |c| c.name());
    StoreError::Corrupt(format!("column {name}: {what}"))
}

/// Column `col`, whose SQL type must be the one `T` maps from.
pub(crate) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, col: usize) -> Result<T> {
    row.try_get(col).map_err(|e| corrupt(row, col, e))
}

/// A `count(*)` or other non-negative `BIGINT` column as a count.
pub(crate) fn count(row: &Row, col: usize) -> Result<u64> {
    u64::try_from(get::<i64>(row, col)?).map_err(|_| corrupt(row, col, "a negative count"))
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

pub(crate) fn from_ms(v: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(v).single()
}

/// A stored time; out of range names the column.
pub(crate) fn time_at(row: &Row, col: usize) -> Result<DateTime<Utc>> {
    let v: i64 = get(row, col)?;
    from_ms(v).ok_or_else(|| corrupt(row, col, "time out of range"))
}

pub(crate) fn opt_time_at(row: &Row, col: usize) -> Result<Option<DateTime<Utc>>> {
    get::<Option<i64>>(row, col)?
        .map(|v| from_ms(v).ok_or_else(|| corrupt(row, col, "time out of range")))
        .transpose()
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Encode(e.to_string()))
}

pub(crate) fn opt_json<T: serde::Serialize>(v: &Option<T>) -> Result<Option<String>> {
    v.as_ref().map(to_json).transpose()
}

/// The JSON text in column `col`.
pub(crate) fn json_at<T: serde::de::DeserializeOwned>(row: &Row, col: usize) -> Result<T> {
    let text: &str = get(row, col)?;
    serde_json::from_str(text).map_err(|e| corrupt(row, col, e))
}

pub(crate) fn opt_json_at<T: serde::de::DeserializeOwned>(row: &Row, col: usize) -> Result<Option<T>> {
    get::<Option<&str>>(row, col)?
        .map(|text| serde_json::from_str(text).map_err(|e| corrupt(row, col, e)))
        .transpose()
}

/// A unique or primary-key violation (SQLSTATE 23505).
pub(crate) fn is_unique_violation(e: &StoreError) -> bool {
    matches!(e, StoreError::Postgres(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION))
}

/// `e` as a conflict over `what` when it is a unique violation.
pub(crate) fn conflict(e: impl Into<StoreError>, what: &str) -> StoreError {
    let e = e.into();
    if is_unique_violation(&e) {
        StoreError::Conflict(what.to_owned())
    } else {
        e
    }
}

pub(crate) const APP_COLS: &str = "id, uid, name, metadata, throttle_rate, created_at, updated_at";

pub(crate) fn app_row(r: &Row) -> Result<Application> {
    Ok(Application {
        id: AppId::from_trusted(get(r, 0)?),
        uid: get::<Option<String>>(r, 1)?.map(Uid::from_trusted),
        name: get(r, 2)?,
        metadata: json_at(r, 3)?,
        throttle_rate: get::<Option<i64>>(r, 4)?
            .map(|v| u32::try_from(v).map_err(|_| corrupt(r, 4, "throttle rate out of range")))
            .transpose()?,
        created_at: time_at(r, 5)?,
        updated_at: time_at(r, 6)?,
    })
}

/// Endpoint settings live in one JSON document (`settings`, in the serde
/// shape of `EndpointSettings`); only what queries look up by is a column
/// of its own. The secret halves of its credentials are sealed apart
/// (`credentials`).
pub(crate) const EP_COLS: &str = "id, app_id, uid, settings, created_at, updated_at, credentials";
/// The column after [`EP_COLS`] when the secret is selected too.
pub(crate) const EP_SECRET_COL: usize = 7;

/// An endpoint, its credentials unsealed with `key`: every endpoint read
/// is whole, so writing back one that was read keeps its credentials.
pub(crate) fn ep_row(r: &Row, key: &EncryptionKey) -> Result<Endpoint> {
    let mut settings: EndpointSettings = json_at(r, 3)?;
    let sealed: Option<&[u8]> = get(r, 6)?;
    open_credentials(key, sealed, &mut settings).map_err(|e| corrupt(r, 6, e))?;
    Ok(Endpoint {
        id: EndpointId::from_trusted(get(r, 0)?),
        app_id: AppId::from_trusted(get(r, 1)?),
        uid: get::<Option<String>>(r, 2)?.map(Uid::from_trusted),
        settings,
        created_at: time_at(r, 4)?,
        updated_at: time_at(r, 5)?,
    })
}

pub(crate) const ET_COLS: &str =
    "name, description, archived, deprecated, schemas, feature_flags, group_name, created_at, updated_at";

pub(crate) fn et_row(r: &Row) -> Result<EventType> {
    Ok(EventType {
        name: EventTypeName::from_trusted(get(r, 0)?),
        description: get(r, 1)?,
        archived: get(r, 2)?,
        deprecated: get(r, 3)?,
        schemas: opt_json_at(r, 4)?,
        feature_flags: opt_json_at(r, 5)?,
        group_name: get(r, 6)?,
        created_at: time_at(r, 7)?,
        updated_at: time_at(r, 8)?,
    })
}

pub(crate) const MSG_COLS: &str =
    "m.id, m.app_id, m.event_type, m.event_id, m.channels, m.tags, m.payload, m.created_at";

pub(crate) fn msg_row(r: &Row) -> Result<Message> {
    Ok(Message {
        id: MessageId::from_trusted(get(r, 0)?),
        app_id: AppId::from_trusted(get(r, 1)?),
        event_type: EventTypeName::from_trusted(get(r, 2)?),
        event_id: get::<Option<String>>(r, 3)?.map(Uid::from_trusted),
        channels: opt_json_at(r, 4)?,
        tags: opt_json_at(r, 5)?,
        payload: Bytes::copy_from_slice(get::<&[u8]>(r, 6)?),
        created_at: time_at(r, 7)?,
    })
}

pub(crate) const ATTEMPT_COLS: &str = "a.id, a.msg_id, a.endpoint_id, a.app_id, a.url, a.status_code, a.response, \
    a.duration_ms, a.status, a.error_kind, a.trigger_type, a.attempt_number, a.created_at";

pub(crate) fn attempt_row(r: &Row) -> Result<Attempt> {
    let code: i64 = get(r, 8)?;
    let kind: Option<String> = get(r, 9)?;
    Ok(Attempt {
        id: AttemptId::from_trusted(get(r, 0)?),
        msg_id: MessageId::from_trusted(get(r, 1)?),
        endpoint_id: EndpointId::from_trusted(get(r, 2)?),
        app_id: AppId::from_trusted(get(r, 3)?),
        url: get(r, 4)?,
        response_status_code: int(r, 5)?,
        response: String::from_utf8(get::<Vec<u8>>(r, 6)?).map_err(|e| corrupt(r, 6, e))?,
        response_duration_ms: u64::try_from(get::<i64>(r, 7)?).map_err(|_| corrupt(r, 7, "negative duration"))?,
        status: DeliveryStatus::from_code(code).ok_or_else(|| corrupt(r, 8, format!("unknown status {code}")))?,
        error_kind: kind
            .map(|kind| {
                AttemptErrorKind::parse(&kind).ok_or_else(|| corrupt(r, 9, format!("unknown error kind {kind}")))
            })
            .transpose()?,
        trigger_type: match get::<i64>(r, 10)? {
            0 => TriggerType::Scheduled,
            1 => TriggerType::Manual,
            other => return Err(corrupt(r, 10, format!("unknown trigger type {other}"))),
        },
        attempt_number: int(r, 11)?,
        created_at: time_at(r, 12)?,
    })
}

/// A `BIGINT` column narrowed to the integer type its domain field has.
pub(crate) fn int<T: TryFrom<i64>>(r: &Row, col: usize) -> Result<T> {
    let v: i64 = get(r, col)?;
    T::try_from(v).map_err(|_| corrupt(r, col, format!("{v} out of range")))
}

pub(crate) async fn select_endpoint(
    client: &impl GenericClient,
    key: &EncryptionKey,
    app_id: &AppId,
    id_or_uid: &str,
) -> Result<Endpoint> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {EP_COLS} FROM endpoint WHERE app_id = $1 AND id = $2 \
             UNION ALL SELECT {EP_COLS} FROM endpoint WHERE app_id = $1 AND uid = $2 LIMIT 1"
        ))
        .await?;
    client
        .query_opt(&stmt, &[&app_id.as_str(), &id_or_uid])
        .await?
        .map(|r| ep_row(&r, key))
        .transpose()?
        .ok_or(StoreError::NotFound("endpoint"))
}

pub(crate) async fn select_event_type(client: &impl GenericClient, name: &str) -> Result<EventType> {
    let stmt = client
        .prepare_cached(&format!("SELECT {ET_COLS} FROM event_type WHERE name = $1"))
        .await?;
    client
        .query_opt(&stmt, &[&name])
        .await?
        .map(|r| et_row(&r))
        .transpose()?
        .ok_or(StoreError::NotFound("event type"))
}
