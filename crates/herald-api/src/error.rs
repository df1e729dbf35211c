//! The one place errors become HTTP responses, in Svix's shapes:
//! `{"code", "detail"}`, and for 422 `{"detail": [{"loc", "msg", "type"}]}`.
//! A 5xx says nothing internal; its cause goes to the log.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald_core::validate::ValidationError;
use herald_store::StoreError;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct ValidationItem {
    pub loc: Vec<String>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{1}")]
    Status(StatusCode, String, &'static str),
    #[error("validation failed")]
    Validation(Vec<ValidationItem>),
    #[error("internal error: {0}")]
    Internal(String),
    /// The inner error, and the connection is closed after it because part
    /// of the request body was left unread.
    #[error(transparent)]
    Closing(Box<ApiError>),
}

impl ApiError {
    pub fn not_found(what: &str) -> Self {
        Self::Status(StatusCode::NOT_FOUND, format!("{what} not found"), "not_found")
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::Status(StatusCode::CONFLICT, detail.into(), "conflict")
    }
    /// The store cannot be reached: nothing was written, try again.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::Status(StatusCode::SERVICE_UNAVAILABLE, detail.into(), "unavailable")
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::Status(StatusCode::BAD_REQUEST, detail.into(), "bad_request")
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::Status(StatusCode::UNAUTHORIZED, detail.into(), "authentication_failed")
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::Status(StatusCode::FORBIDDEN, detail.into(), "forbidden")
    }
    pub fn too_large(limit: usize) -> Self {
        Self::Status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than the limit of {limit} bytes"),
            "payload_too_large",
        )
    }
    pub fn request_timeout(timeout: &crate::body::BodyTimeout) -> Self {
        Self::Status(StatusCode::REQUEST_TIMEOUT, timeout.to_string(), "request_timeout")
    }
    /// This error, closing the connection after it when `close` holds.
    pub fn closing_if(self, close: bool) -> Self {
        if close { Self::Closing(Box::new(self)) } else { self }
    }
    /// One invalid field, at `loc` (e.g. `["body", "url"]`).
    pub fn invalid(loc: &[&str], err: ValidationError) -> Self {
        Self::Validation(vec![ValidationItem {
            loc: loc.iter().map(|s| (*s).to_owned()).collect(),
            msg: err.msg,
            kind: err.kind.to_owned(),
        }])
    }
    pub fn invalid_msg(loc: &[&str], kind: &str, msg: impl Into<String>) -> Self {
        Self::Validation(vec![ValidationItem {
            loc: loc.iter().map(|s| (*s).to_owned()).collect(),
            msg: msg.into(),
            kind: kind.to_owned(),
        }])
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::not_found(what),
            StoreError::Conflict(detail) => Self::conflict(detail),
            StoreError::Refused(detail) => Self::bad_request(detail),
            StoreError::Unavailable(detail) => Self::unavailable(detail),
            other => Self::Internal(other.to_string()),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    detail: &'a str,
}

#[derive(Serialize)]
struct ValidationBody<'a> {
    code: &'a str,
    detail: &'a [ValidationItem],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Status(status, detail, code) => (status, Json(ErrorBody { code, detail: &detail })).into_response(),
            Self::Validation(items) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(ValidationBody {
                    code: "validation",
                    detail: &items,
                }),
            )
                .into_response(),
            Self::Closing(inner) => {
                let mut resp = inner.into_response();
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                resp
            }
            Self::Internal(cause) => {
                tracing::error!(%cause, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(ErrorBody {
                        code: "internal",
                        detail: "internal server error",
                    }),
                )
                    .into_response()
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
