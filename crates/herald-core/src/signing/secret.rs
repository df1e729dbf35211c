//! Endpoint secrets: the key types, how users write them (`whsec_`, `whsk_`,
//! `whpk_`) and how the store keeps them. Parsing lives apart from signing so
//! the rules for what a user may set (24..=75 bytes, matching key halves) are
//! read in one place; nothing here prints key material.

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ed25519_dalek::SigningKey;

pub const SYMMETRIC_PREFIX: &str = "whsec_";
pub const ASYMMETRIC_SECRET_PREFIX: &str = "whsk_";
pub const ASYMMETRIC_PUBLIC_PREFIX: &str = "whpk_";

/// Symmetric key bounds accepted from users, as svix-server enforces them.
pub const SYMMETRIC_MIN_LEN: usize = 24;
pub const SYMMETRIC_MAX_LEN: usize = 75;
/// What [`EndpointSecret::generate_symmetric`] draws, as svix-server does.
pub(super) const GENERATED_SYMMETRIC_LEN: usize = 24;

const TAG_SYMMETRIC: u8 = 1;
const TAG_ASYMMETRIC: u8 = 2;

/// Input side only: the Python and JS libraries accept secrets without `=`
/// padding (and with non-zero trailing bits), so we do too. Output is always
/// canonical padded base64, which the Rust `standardwebhooks` crate requires.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the secret is not valid base64")]
    Base64,
    #[error("a whsec_ secret must decode to {min} to {max} bytes, got {len}")]
    SymmetricLength { len: usize, min: usize, max: usize },
    #[error("a whsk_ key must decode to 64 bytes (32-byte seed then 32-byte public key), got {len}")]
    AsymmetricLength { len: usize },
    #[error("the public half of the whsk_ key does not belong to its seed")]
    PublicKeyMismatch,
    #[error("a whpk_ public key can only verify; signing needs the whsk_ secret key")]
    PublicKeyOnly,
    #[error("stored secret is malformed: {0}")]
    Storage(&'static str),
}

/// The raw bytes of an HMAC secret. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SymmetricKey(Vec<u8>);

impl SymmetricKey {
    /// A key within the bounds users may set ([`SYMMETRIC_MIN_LEN`]..=[`SYMMETRIC_MAX_LEN`] bytes).
    pub fn new(bytes: Vec<u8>) -> Result<Self, SecretError> {
        check_symmetric_len(bytes.len(), SYMMETRIC_MIN_LEN)?;
        Ok(Self(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SymmetricKey(..)")
    }
}

/// The key an endpoint's deliveries are signed with.
#[derive(Clone, PartialEq, Eq)]
pub enum EndpointSecret {
    Symmetric(SymmetricKey),
    Asymmetric(SigningKey),
}

impl fmt::Debug for EndpointSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets end up in logs through `{:?}` of larger structs; print the kind only.
        match self {
            Self::Symmetric(_) => f.write_str("EndpointSecret::Symmetric(..)"),
            Self::Asymmetric(_) => f.write_str("EndpointSecret::Asymmetric(..)"),
        }
    }
}

impl EndpointSecret {
    /// 24 random bytes, the size svix-server generates.
    pub fn generate_symmetric() -> Self {
        let bytes: [u8; GENERATED_SYMMETRIC_LEN] = rand::random();
        Self::Symmetric(SymmetricKey(bytes.to_vec()))
    }

    /// A fresh ed25519 key from a random 32-byte seed.
    pub fn generate_asymmetric() -> Self {
        let seed: [u8; 32] = rand::random();
        Self::Asymmetric(SigningKey::from_bytes(&seed))
    }

    /// Parses a secret as a user supplies it through the API:
    /// `whsec_<base64>` (the prefix may be left out, as svix-server allows)
    /// decoding to 24..=75 bytes, or `whsk_<base64 of seed || public key>`.
    /// Unpadded base64 is accepted.
    pub fn parse(s: &str) -> Result<Self, SecretError> {
        Self::parse_with_min_len(s, SYMMETRIC_MIN_LEN)
    }

    /// Like [`parse`](Self::parse) but accepts symmetric keys of any non-empty
    /// length, as the Python and JS verification libraries do. For the
    /// receiving side (verifying what someone else signed); the server uses
    /// `parse` so it never signs with a key shorter than the spec's 24 bytes.
    pub fn parse_lenient(s: &str) -> Result<Self, SecretError> {
        Self::parse_with_min_len(s, 1)
    }

    fn parse_with_min_len(s: &str, min_len: usize) -> Result<Self, SecretError> {
        if let Some(b64) = s.strip_prefix(ASYMMETRIC_SECRET_PREFIX) {
            let bytes = LENIENT_BASE64.decode(b64).map_err(|_| SecretError::Base64)?;
            let pair: &[u8; 64] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| SecretError::AsymmetricLength { len: bytes.len() })?;
            let key = SigningKey::from_keypair_bytes(pair).map_err(|_| SecretError::PublicKeyMismatch)?;
            return Ok(Self::Asymmetric(key));
        }
        if s.starts_with(ASYMMETRIC_PUBLIC_PREFIX) {
            return Err(SecretError::PublicKeyOnly);
        }
        let b64 = s.strip_prefix(SYMMETRIC_PREFIX).unwrap_or(s);
        let bytes = LENIENT_BASE64.decode(b64).map_err(|_| SecretError::Base64)?;
        check_symmetric_len(bytes.len(), min_len)?;
        Ok(Self::Symmetric(SymmetricKey(bytes)))
    }

    /// The secret as shown to users: `whsec_` + padded standard base64, or
    /// `whsk_` + base64(seed || public key).
    pub fn to_wire_string(&self) -> String {
        match self {
            Self::Symmetric(key) => {
                format!("{SYMMETRIC_PREFIX}{}", STANDARD.encode(key.as_bytes()))
            }
            Self::Asymmetric(key) => {
                format!("{ASYMMETRIC_SECRET_PREFIX}{}", STANDARD.encode(key.to_keypair_bytes()))
            }
        }
    }

    /// `whpk_` + base64 of the 32-byte public key; `None` for symmetric secrets.
    pub fn public_key(&self) -> Option<String> {
        match self {
            Self::Symmetric(_) => None,
            Self::Asymmetric(key) => Some(format!(
                "{ASYMMETRIC_PUBLIC_PREFIX}{}",
                STANDARD.encode(key.verifying_key().as_bytes())
            )),
        }
    }

    /// Compact form for storage (encrypted by the store): a tag byte
    /// (1 = symmetric, 2 = asymmetric) then the key bytes (the 32-byte seed
    /// for asymmetric keys; the public key is derived again on load).
    pub fn to_storage_bytes(&self) -> Vec<u8> {
        match self {
            Self::Symmetric(key) => {
                let mut out = Vec::with_capacity(1 + key.as_bytes().len());
                out.push(TAG_SYMMETRIC);
                out.extend_from_slice(key.as_bytes());
                out
            }
            Self::Asymmetric(key) => {
                let mut out = Vec::with_capacity(33);
                out.push(TAG_ASYMMETRIC);
                out.extend_from_slice(key.as_bytes());
                out
            }
        }
    }

    /// Inverse of [`to_storage_bytes`](Self::to_storage_bytes).
    pub fn from_storage_bytes(bytes: &[u8]) -> Result<Self, SecretError> {
        match bytes.split_first() {
            // No length policy here: whatever was accepted when stored stays usable.
            Some((&TAG_SYMMETRIC, key)) if !key.is_empty() => Ok(Self::Symmetric(SymmetricKey(key.to_vec()))),
            Some((&TAG_SYMMETRIC, _)) => Err(SecretError::Storage("empty symmetric key")),
            Some((&TAG_ASYMMETRIC, seed)) => {
                let seed: &[u8; 32] = seed
                    .try_into()
                    .map_err(|_| SecretError::Storage("ed25519 seed is not 32 bytes"))?;
                Ok(Self::Asymmetric(SigningKey::from_bytes(seed)))
            }
            Some(_) => Err(SecretError::Storage("unknown key type tag")),
            None => Err(SecretError::Storage("empty")),
        }
    }
}

fn check_symmetric_len(len: usize, min: usize) -> Result<(), SecretError> {
    if (min..=SYMMETRIC_MAX_LEN).contains(&len) {
        Ok(())
    } else {
        Err(SecretError::SymmetricLength {
            len,
            min,
            max: SYMMETRIC_MAX_LEN,
        })
    }
}
