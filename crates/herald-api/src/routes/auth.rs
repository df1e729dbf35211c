//! Access: `app-portal-access` hands out an app-scoped token (and the url of
//! the customer portal that will use it), `logout` revokes the calling
//! token, `expire-all` every token of an application. The portal itself is
//! a later piece of work; `/portal/` is a placeholder page until then.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Html;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::Utc;

use super::RouteBoth;
use crate::AppState;
use crate::access::{Caller, new_app_token};
use crate::dto::{AppPortalAccessIn, AppPortalAccessOut, ApplicationTokenExpireIn};
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;

/// How long a portal token lives unless the request says: Svix's 7 days.
const DEFAULT_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest a portal token may live.
const MAX_EXPIRY_SECS: u64 = 365 * 24 * 3600;

/// Routes under `/api/v1`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route_both("/auth/app-portal-access/{app_id}", post(app_portal_access))
        .route_both("/auth/logout", post(logout))
        .route_both("/auth/app/{app_id}/expire-all", post(expire_all))
}

/// The portal placeholder, outside `/api/v1` (it takes no bearer token:
/// the token travels in the url's fragment, which browsers never send).
pub fn portal_router() -> Router<AppState> {
    Router::new().route_both("/portal", get(portal_placeholder))
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/app-portal-access/{app_id}",
    tag = "auth",
    summary = "A token scoped to one application, and the portal url",
    params(crate::dto::AppPath, crate::dto::IdempotencyHeader),
    request_body = crate::dto::AppPortalAccessIn,
    responses((status = 200, description = "The token", body = crate::dto::AppPortalAccessOut), crate::dto::ErrorResponses)
)]
async fn app_portal_access(
    State(s): State<AppState>,
    Path(app_id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<AppPortalAccessIn>,
) -> ApiResult<Json<AppPortalAccessOut>> {
    let expiry = match body.expiry {
        None => DEFAULT_EXPIRY,
        Some(secs) if (1..=MAX_EXPIRY_SECS).contains(&secs) => Duration::from_secs(secs),
        Some(_) => {
            return Err(ApiError::invalid_msg(
                &["body", "expiry"],
                "value_error.number.not_in_range",
                format!("expiry must be between 1 and {MAX_EXPIRY_SECS} seconds"),
            ));
        }
    };
    let app = match body.application {
        Some(inline) => super::app::ensure_app(&s, &app_id, inline).await?,
        None => s.store.get_app(&app_id).await?,
    };
    let expires_at = Utc::now()
        + chrono::Duration::from_std(expiry).map_err(|e| ApiError::Internal(format!("token expiry: {e}")))?;
    let (token, digest) = new_app_token();
    s.store.create_token(&app.id, digest, Some(expires_at)).await?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| ApiError::bad_request("the request has no Host header to build the portal url from"))?;
    // As the relay does: the server does not know its public name, so the
    // one the client used, and https when a proxy in front says so.
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| *p == "https")
        .unwrap_or("http");
    Ok(Json(AppPortalAccessOut {
        url: format!("{scheme}://{host}/portal/#key={token}"),
        token,
    }))
}

/// Revokes the token that calls it. The admin token is configuration, not
/// a session: it cannot log out (403).
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "auth",
    summary = "Revoke the calling app-scoped token",
    params(crate::dto::IdempotencyHeader),
    responses((status = 204, description = "Revoked"), crate::dto::ErrorResponses)
)]
async fn logout(State(s): State<AppState>, Extension(caller): Extension<Caller>) -> ApiResult<StatusCode> {
    match caller {
        Caller::App { token, .. } => {
            s.store.revoke_token(&token).await?;
            Ok(StatusCode::NO_CONTENT)
        }
        Caller::Admin => Err(ApiError::forbidden(
            "the admin token cannot be revoked; change --admin-token instead",
        )),
    }
}

/// Revokes every token of the application at once (Svix lets them expire
/// after `expiry` seconds; Herald does not keep them that long).
#[utoipa::path(
    post,
    path = "/api/v1/auth/app/{app_id}/expire-all",
    tag = "auth",
    summary = "Revoke every token of an application",
    params(crate::dto::AppPath, crate::dto::IdempotencyHeader),
    request_body = crate::dto::ApplicationTokenExpireIn,
    responses((status = 204, description = "Revoked"), crate::dto::ErrorResponses)
)]
async fn expire_all(
    State(s): State<AppState>,
    Path(app_id): Path<String>,
    JsonBody(_body): JsonBody<ApplicationTokenExpireIn>,
) -> ApiResult<StatusCode> {
    let app = s.store.get_app(&app_id).await?;
    s.store.revoke_app_tokens(&app.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn portal_placeholder() -> Html<&'static str> {
    Html(
        "<!doctype html><meta charset=utf-8><title>Herald portal</title>\
         <p>The Herald customer portal is not available yet. The token in this page's address \
         is an app-scoped API token: use it as a bearer token against <code>/api/v1/</code>.</p>",
    )
}
