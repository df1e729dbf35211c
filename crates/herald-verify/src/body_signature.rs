//! The `X-Webhook-Signature: sha256=<hex>` style: HMAC-SHA256 of the body
//! alone, hex-encoded, in a header whose name each platform picks (GitHub's
//! is `X-Hub-Signature-256`). There is no timestamp in what is signed, so
//! nothing bounds a replay; pair it with a [`Deduplicator`](crate::Deduplicator)
//! where the sender gives an id.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use crate::error::{SecretError, VerifyError};
use crate::headers::{Headers, NotText};
use crate::key;

/// The header name used unless [`BodySignature::header_name`] sets another.
pub const DEFAULT_BODY_SIGNATURE_HEADER: &str = "x-webhook-signature";

const PREFIX: &str = "sha256=";

/// A verifier of `sha256=<hex>` body signatures. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BodySignature {
    keys: Arc<[HmacKey]>,
    header: String,
}

#[derive(Clone)]
struct HmacKey(Vec<u8>);

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey(..)")
    }
}

impl BodySignature {
    /// A verifier whose key is `secret`'s bytes as given (most platforms hand
    /// out a plain shared string).
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self, SecretError> {
        Self::from_keys([secret.as_ref().to_vec()])
    }

    /// A verifier whose key is a `whsec_<base64>` secret decoded, as Herald
    /// signs this style with an endpoint's secret.
    pub fn from_whsec(secret: &str) -> Result<Self, SecretError> {
        let text = secret.trim();
        let b64 = text.strip_prefix(key::HMAC_PREFIX).unwrap_or(text);
        Self::from_keys([key::decode(b64)?])
    }

    /// A verifier for several secrets (rotation), each read as
    /// [`from_whsec`](Self::from_whsec) reads it when it starts with `whsec_`
    /// and as [`new`](Self::new) does otherwise.
    pub fn from_secrets<I, S>(secrets: I) -> Result<Self, SecretError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let keys = secrets
            .into_iter()
            .map(|s| {
                let text = s.as_ref().trim();
                match text.strip_prefix(key::HMAC_PREFIX) {
                    Some(b64) => key::decode(b64),
                    None => Ok(text.as_bytes().to_vec()),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_keys(keys)
    }

    /// A verifier that accepts a signature by any of `keys` (rotation).
    pub fn from_keys<I: IntoIterator<Item = Vec<u8>>>(keys: I) -> Result<Self, SecretError> {
        let keys: Vec<HmacKey> = keys.into_iter().map(HmacKey).collect();
        if keys.is_empty() {
            return Err(SecretError::NoSecrets);
        }
        if keys.iter().any(|k| k.0.is_empty()) {
            return Err(SecretError::Empty);
        }
        Ok(Self {
            keys: keys.into(),
            header: DEFAULT_BODY_SIGNATURE_HEADER.to_owned(),
        })
    }

    /// Reads the signature from `name` instead of `X-Webhook-Signature`.
    pub fn header_name(mut self, name: &str) -> Self {
        self.header = name.to_ascii_lowercase();
        self
    }

    /// Verifies the signature header against the exact body bytes.
    pub fn verify(&self, headers: &(impl Headers + ?Sized), body: &[u8]) -> Result<(), VerifyError> {
        match headers.header(&self.header) {
            Ok(Some(value)) => self.verify_value(value, body),
            Ok(None) => Err(VerifyError::MissingHeader(self.header.clone())),
            Err(NotText) => Err(VerifyError::HeaderNotText(self.header.clone())),
        }
    }

    /// Verifies a header value: one or more space-separated `sha256=<hex>`
    /// entries (upper- or lower-case hex), any of which may match.
    pub fn verify_value(&self, value: &str, body: &[u8]) -> Result<(), VerifyError> {
        let entries: Vec<&str> = value
            .split(' ')
            .filter_map(|entry| entry.strip_prefix(PREFIX))
            .collect();
        if entries.is_empty() {
            return Err(VerifyError::NoSignatureOfVersion {
                header: self.header.clone(),
                expected: "sha256=",
            });
        }
        let tags: Vec<[u8; 32]> = self.keys.iter().map(|k| body_hmac(&k.0, body)).collect();
        let matched = entries
            .iter()
            .filter_map(|hex| decode_hex(hex))
            .any(|sig| tags.iter().any(|tag| bool::from(tag.as_slice().ct_eq(sig.as_slice()))));
        if matched {
            Ok(())
        } else {
            Err(VerifyError::NoMatch(self.header.clone()))
        }
    }

    /// `sha256=<lower-case hex>` by the first key: for tests of a receiver.
    pub fn sign(&self, body: &[u8]) -> String {
        let tag = body_hmac(&self.keys[0].0, body);
        let mut out = String::with_capacity(PREFIX.len() + 64);
        out.push_str(PREFIX);
        for b in tag {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }
}

fn body_hmac(key: &[u8], body: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_signature_verifies_in_either_case() {
        // HMAC-SHA256("secret", "hello"), computed independently (Python hmac).
        let hex = "88aab3ede8d3adf94d26ab90d3bafd4a2083070c3bcce9c014ee04a443847c0b";
        let v = BodySignature::new("secret").unwrap();
        assert_eq!(v.sign(b"hello"), format!("sha256={hex}"));
        assert!(v.verify_value(&format!("sha256={hex}"), b"hello").is_ok());
        assert!(
            v.verify_value(&format!("sha256={}", hex.to_uppercase()), b"hello")
                .is_ok()
        );
        assert_eq!(
            v.verify_value(&format!("sha256={hex}"), b"hello!").unwrap_err(),
            VerifyError::NoMatch("x-webhook-signature".into())
        );
    }

    #[test]
    fn the_header_name_is_configurable_and_missing_is_named() {
        let v = BodySignature::new("k").unwrap().header_name("X-Hub-Signature-256");
        let sig = v.sign(b"b");
        assert!(v.verify(&[("x-hub-signature-256", sig.as_str())], b"b").is_ok());
        assert_eq!(
            v.verify(&[("x-webhook-signature", sig.as_str())], b"b").unwrap_err(),
            VerifyError::MissingHeader("x-hub-signature-256".into())
        );
    }

    #[test]
    fn several_entries_and_several_keys_rotate() {
        let old = BodySignature::new("old").unwrap();
        let new = BodySignature::new("new").unwrap();
        let header = format!("{} {}", old.sign(b"b"), new.sign(b"b"));
        assert!(new.verify_value(&header, b"b").is_ok());
        let both = BodySignature::from_keys([b"old".to_vec(), b"new".to_vec()]).unwrap();
        assert!(both.verify_value(&new.sign(b"b"), b"b").is_ok());
    }

    #[test]
    fn secrets_are_decoded_when_whsec_and_taken_as_given_otherwise() {
        let whsec = BodySignature::from_whsec("whsec_c2VjcmV0").unwrap(); // base64("secret")
        let both = BodySignature::from_secrets(["whsec_c2VjcmV0", "plain"]).unwrap();
        assert!(both.verify_value(&whsec.sign(b"b"), b"b").is_ok());
        assert!(
            both.verify_value(&BodySignature::new("plain").unwrap().sign(b"b"), b"b")
                .is_ok()
        );
        assert_eq!(whsec.sign(b"b"), BodySignature::new("secret").unwrap().sign(b"b"));
        assert_eq!(
            BodySignature::from_secrets(["whsec_!!"]).unwrap_err(),
            SecretError::Base64
        );
    }

    #[test]
    fn malformed_values_are_refused() {
        let v = BodySignature::new("k").unwrap();
        assert!(matches!(
            v.verify_value("md5=abcd", b""),
            Err(VerifyError::NoSignatureOfVersion {
                expected: "sha256=",
                ..
            })
        ));
        for bad in ["sha256=", "sha256=abc", "sha256=zz", "sha256=é", "sha256=+f"] {
            assert!(
                matches!(v.verify_value(bad, b""), Err(VerifyError::NoMatch(_))),
                "{bad}"
            );
        }
        assert_eq!(BodySignature::new("").unwrap_err(), SecretError::Empty);
    }
}
