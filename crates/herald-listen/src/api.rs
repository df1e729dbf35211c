//! The JSON API under `/_herald/api/` (SPEC §1), which the page uses too:
//!
//! - `GET /_herald/api/requests?limit=N&before=ID`: newest first, at most
//!   `limit` (default 100, at most 1,000), older than `before` when given;
//! - `GET /_herald/api/requests/{id}`: one request;
//! - `POST /_herald/api/requests/{id}/replay`: sends it to the target again,
//!   byte for byte, and answers the request with the new forward result;
//! - `GET /_herald/api/events`: server-sent events, one `request` event with
//!   a request's JSON each time one arrives or its forward result changes.
//!
//! Errors are `{"code", "detail"}` with the status that fits.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use crate::AppState;
use crate::capture::into_response;
use crate::inspector::{ReplayError, json_answer};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/_herald/api/requests", get(list_requests))
        .route("/_herald/api/requests/{id}", get(get_request))
        .route("/_herald/api/requests/{id}/replay", post(replay_request))
        .route("/_herald/api/events", get(request_events))
        .route("/_herald/api/info", get(get_info))
}

fn error(status: StatusCode, code: &str, detail: &str) -> Response {
    into_response(json_answer(status, code, detail))
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    limit: Option<String>,
    before: Option<String>,
}

async fn list_requests(State(state): State<AppState>, Query(q): Query<ListQuery>) -> Response {
    let limit = match q.limit.as_deref().map(str::parse::<usize>) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_limit",
                &format!("limit must be a whole number from 1 to {MAX_LIMIT}"),
            );
        }
    };
    let before = match q.before.as_deref().map(str::parse::<i64>).transpose() {
        Ok(before) => before,
        Err(_) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_before",
                "before must be a request id",
            );
        }
    };
    match state.inspector.history.list(limit, before).await {
        Ok(list) => Json(list.iter().map(|s| s.to_json()).collect::<Vec<_>>()).into_response(),
        Err(e) => internal(e),
    }
}

fn not_found(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, "not_found", &format!("no request has id {id}"))
}

async fn get_request(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return not_found(&id);
    };
    match state.inspector.history.get(id).await {
        Ok(Some(stored)) => Json(stored.to_json()).into_response(),
        Ok(None) => not_found(&id.to_string()),
        Err(e) => internal(e),
    }
}

async fn replay_request(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return not_found(&id);
    };
    match state.inspector.replay(id).await {
        Ok(stored) => Json(stored.to_json()).into_response(),
        Err(e @ ReplayError::NotFound(_)) => error(StatusCode::NOT_FOUND, "not_found", &e.to_string()),
        Err(e @ ReplayError::NoTarget) => error(StatusCode::CONFLICT, "no_target", &e.to_string()),
        Err(ReplayError::History(e)) => internal(e),
    }
}

async fn get_info(State(state): State<AppState>) -> Response {
    Json(serde_json::json!({
        "forward": state.inspector.forward_target(),
        "verifies": state.inspector.verifies(),
        "maxBodyBytes": state.max_body_bytes,
    }))
    .into_response()
}

async fn request_events(
    State(state): State<AppState>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let rx = state.inspector.subscribe();
    // The stream ends at shutdown, or a graceful shutdown would wait on
    // every open page for ever.
    let stop = state.shutdown.clone();
    let stream = futures_util::stream::unfold((rx, stop), |(mut rx, stop)| async move {
        let received = tokio::select! {
            received = rx.recv() => received,
            () = stop.cancelled() => return None,
        };
        let event = match received {
            Ok(json) => Event::default().event("request").data(&*json),
            // A page that fell behind reloads the list on this event.
            Err(RecvError::Lagged(_)) => Event::default().event("lagged").data(""),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), (rx, stop)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "history");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the history could not be read",
    )
}
