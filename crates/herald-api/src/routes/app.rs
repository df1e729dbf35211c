//! Applications: `/api/v1/app`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use herald_core::AppId;
use herald_core::model::Application;
use herald_store::{NewApplication, Order, StoreError};

use super::{Cursor, RouteBoth, check_name, page_request, parse_uid};
use crate::AppState;
use crate::dto::{ApplicationIn, ApplicationOut, ApplicationPatch, ListResponse};
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, QueryPairs};

pub fn router() -> Router<AppState> {
    Router::new()
        .route_both("/app", get(list_apps).post(create_app))
        .route_both(
            "/app/{app_id}",
            get(get_app).put(upsert_app).patch(patch_app).delete(delete_app),
        )
}

#[utoipa::path(
    get,
    path = "/api/v1/app",
    tag = "app",
    summary = "List applications",
    params(crate::dto::PageQuery),
    responses((status = 200, description = "The page", body = crate::dto::ListResponse<crate::dto::ApplicationOut>), crate::dto::ErrorResponses)
)]
async fn list_apps(State(s): State<AppState>, q: QueryPairs) -> ApiResult<Json<ListResponse<ApplicationOut>>> {
    let page = s
        .store
        .list_apps(page_request(&q, Order::Ascending, Cursor::Id(AppId::PREFIX))?)
        .await?;
    let mut out = ListResponse::from_page(page, ApplicationOut::from);
    // Operational webhooks' internal application is not the platform's.
    out.data
        .retain(|a| a.uid.as_deref() != Some(crate::operational::APP_UID));
    Ok(Json(out))
}

/// With `get_if_exists=true`, an application with the same `uid` is returned
/// (200) instead of a conflict.
#[utoipa::path(
    post,
    path = "/api/v1/app",
    tag = "app",
    summary = "Create an application",
    params(("get_if_exists" = Option<bool>, Query, description = "Answer the application with this uid if it exists"), crate::dto::IdempotencyHeader),
    request_body = crate::dto::ApplicationIn,
    responses((status = 201, description = "Created", body = crate::dto::ApplicationOut), (status = 200, description = "Existing (get_if_exists)", body = crate::dto::ApplicationOut), crate::dto::ErrorResponses)
)]
async fn create_app(
    State(s): State<AppState>,
    q: QueryPairs,
    JsonBody(body): JsonBody<ApplicationIn>,
) -> ApiResult<(StatusCode, Json<ApplicationOut>)> {
    check_name(&body.name, "name")?;
    let uid = parse_uid(body.uid, "uid")?;
    if q.bool("get_if_exists", false)?
        && let Some(uid) = &uid
    {
        match s.store.get_app(uid.as_str()).await {
            Ok(app) => return Ok((StatusCode::OK, Json(app.into()))),
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let app = s
        .store
        .create_app(NewApplication {
            uid,
            name: body.name,
            metadata: body.metadata.unwrap_or_default(),
            throttle_rate: body.throttle_rate,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(app.into())))
}

/// The application `path_id` names, created from `body` if there is none
/// (with `path_id` as its uid unless the body gives one): what a message or
/// an app-portal request with an inline `application` does. A concurrent
/// create of the same uid is answered with the one that won.
pub(crate) async fn ensure_app(s: &AppState, path_id: &str, body: ApplicationIn) -> ApiResult<Application> {
    match s.store.get_app(path_id).await {
        Ok(app) => return Ok(app),
        Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    check_name(&body.name, "name")?;
    let uid = match parse_uid(body.uid, "application.uid")? {
        Some(u) => u,
        None => parse_uid(Some(path_id.to_owned()), "application.uid")?
            .ok_or_else(|| ApiError::bad_request("an application uid is required"))?,
    };
    let created = s
        .store
        .create_app(NewApplication {
            uid: Some(uid.clone()),
            name: body.name,
            metadata: body.metadata.unwrap_or_default(),
            throttle_rate: body.throttle_rate,
        })
        .await;
    match created {
        Ok(app) => Ok(app),
        Err(StoreError::Conflict(_)) => Ok(s.store.get_app(uid.as_str()).await?),
        Err(e) => Err(e.into()),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/app/{app_id}",
    tag = "app",
    summary = "Get an application",
    params(crate::dto::AppPath),
    responses((status = 200, description = "The application", body = crate::dto::ApplicationOut), crate::dto::ErrorResponses)
)]
async fn get_app(State(s): State<AppState>, Path(app_id): Path<String>) -> ApiResult<Json<ApplicationOut>> {
    Ok(Json(s.store.get_app(&app_id).await?.into()))
}

/// PUT: replaces the application, creating it (with the path as its uid) if absent.
#[utoipa::path(
    put,
    path = "/api/v1/app/{app_id}",
    tag = "app",
    summary = "Create or replace an application",
    params(crate::dto::AppPath),
    request_body = crate::dto::ApplicationIn,
    responses((status = 200, description = "Replaced", body = crate::dto::ApplicationOut), (status = 201, description = "Created", body = crate::dto::ApplicationOut), crate::dto::ErrorResponses)
)]
async fn upsert_app(
    State(s): State<AppState>,
    Path(app_id): Path<String>,
    JsonBody(body): JsonBody<ApplicationIn>,
) -> ApiResult<(StatusCode, Json<ApplicationOut>)> {
    check_name(&body.name, "name")?;
    let uid = parse_uid(body.uid, "uid")?;
    match s.store.get_app(&app_id).await {
        Ok(mut app) => {
            app.name = body.name;
            app.uid = uid;
            app.metadata = body.metadata.unwrap_or_default();
            app.throttle_rate = body.throttle_rate;
            Ok((StatusCode::OK, Json(s.store.update_app(app).await?.into())))
        }
        Err(StoreError::NotFound(_)) => {
            let uid = match uid {
                Some(u) => Some(u),
                None => parse_uid(Some(app_id), "uid")?,
            };
            let app = s
                .store
                .create_app(NewApplication {
                    uid,
                    name: body.name,
                    metadata: body.metadata.unwrap_or_default(),
                    throttle_rate: body.throttle_rate,
                })
                .await?;
            Ok((StatusCode::CREATED, Json(app.into())))
        }
        Err(e) => Err(e.into()),
    }
}

#[utoipa::path(
    patch,
    path = "/api/v1/app/{app_id}",
    tag = "app",
    summary = "Change some fields of an application",
    params(crate::dto::AppPath),
    request_body = crate::dto::ApplicationPatch,
    responses((status = 200, description = "Changed", body = crate::dto::ApplicationOut), crate::dto::ErrorResponses)
)]
async fn patch_app(
    State(s): State<AppState>,
    Path(app_id): Path<String>,
    JsonBody(body): JsonBody<ApplicationPatch>,
) -> ApiResult<Json<ApplicationOut>> {
    let mut app = s.store.get_app(&app_id).await?;
    if let Some(name) = body.name {
        check_name(&name, "name")?;
        app.name = name;
    }
    if let Some(uid) = body.uid {
        app.uid = parse_uid(uid, "uid")?;
    }
    if let Some(rate) = body.throttle_rate {
        app.throttle_rate = rate;
    }
    if let Some(metadata) = body.metadata {
        app.metadata = metadata;
    }
    Ok(Json(s.store.update_app(app).await?.into()))
}

#[utoipa::path(
    delete,
    path = "/api/v1/app/{app_id}",
    tag = "app",
    summary = "Delete an application with everything in it",
    params(crate::dto::AppPath),
    responses((status = 204, description = "Deleted"), crate::dto::ErrorResponses)
)]
async fn delete_app(State(s): State<AppState>, Path(app_id): Path<String>) -> ApiResult<StatusCode> {
    let app = s.store.get_app(&app_id).await?;
    s.store.delete_app(&app.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
