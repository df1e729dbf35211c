//! Keys as receivers are given them: `whsec_<base64>` HMAC secrets (the
//! prefix may be left out), `whpk_<base64>` ed25519 public keys, and
//! `whsk_<base64>` ed25519 secret keys, of which only the public half is kept.
//!
//! Base64 is read leniently (with or without `=` padding), as the Python and
//! JavaScript Standard Webhooks libraries read it, so every secret they
//! accept works here too. HMAC secrets of any non-empty length are accepted
//! for the same reason; the 24-byte minimum is the sender's rule.

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::error::SecretError;

pub const HMAC_PREFIX: &str = "whsec_";
pub const PUBLIC_KEY_PREFIX: &str = "whpk_";
pub const SECRET_KEY_PREFIX: &str = "whsk_";

pub(crate) const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// One key a verifier checks signatures against.
#[derive(Clone)]
pub(crate) enum Key {
    /// Checks `v1,` entries (HMAC-SHA256).
    Hmac(Vec<u8>),
    /// Checks `v1a,` entries (ed25519).
    Ed25519(VerifyingKey),
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Verifiers end up in logs through `{:?}`; the HMAC secret must not.
        match self {
            Self::Hmac(_) => f.write_str("Hmac(..)"),
            Self::Ed25519(key) => write!(f, "Ed25519({:?})", key.as_bytes()),
        }
    }
}

impl Key {
    pub(crate) fn parse(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        if let Some(b64) = text.strip_prefix(PUBLIC_KEY_PREFIX) {
            let bytes = decode(b64)?;
            let bytes: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| SecretError::PublicKeyLength { len: bytes.len() })?;
            let key = VerifyingKey::from_bytes(&bytes).map_err(|_| SecretError::InvalidPublicKey)?;
            return Ok(Self::Ed25519(key));
        }
        if let Some(b64) = text.strip_prefix(SECRET_KEY_PREFIX) {
            let bytes = decode(b64)?;
            let pair: &[u8; 64] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| SecretError::SecretKeyLength { len: bytes.len() })?;
            let key = SigningKey::from_keypair_bytes(pair).map_err(|_| SecretError::KeyPairMismatch)?;
            return Ok(Self::Ed25519(key.verifying_key()));
        }
        let b64 = text.strip_prefix(HMAC_PREFIX).unwrap_or(text);
        Ok(Self::Hmac(decode(b64)?))
    }
}

/// Decodes a key's base64; an empty key is refused, as every library does.
pub(crate) fn decode(b64: &str) -> Result<Vec<u8>, SecretError> {
    if b64.is_empty() {
        return Err(SecretError::Empty);
    }
    let bytes = LENIENT_BASE64.decode(b64).map_err(|_| SecretError::Base64)?;
    if bytes.is_empty() {
        return Err(SecretError::Empty);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_prefix_gives_its_key_kind() {
        assert!(matches!(Key::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), Ok(Key::Hmac(k)) if k.len() == 24));
        assert!(matches!(
            Key::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Ok(Key::Hmac(_))
        ));
        assert!(matches!(
            Key::parse("whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4="),
            Ok(Key::Ed25519(_))
        ));
    }

    #[test]
    fn bad_keys_say_what_is_wrong() {
        assert_eq!(Key::parse("whsec_").unwrap_err(), SecretError::Empty);
        assert_eq!(Key::parse("whsec_!!!").unwrap_err(), SecretError::Base64);
        assert_eq!(
            Key::parse("whpk_AAAA").unwrap_err(),
            SecretError::PublicKeyLength { len: 3 }
        );
        assert_eq!(
            Key::parse("whsk_AAAA").unwrap_err(),
            SecretError::SecretKeyLength { len: 3 }
        );
    }

    #[test]
    fn a_secret_key_whose_halves_do_not_match_is_refused() {
        let mut pair = [7u8; 64];
        pair[32..].copy_from_slice(&[9u8; 32]);
        let text = format!("whsk_{}", base64::engine::general_purpose::STANDARD.encode(pair));
        assert_eq!(Key::parse(&text).unwrap_err(), SecretError::KeyPairMismatch);
    }

    #[test]
    fn debug_never_prints_an_hmac_secret() {
        let key = Key::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(format!("{key:?}"), "Hmac(..)");
    }
}
