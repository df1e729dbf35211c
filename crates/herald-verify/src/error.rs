//! What can go wrong, as two enums: [`SecretError`] when a key given to a
//! verifier cannot be used, [`VerifyError`] when a request does not verify.
//! Each variant says which rule failed, so a receiver can log why it refused
//! a request without guessing.

/// A secret or public key that a verifier cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the secret is empty")]
    Empty,
    #[error("the secret is not valid base64 after its prefix")]
    Base64,
    #[error("a whpk_ public key must decode to 32 bytes, got {len}")]
    PublicKeyLength { len: usize },
    #[error("the whpk_ public key is not a valid ed25519 point")]
    InvalidPublicKey,
    #[error("a whsk_ key must decode to 64 bytes (32-byte seed then 32-byte public key), got {len}")]
    SecretKeyLength { len: usize },
    #[error("the public half of the whsk_ key does not belong to its seed")]
    KeyPairMismatch,
    #[error("a verifier needs at least one secret")]
    NoSecrets,
    #[error("signing needs a whsec_ secret; a whpk_ public key can only verify")]
    CannotSign,
}

/// Why a request did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the {0} header is missing")]
    MissingHeader(String),
    #[error("the {0} header is not visible ASCII")]
    HeaderNotText(String),
    #[error("webhook-timestamp {0:?} is not a whole number of seconds since the Unix epoch")]
    InvalidTimestamp(String),
    #[error("webhook-timestamp {timestamp} is {age_secs} s old, more than the tolerance of {tolerance_secs} s")]
    TimestampTooOld {
        timestamp: i64,
        age_secs: i64,
        tolerance_secs: u64,
    },
    #[error(
        "webhook-timestamp {timestamp} is {ahead_secs} s in the future, more than the tolerance of {tolerance_secs} s"
    )]
    TimestampTooNew {
        timestamp: i64,
        ahead_secs: i64,
        tolerance_secs: u64,
    },
    /// The header held no entry of a version this verifier's keys check
    /// (`v1` for `whsec_` secrets, `v1a` for ed25519 keys, `sha256=` for body
    /// signatures).
    #[error("the {header} header has no {expected} signature")]
    NoSignatureOfVersion { header: String, expected: &'static str },
    #[error("no signature in the {0} header matches")]
    NoMatch(String),
}
