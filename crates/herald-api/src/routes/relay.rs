//! Relay routes (SPEC §1): `POST /api/v1/relay/` creates a channel (the
//! `/api/v1` guard has checked the token), `GET /api/v1/relay/{id}/listen`
//! is the listener's WebSocket, and `/relay/{id}/…` takes any request for
//! it. Access is decided by the guard alone today (the admin token); when
//! app-scoped tokens arrive they pass the same guard, and a channel can be
//! tied to its app by putting the app in what its id signs.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use herald_core::relay::{RelayFrame, decode_body, encode_body};
use serde_json::json;

use crate::AppState;
use crate::body::{read_limited, refuse_declared_too_large};
use crate::error::ApiError;
use crate::relay::{Dispatch, serve_listener};
use crate::routes::RouteBoth;

/// The routes that need a token, mounted under `/api/v1`.
pub fn api_router() -> Router<AppState> {
    Router::new()
        .route_both("/relay", post(create_relay_channel))
        .route("/relay/{channel}/listen", get(listen_relay_channel))
}

/// The public routes senders use.
pub fn public_router() -> Router<AppState> {
    Router::new()
        .route("/relay/{channel}", any(relay_request))
        .route("/relay/{channel}/", any(relay_request))
        .route("/relay/{channel}/{*rest}", any(relay_request))
}

fn unknown_channel() -> ApiError {
    ApiError::not_found("relay channel")
}

#[utoipa::path(
    post,
    path = "/api/v1/relay",
    tag = "relay",
    summary = "Open a relay channel: anything sent to its url reaches the `herald listen` connected to it",
    responses((status = 201, description = "The channel: `{id, url}`"), crate::dto::ErrorResponses)
)]
async fn create_relay_channel(State(state): State<AppState>, req: Request) -> Response {
    let id = state.relay.key.mint();
    // The server does not know its public name: the one the client used.
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    let scheme = req
        .headers()
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| *p == "https")
        .unwrap_or("http");
    let url = format!("{scheme}://{host}/relay/{id}");
    (StatusCode::CREATED, Json(json!({"id": id, "url": url}))).into_response()
}

#[utoipa::path(
    get,
    path = "/api/v1/relay/{channel}/listen",
    tag = "relay",
    summary = "The listener's end of a relay channel (a WebSocket)",
    params(("channel" = String, Path, description = "The channel's id")),
    responses((status = 101, description = "Switching to the WebSocket"), crate::dto::ErrorResponses)
)]
async fn listen_relay_channel(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if !state.relay.key.check(&channel) {
        return unknown_channel().into_response();
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(e) => return ApiError::bad_request(format!("expected a WebSocket upgrade: {e}")).into_response(),
    };
    let hub = state.relay.clone();
    upgrade
        // A frame carries a body as base64 (4/3 of it) plus its headers.
        .max_message_size(
            state
                .config
                .max_payload_bytes
                .saturating_mul(2)
                .saturating_add(64 * 1024),
        )
        .on_upgrade(move |socket| serve_listener(hub, channel, socket))
}

async fn relay_request(
    State(state): State<AppState>,
    Path(params): Path<Vec<(String, String)>>,
    req: Request,
) -> Response {
    match relay(state, params, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn relay(state: AppState, params: Vec<(String, String)>, req: Request) -> Result<Response, ApiError> {
    let channel = params
        .iter()
        .find(|(k, _)| k == "channel")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    if !state.relay.key.check(&channel) {
        return Err(unknown_channel());
    }
    let limit = state.config.max_payload_bytes;
    let req = refuse_declared_too_large(req, limit).await?;
    let (parts, body) = req.into_parts();
    let prefix_len = "/relay/".len() + channel.len();
    let rest = parts.uri.path().get(prefix_len..).unwrap_or("");
    let path = if rest.is_empty() {
        "/".to_owned()
    } else {
        rest.to_owned()
    };
    let body = read_limited(body, limit).await?;
    let mut headers = Vec::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        let Ok(text) = std::str::from_utf8(value.as_bytes()) else {
            return Err(ApiError::bad_request(format!(
                "header {name} is not UTF-8 text; the relay carries text headers only"
            )));
        };
        headers.push((name.to_string(), text.to_owned()));
    }
    let id = state.relay.next_id();
    let frame = |queued| RelayFrame::Request {
        id,
        method: parts.method.to_string(),
        path: path.clone(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: headers.clone(),
        body: encode_body(&body),
        queued,
    };
    let to_json = |f: RelayFrame| serde_json::to_string(&f).map_err(|e| ApiError::Internal(e.to_string()));
    let (live, queued) = (to_json(frame(false))?, to_json(frame(true))?);
    match state.relay.dispatch(&channel, id, live, queued, body.len()) {
        Dispatch::Queued => Ok((
            StatusCode::ACCEPTED,
            Json(json!({
                "queued": true,
                "detail": "no listener is connected to this channel; the request is kept and handed over when one connects"
            })),
        )
            .into_response()),
        Dispatch::Full => Err(ApiError::Status(
            StatusCode::SERVICE_UNAVAILABLE,
            "this relay channel's queue is full; connect a listener to drain it".into(),
            "relay_queue_full",
        )),
        Dispatch::Sent(rx) => {
            let timeout = state.relay.limits.answer_timeout;
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(answer)) => answer_response(answer),
                Ok(Err(_)) => Err(ApiError::Status(
                    StatusCode::BAD_GATEWAY,
                    "the relay listener disconnected before answering".into(),
                    "relay_listener_gone",
                )),
                Err(_) => {
                    state.relay.forget(&channel, id);
                    Err(timed_out(timeout))
                }
            }
        }
    }
}

fn timed_out(timeout: Duration) -> ApiError {
    ApiError::Status(
        StatusCode::GATEWAY_TIMEOUT,
        format!("the relay listener did not answer within {} s", timeout.as_secs()),
        "relay_timeout",
    )
}

fn bad_answer(what: &str) -> ApiError {
    ApiError::Status(
        StatusCode::BAD_GATEWAY,
        format!("the relay listener's answer is malformed: {what}"),
        "relay_bad_answer",
    )
}

fn answer_response(answer: RelayFrame) -> Result<Response, ApiError> {
    let RelayFrame::Response {
        status, headers, body, ..
    } = answer
    else {
        return Err(bad_answer("not a response frame"));
    };
    let status = StatusCode::from_u16(status).map_err(|_| bad_answer("status"))?;
    let body = decode_body(&body).map_err(|_| bad_answer("body"))?;
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad_answer("header name"))?;
        let value = HeaderValue::from_str(&value).map_err(|_| bad_answer("header value"))?;
        resp.headers_mut().append(name, value);
    }
    Ok(resp)
}
