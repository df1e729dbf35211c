//! Signing outbound webhooks the Standard Webhooks way, so receivers can use
//! any Standard Webhooks or Svix library to check them.
//!
//! The signed content is `"{msg_id}.{timestamp}.{body}"`, with the body signed
//! byte for byte as sent. Symmetric secrets (`whsec_`) give `v1,<base64
//! HMAC-SHA256>`; ed25519 keys (`whsk_`, public half `whpk_`) give `v1a,<base64
//! signature>`. Several entries, space-separated, let the old and new secret
//! both sign during a rotation. The receiving side ([`verify_signature`]) lives
//! here too, so tests and the verify crate check against the same rules.
//!
//! Split by concern: `secret` holds the key types and how they are parsed and
//! stored, `sign` produces signatures and headers, `verify` checks them.
//! Everything is re-exported here, so callers use `herald_core::signing::...`.

mod secret;
mod sign;
mod verify;

#[cfg(test)]
mod tests;

pub use secret::{
    ASYMMETRIC_PUBLIC_PREFIX, ASYMMETRIC_SECRET_PREFIX, EndpointSecret, SYMMETRIC_MAX_LEN, SYMMETRIC_MIN_LEN,
    SYMMETRIC_PREFIX, SecretError, SymmetricKey,
};
pub use sign::{batch_webhook_id, hex_body_signature, signature_header};
pub use verify::verify_signature;
