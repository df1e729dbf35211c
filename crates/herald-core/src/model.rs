//! The resources Herald stores and the rules that relate them: which
//! endpoints a message fans out to, and the states a delivery moves through.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::credentials::{BasicAuth, BodyEncoding, VerifyToken};
use crate::health::{DisableRule, FailureStreak};
use crate::ids::{AppId, AttemptId, EndpointId, MessageId};
use crate::retry::RetryPolicy;
use crate::signing::EndpointSecret;
use crate::transform::{CompileError, PayloadTemplate, Transformation};
use crate::validate::{Channel, EndpointUrl, EventTypeName, Uid};

pub type Metadata = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq)]
pub struct Application {
    pub id: AppId,
    pub uid: Option<Uid>,
    pub name: String,
    pub metadata: Metadata,
    pub throttle_rate: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An endpoint: its identity, what its owner set on it, and when.
///
/// `uid` stays out of [`EndpointSettings`] because it is an identity, not a
/// setting: requests address the endpoint by it, and the store must keep it
/// unique within the application (an indexed column), so it cannot live
/// inside an opaque settings document.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub id: EndpointId,
    pub app_id: AppId,
    pub uid: Option<Uid>,
    pub settings: EndpointSettings,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Everything a user sets on an endpoint, in one place: creating, replacing
/// (PUT) and storing an endpoint all move this struct whole, so a new
/// setting is a field here, its validation in the API and its DTO mapping.
///
/// The store keeps it as one JSON document, in this serde shape. A field
/// added later needs `#[serde(default)]` (or a migration that fills it in)
/// so rows written before it still load; nothing that fails to load is ever
/// replaced by a default.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSettings {
    pub url: EndpointUrl,
    pub description: String,
    pub metadata: Metadata,
    pub disabled: bool,
    /// `None` (or empty) receives every event type.
    pub filter_types: Option<Vec<EventTypeName>>,
    /// `None` (or empty) receives messages on any channel or none.
    pub channels: Option<Vec<Channel>>,
    pub throttle_rate: Option<u32>,
    /// Extra headers sent with every delivery to this endpoint. Stored
    /// with sensitive values blank: those are sealed apart
    /// ([`crate::credentials::SecretParts`]).
    #[serde(serialize_with = "stored::headers")]
    pub headers: BTreeMap<String, String>,
    /// Herald extension: per-endpoint request timeout.
    #[serde(rename = "timeoutMs", with = "stored::millis")]
    pub timeout: Duration,
    /// Herald extension: the body is built from this template instead of
    /// being the payload as posted (SPEC §5).
    #[serde(with = "stored::template")]
    pub payload_template: Option<PayloadTemplate>,
    /// Herald extension: the body is built by this jq program (its source,
    /// checked to compile when saved; compiled again, once, when the
    /// endpoint's delivery target is loaded). At most one of this and
    /// `payload_template` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transformation: Option<String>,
    /// Herald extension: when failed deliveries are tried again; `None` is
    /// the server's default ([`RetryPolicy::default`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Herald extension: also (or only) sign in the `sha256=<hex>` style.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_signature: Option<BodySignature>,
    /// Herald extension: when a failing endpoint is disabled; `None` is the
    /// server's default ([`DisableRule::default`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_rule: Option<DisableRule>,
    /// Herald extension: strictly ordered delivery (SPEC §3): message n+1
    /// is not sent before message n succeeded or was given up.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fifo: bool,
    /// Herald extension: several messages in one request (SPEC §3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchPolicy>,
    /// Herald extension: requests in flight at most, whatever the
    /// adaptive limit; `None` leaves it to the server's per-endpoint cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Herald extension: HTTP Basic credentials on every request. The
    /// password is not part of this document (see `credentials`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// Herald extension: a token set inside every JSON body. The token is
    /// not part of this document (see `credentials`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_token: Option<VerifyToken>,
    /// Herald extension: JSON, or GitHub's `payload=<json>` form.
    #[serde(default, skip_serializing_if = "BodyEncoding::is_json")]
    pub body_encoding: BodyEncoding,
}

/// `batch`: up to `max_events` messages in one POST whose body is their
/// JSON array, the first of them waiting at most `max_wait_ms` for the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchPolicy {
    pub max_events: u32,
    pub max_wait_ms: u64,
}

impl BatchPolicy {
    pub fn max_wait(&self) -> Duration {
        Duration::from_millis(self.max_wait_ms)
    }
}

/// The `X-Webhook-Signature: sha256=<hex HMAC-SHA256(key, body)>` style
/// (SPEC §4), keyed with the endpoint's current secret: the bytes a
/// `whsec_` secret encodes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BodySignature {
    /// The header it goes in, lower-case.
    pub header: String,
    /// Whether the Standard Webhooks signature headers are sent too
    /// (`webhook-id` and `webhook-timestamp` always are).
    pub standard_signature: bool,
}

impl EndpointSettings {
    /// Settings for `url` with everything else at its default: no filters,
    /// enabled, [`DEFAULT_ENDPOINT_TIMEOUT`].
    pub fn new(url: EndpointUrl) -> Self {
        Self {
            url,
            description: String::new(),
            metadata: Metadata::new(),
            disabled: false,
            filter_types: None,
            channels: None,
            throttle_rate: None,
            headers: BTreeMap::new(),
            timeout: DEFAULT_ENDPOINT_TIMEOUT,
            payload_template: None,
            transformation: None,
            retry: None,
            body_signature: None,
            disable_rule: None,
            fifo: false,
            batch: None,
            max_in_flight: None,
            basic_auth: None,
            verify_token: None,
            body_encoding: BodyEncoding::Json,
        }
    }
}

/// How settings that have no natural JSON form are stored: a duration as
/// whole milliseconds, a template as its source text, parsed again on load.
mod stored {
    pub mod millis {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer, de::Error};

        pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_u64(u64::try_from(d.as_millis()).map_err(serde::ser::Error::custom)?)
        }

        /// Zero is refused: an endpoint with no time to answer is corrupt
        /// data, not a setting.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
            match u64::deserialize(d)? {
                0 => Err(D::Error::custom("timeout must be positive")),
                ms => Ok(Duration::from_millis(ms)),
            }
        }
    }

    /// Custom headers with every sensitive value blank.
    pub fn headers<S: serde::Serializer>(
        headers: &std::collections::BTreeMap<String, String>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(headers.len()))?;
        for (name, value) in headers {
            let shown = if crate::credentials::is_sensitive_header(name) {
                ""
            } else {
                value.as_str()
            };
            map.serialize_entry(name, shown)?;
        }
        map.end()
    }

    pub mod template {
        use serde::{Deserialize, Deserializer, Serializer, de::Error};

        use crate::transform::PayloadTemplate;

        pub fn serialize<S: Serializer>(t: &Option<PayloadTemplate>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_some(t.source()),
                None => s.serialize_none(),
            }
        }

        /// A stored template that no longer parses is an error, never a
        /// silent fall back to the payload as posted.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PayloadTemplate>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|source| {
                    PayloadTemplate::parse(&source).map_err(|e| D::Error::custom(format!("payload template: {e}")))
                })
                .transpose()
        }
    }
}

/// The default time an endpoint has to answer before the attempt counts as
/// failed (SPEC §3).
pub const DEFAULT_ENDPOINT_TIMEOUT: Duration = Duration::from_secs(15);

impl Endpoint {
    /// Fan-out rule: a message reaches an enabled endpoint whose type filter
    /// (if any) names its event type and whose channels (if any) share at
    /// least one channel with the message.
    pub fn subscribes(&self, event_type: &str, message_channels: Option<&[Channel]>) -> bool {
        let s = &self.settings;
        if s.disabled {
            return false;
        }
        if let Some(types) = s.filter_types.as_deref().filter(|t| !t.is_empty())
            && !types.iter().any(|t| t.as_str() == event_type)
        {
            return false;
        }
        match s.channels.as_deref().filter(|c| !c.is_empty()) {
            None => true,
            Some(wanted) => message_channels.is_some_and(|have| have.iter().any(|c| wanted.contains(c))),
        }
    }
}

/// The fan-out of one message: the endpoints, among an application's, that
/// subscribe to it (see [`Endpoint::subscribes`]).
pub fn subscribers<'a>(
    endpoints: &'a [Endpoint],
    event_type: &'a str,
    message_channels: Option<&'a [Channel]>,
) -> impl Iterator<Item = &'a Endpoint> + 'a {
    endpoints
        .iter()
        .filter(move |ep| ep.subscribes(event_type, message_channels))
}

/// What the delivery engine needs to send to an endpoint, secrets decrypted.
#[derive(Debug, Clone)]
pub struct DeliveryTarget {
    pub endpoint_id: EndpointId,
    pub app_id: AppId,
    /// With `metadata`, what a transformation sees of the endpoint.
    pub uid: Option<Uid>,
    pub url: EndpointUrl,
    pub metadata: Metadata,
    pub disabled: bool,
    /// The current secret (one; a list so tests and callers can sign with several).
    pub secrets: Vec<EndpointSecret>,
    /// Secrets replaced by a rotation, each signing beside the current one
    /// until its grace period ends (SPEC §4): checked per attempt, so a
    /// cached target stops using one the moment it expires.
    pub retiring: Vec<RetiringSecret>,
    pub headers: BTreeMap<String, String>,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// `rateLimit`: requests per second at most.
    pub rate_limit: Option<u32>,
    pub body_signature: Option<BodySignature>,
    /// `None` (and no transformation): the body is the payload exactly as
    /// posted.
    pub payload_template: Option<PayloadTemplate>,
    /// The endpoint's jq program, compiled once for this version of the
    /// endpoint and shared by every attempt. An error when a stored program
    /// no longer compiles: each attempt then fails with it, rather than
    /// silently sending something else.
    pub transformation: Option<Result<Arc<Transformation>, CompileError>>,
    pub disable_rule: DisableRule,
    /// `fifo`: one request at a time, in message order.
    pub fifo: bool,
    pub batch: Option<BatchPolicy>,
    pub max_in_flight: Option<u32>,
    /// Credentials and encoding, secrets decrypted (`credentials`).
    pub basic_auth: Option<BasicAuth>,
    pub verify_token: Option<VerifyToken>,
    pub body_encoding: BodyEncoding,
    /// The failure streak the store had when this target was read.
    pub streak: Option<FailureStreak>,
}

impl DeliveryTarget {
    /// The engine's view of `ep`: only what sending needs, taken from its
    /// settings.
    pub fn new(ep: Endpoint, secrets: Vec<EndpointSecret>) -> Self {
        let EndpointSettings {
            url,
            metadata,
            disabled,
            headers,
            timeout,
            payload_template,
            transformation,
            retry,
            body_signature,
            throttle_rate,
            disable_rule,
            fifo,
            batch,
            max_in_flight,
            basic_auth,
            verify_token,
            body_encoding,
            ..
        } = ep.settings;
        Self {
            endpoint_id: ep.id,
            app_id: ep.app_id,
            uid: ep.uid,
            url,
            metadata,
            disabled,
            secrets,
            retiring: Vec::new(),
            headers,
            timeout,
            retry: retry.unwrap_or_default(),
            rate_limit: throttle_rate.filter(|&r| r > 0),
            body_signature,
            payload_template,
            transformation: transformation.map(|source| Transformation::compile(&source).map(Arc::new)),
            disable_rule: disable_rule.unwrap_or_default(),
            fifo,
            batch,
            max_in_flight,
            basic_auth,
            verify_token,
            body_encoding,
            streak: None,
        }
    }

    /// Every secret that signs an attempt made at `now`: the current ones,
    /// then the retiring ones whose grace period has not ended.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&EndpointSecret> {
        self.secrets
            .iter()
            .chain(self.retiring.iter().filter(|r| r.until > now).map(|r| &r.secret))
            .collect()
    }
}

/// A secret a rotation replaced, still signing until `until`.
#[derive(Debug, Clone)]
pub struct RetiringSecret {
    pub secret: EndpointSecret,
    pub until: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventType {
    pub name: EventTypeName,
    pub description: String,
    pub archived: bool,
    pub deprecated: bool,
    pub schemas: Option<serde_json::Value>,
    pub feature_flags: Option<Vec<String>>,
    pub group_name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: MessageId,
    pub app_id: AppId,
    pub event_type: EventTypeName,
    pub event_id: Option<Uid>,
    pub channels: Option<Vec<Channel>>,
    pub tags: Option<Vec<String>>,
    /// The payload JSON exactly as posted; empty once expunged (its
    /// `payloadRetentionPeriod` passed).
    pub payload: Bytes,
    pub created_at: DateTime<Utc>,
}

/// Svix's `MessageStatus`, used for deliveries and attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    Success = 0,
    Pending = 1,
    Fail = 2,
    Sending = 3,
    Canceled = 4,
}

impl DeliveryStatus {
    pub fn code(self) -> i64 {
        self as i64
    }
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => Self::Success,
            1 => Self::Pending,
            2 => Self::Fail,
            3 => Self::Sending,
            4 => Self::Canceled,
            _ => return None,
        })
    }
    pub fn text(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Pending => "pending",
            Self::Fail => "fail",
            Self::Sending => "sending",
            Self::Canceled => "canceled",
        }
    }
}

/// Why an attempt got no HTTP status (or a status we count as failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptErrorKind {
    /// The endpoint answered with a non-2xx status (including 3xx: redirects are not followed).
    Status,
    Timeout,
    Connect,
    Tls,
    Dns,
    /// The resolved address is not allowed (SSRF guard).
    Blocked,
    /// Any other transport failure (connection reset mid-response, …).
    Other,
    /// The body could not be finished for this message (its verify token
    /// has no object to go in), so nothing was sent: the endpoint's
    /// configuration and the message's shape disagree.
    Body,
    /// The endpoint's transformation failed for this attempt (an error,
    /// a limit, not exactly one output): no request was made.
    Transformation,
}

impl AttemptErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Dns => "dns",
            Self::Blocked => "blocked",
            Self::Other => "other",
            Self::Body => "body",
            Self::Transformation => "transformation",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "status" => Self::Status,
            "timeout" => Self::Timeout,
            "connect" => Self::Connect,
            "tls" => Self::Tls,
            "dns" => Self::Dns,
            "blocked" => Self::Blocked,
            "other" => Self::Other,
            "body" => Self::Body,
            "transformation" => Self::Transformation,
            _ => return None,
        })
    }
}

/// Whether an attempt was made by the schedule or by a person (resend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerType {
    Scheduled = 0,
    Manual = 1,
}

/// How much of a response body is kept in the attempt history.
pub const RESPONSE_BODY_LIMIT: usize = 4096;

#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub id: AttemptId,
    pub msg_id: MessageId,
    pub endpoint_id: EndpointId,
    pub app_id: AppId,
    pub url: String,
    /// 0 when no HTTP response arrived.
    pub response_status_code: u16,
    /// First [`RESPONSE_BODY_LIMIT`] bytes of the response (lossy UTF-8), or the transport error.
    pub response: String,
    pub response_duration_ms: u64,
    pub status: DeliveryStatus,
    pub error_kind: Option<AttemptErrorKind>,
    pub trigger_type: TriggerType,
    pub attempt_number: u32,
    pub created_at: DateTime<Utc>,
}

/// Truncates a response body to the stored limit on a UTF-8 boundary.
pub fn truncate_response(body: &[u8]) -> String {
    let cut = &body[..body.len().min(RESPONSE_BODY_LIMIT)];
    let text = String::from_utf8_lossy(cut);
    text.into_owned()
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
