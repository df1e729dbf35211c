//! The tools on one endpoint: its secret (get, rotate), its custom headers
//! (get, put, patch), its stats, `recover` and `replay-missing` (background
//! tasks), and `send-example` (a test event to it alone).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use herald_core::AppId;
use herald_core::model::Endpoint;
use herald_core::signing::EndpointSecret;
use herald_core::validate::{EventTypeName, check_payload_object};
use herald_store::{AppRef, NewMessage, StoreError, TaskKind, TaskStatus, TimeRange};
use serde_json::json;

use super::RouteBoth;
use super::endpoint::{check_authorization, find, parse_headers};
use crate::AppState;
use crate::dto::{
    BackgroundTaskOut, EndpointHeadersIn, EndpointHeadersOut, EndpointHeadersPatchIn, EndpointSecretOut,
    EndpointSecretRotateIn, EndpointStats, EventExampleIn, MessageOut, TimeRangeIn, parse_datetime,
};
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, QueryPairs};

/// How long a replaced secret keeps signing unless the request says (SPEC §4).
const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);
/// Svix's bound on `gracePeriodSeconds`.
const MAX_GRACE_SECS: u64 = 7 * 24 * 3600;
/// The widest window stats count over, and the default one (ending now).
const MAX_STATS_WINDOW: chrono::Duration = chrono::Duration::days(28);
/// How far back recover and replay-missing reach, as Svix's recover does.
const MAX_REDELIVERY_AGE: chrono::Duration = chrono::Duration::days(14);
/// Messages replay-missing looks at per store call.
const REPLAY_BATCH: usize = 500;
/// Event types whose example payload Herald knows without a schema.
const TEST_EVENTS: &[&str] = &["webhook.test", "svix.ping"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route_both("/app/{app_id}/endpoint/{endpoint_id}/secret", get(get_endpoint_secret))
        .route_both(
            "/app/{app_id}/endpoint/{endpoint_id}/secret/rotate",
            post(rotate_endpoint_secret),
        )
        .route_both(
            "/app/{app_id}/endpoint/{endpoint_id}/headers",
            get(get_endpoint_headers)
                .put(update_endpoint_headers)
                .patch(patch_endpoint_headers),
        )
        .route_both("/app/{app_id}/endpoint/{endpoint_id}/stats", get(get_endpoint_stats))
        .route_both("/app/{app_id}/endpoint/{endpoint_id}/recover", post(recover_endpoint))
        .route_both(
            "/app/{app_id}/endpoint/{endpoint_id}/replay-missing",
            post(replay_missing_endpoint),
        )
        .route_both("/app/{app_id}/endpoint/{endpoint_id}/send-example", post(send_example))
}

#[utoipa::path(
    get,
    path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret",
    tag = "endpoint",
    summary = "Get the signing secret",
    params(crate::dto::AppPath, crate::dto::EndpointPath),
    responses((status = 200, description = "The secret", body = crate::dto::EndpointSecretOut), crate::dto::ErrorResponses)
)]
async fn get_endpoint_secret(
    State(s): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<Json<EndpointSecretOut>> {
    let ep = find(&s, &app_id, &endpoint_id).await?;
    let secret = s.store.get_endpoint_secret(&ep.app_id, &ep.id).await?;
    Ok(Json(EndpointSecretOut {
        key: secret.to_wire_string(),
    }))
}

/// 200 with the new key (the Python SDK 2.9.1 parses it; svix-server's 204
/// breaks it). The old secret signs beside the new one for the grace period.
#[utoipa::path(
    post,
    path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret/rotate",
    tag = "endpoint",
    summary = "Rotate the signing secret; the old one signs beside it for the grace period",
    params(crate::dto::AppPath, crate::dto::EndpointPath, crate::dto::IdempotencyHeader),
    request_body = crate::dto::EndpointSecretRotateIn,
    responses((status = 200, description = "The new secret", body = crate::dto::EndpointSecretOut), crate::dto::ErrorResponses)
)]
async fn rotate_endpoint_secret(
    State(s): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<EndpointSecretRotateIn>,
) -> ApiResult<Json<EndpointSecretOut>> {
    let ep = find(&s, &app_id, &endpoint_id).await?;
    let grace = match body.grace_period_seconds {
        None => DEFAULT_GRACE,
        Some(secs) if secs <= MAX_GRACE_SECS => Duration::from_secs(secs),
        Some(_) => {
            return Err(ApiError::invalid_msg(
                &["body", "gracePeriodSeconds"],
                "value_error.number.not_in_range",
                format!("gracePeriodSeconds must be between 0 and {MAX_GRACE_SECS}"),
            ));
        }
    };
    let new = match super::parse_secret(body.key, "key")? {
        Some(secret) => secret,
        // The same kind as the secret it replaces.
        None => match s.store.get_endpoint_secret(&ep.app_id, &ep.id).await? {
            EndpointSecret::Asymmetric(_) => EndpointSecret::generate_asymmetric(),
            EndpointSecret::Symmetric(_) => EndpointSecret::generate_symmetric(),
        },
    };
    let key = new.to_wire_string();
    s.store.rotate_endpoint_secret(&ep.app_id, &ep.id, new, grace).await?;
    Ok(Json(EndpointSecretOut { key }))
}

#[utoipa::path(
    get,
    path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers",
    tag = "endpoint",
    summary = "Get the custom headers",
    params(crate::dto::AppPath, crate::dto::EndpointPath),
    responses((status = 200, description = "The headers", body = crate::dto::EndpointHeadersOut), crate::dto::ErrorResponses)
)]
async fn get_endpoint_headers(
    State(s): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<Json<EndpointHeadersOut>> {
    let ep = find(&s, &app_id, &endpoint_id).await?;
    Ok(Json(headers_out(&ep)))
}

fn headers_out(ep: &Endpoint) -> EndpointHeadersOut {
    EndpointHeadersOut::redacted(ep.settings.headers.clone())
}

/// PUT: the endpoint's custom headers become exactly these. 204, as Svix.
#[utoipa::path(
    put,
    path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers",
    tag = "endpoint",
    summary = "Replace the custom headers",
    params(crate::dto::AppPath, crate::dto::EndpointPath),
    request_body = crate::dto::EndpointHeadersIn,
    responses((status = 204, description = "Replaced"), crate::dto::ErrorResponses)
)]
async fn update_endpoint_headers(
    State(s): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<EndpointHeadersIn>,
) -> ApiResult<StatusCode> {
    let mut ep = find(&s, &app_id, &endpoint_id).await?;
    ep.settings.headers = parse_headers(Some(body.headers))?;
    check_authorization(&ep.settings, &["body", "headers", "authorization"])?;
    s.store.update_endpoint(ep).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// PATCH: the given headers are set, those given as `null` or listed in
/// `deleteHeaders` removed.
#[utoipa::path(
    patch,
    path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers",
    tag = "endpoint",
    summary = "Set or remove some custom headers",
    params(crate::dto::AppPath, crate::dto::EndpointPath),
    request_body = crate::dto::EndpointHeadersPatchIn,
    responses((status = 204, description = "Changed"), crate::dto::ErrorResponses)
)]
async fn patch_endpoint_headers(
    State(s): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<EndpointHeadersPatchIn>,
) -> ApiResult<StatusCode> {
    let mut ep = find(&s, &app_id, &endpoint_id).await?;
    let mut set = BTreeMap::new();
    for name in body.delete_headers {
        ep.settings.headers.remove(&name.to_ascii_lowercase());
    }
    for (name, value) in body.headers {
        match value {
            Some(v) => {
                set.insert(name, v);
            }
            None => {
                ep.settings.headers.remove(&name.to_ascii_lowercase());
            }
        }
    }
    ep.settings.headers.extend(parse_headers(Some(set))?);
    check_authorization(&ep.settings, &["body", "headers", "authorization"])?;
    s.store.update_endpoint(ep).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Counts over messages created in `[since, until)`: by default the last
/// 28 days, which is also the widest window allowed.
#[utoipa::path(
    get,
    path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/stats",
    tag = "endpoint",
    summary = "Delivery counts over messages created in [since, until), at most 28 days",
    params(crate::dto::AppPath, crate::dto::EndpointPath, ("since" = Option<String>, Query), ("until" = Option<String>, Query)),
    responses((status = 200, description = "The counts", body = crate::dto::EndpointStats), crate::dto::ErrorResponses)
)]
async fn get_endpoint_stats(
    State(s): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    q: QueryPairs,
) -> ApiResult<Json<EndpointStats>> {
    let ep = find(&s, &app_id, &endpoint_id).await?;
    let until = q.datetime("until")?.unwrap_or_else(Utc::now);
    let since = q.datetime("since")?.unwrap_or(until - MAX_STATS_WINDOW);
    if since >= until {
        return Err(ApiError::invalid_msg(
            &["query", "since"],
            "value_error",
            "since must be before until",
        ));
    }
    if until - since > MAX_STATS_WINDOW {
        return Err(ApiError::invalid_msg(
            &["query", "since"],
            "value_error",
            format!(
                "stats cover at most {} days: since must be at most that long before until",
                MAX_STATS_WINDOW.num_days()
            ),
        ));
    }
    let range = TimeRange {
        since: Some(since),
        until: Some(until),
    };
    let c = s.store.endpoint_stats(&ep.app_id, &ep.id, range).await?;
    Ok(Json(EndpointStats {
        success: c.success,
        pending: c.pending,
        sending: c.sending,
        fail: c.fail,
        canceled: c.canceled,
    }))
}

/// `since` and `until` of a recover or replay body; `since` must come first,
/// not lie in the future, and be at most 14 days ago.
fn time_range(body: &TimeRangeIn) -> ApiResult<TimeRange> {
    let parse = |field: &str, v: &str| -> ApiResult<DateTime<Utc>> {
        parse_datetime(v).ok_or_else(|| {
            ApiError::invalid_msg(
                &["body", field],
                "value_error.datetime",
                format!("'{v}' is not an RFC 3339 date-time"),
            )
        })
    };
    let since = parse("since", &body.since)?;
    let until = body.until.as_deref().map(|u| parse("until", u)).transpose()?;
    let now = Utc::now();
    if since > now {
        return Err(ApiError::invalid_msg(
            &["body", "since"],
            "value_error",
            "since must not be in the future",
        ));
    }
    if now - since > MAX_REDELIVERY_AGE {
        return Err(ApiError::invalid_msg(
            &["body", "since"],
            "value_error",
            format!("since may be at most {} days ago", MAX_REDELIVERY_AGE.num_days()),
        ));
    }
    if until.is_some_and(|u| u <= since) {
        return Err(ApiError::invalid_msg(
            &["body", "until"],
            "value_error",
            "until must be after since",
        ));
    }
    Ok(TimeRange {
        since: Some(since),
        until,
    })
}

/// What a background task on one endpoint works with.
struct TaskInput {
    store: std::sync::Arc<dyn herald_store::Store>,
    engine: std::sync::Arc<herald_engine::Engine>,
    app: AppId,
    id: herald_core::EndpointId,
    range: TimeRange,
}

/// Finds the endpoint, checks the range, records a task, answers 202 with
/// it, and runs `work` in the background; the task ends `finished` with
/// what the work reports, or `failed`.
async fn endpoint_task<W, F>(
    s: &AppState,
    app_id: &str,
    endpoint_id: &str,
    body: &TimeRangeIn,
    kind: TaskKind,
    work: W,
) -> ApiResult<(StatusCode, Json<BackgroundTaskOut>)>
where
    W: FnOnce(TaskInput) -> F,
    F: Future<Output = Result<serde_json::Value, StoreError>> + Send + 'static,
{
    let ep = find(s, app_id, endpoint_id).await?;
    let range = time_range(body)?;
    let task = s.store.create_task(&ep.app_id, kind, &s.config.node).await?;
    let work = work(TaskInput {
        store: s.store.clone(),
        engine: s.engine.clone(),
        app: ep.app_id,
        id: ep.id,
        range,
    });
    let (store, id) = (s.store.clone(), task.id.clone());
    tokio::spawn(async move {
        let (status, data) = match work.await {
            Ok(report) => (TaskStatus::Finished, report),
            Err(e) => {
                tracing::error!(task = %id, error = %e, "background task failed");
                (
                    TaskStatus::Failed,
                    json!({"error": "the task failed; see the server log"}),
                )
            }
        };
        if let Err(e) = store.finish_task(&id, status, data).await {
            tracing::error!(task = %id, error = %e, "could not record the end of a background task");
        }
    });
    Ok((StatusCode::ACCEPTED, Json(task.into())))
}

/// Re-sends every failed delivery to the endpoint of messages created since
/// `since` (until `until`).
#[utoipa::path(
    post,
    path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/recover",
    tag = "endpoint",
    summary = "Send again every failed message since a time (a background task)",
    params(crate::dto::AppPath, crate::dto::EndpointPath, crate::dto::IdempotencyHeader),
    request_body = crate::dto::TimeRangeIn,
    responses((status = 202, description = "The task", body = crate::dto::BackgroundTaskOut), crate::dto::ErrorResponses)
)]
async fn recover_endpoint(
    State(s): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<TimeRangeIn>,
) -> ApiResult<(StatusCode, Json<BackgroundTaskOut>)> {
    endpoint_task(
        &s,
        &app_id,
        &endpoint_id,
        &body,
        TaskKind::EndpointRecover,
        |t| async move {
            let n = t.store.recover_failed(&t.app, &t.id, t.range).await?;
            t.engine.wake();
            Ok(json!({ "messagesSent": n }))
        },
    )
    .await
}

/// Sends the endpoint the messages of the range it never got but
/// subscribes to now.
#[utoipa::path(
    post,
    path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/replay-missing",
    tag = "endpoint",
    summary = "Send the messages since a time the endpoint never got (a background task)",
    params(crate::dto::AppPath, crate::dto::EndpointPath, crate::dto::IdempotencyHeader),
    request_body = crate::dto::TimeRangeIn,
    responses((status = 202, description = "The task", body = crate::dto::BackgroundTaskOut), crate::dto::ErrorResponses)
)]
async fn replay_missing_endpoint(
    State(s): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<TimeRangeIn>,
) -> ApiResult<(StatusCode, Json<BackgroundTaskOut>)> {
    endpoint_task(
        &s,
        &app_id,
        &endpoint_id,
        &body,
        TaskKind::EndpointReplay,
        |t| async move {
            let (mut total, mut after) = (0, None);
            loop {
                let (n, last) = t
                    .store
                    .replay_missing(&t.app, &t.id, t.range, after, REPLAY_BATCH)
                    .await?;
                total += n;
                if n > 0 {
                    t.engine.wake();
                }
                match last {
                    Some(last) => after = Some(last),
                    None => break,
                }
            }
            Ok(json!({ "messagesSent": total }))
        },
    )
    .await
}

/// A message of `eventType` (`webhook.test` when absent) sent to this
/// endpoint only, whatever its filters: the given payload, else the event type's example (from its
/// `schemas`, `exampleIndex`-th), else for a test event `{"success": true}`.
#[utoipa::path(
    post,
    path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/send-example",
    tag = "endpoint",
    summary = "Send an example event to this endpoint only",
    params(crate::dto::AppPath, crate::dto::EndpointPath, crate::dto::IdempotencyHeader),
    request_body = crate::dto::EventExampleIn,
    responses((status = 200, description = "The message sent", body = crate::dto::MessageOut), crate::dto::ErrorResponses)
)]
async fn send_example(
    State(s): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<EventExampleIn>,
) -> ApiResult<(StatusCode, Json<MessageOut>)> {
    let ep = find(&s, &app_id, &endpoint_id).await?;
    let event_type = body.event_type.unwrap_or_else(|| TEST_EVENTS[0].to_owned());
    let event_type = EventTypeName::parse(event_type).map_err(|e| ApiError::invalid(&["body", "eventType"], e))?;
    let payload = match body.payload {
        Some(raw) => {
            check_payload_object(raw.get()).map_err(|e| ApiError::invalid(&["body", "payload"], e))?;
            raw.get().to_owned()
        }
        None => example_payload(&s, &event_type, body.example_index.unwrap_or(0)).await?,
    };
    let msg = NewMessage {
        app: AppRef(ep.app_id.to_string()),
        event_type,
        event_id: None,
        channels: None,
        tags: None,
        payload: Bytes::from(payload),
        payload_retention: None,
        only_endpoint: Some(ep.id),
        lease: None,
    };
    let ingested = s.engine.ingest(msg).await?;
    Ok((StatusCode::OK, Json(MessageOut::new(ingested.message, true)?)))
}

async fn example_payload(s: &AppState, event_type: &EventTypeName, index: usize) -> ApiResult<String> {
    let et = match s.store.get_event_type(event_type.as_str()).await {
        Ok(et) => Some(et),
        Err(StoreError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let examples: Vec<serde_json::Value> = et
        .as_ref()
        .and_then(|et| et.schemas.as_ref())
        .and_then(|schemas| schemas.as_object())
        .into_iter()
        .flat_map(|versions| versions.values())
        .filter_map(|schema| schema.get("examples").and_then(|e| e.as_array()))
        .flatten()
        .filter(|e| e.is_object())
        .cloned()
        .collect();
    if let Some(example) = examples.get(index) {
        return Ok(example.to_string());
    }
    if TEST_EVENTS.contains(&event_type.as_str()) && index == 0 {
        return Ok(r#"{"success":true}"#.to_owned());
    }
    if et.is_none() {
        return Err(ApiError::not_found("event type"));
    }
    Err(ApiError::invalid_msg(
        &["body", "exampleIndex"],
        "value_error",
        format!(
            "event type '{}' has {} example payload(s) in its schemas; give one of them by index, or a payload",
            event_type.as_str(),
            examples.len()
        ),
    ))
}
