//! Endpoint bodies: the Svix fields and Herald's own extensions (SPEC §2).

use std::collections::BTreeMap;

use herald_core::model::Endpoint;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{
    BasicAuthIn, BasicAuthOut, BatchDto, BodyEncodingDto, BodySignatureDto, DisableRuleDto, RetryScheduleDto,
    VerifyTokenIn, VerifyTokenOut, double_option, fmt_time,
};
use crate::error::ApiError;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointIn {
    pub url: String,
    pub description: Option<String>,
    pub uid: Option<String>,
    #[serde(default)]
    pub disabled: Option<bool>,
    #[serde(alias = "filterTypes")]
    pub event_types: Option<Vec<String>>,
    pub channels: Option<Vec<String>>,
    pub secret: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(alias = "rateLimit")]
    pub throttle_rate: Option<u32>,
    pub headers: Option<BTreeMap<String, String>>,
    /// Herald extension: seconds the endpoint has to answer (default 15).
    pub timeout_secs: Option<f64>,
    /// Herald extension: a JSON template the request body is built from
    /// (SPEC §5); absent or null sends the payload exactly as posted. Kept
    /// as raw text so its keys keep their order.
    #[schema(value_type = Option<Object>)]
    pub payload_template: Option<Box<RawValue>>,
    /// Herald extension: a jq program (at most 64 KiB of source) the
    /// request body is built by, run on `{msg, attempt, endpoint}` and
    /// yielding one value (SPEC §5, ADR 0005); not together with
    /// `payloadTemplate`. Absent or null sends the payload as posted.
    pub transformation: Option<String>,
    /// Herald extension: when failed deliveries are tried again; absent or
    /// null is the server's default schedule.
    pub retry_schedule: Option<RetryScheduleDto>,
    /// Herald extension: also (or only) sign as `sha256=<hex>` of the body.
    pub body_signature: Option<BodySignatureDto>,
    /// Herald extension: when a failing endpoint is disabled; absent or
    /// null is the server's default (5 days of failure).
    pub disable_rule: Option<DisableRuleDto>,
    /// Herald extension: strictly ordered delivery, one request at a time;
    /// message n+1 waits until message n succeeded or was given up.
    pub fifo: Option<bool>,
    /// Herald extension: several messages per request, as a JSON array.
    pub batch: Option<BatchDto>,
    /// Herald extension: requests in flight to this endpoint at most
    /// (1 to 10000), whatever the adaptive limit would allow.
    pub max_in_flight: Option<u32>,
    /// Herald extension: HTTP Basic credentials on every request.
    pub basic_auth: Option<BasicAuthIn>,
    /// Herald extension: a token set inside every JSON body.
    pub verify_token: Option<VerifyTokenIn>,
    /// Herald extension: `json` (default) or `form` (`payload=<json>`).
    pub body_encoding: Option<BodyEncodingDto>,
    /// Accepted for Svix compatibility; Herald has one endpoint version.
    pub version: Option<i64>,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub uid: Option<Option<String>>,
    pub disabled: Option<bool>,
    #[serde(default, alias = "filterTypes", deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub event_types: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub channels: Option<Option<Vec<String>>>,
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default, alias = "rateLimit", deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>)]
    pub throttle_rate: Option<Option<u32>>,
    pub timeout_secs: Option<f64>,
    /// `null` goes back to sending the payload as posted.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Object>)]
    pub payload_template: Option<Option<Box<RawValue>>>,
    /// `null` removes the transformation.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub transformation: Option<Option<String>>,
    /// `null` goes back to the server's default schedule.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<RetryScheduleDto>)]
    pub retry_schedule: Option<Option<RetryScheduleDto>>,
    /// `null` stops signing in that style.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<BodySignatureDto>)]
    pub body_signature: Option<Option<BodySignatureDto>>,
    /// `null` goes back to the server's default rule.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<DisableRuleDto>)]
    pub disable_rule: Option<Option<DisableRuleDto>>,
    pub fifo: Option<bool>,
    /// `null` sends one message per request again.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<BatchDto>)]
    pub batch: Option<Option<BatchDto>>,
    /// `null` leaves it to the adaptive limit and the server's cap.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>)]
    pub max_in_flight: Option<Option<u32>>,
    /// Replaces both fields; `null` stops sending credentials.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<BasicAuthIn>)]
    pub basic_auth: Option<Option<BasicAuthIn>>,
    /// Replaces both fields; `null` stops setting a token.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<VerifyTokenIn>)]
    pub verify_token: Option<Option<VerifyTokenIn>>,
    /// `null` goes back to `json`.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<BodyEncodingDto>)]
    pub body_encoding: Option<Option<BodyEncodingDto>>,
    pub version: Option<i64>,
}

impl EndpointPatch {
    /// Whether the patch changes nothing but the payload template or the
    /// transformation (what `ManageTransformations` alone allows);
    /// `version` changes nothing.
    pub fn only_transformations(&self) -> bool {
        let Self {
            url,
            description,
            uid,
            disabled,
            event_types,
            channels,
            metadata,
            throttle_rate,
            timeout_secs,
            retry_schedule,
            body_signature,
            disable_rule,
            fifo,
            batch,
            max_in_flight,
            basic_auth,
            verify_token,
            body_encoding,
            payload_template: _,
            transformation: _,
            version: _,
        } = self;
        url.is_none()
            && description.is_none()
            && uid.is_none()
            && disabled.is_none()
            && event_types.is_none()
            && channels.is_none()
            && metadata.is_none()
            && throttle_rate.is_none()
            && timeout_secs.is_none()
            && retry_schedule.is_none()
            && body_signature.is_none()
            && disable_rule.is_none()
            && fifo.is_none()
            && batch.is_none()
            && max_in_flight.is_none()
            && basic_auth.is_none()
            && verify_token.is_none()
            && body_encoding.is_none()
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointOut {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    pub url: String,
    pub description: String,
    pub metadata: BTreeMap<String, String>,
    pub disabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_types: Option<Vec<String>>,
    /// The name svix-server uses for the same list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter_types: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttle_rate: Option<u32>,
    /// The same limit under the name the SPEC gives it (messages/s), so a
    /// `rateLimit` set comes back as `rateLimit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    pub timeout_secs: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload_template: Option<Box<RawValue>>,
    /// The jq program's source, as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transformation: Option<String>,
    /// Absent: the server's default schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_schedule: Option<RetryScheduleDto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_signature: Option<BodySignatureDto>,
    /// Absent: the server's default rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_rule: Option<DisableRuleDto>,
    /// Shown when on.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fifo: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchDto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// The password is never shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuthOut>,
    /// The token is never shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_token: Option<VerifyTokenOut>,
    pub body_encoding: BodyEncodingDto,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// Fails only if a stored template's source is not JSON, which parsing it
/// rules out: an endpoint is never shown without the template it sends.
impl TryFrom<Endpoint> for EndpointOut {
    type Error = ApiError;

    fn try_from(e: Endpoint) -> Result<Self, ApiError> {
        let s = e.settings;
        let payload_template = s
            .payload_template
            .map(|t| {
                RawValue::from_string(t.source().to_owned())
                    .map_err(|err| ApiError::Internal(format!("endpoint {}: payload template: {err}", e.id)))
            })
            .transpose()?;
        let types: Option<Vec<String>> = s.filter_types.map(|t| t.into_iter().map(|n| n.into_string()).collect());
        Ok(Self {
            id: e.id.to_string(),
            uid: e.uid.map(|u| u.into_string()),
            url: s.url.as_str().to_owned(),
            description: s.description,
            metadata: s.metadata,
            disabled: s.disabled,
            filter_types: types.clone(),
            event_types: types,
            channels: s.channels.map(|c| c.into_iter().map(|n| n.into_string()).collect()),
            throttle_rate: s.throttle_rate,
            rate_limit: s.throttle_rate,
            timeout_secs: s.timeout.as_secs_f64(),
            payload_template,
            transformation: s.transformation,
            retry_schedule: s.retry.as_ref().map(RetryScheduleDto::from),
            body_signature: s.body_signature.as_ref().map(BodySignatureDto::from),
            disable_rule: s.disable_rule.as_ref().map(DisableRuleDto::from),
            fifo: s.fifo,
            batch: s.batch.as_ref().map(BatchDto::from),
            max_in_flight: s.max_in_flight,
            basic_auth: s.basic_auth.as_ref().map(BasicAuthOut::from),
            verify_token: s.verify_token.as_ref().map(VerifyTokenOut::from),
            body_encoding: s.body_encoding.into(),
            version: 1,
            created_at: fmt_time(&e.created_at),
            updated_at: fmt_time(&e.updated_at),
        })
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EndpointSecretOut {
    pub key: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EndpointStats {
    pub success: u64,
    pub pending: u64,
    pub sending: u64,
    pub fail: u64,
    pub canceled: u64,
}
