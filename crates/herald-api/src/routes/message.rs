//! Messages: `/api/v1/app/{app_id}/msg`. Creating one is the hot path: the
//! handler validates, then the engine commits it with its fan-out (group
//! commit) and delivers from memory.
//!
//! `payloadRetentionPeriod` (days, 5 to 90, default 90 as in Svix) says when
//! the payload is expunged; the message and its attempts stay until the
//! server's retention period. An expunged payload reads back as
//! `{"expired": true}`, the shape Svix uses (see `MessageOut::new`).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use bytes::Bytes;
use herald_core::MessageId;
use herald_core::validate::{EventTypeName, check_payload_object};
use herald_store::{AppRef, NewMessage, Order};

use super::{Cursor, RouteBoth, page_request, parse_channels, parse_uid};
use crate::AppState;
use crate::dto::{ListResponse, MessageIn, MessageOut};
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, QueryPairs};

const MAX_TAGS: usize = 5;
/// Svix's bounds on `payloadRetentionPeriod`, in days.
const PAYLOAD_RETENTION_DAYS: std::ops::RangeInclusive<i64> = 5..=90;

pub fn router() -> Router<AppState> {
    Router::new()
        .route_both("/app/{app_id}/msg", get(list_messages).post(create_message))
        .route_both("/app/{app_id}/msg/{msg_id}", get(get_message))
        .route_both("/app/{app_id}/msg/{msg_id}/content", delete(expunge_message_content))
}

/// 202 only once the message and its deliveries are committed to disk.
#[utoipa::path(
    post,
    path = "/api/v1/app/{app_id}/msg",
    tag = "message",
    summary = "Send a message: 202 once it and its fan-out are on disk",
    params(crate::dto::AppPath, crate::dto::IdempotencyHeader, ("with_content" = Option<bool>, Query)),
    request_body = crate::dto::MessageIn,
    responses((status = 202, description = "Accepted", body = crate::dto::MessageOut), crate::dto::ErrorResponses)
)]
async fn create_message(
    State(s): State<AppState>,
    Path(app_id): Path<String>,
    q: QueryPairs,
    JsonBody(body): JsonBody<MessageIn>,
) -> ApiResult<(StatusCode, Json<MessageOut>)> {
    let with_content = q.bool("with_content", true)?;
    let event_type = EventTypeName::parse(body.event_type).map_err(|e| ApiError::invalid(&["body", "eventType"], e))?;
    let raw = body.payload.get();
    check_payload_object(raw).map_err(|e| ApiError::invalid(&["body", "payload"], e))?;
    if let Some(tags) = &body.tags
        && tags.len() > MAX_TAGS
    {
        return Err(ApiError::invalid_msg(
            &["body", "tags"],
            "value_error.list.max_items",
            format!("at most {MAX_TAGS} tags are allowed"),
        ));
    }
    let payload_retention = payload_retention(body.payload_retention_period)?;
    let msg = NewMessage {
        app: AppRef(app_id.clone()),
        event_type,
        event_id: parse_uid(body.event_id, "eventId")?,
        channels: parse_channels(body.channels, "channels")?,
        tags: body.tags,
        payload: Bytes::copy_from_slice(raw.as_bytes()),
        payload_retention,
        only_endpoint: None,
        lease: None,
    };
    if let Some(app) = body.application {
        super::app::ensure_app(&s, &app_id, app).await?;
    }
    let ingested = s.engine.ingest(msg).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(MessageOut::new(ingested.message, with_content)?),
    ))
}

/// `payloadRetentionPeriod` as a duration; absent is the store's default.
fn payload_retention(days: Option<i64>) -> ApiResult<Option<Duration>> {
    match days {
        None => Ok(None),
        Some(d) if PAYLOAD_RETENTION_DAYS.contains(&d) => Ok(Some(Duration::from_secs(d.unsigned_abs() * 86_400))),
        Some(_) => Err(ApiError::invalid_msg(
            &["body", "payloadRetentionPeriod"],
            "value_error.number.not_in_range",
            format!(
                "payloadRetentionPeriod must be between {} and {} days",
                PAYLOAD_RETENTION_DAYS.start(),
                PAYLOAD_RETENTION_DAYS.end()
            ),
        )),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/app/{app_id}/msg",
    tag = "message",
    summary = "List messages (newest first)",
    params(crate::dto::AppPath, crate::dto::PageQuery, ("channel" = Option<String>, Query), ("before" = Option<String>, Query), ("after" = Option<String>, Query), ("tag" = Option<String>, Query), ("event_types" = Option<Vec<String>>, Query), ("with_content" = Option<bool>, Query)),
    responses((status = 200, description = "The page", body = crate::dto::ListResponse<crate::dto::MessageOut>), crate::dto::ErrorResponses)
)]
async fn list_messages(
    State(s): State<AppState>,
    Path(app_id): Path<String>,
    q: QueryPairs,
) -> ApiResult<Json<ListResponse<MessageOut>>> {
    let app = s.store.get_app(&app_id).await?;
    let with_content = q.bool("with_content", true)?;
    let filter = super::message_filter(&q)?;
    let page = s
        .store
        .list_messages(
            &app.id,
            filter,
            page_request(&q, Order::Descending, Cursor::Id(MessageId::PREFIX))?,
        )
        .await?;
    Ok(Json(ListResponse::try_from_page(page, |m| {
        MessageOut::new(m, with_content)
    })?))
}

#[utoipa::path(
    get,
    path = "/api/v1/app/{app_id}/msg/{msg_id}",
    tag = "message",
    summary = "Get a message",
    params(crate::dto::AppPath, crate::dto::MsgPath, ("with_content" = Option<bool>, Query)),
    responses((status = 200, description = "The message", body = crate::dto::MessageOut), crate::dto::ErrorResponses)
)]
async fn get_message(
    State(s): State<AppState>,
    Path((app_id, msg_id)): Path<(String, String)>,
    q: QueryPairs,
) -> ApiResult<Json<MessageOut>> {
    let app = s.store.get_app(&app_id).await?;
    let msg = s.store.get_message(&app.id, &msg_id).await?;
    Ok(Json(MessageOut::new(msg, q.bool("with_content", true)?)?))
}

/// Empties the payload (it reads as `{"expired": true}` afterwards); the
/// message and its attempts stay. 204.
#[utoipa::path(
    delete,
    path = "/api/v1/app/{app_id}/msg/{msg_id}/content",
    tag = "message",
    summary = "Delete a message's payload",
    params(crate::dto::AppPath, crate::dto::MsgPath),
    responses((status = 204, description = "Expunged"), crate::dto::ErrorResponses)
)]
async fn expunge_message_content(
    State(s): State<AppState>,
    Path((app_id, msg_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let app = s.store.get_app(&app_id).await?;
    let msg = s.store.get_message(&app.id, &msg_id).await?;
    s.store.expunge_message_content(&app.id, &msg.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
