//! Background tasks: `GET /api/v1/background-task/` (admin) and
//! `GET /api/v1/background-task/{task_id}` (also an app token, for its own
//! application's tasks), so the status of a recover or a replay can be
//! followed after the 202.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Extension, Json, Router};
use herald_core::TaskId;
use herald_store::Order;

use super::{Cursor, RouteBoth, page_request};
use crate::AppState;
use crate::access::Caller;
use crate::dto::{BackgroundTaskOut, ListResponse};
use crate::error::{ApiError, ApiResult};
use crate::extract::QueryPairs;

pub fn router() -> Router<AppState> {
    Router::new()
        .route_both("/background-task", get(list_background_tasks))
        .route_both("/background-task/{task_id}", get(get_background_task))
}

#[utoipa::path(
    get,
    path = "/api/v1/background-task",
    tag = "task",
    summary = "List background tasks",
    params(crate::dto::PageQuery),
    responses((status = 200, description = "The page", body = crate::dto::ListResponse<crate::dto::BackgroundTaskOut>), crate::dto::ErrorResponses)
)]
async fn list_background_tasks(
    State(s): State<AppState>,
    q: QueryPairs,
) -> ApiResult<Json<ListResponse<BackgroundTaskOut>>> {
    let page = s
        .store
        .list_tasks(None, page_request(&q, Order::Descending, Cursor::Id(TaskId::PREFIX))?)
        .await?;
    Ok(Json(ListResponse::from_page(page, BackgroundTaskOut::from)))
}

/// Another application's task is not found, not forbidden: an app token
/// learns nothing about what exists outside its application.
#[utoipa::path(
    get,
    path = "/api/v1/background-task/{task_id}",
    tag = "task",
    summary = "Get a background task",
    params(("task_id" = String, Path, description = "The background task's id")),
    responses((status = 200, description = "The task", body = crate::dto::BackgroundTaskOut), crate::dto::ErrorResponses)
)]
async fn get_background_task(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(task_id): Path<String>,
) -> ApiResult<Json<BackgroundTaskOut>> {
    let id = TaskId::parse(&task_id).map_err(|_| ApiError::not_found("background task"))?;
    let task = s.store.get_task(&id).await?;
    if !caller.may_see(&task.app_id) {
        return Err(ApiError::not_found("background task"));
    }
    Ok(Json(task.into()))
}
