//! Request extractors whose failures are API errors in our JSON shapes,
//! never axum's plain-text rejections.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use herald_core::validate::{DEPTH_KIND, MAX_PAYLOAD_DEPTH, check_depth, depth_message};

use crate::AppState;
use crate::body::read_limited;
use crate::error::ApiError;

/// Bodies larger than this are checked and parsed on the blocking pool, so
/// a big one never holds an async worker (and the requests queued behind it)
/// for long; below it, the hand-off would cost more than the parse.
const BLOCKING_PARSE_BYTES: usize = 64 * 1024;

/// Deepest nesting accepted anywhere in a request body: the payload limit,
/// plus the body's own object. serde_json bounds typed fields by itself, but
/// not the raw JSON kept for payloads, and this check costs one linear pass.
const MAX_BODY_DEPTH: usize = MAX_PAYLOAD_DEPTH + 1;

/// A JSON body. Malformed JSON or a wrong field type is a 422 that names the
/// field; a body over `--max-payload-bytes` is a 413, whether it declared its
/// length or not; nesting deeper than [`MAX_BODY_DEPTH`] is a 422.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + Send + 'static> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read_limited(req.into_body(), state.config.max_payload_bytes).await?;
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            Bytes::from_static(b"{}")
        } else {
            bytes
        };
        if body.len() > BLOCKING_PARSE_BYTES {
            tokio::task::spawn_blocking(move || parse(&body))
                .await
                .map_err(|e| ApiError::Internal(format!("parsing a request body: {e}")))?
                .map(Self)
        } else {
            parse(&body).map(Self)
        }
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if let Err(deep) = check_depth(body, MAX_BODY_DEPTH) {
        let (loc, what) = match &deep.field {
            Some(field) => (vec!["body", field.as_str()], field.as_str()),
            None => (vec!["body"], "body"),
        };
        let max = if deep.field.is_some() {
            MAX_PAYLOAD_DEPTH
        } else {
            MAX_BODY_DEPTH
        };
        return Err(ApiError::invalid_msg(&loc, DEPTH_KIND, depth_message(what, max)));
    }
    // Every request body is a JSON object: serde would also fill a struct
    // from an array (by position), which no client means.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::invalid_msg(
            &["body"],
            "type_error.dict",
            "the request body must be a JSON object",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize::<_, T>(&mut *de).map_err(|err| {
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
        ApiError::Validation(vec![crate::error::ValidationItem {
            loc,
            msg: inner.to_string(),
            kind: kind.to_owned(),
        }])
    })?;
    // Anything but whitespace after the object is a malformed body, not
    // something to ignore.
    de.end().map_err(|e| {
        ApiError::invalid_msg(
            &["body"],
            "value_error.jsondecode",
            format!("unexpected data after the JSON object: {e}"),
        )
    })?;
    Ok(value)
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
