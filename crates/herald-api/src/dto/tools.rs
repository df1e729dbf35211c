//! Bodies of the endpoint tools (secret rotation, headers, recover,
//! replay, send-example), the history views, background tasks and
//! app-portal access, in Svix's shapes.

use std::collections::BTreeMap;

use herald_core::credentials::is_sensitive_header;
use herald_core::model::DeliveryStatus;
use herald_store::{EndpointMessage, MessageDestination, Task};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{ApplicationIn, MessageOut, fmt_time};
use crate::error::ApiError;

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSecretRotateIn {
    pub key: Option<String>,
    /// How long the old secret keeps signing (0 to 604800; default 86400).
    pub grace_period_seconds: Option<u64>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct EndpointHeadersIn {
    pub headers: BTreeMap<String, String>,
}

/// PATCH: a `null` value removes that header (the v1 document's way), and
/// so does naming it in `deleteHeaders` (newer SDKs' way).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointHeadersPatchIn {
    pub headers: BTreeMap<String, Option<String>>,
    #[serde(default)]
    pub delete_headers: Vec<String>,
}

/// Svix's shape: the custom headers, less the sensitive ones, whose names
/// alone are listed in `sensitive` (their values are never shown).
#[derive(Serialize, utoipa::ToSchema)]
pub struct EndpointHeadersOut {
    pub headers: BTreeMap<String, String>,
    /// Headers set but not shown: `authorization`, `proxy-authorization`,
    /// `x-auth-token`, `www-authenticate`, `proxy-authenticate` (Svix's list).
    pub sensitive: Vec<String>,
}

impl EndpointHeadersOut {
    /// `headers` as shown: the sensitive ones by name only.
    pub fn redacted(headers: BTreeMap<String, String>) -> Self {
        let (sensitive, headers): (BTreeMap<_, _>, BTreeMap<_, _>) =
            headers.into_iter().partition(|(name, _)| is_sensitive_header(name));
        Self {
            headers,
            sensitive: sensitive.into_keys().collect(),
        }
    }
}

/// `RecoverIn` and `ReplayIn`: times as the SDKs send them, parsed by the handler.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct TimeRangeIn {
    pub since: String,
    pub until: Option<String>,
}

/// `RecoverOut`, `ReplayOut` and `BackgroundTaskOut`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackgroundTaskOut {
    pub id: String,
    #[schema(value_type = String)]
    pub status: &'static str,
    #[schema(value_type = String)]
    pub task: &'static str,
    pub updated_at: String,
    /// What the task reported (`{"messagesSent": 3}`), once done.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl From<Task> for BackgroundTaskOut {
    fn from(t: Task) -> Self {
        Self {
            id: t.id.to_string(),
            status: t.status.as_str(),
            task: t.kind.as_str(),
            updated_at: fmt_time(&t.updated_at),
            data: t.data,
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventExampleIn {
    /// Absent: `webhook.test`, the test event (Herald extension: Svix
    /// requires it).
    #[serde(default)]
    pub event_type: Option<String>,
    pub example_index: Option<usize>,
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Box<RawValue>>,
}

/// A message with its delivery to one endpoint (`attempted-messages`).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointMessageOut {
    #[serde(flatten)]
    pub message: MessageOut,
    pub status: i64,
    #[schema(value_type = String)]
    pub status_text: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<String>,
}

impl EndpointMessageOut {
    pub fn new(m: EndpointMessage, with_content: bool) -> Result<Self, ApiError> {
        Ok(Self {
            message: MessageOut::new(m.message, with_content)?,
            status: m.status.code(),
            status_text: m.status.text(),
            next_attempt: m.next_attempt.as_ref().map(fmt_time),
        })
    }
}

/// An endpoint with its delivery of one message (`attempted-destinations`).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageEndpointOut {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    pub url: String,
    pub description: String,
    pub disabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_types: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttle_rate: Option<u32>,
    pub created_at: String,
    pub updated_at: String,
    pub status: i64,
    #[schema(value_type = String)]
    pub status_text: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<String>,
}

impl From<MessageDestination> for MessageEndpointOut {
    fn from(d: MessageDestination) -> Self {
        let e = d.endpoint;
        let s = e.settings;
        Self {
            id: e.id.to_string(),
            uid: e.uid.map(|u| u.into_string()),
            url: s.url.as_str().to_owned(),
            description: s.description,
            disabled: s.disabled,
            event_types: s.filter_types.map(|t| t.into_iter().map(|n| n.into_string()).collect()),
            channels: s.channels.map(|c| c.into_iter().map(|n| n.into_string()).collect()),
            throttle_rate: s.throttle_rate,
            created_at: fmt_time(&e.created_at),
            updated_at: fmt_time(&e.updated_at),
            status: d.status.code(),
            status_text: d.status.text(),
            next_attempt: d.next_attempt.as_ref().map(fmt_time),
        }
    }
}

/// `status` as a query parameter: Svix's `MessageStatus` code.
pub fn parse_status(v: &str) -> Result<DeliveryStatus, ApiError> {
    v.parse::<i64>()
        .ok()
        .and_then(DeliveryStatus::from_code)
        .ok_or_else(|| {
            ApiError::invalid_msg(
                &["query", "status"],
                "type_error.enum",
                format!("'{v}' is not a message status (0-4)"),
            )
        })
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppPortalAccessIn {
    /// Creates the application if it does not exist.
    pub application: Option<ApplicationIn>,
    /// Seconds the token lives (default 7 days, at most one year).
    pub expiry: Option<u64>,
    pub feature_flags: Option<Vec<String>>,
    /// Refuses the token every change (403), whatever `capabilities` says.
    pub read_only: Option<bool>,
    /// What the token may do in its application (Svix's
    /// `AppPortalCapability` names); `ViewBase` is implied. Absent: everything.
    pub capabilities: Option<Vec<String>>,
    pub session_id: Option<String>,
}

/// `GET /api/v1/auth/me` (Herald extension): the calling token and what it
/// may do, so a page can hide what would be refused.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallerOut {
    /// `admin` or `app`.
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// The application an app-scoped token is limited to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    pub read_only: bool,
    /// The capabilities in force (under `readOnly`, only the ones that read).
    pub capabilities: Vec<String>,
    /// Whether the token may also do what no capability names (send
    /// messages, expunge content, open relay channels).
    pub unrestricted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AppPortalAccessOut {
    pub url: String,
    pub token: String,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationTokenExpireIn {
    /// Seconds from now until the tokens expire; Herald revokes them at once.
    pub expiry: Option<i64>,
    pub session_ids: Option<Vec<String>>,
}

/// Svix's `EmptyResponse`: `{}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EmptyResponse {}

/// An error (documentation of what `error.rs` renders): `code` names the
/// kind, `detail` says what is wrong.
#[derive(Serialize, utoipa::ToSchema)]
pub struct HttpErrorOut {
    pub code: String,
    pub detail: String,
}

/// One invalid field of a 422.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ValidationError {
    pub loc: Vec<String>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// A 422: `detail` lists every invalid field.
#[derive(Serialize, utoipa::ToSchema)]
pub struct HttpValidationError {
    pub detail: Vec<ValidationError>,
}

/// The errors every authenticated route may answer, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
pub enum ErrorResponses {
    /// Missing or invalid token.
    #[response(status = 401)]
    Unauthorized(HttpErrorOut),
    /// Not allowed for this token.
    #[response(status = 403)]
    Forbidden(HttpErrorOut),
    /// Not found.
    #[response(status = 404)]
    NotFound(HttpErrorOut),
    /// Invalid input.
    #[response(status = 422)]
    Invalid(HttpValidationError),
}

/// Path parameters, for the OpenAPI document (handlers take them as strings).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AppPath {
    /// The application's id or uid.
    pub app_id: String,
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct EndpointPath {
    /// The endpoint's id or uid.
    pub endpoint_id: String,
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MsgPath {
    /// The message's id or eventId.
    pub msg_id: String,
}

/// `limit`, `iterator` and `order` of every list.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page (1 to 250, default 50).
    pub limit: Option<u64>,
    /// The iterator from a previous page.
    pub iterator: Option<String>,
    /// `ascending` or `descending`.
    pub order: Option<String>,
}

/// The `idempotency-key` header every POST takes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyHeader {
    /// Answer a repeat of this request (same key, path and body) within 24 h with the first response.
    #[param(rename = "idempotency-key")]
    pub idempotency_key: Option<String>,
}
