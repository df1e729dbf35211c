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

use crate::body::{read_limited, refuse_declared_too_large};
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
    let req = match refuse_declared_too_large(req, state.config.max_payload_bytes).await {
        Ok(req) => req,
        Err(e) => return e.into_response(),
    };
    let caller = match authenticate(&state, bearer(&req)).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let path = req.uri().path();
    if let Err(e) = crate::access::authorize(&state, &caller, req.method(), path).await {
        return e.into_response();
    }
    // Operational webhooks' own application is reached only through their routes.
    if crate::operational::names_internal_app(&state, path) {
        return ApiError::not_found("application").into_response();
    }
    let mut req = req;
    req.extensions_mut().insert(caller);
    if req.method() == Method::POST
        && let Some(key) = req.headers().get("idempotency-key")
        // An empty key is no key: it would make every keyless retry of
        // every request one request.
        && !key.is_empty()
    {
        // A key we cannot read must not quietly turn the request into one
        // that may run twice.
        let Ok(key) = key.to_str() else {
            return ApiError::bad_request("the idempotency-key header must be visible ASCII").into_response();
        };
        let id = idempotency_id(&req, key);
        // The body is read here (within the limit) to fingerprint it, then
        // handed on unchanged.
        let (parts, body) = req.into_parts();
        let bytes = match read_limited(body, state.config.max_payload_bytes).await {
            Ok(b) => b,
            Err(e) => return e.into_response(),
        };
        let request_digest = digest(&bytes);
        let req = Request::from_parts(parts, Body::from(bytes));
        return idempotent(state, id, request_digest, req, next).await;
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
/// or for another path is another request. The query string is left out:
/// SDKs add defaults to it (`with_content=false`) that differ between
/// versions, and a retry must still find its first answer.
fn idempotency_id(req: &Request, key: &str) -> String {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let uri = req.uri().path().trim_end_matches('/');
    let mut material = Vec::with_capacity(auth.len() + key.len() + uri.len() + 2);
    material.extend_from_slice(auth);
    material.push(b'\n');
    material.extend_from_slice(key.as_bytes());
    material.push(b'\n');
    material.extend_from_slice(uri.as_bytes());
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest(&material))
}

/// A POST with an `idempotency-key` header is answered once: a repeat with
/// the same key (same token, same path, same body) within 24 h gets the
/// first 2xx response again and creates nothing; the same key with another
/// body is a 422 (as Stripe answers). A repeat while the first is still
/// running gets 409.
async fn idempotent(state: AppState, id: String, request_digest: [u8; 32], req: Request, next: Next) -> Response {
    // In memory: requests with this key in progress (None) or finished and
    // still being saved (Some).
    {
        let Ok(mut keys) = state.idempotency.lock() else {
            return ApiError::Internal("idempotency lock poisoned".into()).into_response();
        };
        match keys.get(&id) {
            Some(Some(done)) => return replay(done.clone(), &request_digest),
            Some(None) => {
                return ApiError::conflict("a request with this idempotency-key is still in progress").into_response();
            }
            None => {
                keys.insert(id.clone(), None);
            }
        }
    }
    let key = PendingKey {
        state,
        id: Some(id),
        request_digest,
    };
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
    request_digest: [u8; 32],
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
        Ok(Some(saved)) => return replay(saved, &key.request_digest),
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
        request_digest: Some(key.request_digest),
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

/// The saved response, if it answered this same request; the key reused
/// with another body is the client's mistake, and replaying the first
/// answer would tell it something about a request it did not make.
fn replay(saved: SavedResponse, request_digest: &[u8; 32]) -> Response {
    match saved.request_digest {
        Some(d) if &d != request_digest => ApiError::invalid_msg(
            &["header", "idempotency-key"],
            "value_error.idempotency_key.reused",
            "this idempotency-key was used with a different request body",
        )
        .into_response(),
        _ => saved_to_response(saved),
    }
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

/// The longest request target (path and query) accepted, in bytes.
pub const MAX_URI_BYTES: usize = 16 * 1024;
/// The most header fields, and header bytes (names and values), accepted.
pub const MAX_HEADERS: usize = 100;
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The JSON 414 or 431 for a request whose target or headers are too large
/// (hyper's own answers to heads past its larger limits are empty).
pub fn head_refusal(req: &Request) -> Option<Response> {
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return Some(
            ApiError::Status(
                StatusCode::URI_TOO_LONG,
                format!("the request target is {uri_len} bytes; at most {MAX_URI_BYTES} are accepted"),
                "uri_too_long",
            )
            .into_response(),
        );
    }
    let headers = req.headers();
    let head_bytes: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    (headers.len() > MAX_HEADERS || head_bytes > MAX_HEAD_BYTES).then(|| {
        ApiError::Status(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("at most {MAX_HEADERS} header fields and {MAX_HEAD_BYTES} bytes of headers are accepted"),
            "request_header_fields_too_large",
        )
        .into_response()
    })
}

/// Largest non-JSON error body turned into a JSON one; what the framework
/// writes (a path it could not decode, say) is a line of text.
const PLAIN_ERROR_LIMIT: usize = 16 * 1024;

/// An error status with a body that is not JSON.
pub fn needs_rewrite(resp: &Response) -> bool {
    let status = resp.status();
    (status.is_client_error() || status.is_server_error())
        && !resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
}

/// The last word on every response (see `frame`): an error that is not JSON (one the
/// framework wrote before a handler ran, such as a path whose percent-encoding
/// is not UTF-8) is rewritten as our `{code, detail}`, keeping its status and
/// its `Connection` header. Our own errors pass untouched.
pub async fn json_errors(resp: Response) -> Response {
    if !needs_rewrite(&resp) {
        return resp;
    }
    let status = resp.status();
    let (parts, body) = resp.into_parts();
    let detail = match axum::body::to_bytes(body, PLAIN_ERROR_LIMIT).await {
        // A 5xx says nothing internal.
        _ if status.is_server_error() => "internal server error".to_owned(),
        Ok(b) if !b.is_empty() => String::from_utf8_lossy(&b).trim().to_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    let code = match status.as_u16() {
        400 => "bad_request",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        413 => "payload_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        431 => "request_header_fields_too_large",
        s if s >= 500 => "internal",
        _ => "error",
    };
    let mut out = ApiError::Status(status, detail, code).into_response();
    if let Some(conn) = parts.headers.get(header::CONNECTION) {
        out.headers_mut().insert(header::CONNECTION, conn.clone());
    }
    out
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
            request_digest: None,
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
