//! How the listener checks signatures: the Standard Webhooks headers by
//! default, or, with `--signature-header NAME`, a `sha256=<hex>` HMAC of the
//! body in that header (the `X-Webhook-Signature` style), keyed by the
//! `--secret` decoded when it is a `whsec_` secret and as given otherwise.

use axum::http::HeaderMap;
use herald_verify::{BodySignature, SecretError, VerifyError, Webhook};

#[derive(Debug, Clone)]
pub enum Verifier {
    Standard(Webhook),
    Body(BodySignature),
}

impl Verifier {
    /// `None` without secrets: nothing is checked.
    pub fn new(secrets: &[String], signature_header: Option<&str>) -> Result<Option<Self>, SecretError> {
        if secrets.is_empty() {
            return Ok(None);
        }
        let Some(header) = signature_header else {
            return Webhook::from_secrets(secrets).map(|w| Some(Self::Standard(w)));
        };
        Ok(Some(Self::Body(
            BodySignature::from_secrets(secrets)?.header_name(header),
        )))
    }

    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
        match self {
            Self::Standard(webhook) => webhook.verify(headers, body).map(|_| ()),
            Self::Body(signature) => signature.verify(headers, body),
        }
    }
}
