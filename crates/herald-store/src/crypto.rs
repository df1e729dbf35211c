//! Encryption of endpoint secrets at rest. A stolen database file alone does
//! not let anyone sign webhooks as us: secrets are sealed with a key that
//! lives outside the database (a file in the data dir, or configuration).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("encryption key must be 32 bytes of standard base64 (got {0} bytes)")]
    Length(usize),
    #[error("encryption key is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
}

/// A 256-bit key for XChaCha20-Poly1305. Never printed.
#[derive(Clone)]
pub struct EncryptionKey([u8; 32]);

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptionKey(..)")
    }
}

impl EncryptionKey {
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self(key)
    }

    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let bytes = STANDARD.decode(text.trim())?;
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| KeyError::Length(bytes.len()))?;
        Ok(Self(key))
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// nonce || ciphertext+tag
    pub(crate) fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(XNonce::from_slice(&nonce), plaintext)
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub(crate) fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        XChaCha20Poly1305::new((&self.0).into())
            .decrypt(XNonce::from_slice(nonce), body)
            .ok()
    }
}

/// An endpoint's stored secret, unsealed: what both stores' rows hold.
pub(crate) fn decrypt_secret(
    key: &EncryptionKey,
    sealed: &[u8],
) -> crate::Result<herald_core::signing::EndpointSecret> {
    let plain = key.open(sealed).ok_or_else(|| {
        crate::StoreError::Crypto("endpoint secret does not decrypt with the configured encryption key".into())
    })?;
    herald_core::signing::EndpointSecret::from_storage_bytes(&plain)
        .map_err(|e| crate::StoreError::Corrupt(format!("endpoint secret: {e}")))
}

/// The `credentials` column for `settings`: their secret parts sealed, or
/// NULL when they have none (the same in both stores).
pub(crate) fn seal_credentials(
    key: &EncryptionKey,
    settings: &herald_core::model::EndpointSettings,
) -> crate::Result<Option<Vec<u8>>> {
    herald_core::credentials::SecretParts::of(settings)
        .map(|parts| {
            let json = serde_json::to_string(&parts).map_err(|e| crate::StoreError::Encode(e.to_string()))?;
            Ok(key.seal(json.as_bytes()))
        })
        .transpose()
}

/// Restores the secret halves of `settings` from their sealed column; the
/// error says why, for the caller to name the column.
pub(crate) fn open_credentials(
    key: &EncryptionKey,
    sealed: Option<&[u8]>,
    settings: &mut herald_core::model::EndpointSettings,
) -> Result<(), String> {
    use herald_core::credentials::SecretParts;
    let parts = sealed
        .map(|sealed| {
            let plain = key
                .open(sealed)
                .ok_or("endpoint credentials do not decrypt with the configured encryption key")?;
            serde_json::from_slice::<SecretParts>(&plain).map_err(|e| format!("endpoint credentials: {e}"))
        })
        .transpose()?;
    SecretParts::restore(parts, settings).map_err(|e| format!("endpoint credentials: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips_and_detects_tampering() {
        let key = EncryptionKey::generate();
        let sealed = key.seal(b"whsec_secret");
        assert_eq!(key.open(&sealed).as_deref(), Some(&b"whsec_secret"[..]));
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(key.open(&bad), None);
        assert_eq!(EncryptionKey::generate().open(&sealed), None);
    }

    #[test]
    fn key_text_round_trips() {
        let key = EncryptionKey::generate();
        let again = EncryptionKey::parse(&key.to_base64()).unwrap();
        assert_eq!(again.0, key.0);
        assert!(matches!(EncryptionKey::parse("AAAA"), Err(KeyError::Length(3))));
    }
}
