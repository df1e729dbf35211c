//! The relay's wire protocol, shared by `herald serve` (which receives
//! requests at `/relay/{channel}/…`) and `herald listen --relay` (which
//! handles them): JSON text frames over one WebSocket, one frame per
//! request and one per answer, matched by `id`. Bodies travel as base64, so
//! any bytes cross unchanged; header values must be text (the relay refuses
//! a request whose header is not).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// Close code the server sends to a listener replaced by a newer one on the
/// same channel: the old one should not reconnect.
pub const CLOSE_REPLACED: u16 = 4000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum RelayFrame {
    /// Server → listener: a request that arrived at the channel.
    #[serde(rename_all = "camelCase")]
    Request {
        id: u64,
        method: String,
        /// The path after `/relay/{channel}`, `/` when there was none.
        path: String,
        /// The query string without its `?`.
        query: String,
        headers: Vec<(String, String)>,
        /// Base64 of the body.
        body: String,
        /// True when the sender was answered 202 already (it arrived while
        /// no listener was connected), so nobody waits for the answer.
        queued: bool,
    },
    /// Listener → server: the answer for the request with this `id`.
    #[serde(rename_all = "camelCase")]
    Response {
        id: u64,
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
}

pub fn encode_body(body: &[u8]) -> String {
    STANDARD.encode(body)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a relay frame's body is not base64")]
pub struct BodyError;

pub fn decode_body(body: &str) -> Result<Vec<u8>, BodyError> {
    STANDARD.decode(body).map_err(|_| BodyError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_as_tagged_json() {
        let frame = RelayFrame::Request {
            id: 7,
            method: "POST".into(),
            path: "/hooks".into(),
            query: "a=1".into(),
            headers: vec![("webhook-id".into(), "msg_1".into())],
            body: encode_body(b"\x00\xff"),
            queued: false,
        };
        let json = serde_json::to_string(&frame).unwrap();
        assert!(json.starts_with(r#"{"type":"request","id":7"#), "{json}");
        assert_eq!(serde_json::from_str::<RelayFrame>(&json).unwrap(), frame);
        assert_eq!(decode_body(&encode_body(b"\x00\xff")).unwrap(), b"\x00\xff");
        assert_eq!(decode_body("!!"), Err(BodyError));
    }
}
