//! `basicAuth`, `verifyToken` and `bodyEncoding`, Herald's endpoint
//! extensions for the credentials a request carries besides its signatures
//! and for GitHub's form-encoded body (SPEC §4).
//!
//! The secret halves are write-only: responses carry the username and the
//! pointer and leave the password and the token out (not a mask a client
//! could send back by mistake), as Svix leaves sensitive header values out.

use herald_core::credentials::{BasicAuth, BodyEncoding, Credential, JsonPointer, VerifyToken};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};

/// Longest username accepted, in characters.
const MAX_USERNAME_CHARS: usize = 256;
/// Longest password, token or pointer accepted, in characters.
const MAX_SECRET_CHARS: usize = 1024;

/// Every request carries `Authorization: Basic base64(username:password)`
/// (RFC 7617, UTF-8). The password is never returned.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuthIn {
    /// 1 to 256 characters, no `:` and no control characters.
    pub username: String,
    /// At most 1024 characters, no control characters; may be empty.
    pub password: String,
}

/// `basicAuth` as read back: the password is not shown.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BasicAuthOut {
    pub username: String,
}

/// Every request's JSON body gets `token`, as a string, at `pointer` (a
/// JSON Pointer, RFC 6901, e.g. `/infoWebhook/verifyToken`); objects missing
/// on the way are created. A message whose body has something other than an
/// object on the way is not sent: its attempt fails with `errorKind: body`.
/// The token is never returned.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyTokenIn {
    /// Starts with `/`; at most 32 levels and 1024 characters.
    pub pointer: String,
    /// 1 to 1024 characters, no control characters.
    pub token: String,
}

/// `verifyToken` as read back: the token is not shown.
#[derive(Serialize, utoipa::ToSchema)]
pub struct VerifyTokenOut {
    pub pointer: String,
}

/// How each request's body is sent: `json` (the default), or `form`,
/// `payload=<percent-encoded JSON>` as `application/x-www-form-urlencoded`
/// (GitHub's option). Every signature covers the bytes sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = BodyEncoding)]
pub enum BodyEncodingDto {
    Json,
    Form,
}

impl From<BodyEncodingDto> for BodyEncoding {
    fn from(e: BodyEncodingDto) -> Self {
        match e {
            BodyEncodingDto::Json => Self::Json,
            BodyEncodingDto::Form => Self::Form,
        }
    }
}

impl From<BodyEncoding> for BodyEncodingDto {
    fn from(e: BodyEncoding) -> Self {
        match e {
            BodyEncoding::Json => Self::Json,
            BodyEncoding::Form => Self::Form,
        }
    }
}

impl From<&BasicAuth> for BasicAuthOut {
    fn from(b: &BasicAuth) -> Self {
        Self {
            username: b.username.clone(),
        }
    }
}

impl From<&VerifyToken> for VerifyTokenOut {
    fn from(v: &VerifyToken) -> Self {
        Self {
            pointer: v.pointer.as_str().to_owned(),
        }
    }
}

/// A 422 naming `body.<setting>.<field>`.
fn invalid(setting: &str, field: &str, msg: impl Into<String>) -> ApiError {
    ApiError::invalid_msg(&["body", setting, field], "value_error", msg)
}

/// `value` has at most `max` characters and none of them is a control
/// character (RFC 7617 forbids them in credentials; in a token they are a
/// mistake).
fn check_text(setting: &str, field: &str, value: &str, max: usize) -> ApiResult<()> {
    if value.chars().count() > max {
        return Err(invalid(
            setting,
            field,
            format!("{field} must be at most {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(
            setting,
            field,
            format!("{field} may not contain control characters"),
        ));
    }
    Ok(())
}

impl BasicAuthIn {
    pub fn parse(self) -> ApiResult<BasicAuth> {
        let Self { username, password } = self;
        if username.is_empty() {
            return Err(invalid("basicAuth", "username", "username may not be empty"));
        }
        check_text("basicAuth", "username", &username, MAX_USERNAME_CHARS)?;
        if username.contains(':') {
            return Err(invalid(
                "basicAuth",
                "username",
                "username may not contain ':' (it separates the password)",
            ));
        }
        check_text("basicAuth", "password", &password, MAX_SECRET_CHARS)?;
        Ok(BasicAuth {
            username,
            password: Credential::new(password),
        })
    }
}

impl VerifyTokenIn {
    pub fn parse(self) -> ApiResult<VerifyToken> {
        let Self { pointer, token } = self;
        check_text("verifyToken", "pointer", &pointer, MAX_SECRET_CHARS)?;
        let pointer = JsonPointer::parse(&pointer).map_err(|e| invalid("verifyToken", "pointer", e.to_string()))?;
        if token.is_empty() {
            return Err(invalid("verifyToken", "token", "token may not be empty"));
        }
        check_text("verifyToken", "token", &token, MAX_SECRET_CHARS)?;
        Ok(VerifyToken {
            pointer,
            token: Credential::new(token),
        })
    }
}
