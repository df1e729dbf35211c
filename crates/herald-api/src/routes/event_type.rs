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

/// `schemas` is an object keyed by version whose values are JSON Schemas:
/// each an object whose `type`, `properties`, `required` and `examples`,
/// where given, have the types JSON Schema gives them. (A full meta-schema
/// check is left to the portal work, which renders them.)
fn check_schemas(schemas: &Option<serde_json::Value>) -> ApiResult<()> {
    const TYPES: &[&str] = &["object", "array", "string", "number", "integer", "boolean", "null"];
    let invalid = |loc: &[&str], msg: String| ApiError::invalid_msg(loc, "value_error.schema", msg);
    let versions = match schemas {
        None | Some(serde_json::Value::Null) => return Ok(()),
        Some(serde_json::Value::Object(v)) => v,
        Some(_) => {
            return Err(ApiError::invalid_msg(
                &["body", "schemas"],
                "type_error.dict",
                "schemas must be an object keyed by version",
            ));
        }
    };
    for (version, schema) in versions {
        let loc = ["body", "schemas", version.as_str()];
        let Some(schema) = schema.as_object() else {
            return Err(invalid(
                &loc,
                format!("the schema of version '{version}' must be a JSON Schema object"),
            ));
        };
        let type_ok = match schema.get("type") {
            None => true,
            Some(serde_json::Value::String(t)) => TYPES.contains(&t.as_str()),
            Some(serde_json::Value::Array(ts)) => ts.iter().all(|t| t.as_str().is_some_and(|t| TYPES.contains(&t))),
            Some(_) => false,
        };
        let shapes_ok = type_ok
            && schema.get("properties").is_none_or(|p| p.is_object())
            && schema
                .get("required")
                .is_none_or(|r| r.as_array().is_some_and(|r| r.iter().all(|v| v.is_string())))
            && schema.get("examples").is_none_or(|e| e.is_array());
        if !shapes_ok {
            return Err(invalid(
                &loc,
                format!(
                    "the schema of version '{version}' is not a valid JSON Schema: `type` must name JSON types, \
                     `properties` be an object, `required` a list of names and `examples` a list"
                ),
            ));
        }
    }
    Ok(())
}

fn flags(list: Option<Vec<String>>, single: Option<String>) -> Option<Vec<String>> {
    list.or_else(|| single.map(|f| vec![f]))
}

#[utoipa::path(
    get,
    path = "/api/v1/event-type",
    tag = "event_type",
    summary = "List event types",
    params(crate::dto::PageQuery, ("include_archived" = Option<bool>, Query), ("with_content" = Option<bool>, Query)),
    responses((status = 200, description = "The page", body = crate::dto::ListResponse<crate::dto::EventTypeOut>), crate::dto::ErrorResponses)
)]
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

#[utoipa::path(
    post,
    path = "/api/v1/event-type",
    tag = "event_type",
    summary = "Create an event type",
    params(crate::dto::IdempotencyHeader),
    request_body = crate::dto::EventTypeIn,
    responses((status = 201, description = "Created", body = crate::dto::EventTypeOut), crate::dto::ErrorResponses)
)]
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

#[utoipa::path(
    get,
    path = "/api/v1/event-type/{event_type_name}",
    tag = "event_type",
    summary = "Get an event type",
    params(("event_type_name" = String, Path, description = "The event type's name")),
    responses((status = 200, description = "The event type", body = crate::dto::EventTypeOut), crate::dto::ErrorResponses)
)]
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
#[utoipa::path(
    put,
    path = "/api/v1/event-type/{event_type_name}",
    tag = "event_type",
    summary = "Create or replace an event type",
    params(("event_type_name" = String, Path, description = "The event type's name")),
    request_body = crate::dto::EventTypeUpsertIn,
    responses((status = 200, description = "Replaced", body = crate::dto::EventTypeOut), (status = 201, description = "Created", body = crate::dto::EventTypeOut), crate::dto::ErrorResponses)
)]
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

#[utoipa::path(
    patch,
    path = "/api/v1/event-type/{event_type_name}",
    tag = "event_type",
    summary = "Change some fields of an event type",
    params(("event_type_name" = String, Path, description = "The event type's name")),
    request_body = crate::dto::EventTypeUpsertIn,
    responses((status = 200, description = "Changed", body = crate::dto::EventTypeOut), crate::dto::ErrorResponses)
)]
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
#[utoipa::path(
    delete,
    path = "/api/v1/event-type/{event_type_name}",
    tag = "event_type",
    summary = "Archive (or with expunge, delete) an event type",
    params(("event_type_name" = String, Path, description = "The event type's name"), ("expunge" = Option<bool>, Query)),
    responses((status = 204, description = "Deleted"), crate::dto::ErrorResponses)
)]
async fn delete_event_type(
    State(s): State<AppState>,
    Path(name): Path<String>,
    q: QueryPairs,
) -> ApiResult<StatusCode> {
    s.store.delete_event_type(&name, q.bool("expunge", false)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
