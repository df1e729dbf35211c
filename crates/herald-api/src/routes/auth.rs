//! Access: `app-portal-access` hands out an app-scoped token (and the url of
//! the customer portal that uses it) with what it may do, `logout` revokes
//! the calling token, `expire-all` every token of an application, and `me`
//! tells a token what it may do. The portal itself is `herald-ui`.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::Utc;

use super::RouteBoth;
use crate::AppState;
use herald_core::access::{Action, Capability, TokenPermissions};

use crate::access::{Caller, new_app_token};
use crate::dto::{AppPortalAccessIn, AppPortalAccessOut, ApplicationTokenExpireIn, CallerOut, fmt_time};
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
        .route_both("/auth/me", get(get_caller))
}

/// `readOnly` and `capabilities` as the token will keep them; an unknown
/// capability is a 422 naming it, never a right quietly dropped.
fn permissions(read_only: Option<bool>, capabilities: Option<Vec<String>>) -> ApiResult<TokenPermissions> {
    let capabilities = capabilities
        .map(|names| {
            names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    Capability::parse(name).ok_or_else(|| {
                        ApiError::invalid_msg(
                            &["body", "capabilities", &i.to_string()],
                            "type_error.enum",
                            format!(
                                "'{name}' is not a capability (one of {})",
                                Capability::ALL.map(Capability::as_str).join(", ")
                            ),
                        )
                    })
                })
                .collect::<ApiResult<_>>()
        })
        .transpose()?;
    Ok(TokenPermissions {
        read_only: read_only.unwrap_or(false),
        capabilities,
    })
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
    let permissions = permissions(body.read_only, body.capabilities)?;
    let app = match body.application {
        Some(inline) => super::app::ensure_app(&s, &app_id, inline).await?,
        None => s.store.get_app(&app_id).await?,
    };
    let expires_at = Utc::now()
        + chrono::Duration::from_std(expiry).map_err(|e| ApiError::Internal(format!("token expiry: {e}")))?;
    let (token, digest) = new_app_token();
    s.store
        .create_token(&app.id, digest, Some(expires_at), permissions)
        .await?;
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

/// The calling token and what it may do (Herald extension: Svix has no
/// such route; the portal reads it to hide controls its token cannot use).
#[utoipa::path(
    get,
    path = "/api/v1/auth/me",
    tag = "auth",
    summary = "The calling token: its application and what it may do",
    responses((status = 200, description = "The caller", body = crate::dto::CallerOut), crate::dto::ErrorResponses)
)]
async fn get_caller(Extension(caller): Extension<Caller>) -> Json<CallerOut> {
    Json(match caller {
        Caller::Admin => CallerOut {
            kind: "admin",
            app_id: None,
            read_only: false,
            capabilities: Capability::ALL.map(|c| c.as_str().to_owned()).to_vec(),
            unrestricted: true,
            expires_at: None,
        },
        Caller::App {
            app_id,
            permissions,
            expires_at,
            ..
        } => CallerOut {
            kind: "app",
            app_id: Some(app_id.to_string()),
            read_only: permissions.read_only,
            capabilities: permissions
                .effective()
                .into_iter()
                .map(|c| c.as_str().to_owned())
                .collect(),
            unrestricted: permissions.allows(Action::Unrestricted),
            expires_at: expires_at.as_ref().map(fmt_time),
        },
    })
}
