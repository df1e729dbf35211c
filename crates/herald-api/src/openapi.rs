//! Herald's own OpenAPI document, generated from the handlers' and DTOs'
//! annotations (utoipa) and served at `GET /api/v1/openapi.json`.
//!
//! Fields and operations Herald adds to the Svix v1 API carry
//! `x-herald-extension: true`, so a reader (or a generator) can tell what a
//! Svix SDK will not know. They are listed here, beside the document, and a
//! test checks that each still names a real field or route.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde_json::Value;
use utoipa::OpenApi;

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald",
        description = "Durable, signed webhook delivery speaking the Svix v1 API. \
                       Fields and routes marked `x-herald-extension` are Herald's own.",
    ),
    paths(
        routes::health::health,
        routes::health::ping,
        routes::app::list_apps,
        routes::app::create_app,
        routes::app::get_app,
        routes::app::upsert_app,
        routes::app::patch_app,
        routes::app::delete_app,
        routes::endpoint::list_endpoints,
        routes::endpoint::create_endpoint,
        routes::endpoint::get_endpoint,
        routes::endpoint::upsert_endpoint,
        routes::endpoint::patch_endpoint,
        routes::endpoint::delete_endpoint,
        routes::endpoint_tools::get_endpoint_secret,
        routes::endpoint_tools::rotate_endpoint_secret,
        routes::endpoint_tools::get_endpoint_headers,
        routes::endpoint_tools::update_endpoint_headers,
        routes::endpoint_tools::patch_endpoint_headers,
        routes::endpoint_tools::get_endpoint_stats,
        routes::endpoint_tools::recover_endpoint,
        routes::endpoint_tools::replay_missing_endpoint,
        routes::endpoint_tools::send_example,
        routes::event_type::list_event_types,
        routes::event_type::create_event_type,
        routes::event_type::get_event_type,
        routes::event_type::upsert_event_type,
        routes::event_type::patch_event_type,
        routes::event_type::delete_event_type,
        routes::message::list_messages,
        routes::message::create_message,
        routes::message::get_message,
        routes::message::expunge_message_content,
        routes::attempt::list_attempts_by_endpoint,
        routes::attempt::list_attempts_by_msg,
        routes::attempt::get_attempt,
        routes::attempt::expunge_attempt_content,
        routes::attempt::resend_message,
        routes::attempt::list_attempted_messages,
        routes::attempt::list_attempted_destinations,
        routes::auth::app_portal_access,
        routes::auth::logout,
        routes::auth::expire_all,
        routes::auth::get_caller,
        routes::task::list_background_tasks,
        routes::task::get_background_task,
        routes::relay::create_relay_channel,
        routes::relay::listen_relay_channel,
        routes::operational::list_operational_endpoints,
        routes::operational::create_operational_endpoint,
        routes::operational::get_operational_endpoint,
        routes::operational::update_operational_endpoint,
        routes::operational::delete_operational_endpoint,
        routes::operational::get_operational_endpoint_secret,
        routes::operational::rotate_operational_endpoint_secret,
        routes::operational::get_operational_endpoint_headers,
        routes::operational::update_operational_endpoint_headers,
    )
)]
struct ApiDoc;

/// `(schema, property)` pairs that Svix's v1 document does not have: Herald's
/// own settings, and fields of later Svix SDKs Herald accepts or sends.
pub const EXTENSION_FIELDS: &[(&str, &str)] = &[
    ("AppPortalAccessIn", "expiry"),
    ("AppPortalAccessIn", "readOnly"),
    ("AppPortalAccessIn", "capabilities"),
    ("AppPortalAccessIn", "sessionId"),
    ("EndpointIn", "headers"),
    ("EndpointIn", "version"),
    ("EndpointOut", "version"),
    ("EndpointPatch", "version"),
    ("EventExampleIn", "exampleIndex"),
    ("EventExampleIn", "payload"),
    ("EventTypeIn", "featureFlags"),
    ("EventTypeIn", "groupName"),
    ("EventTypeOut", "featureFlags"),
    ("EventTypeOut", "groupName"),
    ("MessageAttemptOut", "msg"),
    ("MessageIn", "payloadRetentionHours"),
    ("MessageIn", "tags"),
    ("MessageOut", "tags"),
    ("EndpointIn", "timeoutSecs"),
    ("EndpointIn", "payloadTemplate"),
    ("EndpointPatch", "timeoutSecs"),
    ("EndpointPatch", "payloadTemplate"),
    ("EndpointOut", "timeoutSecs"),
    ("EndpointOut", "payloadTemplate"),
    ("EndpointIn", "transformation"),
    ("EndpointPatch", "transformation"),
    ("EndpointOut", "transformation"),
    ("EndpointIn", "retrySchedule"),
    ("EndpointPatch", "retrySchedule"),
    ("EndpointOut", "retrySchedule"),
    ("EndpointIn", "bodySignature"),
    ("EndpointPatch", "bodySignature"),
    ("EndpointOut", "bodySignature"),
    ("EndpointIn", "disableRule"),
    ("EndpointPatch", "disableRule"),
    ("EndpointOut", "disableRule"),
    ("EndpointIn", "fifo"),
    ("EndpointPatch", "fifo"),
    ("EndpointOut", "fifo"),
    ("EndpointIn", "batch"),
    ("EndpointPatch", "batch"),
    ("EndpointOut", "batch"),
    ("EndpointIn", "maxInFlight"),
    ("EndpointPatch", "maxInFlight"),
    ("EndpointOut", "maxInFlight"),
    ("EndpointIn", "basicAuth"),
    ("EndpointPatch", "basicAuth"),
    ("EndpointOut", "basicAuth"),
    ("EndpointIn", "verifyToken"),
    ("EndpointPatch", "verifyToken"),
    ("EndpointOut", "verifyToken"),
    ("EndpointIn", "bodyEncoding"),
    ("EndpointPatch", "bodyEncoding"),
    ("EndpointOut", "bodyEncoding"),
    ("EndpointOut", "rateLimit"),
    ("EndpointOut", "filterTypes"),
    ("MessageAttemptOut", "errorKind"),
    ("MessageAttemptOut", "attemptNumber"),
    ("EndpointHeadersPatchIn", "deleteHeaders"),
];

/// `(path, method)` operations the Svix v1 document does not have.
pub const EXTENSION_OPERATIONS: &[(&str, &str)] = &[
    ("/api/v1/app/{app_id}/endpoint/{endpoint_id}/replay-missing", "post"),
    ("/api/v1/auth/app/{app_id}/expire-all", "post"),
    ("/api/v1/auth/me", "get"),
    ("/api/v1/background-task", "get"),
    ("/api/v1/background-task/{task_id}", "get"),
    ("/api/v1/relay", "post"),
    ("/api/v1/relay/{channel}/listen", "get"),
    // Svix's later operational-webhook routes, which its v1 document lacks.
    ("/api/v1/operational-webhook/endpoint", "get"),
    ("/api/v1/operational-webhook/endpoint", "post"),
    ("/api/v1/operational-webhook/endpoint/{endpoint_id}", "get"),
    ("/api/v1/operational-webhook/endpoint/{endpoint_id}", "put"),
    ("/api/v1/operational-webhook/endpoint/{endpoint_id}", "delete"),
    ("/api/v1/operational-webhook/endpoint/{endpoint_id}/secret", "get"),
    (
        "/api/v1/operational-webhook/endpoint/{endpoint_id}/secret/rotate",
        "post",
    ),
    ("/api/v1/operational-webhook/endpoint/{endpoint_id}/headers", "get"),
    ("/api/v1/operational-webhook/endpoint/{endpoint_id}/headers", "put"),
];

const MARK: &str = "x-herald-extension";

/// The document as JSON, with Herald's extensions marked.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the generated document serialises");
    for (schema, field) in EXTENSION_FIELDS {
        if let Some(prop) = doc
            .pointer_mut(&format!("/components/schemas/{schema}/properties/{field}"))
            .and_then(Value::as_object_mut)
        {
            prop.insert(MARK.to_owned(), Value::Bool(true));
        }
    }
    for (path, method) in EXTENSION_OPERATIONS {
        let pointer = format!("/paths/{}/{method}", path.replace('~', "~0").replace('/', "~1"));
        if let Some(op) = doc.pointer_mut(&pointer).and_then(Value::as_object_mut) {
            op.insert(MARK.to_owned(), Value::Bool(true));
        }
    }
    doc
}

/// `GET /api/v1/openapi.json`: public, like Svix's, and built once.
pub async fn get_openapi() -> impl IntoResponse {
    static TEXT: OnceLock<String> = OnceLock::new();
    let text = TEXT.get_or_init(|| serde_json::to_string_pretty(&document()).expect("JSON serialises"));
    ([(header::CONTENT_TYPE, "application/json")], text.as_str())
}
