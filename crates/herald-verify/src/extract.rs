//! The axum extractor (feature `axum`): a handler that takes
//! [`VerifiedEvent<T>`] runs only for a request whose Standard Webhooks
//! signature verified, and gets its body parsed as `T`.
//!
//! The verifier comes from the router's state (`Webhook: FromRef<S>`), the
//! body through axum's `Bytes` extractor, so `DefaultBodyLimit` applies. A
//! refusal is a JSON `{"code", "detail"}`: 401 when the signature does not
//! verify, 422 when the verified body is not a `T`, and the body
//! extractor's own status (413 over the limit) when it cannot be read.

use axum::extract::{FromRef, FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::{VerifyError, Webhook};

/// A verified request's event, parsed from its body, with its `webhook-id`
/// (deduplicate by it) and `webhook-timestamp`.
#[derive(Debug, Clone)]
pub struct VerifiedEvent<T> {
    pub id: String,
    pub timestamp: i64,
    pub event: T,
}

/// Why [`VerifiedEvent`] refused a request.
#[derive(Debug, thiserror::Error)]
pub enum WebhookRejection {
    #[error("could not read the body: {0}")]
    Body(#[from] axum::extract::rejection::BytesRejection),
    #[error("the webhook did not verify: {0}")]
    Verify(#[from] VerifyError),
    #[error("the verified body is not the expected event: {0}")]
    Parse(#[from] serde_json::Error),
}

impl<S, T> FromRequest<S> for VerifiedEvent<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
    Webhook: FromRef<S>,
{
    type Rejection = WebhookRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let webhook = Webhook::from_ref(state);
        let headers = req.headers().clone();
        let body = Bytes::from_request(req, state).await?;
        let verified = webhook.verify(&headers, &body)?;
        let event = serde_json::from_slice(&body)?;
        Ok(Self {
            id: verified.id,
            timestamp: verified.timestamp,
            event,
        })
    }
}

impl IntoResponse for WebhookRejection {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Self::Body(e) => (e.status(), "body_unreadable"),
            Self::Verify(_) => (StatusCode::UNAUTHORIZED, "invalid_signature"),
            Self::Parse(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_event"),
        };
        let body = serde_json::json!({"code": code, "detail": self.to_string()});
        (status, axum::Json(body)).into_response()
    }
}
