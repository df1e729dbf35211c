//! Attempt history: the attempt lists by endpoint and by message, one
//! attempt, expunging its response, resending a message to an endpoint,
//! and the attempted-messages and attempted-destinations views.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use herald_core::model::Attempt;
use herald_core::{AttemptId, EndpointId, MessageId};
use herald_store::{AttemptFilter, Order, Page};

use super::{Cursor, RouteBoth, page_request};
use crate::AppState;
use crate::dto::{
    EmptyResponse, EndpointMessageOut, ListResponse, MessageAttemptOut, MessageEndpointOut, MessageOut, parse_status,
};
use crate::error::{ApiError, ApiResult};
use crate::extract::QueryPairs;

pub fn router() -> Router<AppState> {
    Router::new()
        .route_both(
            "/app/{app_id}/attempt/endpoint/{endpoint_id}",
            get(list_attempts_by_endpoint),
        )
        .route_both("/app/{app_id}/attempt/msg/{msg_id}", get(list_attempts_by_msg))
        .route_both("/app/{app_id}/msg/{msg_id}/attempt/{attempt_id}", get(get_attempt))
        .route_both(
            "/app/{app_id}/msg/{msg_id}/attempt/{attempt_id}/content",
            delete(expunge_attempt_content),
        )
        .route_both(
            "/app/{app_id}/msg/{msg_id}/endpoint/{endpoint_id}/resend",
            post(resend_message),
        )
        .route_both("/app/{app_id}/endpoint/{endpoint_id}/msg", get(list_attempted_messages))
        .route_both("/app/{app_id}/msg/{msg_id}/endpoint", get(list_attempted_destinations))
}

fn filter(q: &QueryPairs) -> ApiResult<AttemptFilter> {
    let status = q.get("status").map(parse_status).transpose()?;
    let status_code_class = q
        .get("status_code_class")
        .map(|v| match v.parse::<u16>() {
            Ok(c @ (0 | 100 | 200 | 300 | 400 | 500)) => Ok(c),
            _ => Err(ApiError::invalid_msg(
                &["query", "status_code_class"],
                "type_error.enum",
                format!("'{v}' is not a status code class (0, 100, 200, 300, 400, 500)"),
            )),
        })
        .transpose()?;
    Ok(AttemptFilter {
        status,
        status_code_class,
        before: q.datetime("before")?,
        after: q.datetime("after")?,
        event_types: q.list("event_types"),
        endpoint_id: q.get("endpoint_id").map(str::to_owned),
        channel: q.get("channel").map(str::to_owned),
        tag: q.get("tag").map(str::to_owned),
    })
}

async fn respond(
    s: &AppState,
    page: Page<Attempt>,
    q: &QueryPairs,
) -> ApiResult<Json<ListResponse<MessageAttemptOut>>> {
    let with_msg = q.bool("with_msg", false)?;
    let with_content = q.bool("with_content", true)?;
    let mut out = ListResponse::from_page(page.clone(), MessageAttemptOut::from);
    if with_msg {
        for (dto, attempt) in out.data.iter_mut().zip(page.data) {
            // A message pruned under its attempts has none to show; any
            // other failure is the request's.
            match s.store.get_message(&attempt.app_id, attempt.msg_id.as_str()).await {
                Ok(m) => dto.msg = Some(MessageOut::new(m, with_content)?),
                Err(herald_store::StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(Json(out))
}

#[utoipa::path(
    get,
    path = "/api/v1/app/{app_id}/attempt/endpoint/{endpoint_id}",
    tag = "attempt",
    summary = "List an endpoint's attempts",
    params(crate::dto::AppPath, crate::dto::EndpointPath, crate::dto::PageQuery, ("status" = Option<i64>, Query), ("status_code_class" = Option<u16>, Query), ("channel" = Option<String>, Query), ("before" = Option<String>, Query), ("after" = Option<String>, Query), ("event_types" = Option<Vec<String>>, Query), ("with_msg" = Option<bool>, Query), ("with_content" = Option<bool>, Query), ("endpoint_id" = Option<String>, Query)),
    responses((status = 200, description = "The page", body = crate::dto::ListResponse<crate::dto::MessageAttemptOut>), crate::dto::ErrorResponses)
)]
async fn list_attempts_by_endpoint(
    State(s): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    q: QueryPairs,
) -> ApiResult<Json<ListResponse<MessageAttemptOut>>> {
    let ep = super::endpoint::find(&s, &app_id, &endpoint_id).await?;
    let page = s
        .store
        .list_attempts_by_endpoint(
            &ep.app_id,
            &ep.id,
            filter(&q)?,
            page_request(&q, Order::Descending, Cursor::Id(AttemptId::PREFIX))?,
        )
        .await?;
    respond(&s, page, &q).await
}

#[utoipa::path(
    get,
    path = "/api/v1/app/{app_id}/attempt/msg/{msg_id}",
    tag = "attempt",
    summary = "List a message's attempts",
    params(crate::dto::AppPath, crate::dto::MsgPath, crate::dto::PageQuery, ("status" = Option<i64>, Query), ("status_code_class" = Option<u16>, Query), ("channel" = Option<String>, Query), ("before" = Option<String>, Query), ("after" = Option<String>, Query), ("event_types" = Option<Vec<String>>, Query), ("with_msg" = Option<bool>, Query), ("with_content" = Option<bool>, Query), ("endpoint_id" = Option<String>, Query)),
    responses((status = 200, description = "The page", body = crate::dto::ListResponse<crate::dto::MessageAttemptOut>), crate::dto::ErrorResponses)
)]
async fn list_attempts_by_msg(
    State(s): State<AppState>,
    Path((app_id, msg_id)): Path<(String, String)>,
    q: QueryPairs,
) -> ApiResult<Json<ListResponse<MessageAttemptOut>>> {
    let app = s.store.get_app(&app_id).await?;
    let msg = s.store.get_message(&app.id, &msg_id).await?;
    let page = s
        .store
        .list_attempts_by_msg(
            &app.id,
            &msg.id,
            filter(&q)?,
            page_request(&q, Order::Descending, Cursor::Id(AttemptId::PREFIX))?,
        )
        .await?;
    respond(&s, page, &q).await
}

#[utoipa::path(
    get,
    path = "/api/v1/app/{app_id}/msg/{msg_id}/attempt/{attempt_id}",
    tag = "attempt",
    summary = "Get an attempt",
    params(crate::dto::AppPath, crate::dto::MsgPath, ("attempt_id" = String, Path, description = "The attempt's id")),
    responses((status = 200, description = "The attempt", body = crate::dto::MessageAttemptOut), crate::dto::ErrorResponses)
)]
async fn get_attempt(
    State(s): State<AppState>,
    Path((app_id, msg_id, attempt_id)): Path<(String, String, String)>,
) -> ApiResult<Json<MessageAttemptOut>> {
    let app = s.store.get_app(&app_id).await?;
    let msg = s.store.get_message(&app.id, &msg_id).await?;
    Ok(Json(s.store.get_attempt(&app.id, &msg.id, &attempt_id).await?.into()))
}

/// Empties the response body recorded with the attempt. 204.
#[utoipa::path(
    delete,
    path = "/api/v1/app/{app_id}/msg/{msg_id}/attempt/{attempt_id}/content",
    tag = "attempt",
    summary = "Delete an attempt's response body",
    params(crate::dto::AppPath, crate::dto::MsgPath, ("attempt_id" = String, Path, description = "The attempt's id")),
    responses((status = 204, description = "Expunged"), crate::dto::ErrorResponses)
)]
async fn expunge_attempt_content(
    State(s): State<AppState>,
    Path((app_id, msg_id, attempt_id)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let app = s.store.get_app(&app_id).await?;
    let msg = s.store.get_message(&app.id, &msg_id).await?;
    let attempt = AttemptId::parse(&attempt_id).map_err(|_| ApiError::not_found("attempt"))?;
    s.store.expunge_attempt_content(&app.id, &msg.id, &attempt).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends the message to the endpoint again now. 202 with `{}`: the Python
/// SDK parses the body, so it must be JSON.
#[utoipa::path(
    post,
    path = "/api/v1/app/{app_id}/msg/{msg_id}/endpoint/{endpoint_id}/resend",
    tag = "attempt",
    summary = "Send a message to an endpoint again",
    params(crate::dto::AppPath, crate::dto::MsgPath, crate::dto::EndpointPath, crate::dto::IdempotencyHeader),
    responses((status = 202, description = "Queued", body = crate::dto::EmptyResponse), crate::dto::ErrorResponses)
)]
async fn resend_message(
    State(s): State<AppState>,
    Path((app_id, msg_id, endpoint_id)): Path<(String, String, String)>,
) -> ApiResult<(StatusCode, Json<EmptyResponse>)> {
    let ep = super::endpoint::find(&s, &app_id, &endpoint_id).await?;
    let msg = s.store.get_message(&ep.app_id, &msg_id).await?;
    s.store.resend(&ep.app_id, &msg.id, &ep.id).await?;
    s.engine.wake();
    Ok((StatusCode::ACCEPTED, Json(EmptyResponse {})))
}

/// The messages fanned out to an endpoint with their delivery state there.
#[utoipa::path(
    get,
    path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/msg",
    tag = "attempt",
    summary = "List the messages sent to an endpoint, with their delivery state",
    params(crate::dto::AppPath, crate::dto::EndpointPath, crate::dto::PageQuery, ("channel" = Option<String>, Query), ("before" = Option<String>, Query), ("after" = Option<String>, Query), ("tag" = Option<String>, Query), ("event_types" = Option<Vec<String>>, Query), ("with_content" = Option<bool>, Query), ("status" = Option<i64>, Query)),
    responses((status = 200, description = "The page", body = crate::dto::ListResponse<crate::dto::EndpointMessageOut>), crate::dto::ErrorResponses)
)]
async fn list_attempted_messages(
    State(s): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    q: QueryPairs,
) -> ApiResult<Json<ListResponse<EndpointMessageOut>>> {
    let ep = super::endpoint::find(&s, &app_id, &endpoint_id).await?;
    let with_content = q.bool("with_content", true)?;
    let filter = super::message_filter(&q)?;
    let status = q.get("status").map(parse_status).transpose()?;
    let page = s
        .store
        .list_attempted_messages(
            &ep.app_id,
            &ep.id,
            filter,
            status,
            page_request(&q, Order::Descending, Cursor::Id(MessageId::PREFIX))?,
        )
        .await?;
    Ok(Json(ListResponse::try_from_page(page, |m| {
        EndpointMessageOut::new(m, with_content)
    })?))
}

/// The endpoints a message was fanned out to, with each delivery's state.
#[utoipa::path(
    get,
    path = "/api/v1/app/{app_id}/msg/{msg_id}/endpoint",
    tag = "attempt",
    summary = "List the endpoints a message went to, with their delivery state",
    params(crate::dto::AppPath, crate::dto::MsgPath, crate::dto::PageQuery),
    responses((status = 200, description = "The page", body = crate::dto::ListResponse<crate::dto::MessageEndpointOut>), crate::dto::ErrorResponses)
)]
async fn list_attempted_destinations(
    State(s): State<AppState>,
    Path((app_id, msg_id)): Path<(String, String)>,
    q: QueryPairs,
) -> ApiResult<Json<ListResponse<MessageEndpointOut>>> {
    let app = s.store.get_app(&app_id).await?;
    let msg = s.store.get_message(&app.id, &msg_id).await?;
    let page = s
        .store
        .list_attempted_destinations(
            &app.id,
            &msg.id,
            page_request(&q, Order::Ascending, Cursor::Id(EndpointId::PREFIX))?,
        )
        .await?;
    Ok(Json(ListResponse::from_page(page, MessageEndpointOut::from)))
}
