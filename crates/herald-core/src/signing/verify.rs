//! The receiving side: checking a `webhook-signature` header against a
//! secret. It lives beside signing and hashes through the same helpers, so
//! the integration tests and the bench sink check against the very rules the
//! sender follows.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signature;
use hmac::Mac as _;

use super::EndpointSecret;
use super::sign::{hmac_signed_content, signed_content};

/// Receiver-side check: true iff some space-separated entry of `header` is a
/// valid signature by `secret` (`v1` for symmetric, `v1a` checked against the
/// public key for asymmetric). Entries of other versions or that do not parse
/// are skipped. No timestamp tolerance check: that needs a clock, the caller's job.
pub fn verify_signature(secret: &EndpointSecret, msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let entries = header.split(' ').filter_map(|entry| entry.split_once(','));
    match secret {
        EndpointSecret::Symmetric(key) => {
            entries.filter(|(version, _)| *version == "v1").any(|(_, sig)| {
                let Ok(expected) = STANDARD.decode(sig) else {
                    return false;
                };
                // verify_slice compares in constant time, so timing reveals nothing.
                hmac_signed_content(key.as_bytes(), msg_id, timestamp, body)
                    .verify_slice(&expected)
                    .is_ok()
            })
        }
        EndpointSecret::Asymmetric(key) => {
            let public = key.verifying_key();
            let content = signed_content(msg_id, timestamp, body);
            entries.filter(|(version, _)| *version == "v1a").any(|(_, sig)| {
                let Ok(bytes) = STANDARD.decode(sig) else {
                    return false;
                };
                Signature::from_slice(&bytes).is_ok_and(|sig| public.verify_strict(&content, &sig).is_ok())
            })
        }
    }
}
