//! Cross-cutting request handling: authentication, idempotency keys, the
//! body limit, and JSON 404s for unknown routes.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use herald_store::SavedResponse;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::extract::BodyLimit;
use crate::{AppState, IDEMPOTENCY_WINDOW};

/// Largest response we keep for idempotent replay.
const SAVED_RESPONSE_LIMIT: usize = 4 * 1024 * 1024;

fn digest(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Requires `Authorization: Bearer <admin token>`. Comparing digests keeps
/// the comparison's timing independent of where the tokens differ.
pub async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    match presented {
        None => ApiError::unauthorized("missing bearer token in the Authorization header").into_response(),
        Some(token) if digest(token.as_bytes()) == digest(state.config.admin_token.as_bytes()) => next.run(req).await,
        Some(_) => ApiError::unauthorized("invalid token").into_response(),
    }
}

/// A POST with an `idempotency-key` header is answered once: a repeat with
/// the same key (same token, same URL) within 24 h gets the first 2xx
/// response again and creates nothing. A repeat while the first is still
/// running gets 409.
pub async fn idempotency(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get("idempotency-key").and_then(|v| v.to_str().ok()) else {
        return next.run(req).await;
    };
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let uri = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("");
    let mut material = Vec::with_capacity(auth.len() + key.len() + uri.len() + 2);
    material.extend_from_slice(auth);
    material.push(b'\n');
    material.extend_from_slice(key.as_bytes());
    material.push(b'\n');
    material.extend_from_slice(uri.as_bytes());
    let id = base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest(&material));

    match state.store.saved_response(&id, IDEMPOTENCY_WINDOW).await {
        Ok(Some(saved)) => return saved_to_response(saved),
        Ok(None) => {}
        Err(e) => return ApiError::from(e).into_response(),
    }
    {
        let Ok(mut keys) = state.in_flight_keys.lock() else {
            return ApiError::Internal("idempotency lock poisoned".into()).into_response();
        };
        if !keys.insert(id.clone()) {
            return ApiError::conflict("a request with this idempotency-key is still in progress").into_response();
        }
    }
    let response = next.run(req).await;
    let result = remember(&state, &id, response).await;
    if let Ok(mut keys) = state.in_flight_keys.lock() {
        keys.remove(&id);
    }
    result
}

async fn remember(state: &AppState, id: &str, response: Response) -> Response {
    if !response.status().is_success() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, SAVED_RESPONSE_LIMIT).await {
        Ok(b) => b,
        Err(e) => return ApiError::Internal(format!("buffering a response: {e}")).into_response(),
    };
    let saved = SavedResponse {
        status: parts.status.as_u16(),
        body: bytes.clone(),
    };
    if let Err(e) = state.store.save_response(id, saved).await {
        // The work is done and committed; failing to remember it only means
        // a retry with the same key would not be deduplicated.
        tracing::warn!(error = %e, "could not save an idempotent response");
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn saved_to_response(saved: SavedResponse) -> Response {
    let status = StatusCode::from_u16(saved.status).unwrap_or(StatusCode::OK);
    let mut resp = (status, Body::from(saved.body)).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Rejects a declared body over the limit before reading it, and tells the
/// JSON extractor the limit so it can name it.
pub async fn body_limit(limit: usize, mut req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return ApiError::too_large(limit).into_response();
    }
    req.extensions_mut().insert(BodyLimit(limit));
    next.run(req).await
}

pub async fn not_found(req: Request) -> Response {
    ApiError::Status(
        StatusCode::NOT_FOUND,
        format!("no route for {} {}", req.method(), req.uri().path()),
        "not_found",
    )
    .into_response()
}
