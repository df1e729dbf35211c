//! Request and response bodies in the Svix v1 shapes (camelCase keys). Only
//! this crate knows them; handlers convert to and from `herald_core` types.
//!
//! Response rules the official SDKs depend on: `metadata` is `{}` never
//! null, `description` is `""` never null, lists always carry `iterator`
//! (possibly null) and `done`, datetimes are RFC 3339 in UTC with `Z`.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use herald_core::model::{Application, Attempt, EventType, Message};
use herald_store::Page;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use crate::error::ApiError;

mod batch;
mod body_signature;
mod credentials;
mod disable_rule;
mod endpoint;
mod operational;
mod retry;
mod tools;

pub use batch::{BatchDto, check_fifo_and_batch};
pub use body_signature::BodySignatureDto;
pub use credentials::{BasicAuthIn, BasicAuthOut, BodyEncodingDto, VerifyTokenIn, VerifyTokenOut};
pub use disable_rule::DisableRuleDto;
pub use endpoint::*;
pub use operational::*;
pub use retry::RetryScheduleDto;
pub use tools::*;

pub fn fmt_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Accepts what SDKs send: RFC 3339 with `Z` or an offset, or no offset at
/// all (taken as UTC, as pydantic sends naive datetimes).
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let normalized = s.replacen(' ', "T", 1);
    if let Ok(t) = DateTime::parse_from_rfc3339(&normalized) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(&normalized, f).ok())
        .map(|n| n.and_utc())
}

/// For PATCH: distinguishes an absent field (`None`) from an explicit
/// `null` (`Some(None)`).
pub fn double_option<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListResponse<T> {
    pub data: Vec<T>,
    pub iterator: Option<String>,
    pub prev_iterator: Option<String>,
    pub done: bool,
}

impl<T> ListResponse<T> {
    pub fn from_page<U>(page: Page<U>, f: impl FnMut(U) -> T) -> Self {
        Self {
            data: page.data.into_iter().map(f).collect(),
            iterator: page.iterator,
            prev_iterator: page.prev_iterator,
            done: page.done,
        }
    }

    /// [`ListResponse::from_page`] for a conversion that can fail.
    pub fn try_from_page<U, E>(page: Page<U>, f: impl FnMut(U) -> Result<T, E>) -> Result<Self, E> {
        Ok(Self {
            data: page.data.into_iter().map(f).collect::<Result<_, E>>()?,
            iterator: page.iterator,
            prev_iterator: page.prev_iterator,
            done: page.done,
        })
    }
}

// ---------- applications ----------

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationIn {
    pub name: String,
    pub uid: Option<String>,
    pub throttle_rate: Option<u32>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationPatch {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub uid: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>)]
    pub throttle_rate: Option<Option<u32>>,
    pub metadata: Option<BTreeMap<String, String>>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationOut {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    pub name: String,
    pub metadata: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttle_rate: Option<u32>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Application> for ApplicationOut {
    fn from(a: Application) -> Self {
        Self {
            id: a.id.to_string(),
            uid: a.uid.map(|u| u.into_string()),
            name: a.name,
            metadata: a.metadata,
            throttle_rate: a.throttle_rate,
            created_at: fmt_time(&a.created_at),
            updated_at: fmt_time(&a.updated_at),
        }
    }
}

// ---------- event types ----------

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeIn {
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub archived: bool,
    #[serde(default)]
    pub deprecated: bool,
    #[schema(value_type = Option<Object>)]
    pub schemas: Option<serde_json::Value>,
    pub feature_flags: Option<Vec<String>>,
    pub feature_flag: Option<String>,
    pub group_name: Option<String>,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeUpsertIn {
    pub description: Option<String>,
    pub archived: Option<bool>,
    pub deprecated: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Object>)]
    pub schemas: Option<Option<serde_json::Value>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub feature_flags: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub feature_flag: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub group_name: Option<Option<String>>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeOut {
    pub name: String,
    pub description: String,
    pub archived: bool,
    pub deprecated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub schemas: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature_flags: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature_flag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl EventTypeOut {
    pub fn new(e: EventType, with_schemas: bool) -> Self {
        Self {
            name: e.name.into_string(),
            description: e.description,
            archived: e.archived,
            deprecated: e.deprecated,
            schemas: if with_schemas { e.schemas } else { None },
            feature_flag: e.feature_flags.as_ref().and_then(|f| f.first().cloned()),
            feature_flags: e.feature_flags,
            group_name: e.group_name,
            created_at: fmt_time(&e.created_at),
            updated_at: fmt_time(&e.updated_at),
        }
    }
}

// ---------- messages ----------

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageIn {
    pub event_type: String,
    #[schema(value_type = Object)]
    pub payload: Box<RawValue>,
    pub event_id: Option<String>,
    pub channels: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    /// Days until the payload is expunged (5 to 90; absent: 90).
    pub payload_retention_period: Option<i64>,
    /// Accepted for compatibility with newer SDKs and ignored.
    pub payload_retention_hours: Option<i64>,
    /// Creates the application named in the path, if it does not exist,
    /// with these settings (Svix: "creates a new application alongside").
    pub application: Option<ApplicationIn>,
}

#[derive(Serialize, Clone, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageOut {
    pub id: String,
    pub event_type: String,
    #[schema(value_type = Object)]
    pub payload: Box<RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    pub timestamp: String,
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).expect("'{}' is valid JSON")
}

/// What an expunged payload reads as: Svix's marker, an object so typed
/// SDKs still parse it.
fn expired_payload() -> Box<RawValue> {
    RawValue::from_string(r#"{"expired":true}"#.to_owned()).expect("the marker is valid JSON")
}

/// Fails only if a stored payload is neither empty (expunged) nor JSON, which
/// ingest rules out: bad bytes answer a 500 with the cause logged rather than
/// reading back as a plausible but made-up payload.
impl MessageOut {
    pub fn new(m: Message, with_content: bool) -> Result<Self, ApiError> {
        let payload = if !with_content {
            empty_object()
        } else if m.payload.is_empty() {
            // The store empties an expunged payload; no posted one is empty.
            expired_payload()
        } else {
            String::from_utf8(m.payload.to_vec())
                .map_err(|err| err.to_string())
                .and_then(|s| RawValue::from_string(s).map_err(|err| err.to_string()))
                .map_err(|err| ApiError::Internal(format!("message {}: stored payload is not JSON: {err}", m.id)))?
        };
        Ok(Self {
            id: m.id.to_string(),
            event_type: m.event_type.into_string(),
            payload,
            event_id: m.event_id.map(|e| e.into_string()),
            channels: m.channels.map(|c| c.into_iter().map(|n| n.into_string()).collect()),
            tags: m.tags,
            timestamp: fmt_time(&m.created_at),
        })
    }
}

// ---------- attempts ----------

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageAttemptOut {
    pub id: String,
    pub msg_id: String,
    pub endpoint_id: String,
    pub url: String,
    pub response: String,
    pub response_status_code: u16,
    pub response_duration_ms: u64,
    pub status: i64,
    #[schema(value_type = String)]
    pub status_text: &'static str,
    pub trigger_type: i64,
    pub timestamp: String,
    /// Herald extension: why the attempt failed without a usable status:
    /// `status`, `timeout`, `connect`, `tls`, `dns`, `blocked` (SSRF
    /// guard), `other`, or `transformation` (the endpoint's jq program
    /// failed; nothing was sent, `response` says why).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub error_kind: Option<&'static str>,
    /// Herald extension: 1 for the first try.
    pub attempt_number: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg: Option<MessageOut>,
}

impl From<Attempt> for MessageAttemptOut {
    fn from(a: Attempt) -> Self {
        Self {
            id: a.id.to_string(),
            msg_id: a.msg_id.to_string(),
            endpoint_id: a.endpoint_id.to_string(),
            url: a.url,
            response: a.response,
            response_status_code: a.response_status_code,
            response_duration_ms: a.response_duration_ms,
            status: a.status.code(),
            status_text: a.status.text(),
            trigger_type: a.trigger_type as i64,
            timestamp: fmt_time(&a.created_at),
            error_kind: a.error_kind.map(|k| k.as_str()),
            attempt_number: a.attempt_number,
            msg: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(payload: &'static [u8]) -> Message {
        Message {
            id: herald_core::MessageId::new(),
            app_id: herald_core::AppId::new(),
            event_type: herald_core::validate::EventTypeName::parse("a.b").unwrap(),
            event_id: None,
            channels: None,
            tags: None,
            payload: bytes::Bytes::from_static(payload),
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn an_expunged_payload_reads_as_expired_under_retention() {
        assert_eq!(
            MessageOut::new(msg(b""), true).unwrap().payload.get(),
            r#"{"expired":true}"#
        );
        assert_eq!(MessageOut::new(msg(b""), false).unwrap().payload.get(), "{}");
        assert_eq!(
            MessageOut::new(msg(br#"{"a":1}"#), true).unwrap().payload.get(),
            r#"{"a":1}"#
        );
    }

    #[test]
    fn a_corrupt_stored_payload_is_an_internal_error_not_an_empty_object() {
        for corrupt in [&b"{\"a\":"[..], b"not json", b"\xff\xfe"] {
            let m = msg(corrupt);
            let id = m.id.to_string();
            match MessageOut::new(m, true) {
                Err(ApiError::Internal(cause)) => {
                    assert!(cause.contains(&id) && cause.contains("not JSON"), "{cause}");
                }
                Err(other) => panic!("{corrupt:?}: want Internal, got {other:?}"),
                Ok(out) => panic!("{corrupt:?} read back as {}", out.payload.get()),
            }
        }
        // Without content the payload is not looked at, so nothing is shown or claimed.
        assert_eq!(MessageOut::new(msg(b"not json"), false).unwrap().payload.get(), "{}");
    }

    #[test]
    fn datetimes_in_every_sdk_style_parse() {
        let want = parse_datetime("2024-01-02T03:04:05Z").unwrap();
        assert_eq!(parse_datetime("2024-01-02T03:04:05+00:00"), Some(want));
        assert_eq!(parse_datetime("2024-01-02T05:04:05+02:00"), Some(want));
        assert_eq!(parse_datetime("2024-01-02T03:04:05"), Some(want));
        assert_eq!(parse_datetime("2024-01-02 03:04:05Z"), Some(want));
        assert!(parse_datetime("2024-01-02T03:04:05.123456").is_some());
        assert_eq!(parse_datetime("Mon, 01 Jan 2024 00:00:00 GMT"), None);
        assert_eq!(fmt_time(&want), "2024-01-02T03:04:05.000Z");
    }
}
