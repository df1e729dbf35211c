//! Producing signatures: the Standard Webhooks `v1`/`v1a` entries, the
//! `webhook-signature` header that joins them during a rotation, and the
//! body-only `sha256=` hex form some receivers expect. The signed-content
//! helpers are shared with `verify` so both sides hash the
//! same bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signer as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::EndpointSecret;

type HmacSha256 = Hmac<Sha256>;

impl EndpointSecret {
    /// One signature entry: `v1,<base64>` or `v1a,<base64>`.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        match self {
            Self::Symmetric(key) => {
                let tag = hmac_signed_content(key.as_bytes(), msg_id, timestamp, body).finalize();
                format!("v1,{}", STANDARD.encode(tag.into_bytes()))
            }
            Self::Asymmetric(key) => {
                let sig = key.sign(&signed_content(msg_id, timestamp, body));
                format!("v1a,{}", STANDARD.encode(sig.to_bytes()))
            }
        }
    }
}

pub(super) fn signed_content(msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let head = format!("{msg_id}.{timestamp}.");
    let mut content = Vec::with_capacity(head.len() + body.len());
    content.extend_from_slice(head.as_bytes());
    content.extend_from_slice(body);
    content
}

/// The MAC fed with the signed content, without copying the body.
pub(super) fn hmac_signed_content(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = new_hmac(key);
    mac.update(format!("{msg_id}.{timestamp}.").as_bytes());
    mac.update(body);
    mac
}

fn new_hmac(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// The `webhook-signature` header value: one entry per secret, space-separated
/// (the current secret first, then any still inside their rotation grace period).
pub fn signature_header(secrets: &[&EndpointSecret], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| secret.sign(msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `sha256=<lower-case hex HMAC-SHA256(key, body)>`, for endpoints that expect
/// the `X-Webhook-Signature` style (body only, no id or timestamp).
pub fn hex_body_signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = new_hmac(key);
    mac.update(body);
    format!("sha256={}", to_hex(&mac.finalize().into_bytes()))
}

/// A batch's `webhook-id`: `batch_` and 32 hex digits of the SHA-256 of
/// its messages' ids in order, so a batch sent again with the same messages
/// carries the same id (receivers deduplicate by it), and any other batch
/// another.
pub fn batch_webhook_id<'a>(msg_ids: impl IntoIterator<Item = &'a str>) -> String {
    use sha2::Digest as _;
    let mut hash = Sha256::new();
    for id in msg_ids {
        hash.update(id.as_bytes());
        hash.update(b",");
    }
    format!("batch_{}", to_hex(&hash.finalize()[..16]))
}

pub(super) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}
