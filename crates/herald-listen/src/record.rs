//! What the listener keeps about each request, and the JSON shape the API
//! and the page read (`/_herald/api/requests`, SPEC §1).
//!
//! Headers are kept as the bytes that arrived, so a replay sends exactly
//! them; the JSON shows each value as text, or says that it is not text
//! rather than showing something that never arrived. A body that is not
//! UTF-8 goes out as base64 with `bodyEncoding: "base64"`.

use axum::http::{HeaderName, HeaderValue};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::Serialize;

/// Where a request came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Straight to the listener's port.
    Local,
    /// Through a `herald serve` relay channel.
    Relay,
}

impl Source {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Relay => "relay",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "local" => Some(Self::Local),
            "relay" => Some(Self::Relay),
            _ => None,
        }
    }
}

/// A request as it arrived.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub method: String,
    pub path: String,
    /// The query string without its `?`, empty when there was none.
    pub query: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    pub source: Source,
}

/// The outcome of checking the request's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// No `--secret` was given, so nothing was checked.
    Unchecked,
    Verified,
    Failed(String),
}

impl Verification {
    pub fn verified(&self) -> Option<bool> {
        match self {
            Self::Unchecked => None,
            Self::Verified => Some(true),
            Self::Failed(_) => Some(false),
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            Self::Failed(reason) => Some(reason),
            _ => None,
        }
    }
}

/// What the forward target answered, or why it could not be reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwardResult {
    pub url: String,
    /// RFC 3339, when the forward was sent.
    pub at: String,
    pub duration_ms: u64,
    /// `None` when no answer came (`error` says why).
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    /// The answer's body as text (lossy where not UTF-8: display only), at
    /// most [`FORWARD_BODY_SHOWN`] bytes of it.
    pub body: String,
    pub error: Option<String>,
}

/// How much of a target's answer is kept for display.
pub const FORWARD_BODY_SHOWN: usize = 64 * 1024;

/// One stored request.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: i64,
    pub received_at: String,
    pub request: Incoming,
    pub verification: Verification,
    pub forward: Option<ForwardResult>,
    /// How many times it was sent to the target again.
    pub replays: u32,
}

/// The JSON of one stored request.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestJson<'a> {
    pub id: i64,
    pub received_at: &'a str,
    pub source: &'static str,
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: Vec<(&'a str, String)>,
    pub body: String,
    pub body_encoding: &'static str,
    pub body_bytes: usize,
    pub verified: Option<bool>,
    pub verify_error: Option<&'a str>,
    pub forward: Option<&'a ForwardResult>,
    pub replays: u32,
}

impl Stored {
    pub fn to_json(&self) -> RequestJson<'_> {
        let r = &self.request;
        let (body, body_encoding) = match std::str::from_utf8(&r.body) {
            Ok(text) => (text.to_owned(), "utf8"),
            Err(_) => (STANDARD.encode(&r.body), "base64"),
        };
        RequestJson {
            id: self.id,
            received_at: &self.received_at,
            source: r.source.as_str(),
            method: &r.method,
            path: &r.path,
            query: &r.query,
            headers: r
                .headers
                .iter()
                .map(|(name, value)| {
                    let shown = value
                        .to_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|_| format!("(not text: {} bytes)", value.len()));
                    (name.as_str(), shown)
                })
                .collect(),
            body,
            body_encoding,
            body_bytes: r.body.len(),
            verified: self.verification.verified(),
            verify_error: self.verification.error(),
            forward: self.forward.as_ref(),
            replays: self.replays,
        }
    }
}

/// Headers as stored: `name: value\r\n` lines, the HTTP/1 wire form, which
/// holds any value byte for byte (values cannot contain CR or LF).
pub(crate) fn encode_headers(headers: &[(HeaderName, HeaderValue)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The inverse of [`encode_headers`]; `None` for bytes it did not write.
pub(crate) fn decode_headers(bytes: &[u8]) -> Option<Vec<(HeaderName, HeaderValue)>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        let line = &rest[..end];
        rest = &rest[end + 2..];
        let colon = line.windows(2).position(|w| w == b": ")?;
        let name = HeaderName::from_bytes(&line[..colon]).ok()?;
        let value = HeaderValue::from_bytes(&line[colon + 2..]).ok()?;
        out.push((name, value));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_byte_for_byte_even_when_not_text() {
        let headers = vec![
            (HeaderName::from_static("webhook-id"), HeaderValue::from_static("msg_1")),
            (HeaderName::from_static("x-multi"), HeaderValue::from_static("a")),
            (HeaderName::from_static("x-multi"), HeaderValue::from_static("b: c")),
            (
                HeaderName::from_static("x-bytes"),
                HeaderValue::from_bytes(b"caf\xe9").unwrap(),
            ),
            (HeaderName::from_static("x-empty"), HeaderValue::from_static("")),
        ];
        let decoded = decode_headers(&encode_headers(&headers)).unwrap();
        assert_eq!(decoded, headers);
        assert_eq!(decode_headers(b"no separator\r\n"), None);
        assert_eq!(decode_headers(b"x: unterminated"), None);
    }
}
