//! Operational webhook endpoints: `/api/v1/operational-webhook/endpoint`,
//! in Svix's shapes (admin token only). They are endpoints of the internal
//! application (`crate::operational`), so they are signed, retried and
//! rate-limited like any other.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use herald_core::EndpointId;
use herald_core::model::{Endpoint, EndpointSettings};
use herald_core::signing::EndpointSecret;
use herald_store::{NewEndpoint, Order, Page};

use super::endpoint::{parse_headers, parse_url};
use super::{Cursor, MAX_DESCRIPTION_CHARS, RouteBoth, check_length, page_request, parse_uid};
use crate::AppState;
use crate::dto::{
    EndpointHeadersIn, EndpointHeadersOut, EndpointSecretOut, ListResponse, OperationalWebhookEndpointIn,
    OperationalWebhookEndpointOut, OperationalWebhookEndpointSecretIn, OperationalWebhookEndpointUpdate,
};
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, QueryPairs};
use crate::operational;

/// A rotated operational secret keeps signing this long, as an endpoint's does.
const GRACE: Duration = Duration::from_secs(24 * 3600);

pub fn router() -> Router<AppState> {
    Router::new()
        .route_both(
            "/operational-webhook/endpoint",
            get(list_operational_endpoints).post(create_operational_endpoint),
        )
        .route_both(
            "/operational-webhook/endpoint/{endpoint_id}",
            get(get_operational_endpoint)
                .put(update_operational_endpoint)
                .delete(delete_operational_endpoint),
        )
        .route_both(
            "/operational-webhook/endpoint/{endpoint_id}/secret",
            get(get_operational_endpoint_secret),
        )
        .route_both(
            "/operational-webhook/endpoint/{endpoint_id}/secret/rotate",
            post(rotate_operational_endpoint_secret),
        )
        .route_both(
            "/operational-webhook/endpoint/{endpoint_id}/headers",
            get(get_operational_endpoint_headers).put(update_operational_endpoint_headers),
        )
}

/// The settings of an operational endpoint; what the body leaves out takes
/// its default.
struct Fields {
    url: String,
    description: Option<String>,
    disabled: Option<bool>,
    filter_types: Option<Vec<String>>,
    rate_limit: Option<u32>,
    metadata: Option<std::collections::BTreeMap<String, String>>,
}

fn settings(
    s: &AppState,
    f: Fields,
    headers: std::collections::BTreeMap<String, String>,
) -> ApiResult<EndpointSettings> {
    let description = f.description.unwrap_or_default();
    check_length(&description, "description", MAX_DESCRIPTION_CHARS)?;
    // Herald's own delivery settings stay at their defaults.
    Ok(EndpointSettings {
        description,
        metadata: f.metadata.unwrap_or_default(),
        disabled: f.disabled.unwrap_or(false),
        filter_types: operational::parse_filter_types(f.filter_types)?,
        throttle_rate: f.rate_limit,
        headers,
        ..EndpointSettings::new(parse_url(s, &f.url)?)
    })
}

/// The operational endpoint named in the path (by id or uid), or 404.
async fn find(s: &AppState, endpoint_id: &str) -> ApiResult<Endpoint> {
    let app = operational::app_id(s)
        .await?
        .ok_or_else(|| ApiError::not_found("operational webhook endpoint"))?;
    Ok(s.store.get_endpoint(&app, endpoint_id).await?)
}

#[utoipa::path(
    get,
    path = "/api/v1/operational-webhook/endpoint",
    tag = "operational-webhook",
    summary = "List operational webhook endpoints",
    params(crate::dto::PageQuery),
    responses((status = 200, description = "The page", body = crate::dto::ListResponse<crate::dto::OperationalWebhookEndpointOut>), crate::dto::ErrorResponses)
)]
async fn list_operational_endpoints(
    State(s): State<AppState>,
    q: QueryPairs,
) -> ApiResult<Json<ListResponse<OperationalWebhookEndpointOut>>> {
    let page = page_request(&q, Order::Descending, Cursor::Id(EndpointId::PREFIX))?;
    let page = match operational::app_id(&s).await? {
        Some(app) => s.store.list_endpoints(&app, page).await?,
        None => Page {
            data: Vec::new(),
            iterator: None,
            prev_iterator: None,
            done: true,
        },
    };
    Ok(Json(ListResponse::from_page(page, OperationalWebhookEndpointOut::from)))
}

#[utoipa::path(
    post,
    path = "/api/v1/operational-webhook/endpoint",
    tag = "operational-webhook",
    summary = "Create an operational webhook endpoint",
    params(crate::dto::IdempotencyHeader),
    request_body = crate::dto::OperationalWebhookEndpointIn,
    responses((status = 201, description = "Created", body = crate::dto::OperationalWebhookEndpointOut), crate::dto::ErrorResponses)
)]
async fn create_operational_endpoint(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<OperationalWebhookEndpointIn>,
) -> ApiResult<(StatusCode, Json<OperationalWebhookEndpointOut>)> {
    let secret = super::parse_secret(body.secret, "secret")?.unwrap_or_else(EndpointSecret::generate_symmetric);
    let new = NewEndpoint {
        uid: parse_uid(body.uid, "uid")?,
        settings: settings(
            &s,
            Fields {
                url: body.url,
                description: body.description,
                disabled: body.disabled,
                filter_types: body.filter_types,
                rate_limit: body.rate_limit,
                metadata: body.metadata,
            },
            Default::default(),
        )?,
        secret,
    };
    let app = operational::ensure_app(&s).await?;
    let ep = s.store.create_endpoint(&app, new).await?;
    Ok((StatusCode::CREATED, Json(ep.into())))
}

#[utoipa::path(
    get,
    path = "/api/v1/operational-webhook/endpoint/{endpoint_id}",
    tag = "operational-webhook",
    summary = "Get an operational webhook endpoint",
    params(crate::dto::EndpointPath),
    responses((status = 200, description = "The endpoint", body = crate::dto::OperationalWebhookEndpointOut), crate::dto::ErrorResponses)
)]
async fn get_operational_endpoint(
    State(s): State<AppState>,
    Path(endpoint_id): Path<String>,
) -> ApiResult<Json<OperationalWebhookEndpointOut>> {
    Ok(Json(find(&s, &endpoint_id).await?.into()))
}

/// PUT replaces the settings (Svix's update); headers and secret stay.
#[utoipa::path(
    put,
    path = "/api/v1/operational-webhook/endpoint/{endpoint_id}",
    tag = "operational-webhook",
    summary = "Replace an operational webhook endpoint's settings",
    params(crate::dto::EndpointPath),
    request_body = crate::dto::OperationalWebhookEndpointUpdate,
    responses((status = 200, description = "Replaced", body = crate::dto::OperationalWebhookEndpointOut), crate::dto::ErrorResponses)
)]
async fn update_operational_endpoint(
    State(s): State<AppState>,
    Path(endpoint_id): Path<String>,
    JsonBody(body): JsonBody<OperationalWebhookEndpointUpdate>,
) -> ApiResult<Json<OperationalWebhookEndpointOut>> {
    let mut ep = find(&s, &endpoint_id).await?;
    let headers = std::mem::take(&mut ep.settings.headers);
    ep.uid = parse_uid(body.uid, "uid")?;
    ep.settings = settings(
        &s,
        Fields {
            url: body.url,
            description: body.description,
            disabled: body.disabled,
            filter_types: body.filter_types,
            rate_limit: body.rate_limit,
            metadata: body.metadata,
        },
        headers,
    )?;
    Ok(Json(s.store.update_endpoint(ep).await?.into()))
}

#[utoipa::path(
    delete,
    path = "/api/v1/operational-webhook/endpoint/{endpoint_id}",
    tag = "operational-webhook",
    summary = "Delete an operational webhook endpoint",
    params(crate::dto::EndpointPath),
    responses((status = 204, description = "Deleted"), crate::dto::ErrorResponses)
)]
async fn delete_operational_endpoint(
    State(s): State<AppState>,
    Path(endpoint_id): Path<String>,
) -> ApiResult<StatusCode> {
    let ep = find(&s, &endpoint_id).await?;
    s.store.delete_endpoint(&ep.app_id, &ep.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/v1/operational-webhook/endpoint/{endpoint_id}/secret",
    tag = "operational-webhook",
    summary = "Get an operational webhook endpoint's signing secret",
    params(crate::dto::EndpointPath),
    responses((status = 200, description = "The secret", body = crate::dto::EndpointSecretOut), crate::dto::ErrorResponses)
)]
async fn get_operational_endpoint_secret(
    State(s): State<AppState>,
    Path(endpoint_id): Path<String>,
) -> ApiResult<Json<EndpointSecretOut>> {
    let ep = find(&s, &endpoint_id).await?;
    let secret = s.store.get_endpoint_secret(&ep.app_id, &ep.id).await?;
    Ok(Json(EndpointSecretOut {
        key: secret.to_wire_string(),
    }))
}

/// 204, as Svix answers; the old secret signs beside the new one for 24 h.
#[utoipa::path(
    post,
    path = "/api/v1/operational-webhook/endpoint/{endpoint_id}/secret/rotate",
    tag = "operational-webhook",
    summary = "Rotate an operational webhook endpoint's signing secret",
    params(crate::dto::EndpointPath, crate::dto::IdempotencyHeader),
    request_body = crate::dto::OperationalWebhookEndpointSecretIn,
    responses((status = 204, description = "Rotated"), crate::dto::ErrorResponses)
)]
async fn rotate_operational_endpoint_secret(
    State(s): State<AppState>,
    Path(endpoint_id): Path<String>,
    JsonBody(body): JsonBody<OperationalWebhookEndpointSecretIn>,
) -> ApiResult<StatusCode> {
    let ep = find(&s, &endpoint_id).await?;
    let new = super::parse_secret(body.key, "key")?.unwrap_or_else(EndpointSecret::generate_symmetric);
    s.store.rotate_endpoint_secret(&ep.app_id, &ep.id, new, GRACE).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/v1/operational-webhook/endpoint/{endpoint_id}/headers",
    tag = "operational-webhook",
    summary = "Get an operational webhook endpoint's custom headers",
    params(crate::dto::EndpointPath),
    responses((status = 200, description = "The headers", body = crate::dto::EndpointHeadersOut), crate::dto::ErrorResponses)
)]
async fn get_operational_endpoint_headers(
    State(s): State<AppState>,
    Path(endpoint_id): Path<String>,
) -> ApiResult<Json<EndpointHeadersOut>> {
    let ep = find(&s, &endpoint_id).await?;
    Ok(Json(EndpointHeadersOut::redacted(ep.settings.headers)))
}

#[utoipa::path(
    put,
    path = "/api/v1/operational-webhook/endpoint/{endpoint_id}/headers",
    tag = "operational-webhook",
    summary = "Replace an operational webhook endpoint's custom headers",
    params(crate::dto::EndpointPath),
    request_body = crate::dto::EndpointHeadersIn,
    responses((status = 204, description = "Replaced"), crate::dto::ErrorResponses)
)]
async fn update_operational_endpoint_headers(
    State(s): State<AppState>,
    Path(endpoint_id): Path<String>,
    JsonBody(body): JsonBody<EndpointHeadersIn>,
) -> ApiResult<StatusCode> {
    let mut ep = find(&s, &endpoint_id).await?;
    ep.settings.headers = parse_headers(Some(body.headers))?;
    s.store.update_endpoint(ep).await?;
    Ok(StatusCode::NO_CONTENT)
}
