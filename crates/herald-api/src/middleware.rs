//! Cross-cutting request handling: the body limit, authentication,
//! idempotency keys, and JSON 404s for unknown routes.
//!
//! An idempotent request runs in a task of its own, so a client that hangs
//! up cannot leave its key marked "in progress" (every retry would get 409).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use herald_store::SavedResponse;
use sha2::{Digest, Sha256};

use crate::body::{DRAIN_MAX_BYTES, drain};
use crate::error::ApiError;
use crate::{AppState, IDEMPOTENCY_WINDOW};

/// Largest response we keep for idempotent replay.
const SAVED_RESPONSE_LIMIT: usize = 4 * 1024 * 1024;

pub(crate) fn digest(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// What every `/api/v1` request passes before its handler, in one layer (each
/// layer costs a boxed future and a state clone per request): a declared
/// body over the limit is refused without being kept (413), then the token is
/// checked (401), then a POST with an `idempotency-key` is answered once.
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(declared) = declared.filter(|n| *n > state.config.max_payload_bytes) {
        // Read the body away first so a client still writing it sees the
        // 413; one that waits for `100 Continue` has sent nothing to drain.
        let waits = req.headers().contains_key(header::EXPECT);
        let drained = !waits && declared <= DRAIN_MAX_BYTES && drain(req.into_body(), declared).await;
        return ApiError::too_large(state.config.max_payload_bytes)
            .closing_if(!drained)
            .into_response();
    }
    let presented = bearer(&req).map(str::to_owned);
    let caller = match authenticate(&state, presented.as_deref()).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    if let Err(e) = crate::access::authorize(&state, &caller, &method, &path).await {
        return e.into_response();
    }
    let mut req = req;
    req.extensions_mut().insert(caller);
    if req.method() == Method::POST
        && let Some(key) = req.headers().get("idempotency-key")
    {
        // A key we cannot read must not quietly turn the request into one
        // that may run twice.
        let Ok(key) = key.to_str() else {
            return ApiError::bad_request("the idempotency-key header must be visible ASCII").into_response();
        };
        let id = idempotency_id(&req, key);
        return idempotent(state, id, req, next).await;
    }
    next.run(req).await
}

/// Requires `Authorization: Bearer <token>`: the admin token or a live
/// app-scoped one (see [`crate::access`]).
async fn authenticate(state: &AppState, presented: Option<&str>) -> Result<crate::access::Caller, ApiError> {
    match presented {
        None => Err(ApiError::unauthorized(
            "missing bearer token in the Authorization header",
        )),
        Some(token) => crate::access::caller(state, token).await,
    }
}

fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
}

/// The key under which a response is saved: the same key from another token
/// or for another URL is another request.
fn idempotency_id(req: &Request, key: &str) -> String {
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
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest(&material))
}

/// A POST with an `idempotency-key` header is answered once: a repeat with
/// the same key (same token, same URL) within 24 h gets the first 2xx
/// response again and creates nothing. A repeat while the first is still
/// running gets 409.
async fn idempotent(state: AppState, id: String, req: Request, next: Next) -> Response {
    // In memory: requests with this key in progress (None) or finished and
    // still being saved (Some).
    {
        let Ok(mut keys) = state.idempotency.lock() else {
            return ApiError::Internal("idempotency lock poisoned".into()).into_response();
        };
        match keys.get(&id) {
            Some(Some(done)) => return saved_to_response(done.clone()),
            Some(None) => {
                return ApiError::conflict("a request with this idempotency-key is still in progress").into_response();
            }
            None => {
                keys.insert(id.clone(), None);
            }
        }
    }
    let key = PendingKey { state, id: Some(id) };
    // In its own task: a client that hangs up does not abort the work half
    // way, and the key ends with the real answer, which a retry then gets.
    match tokio::spawn(answer_once(key, req, next)).await {
        Ok(response) => response,
        Err(e) => ApiError::Internal(format!("an idempotent request failed: {e}")).into_response(),
    }
}

/// A key marked in progress; dropping it (an error, a panic, a runtime
/// shutting down) releases the key so a retry is not refused forever.
struct PendingKey {
    state: AppState,
    id: Option<String>,
}

impl PendingKey {
    /// Replaces "in progress" with the answer and hands back the key.
    fn complete(mut self, saved: SavedResponse) -> String {
        let id = self.id.take().unwrap_or_default();
        if let Ok(mut keys) = self.state.idempotency.lock() {
            keys.insert(id.clone(), Some(saved));
        }
        id
    }
}

impl Drop for PendingKey {
    fn drop(&mut self) {
        if let Some(id) = self.id.take()
            && let Ok(mut keys) = self.state.idempotency.lock()
        {
            keys.remove(&id);
        }
    }
}

async fn answer_once(key: PendingKey, req: Request, next: Next) -> Response {
    let state = key.state.clone();
    let id = key.id.as_deref().unwrap_or_default();
    match state.store.saved_response(id, IDEMPOTENCY_WINDOW).await {
        Ok(Some(saved)) => return saved_to_response(saved),
        Ok(None) => {}
        Err(e) => return ApiError::from(e).into_response(),
    }
    let response = next.run(req).await;
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
    let id = key.complete(saved.clone());
    // The answer goes out now; a repeat meanwhile is served from memory
    // until the saved copy is committed, so the save adds no latency.
    tokio::spawn(async move {
        if let Err(e) = state.store.save_response(&id, saved).await {
            // The work itself is committed; only deduplication of a later
            // retry with the same key is lost.
            tracing::warn!(error = %e, "could not save an idempotent response");
        }
        if let Ok(mut keys) = state.idempotency.lock() {
            keys.remove(&id);
        }
    });
    Response::from_parts(parts, Body::from(bytes))
}

/// A saved status that is not one is corrupt data: replaying it as some
/// other status (say 200) would tell the client something never answered.
fn saved_to_response(saved: SavedResponse) -> Response {
    let Ok(status) = StatusCode::from_u16(saved.status) else {
        return ApiError::Internal(format!("saved idempotent response has status {}", saved.status)).into_response();
    };
    let mut resp = (status, Body::from(saved.body)).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub async fn method_not_allowed(req: Request) -> Response {
    ApiError::Status(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
        "method_not_allowed",
    )
    .into_response()
}

pub async fn not_found(req: Request) -> Response {
    ApiError::Status(
        StatusCode::NOT_FOUND,
        format!("no route for {} {}", req.method(), req.uri().path()),
        "not_found",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_response_is_replayed_with_its_status_or_not_at_all() {
        let saved = |status| SavedResponse {
            status,
            body: bytes::Bytes::from_static(b"{}"),
        };
        assert_eq!(saved_to_response(saved(202)).status(), StatusCode::ACCEPTED);
        assert_eq!(
            saved_to_response(saved(1000)).status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "a corrupt status must not replay as a success"
        );
    }
}
