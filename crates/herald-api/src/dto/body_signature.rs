//! `bodySignature`, Herald's endpoint extension for the
//! `X-Webhook-Signature: sha256=<hex>` style (SPEC §4).

use herald_core::model::BodySignature;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};

/// The header used when none is named.
pub const DEFAULT_BODY_SIGNATURE_HEADER: &str = "x-webhook-signature";

/// Also sign each request as `sha256=<lower-case hex HMAC-SHA256(key,
/// body)>`, where the key is the bytes the endpoint's `whsec_` secret
/// encodes (`herald-verify`'s `BodySignature::from_whsec` checks it). One
/// value, made with the current secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = BodySignature)]
pub struct BodySignatureDto {
    /// The header it goes in (default `x-webhook-signature`).
    #[serde(default)]
    pub header: Option<String>,
    /// `false` sends only this style: no `webhook-signature` or
    /// `svix-signature` (the id and timestamp headers stay). Default `true`.
    #[serde(default)]
    pub standard_signature: Option<bool>,
}

impl From<&BodySignature> for BodySignatureDto {
    fn from(b: &BodySignature) -> Self {
        Self {
            header: Some(b.header.clone()),
            standard_signature: Some(b.standard_signature),
        }
    }
}

impl BodySignatureDto {
    /// The style asked for; `reserved` are the headers Herald sets itself.
    pub fn parse(self, reserved: &[&str]) -> ApiResult<BodySignature> {
        let header = self
            .header
            .unwrap_or_else(|| DEFAULT_BODY_SIGNATURE_HEADER.to_owned())
            .to_ascii_lowercase();
        let invalid =
            |msg: String| ApiError::invalid_msg(&["body", "bodySignature", "header"], "value_error.header", msg);
        if axum::http::HeaderName::from_bytes(header.as_bytes()).is_err() {
            return Err(invalid(format!("'{header}' is not a valid header name")));
        }
        if reserved.contains(&header.as_str()) {
            return Err(invalid(format!("'{header}' is set by Herald for another purpose")));
        }
        Ok(BodySignature {
            header,
            standard_signature: self.standard_signature.unwrap_or(true),
        })
    }
}
