//! Operational webhooks: Herald's own events about endpoints and attempts
//! (`endpoint.created`, `…updated`, `…deleted`, `…disabled`, `…enabled`,
//! `message.attempt.exhausted`, `…failing`, `…recovered`), sent to the endpoints managed at
//! `/api/v1/operational-webhook/endpoint/`.
//!
//! They travel as messages of an internal application (ADR 0004), so they
//! are stored, signed, retried and recorded exactly like any other message,
//! with no second delivery path. That application is made on the first
//! operational endpoint; until then no event is stored. Its uid contains a
//! `:`, which no uid given through the API may, and every `/api/v1` route
//! answers 404 for it, by uid or id, so no one sees or changes it but
//! through the operational routes.

use herald_core::AppId;
use herald_core::health::DisableReason;
use herald_core::model::{Application, Endpoint};
use herald_core::validate::{EventTypeName, Uid};
use herald_engine::{AttemptEvent, AttemptEventKind};
use herald_store::{AppRef, NewApplication, NewMessage, StoreError};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// The internal application's uid.
pub const APP_UID: &str = "herald:operational-webhooks";

/// The event types Herald sends, which an endpoint may filter on.
pub const EVENT_TYPES: &[&str] = &[
    "endpoint.created",
    "endpoint.updated",
    "endpoint.deleted",
    "endpoint.disabled",
    "endpoint.enabled",
    "message.attempt.exhausted",
    "message.attempt.failing",
    "message.attempt.recovered",
];

/// The internal application if it exists (cached once found).
pub(crate) async fn app_id(s: &AppState) -> ApiResult<Option<AppId>> {
    if let Some(id) = s.operational.get() {
        return Ok(Some(id.clone()));
    }
    match s.store.get_app(APP_UID).await {
        Ok(app) => Ok(Some(s.operational.get_or_init(|| app.id).clone())),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The internal application, made now if it is not there yet.
pub(crate) async fn ensure_app(s: &AppState) -> ApiResult<AppId> {
    if let Some(id) = app_id(s).await? {
        return Ok(id);
    }
    let made = s
        .store
        .create_app(NewApplication {
            uid: Some(Uid::from_trusted(APP_UID.to_owned())),
            name: "Herald operational webhooks".to_owned(),
            metadata: Default::default(),
            throttle_rate: None,
        })
        .await;
    let app = match made {
        Ok(app) => app,
        // Made meanwhile by another request.
        Err(StoreError::Conflict(_)) => s.store.get_app(APP_UID).await?,
        Err(e) => return Err(e.into()),
    };
    Ok(s.operational.get_or_init(|| app.id).clone())
}

/// Whether a path below `/api/v1` names the internal application, by uid
/// or id, in any segment: such a request is answered 404.
pub(crate) fn names_internal_app(s: &AppState, path: &str) -> bool {
    path.split('/').any(|seg| {
        seg == APP_UID
            || seg.eq_ignore_ascii_case("herald%3Aoperational-webhooks")
            || s.operational.get().is_some_and(|id| id.as_str() == seg)
    })
}

/// Refuses event types Herald does not send.
pub(crate) fn parse_filter_types(types: Option<Vec<String>>) -> ApiResult<Option<Vec<EventTypeName>>> {
    if let Some(list) = &types {
        for (i, t) in list.iter().enumerate() {
            if !EVENT_TYPES.contains(&t.as_str()) {
                return Err(ApiError::invalid_msg(
                    &["body", "filterTypes", &i.to_string()],
                    "type_error.enum",
                    format!(
                        "'{t}' is not an operational event type (one of {})",
                        EVENT_TYPES.join(", ")
                    ),
                ));
            }
        }
    }
    crate::routes::parse_event_types(types, "filterTypes")
}

/// What every endpoint event says about the endpoint.
fn endpoint_data(app: &Application, ep: &Endpoint) -> Value {
    json!({
        "appId": app.id.as_str(),
        "appUid": app.uid.as_ref().map(|u| u.as_str()),
        "endpointId": ep.id.as_str(),
        "endpointUid": ep.uid.as_ref().map(|u| u.as_str()),
    })
}

/// Sends one operational event to the endpoints that subscribe to it. It
/// follows a change already committed, so a failure here is logged, never
/// the request's: the change stands.
async fn emit(s: &AppState, event_type: &str, data: Value) {
    let result = async {
        let Some(app) = app_id(s).await? else {
            return Ok(());
        };
        let payload = json!({"type": event_type, "data": data}).to_string();
        let msg = NewMessage {
            app: AppRef(app.to_string()),
            event_type: EventTypeName::from_trusted(event_type.to_owned()),
            event_id: None,
            channels: None,
            tags: None,
            payload: payload.into(),
            payload_retention: None,
            only_endpoint: None,
            lease: None,
        };
        s.engine.ingest(msg).await.map(|_| ()).map_err(ApiError::from)
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = ?e, event_type, "could not send an operational webhook");
    }
}

/// An endpoint of `app` was created, changed (`was_disabled` before) or
/// deleted: the events that say so. The internal application's own
/// endpoints say nothing (their routes never call this).
pub(crate) async fn endpoint_changed(
    s: &AppState,
    app: &Application,
    before: Option<&Endpoint>,
    after: Option<&Endpoint>,
) {
    match (before, after) {
        (None, Some(ep)) => emit(s, "endpoint.created", endpoint_data(app, ep)).await,
        (Some(ep), None) => emit(s, "endpoint.deleted", endpoint_data(app, ep)).await,
        (Some(old), Some(ep)) => {
            emit(s, "endpoint.updated", endpoint_data(app, ep)).await;
            match (old.settings.disabled, ep.settings.disabled) {
                (false, true) => {
                    let mut data = endpoint_data(app, ep);
                    data["trigger"] = json!("manual");
                    data["failSince"] = json!(crate::dto::fmt_time(&ep.updated_at));
                    emit(s, "endpoint.disabled", data).await;
                }
                (true, false) => emit(s, "endpoint.enabled", endpoint_data(app, ep)).await,
                _ => {}
            }
        }
        (None, None) => {}
    }
}

/// Whether something that happened in `about` is told at all. With no
/// operational endpoint yet there is no one to tell, and nothing more is
/// read. The internal application's own endpoints say nothing about
/// themselves: a dead operational receiver would feed itself.
async fn is_told(s: &AppState, about: &AppId) -> bool {
    matches!(app_id(s).await, Ok(Some(op)) if op != *about)
}

/// `message.attempt.exhausted`, `…failing` or `…recovered`: one shape.
async fn attempt_event(s: &AppState, e: AttemptEvent) {
    let a = e.attempt;
    if !is_told(s, &a.app_id).await {
        return;
    }
    let (app, msg) = match (
        s.store.get_app(a.app_id.as_str()).await,
        s.store.get_message(&a.app_id, a.msg_id.as_str()).await,
    ) {
        (Ok(app), Ok(msg)) => (app, msg),
        // Deleted since: nothing to tell about.
        _ => return,
    };
    let data = json!({
        "appId": app.id.as_str(),
        "appUid": app.uid.as_ref().map(|u| u.as_str()),
        "endpointId": a.endpoint_id.as_str(),
        "msgId": a.msg_id.as_str(),
        "msgEventId": msg.event_id.as_ref().map(|e| e.as_str()),
        "lastAttempt": {
            "id": a.id.as_str(),
            "responseStatusCode": a.response_status_code,
            "timestamp": crate::dto::fmt_time(&a.created_at),
        },
    });
    let event_type = match e.kind {
        AttemptEventKind::Exhausted => "message.attempt.exhausted",
        AttemptEventKind::Failing => "message.attempt.failing",
        AttemptEventKind::Recovered => "message.attempt.recovered",
    };
    emit(s, event_type, data).await;
}

/// Turns the engine's attempt events into `message.attempt.*` events, and
/// the endpoints it disabled into `endpoint.disabled`, until `shutdown`.
pub(crate) async fn run(s: AppState, shutdown: CancellationToken) {
    use tokio::sync::broadcast::error::RecvError;
    let mut attempts = s.engine.attempt_events();
    let mut disabled = s.engine.disabled();
    loop {
        tokio::select! {
            n = attempts.recv() => match n {
                Ok(e) => attempt_event(&s, e).await,
                Err(RecvError::Lagged(n)) => tracing::warn!(
                    missed = n,
                    "operational webhooks fell behind; some attempt events go untold"
                ),
                Err(RecvError::Closed) => return,
            },
            d = disabled.recv() => match d {
                Ok(d) => endpoint_disabled(&s, d).await,
                Err(RecvError::Lagged(n)) => tracing::warn!(
                    missed = n,
                    "operational webhooks fell behind; some disabled endpoints go untold"
                ),
                Err(RecvError::Closed) => return,
            },
            _ = shutdown.cancelled() => return,
        }
    }
}

/// `endpoint.disabled` with `trigger: automatic`, for an endpoint the
/// engine disabled; never about an operational endpoint itself.
async fn endpoint_disabled(s: &AppState, d: herald_engine::EndpointDisabled) {
    if !is_told(s, &d.app_id).await {
        return;
    }
    let (app, ep) = match (
        s.store.get_app(d.app_id.as_str()).await,
        s.store.get_endpoint(&d.app_id, d.endpoint_id.as_str()).await,
    ) {
        (Ok(app), Ok(ep)) => (app, ep),
        // Deleted since: nothing to tell about.
        _ => return,
    };
    let mut data = endpoint_data(&app, &ep);
    data["trigger"] = json!("automatic");
    data["failSince"] = json!(crate::dto::fmt_time(&d.failing_since));
    data["reason"] = json!(match d.reason {
        DisableReason::Gone => "gone",
        DisableReason::FailingFor(_) => "failingFor",
        DisableReason::FailedMessages(_) => "consecutiveFailedMessages",
    });
    emit(s, "endpoint.disabled", data).await;
}
