//! Event types: `/api/v1/event-type`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use herald_core::model::EventType;
use herald_core::validate::EventTypeName;
use herald_store::{Order, StoreError};

use super::{Cursor, RouteBoth, page_request};
use crate::AppState;
use crate::dto::{EventTypeIn, EventTypeOut, EventTypeUpsertIn, ListResponse};
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, QueryPairs};

pub fn router() -> Router<AppState> {
    Router::new()
        .route_both("/event-type", get(list_event_types).post(create_event_type))
        .route_both(
            "/event-type/{event_type_name}",
            get(get_event_type)
                .put(upsert_event_type)
                .patch(patch_event_type)
                .delete(delete_event_type),
        )
}

fn check_schemas(schemas: &Option<serde_json::Value>) -> ApiResult<()> {
    match schemas {
        Some(v) if !v.is_object() && !v.is_null() => Err(ApiError::invalid_msg(
            &["body", "schemas"],
            "type_error.dict",
            "schemas must be an object keyed by version",
        )),
        _ => Ok(()),
    }
}

fn flags(list: Option<Vec<String>>, single: Option<String>) -> Option<Vec<String>> {
    list.or_else(|| single.map(|f| vec![f]))
}

async fn list_event_types(State(s): State<AppState>, q: QueryPairs) -> ApiResult<Json<ListResponse<EventTypeOut>>> {
    let with_content = q.bool("with_content", true)?;
    let page = s
        .store
        .list_event_types(
            page_request(&q, Order::Ascending, Cursor::Name)?,
            q.bool("include_archived", false)?,
        )
        .await?;
    Ok(Json(ListResponse::from_page(page, |e| {
        EventTypeOut::new(e, with_content)
    })))
}

async fn create_event_type(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<EventTypeIn>,
) -> ApiResult<(StatusCode, Json<EventTypeOut>)> {
    let name = EventTypeName::parse(body.name).map_err(|e| ApiError::invalid(&["body", "name"], e))?;
    check_schemas(&body.schemas)?;
    let now = Utc::now();
    let et = EventType {
        name,
        description: body.description,
        archived: body.archived,
        deprecated: body.deprecated,
        schemas: body.schemas,
        feature_flags: flags(body.feature_flags, body.feature_flag),
        group_name: body.group_name,
        created_at: now,
        updated_at: now,
    };
    let et = s.store.create_event_type(et).await?;
    Ok((StatusCode::CREATED, Json(EventTypeOut::new(et, true))))
}

async fn get_event_type(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<EventTypeOut>> {
    Ok(Json(EventTypeOut::new(s.store.get_event_type(&name).await?, true)))
}

fn apply(et: &mut EventType, body: EventTypeUpsertIn) -> ApiResult<()> {
    if let Some(d) = body.description {
        et.description = d;
    }
    if let Some(a) = body.archived {
        et.archived = a;
    }
    if let Some(d) = body.deprecated {
        et.deprecated = d;
    }
    if let Some(schemas) = body.schemas {
        check_schemas(&schemas)?;
        et.schemas = schemas;
    }
    if let Some(f) = body.feature_flags {
        et.feature_flags = f;
    } else if let Some(f) = body.feature_flag {
        et.feature_flags = f.map(|f| vec![f]);
    }
    if let Some(g) = body.group_name {
        et.group_name = g;
    }
    et.updated_at = Utc::now();
    Ok(())
}

/// PUT: updates the event type or creates it with this name.
async fn upsert_event_type(
    State(s): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<EventTypeUpsertIn>,
) -> ApiResult<(StatusCode, Json<EventTypeOut>)> {
    if body.description.is_none() {
        return Err(ApiError::invalid_msg(
            &["body", "description"],
            "value_error.missing",
            "field required",
        ));
    }
    match s.store.get_event_type(&name).await {
        Ok(mut et) => {
            apply(&mut et, body)?;
            Ok((
                StatusCode::OK,
                Json(EventTypeOut::new(s.store.update_event_type(et).await?, true)),
            ))
        }
        Err(StoreError::NotFound(_)) => {
            let now = Utc::now();
            let mut et = EventType {
                name: EventTypeName::parse(name).map_err(|e| ApiError::invalid(&["path", "event_type_name"], e))?,
                description: String::new(),
                archived: false,
                deprecated: false,
                schemas: None,
                feature_flags: None,
                group_name: None,
                created_at: now,
                updated_at: now,
            };
            apply(&mut et, body)?;
            Ok((
                StatusCode::CREATED,
                Json(EventTypeOut::new(s.store.create_event_type(et).await?, true)),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

async fn patch_event_type(
    State(s): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<EventTypeUpsertIn>,
) -> ApiResult<Json<EventTypeOut>> {
    let mut et = s.store.get_event_type(&name).await?;
    apply(&mut et, body)?;
    Ok(Json(EventTypeOut::new(s.store.update_event_type(et).await?, true)))
}

/// Archives by default; `expunge=true` deletes.
async fn delete_event_type(
    State(s): State<AppState>,
    Path(name): Path<String>,
    q: QueryPairs,
) -> ApiResult<StatusCode> {
    s.store.delete_event_type(&name, q.bool("expunge", false)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
