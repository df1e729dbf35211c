//! Request extractors whose failures are API errors in our JSON shapes,
//! never axum's plain-text rejections.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

/// A JSON body. Malformed JSON or a wrong field type is a 422 that names the
/// field; a body over `--max-payload-bytes` is a 413, whether it declared its
/// length or not.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.config.max_payload_bytes;
        let bytes = axum::body::to_bytes(req.into_body(), limit).await.map_err(|e| {
            let inner = e.into_inner();
            if inner.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                ApiError::too_large(limit)
            } else {
                ApiError::bad_request(format!("could not read the request body: {inner}"))
            }
        })?;
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            Bytes::from_static(b"{}")
        } else {
            bytes
        };
        let de = &mut serde_json::Deserializer::from_slice(&body);
        match serde_path_to_error::deserialize::<_, T>(de) {
            Ok(value) => Ok(Self(value)),
            Err(err) => {
                let path = err.path().to_string();
                let inner = err.into_inner();
                let mut loc = vec!["body".to_owned()];
                if path != "." {
                    loc.extend(path.split('.').map(str::to_owned));
                }
                let kind = if inner.is_syntax() || inner.is_eof() {
                    "value_error.jsondecode"
                } else {
                    "type_error"
                };
                Err(ApiError::Validation(vec![crate::error::ValidationItem {
                    loc,
                    msg: inner.to_string(),
                    kind: kind.to_owned(),
                }]))
            }
        }
    }
}

/// Query parameters as ordered pairs, so list parameters can come in every
/// style SDKs use: `a=x,y`, repeated `a=x&a=y`, `a[]=x`, `a[0]=x`.
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let pairs = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| {
                let key = k.split('[').next().unwrap_or(&k).to_owned();
                (key, v.into_owned())
            })
            .collect();
        Ok(Self(pairs))
    }
}

impl QueryPairs {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every value of a list parameter, comma-split.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    pub fn bool(&self, key: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(key) {
            None => Ok(default),
            Some("true" | "1" | "True") => Ok(true),
            Some("false" | "0" | "False") => Ok(false),
            Some(other) => Err(ApiError::invalid_msg(
                &["query", key],
                "type_error.bool",
                format!("'{other}' is not a boolean"),
            )),
        }
    }

    pub fn uint(&self, key: &str) -> Result<Option<u64>, ApiError> {
        self.get(key)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    ApiError::invalid_msg(
                        &["query", key],
                        "type_error.integer",
                        format!("'{v}' is not a non-negative integer"),
                    )
                })
            })
            .transpose()
    }

    pub fn datetime(&self, key: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
        self.get(key)
            .map(|v| {
                crate::dto::parse_datetime(v).ok_or_else(|| {
                    ApiError::invalid_msg(
                        &["query", key],
                        "value_error.datetime",
                        format!("'{v}' is not an RFC 3339 date-time"),
                    )
                })
            })
            .transpose()
    }
}
