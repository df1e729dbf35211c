//! Signing outbound webhooks the Standard Webhooks way, so receivers can use
//! any Standard Webhooks or Svix library to check them.
//!
//! The signed content is `"{msg_id}.{timestamp}.{body}"`, with the body signed
//! byte for byte as sent. Symmetric secrets (`whsec_`) give `v1,<base64
//! HMAC-SHA256>`; ed25519 keys (`whsk_`, public half `whpk_`) give `v1a,<base64
//! signature>`. Several entries, space-separated, let the old and new secret
//! both sign during a rotation. The receiving side ([`verify_signature`]) lives
//! here too, so tests and the verify crate check against the same rules.

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ed25519_dalek::{Signature, Signer as _, SigningKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const SYMMETRIC_PREFIX: &str = "whsec_";
pub const ASYMMETRIC_SECRET_PREFIX: &str = "whsk_";
pub const ASYMMETRIC_PUBLIC_PREFIX: &str = "whpk_";

/// Symmetric key bounds accepted from users, as svix-server enforces them.
pub const SYMMETRIC_MIN_LEN: usize = 24;
pub const SYMMETRIC_MAX_LEN: usize = 75;
/// What [`EndpointSecret::generate_symmetric`] draws, as svix-server does.
const GENERATED_SYMMETRIC_LEN: usize = 24;

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

fn signed_content(msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let head = format!("{msg_id}.{timestamp}.");
    let mut content = Vec::with_capacity(head.len() + body.len());
    content.extend_from_slice(head.as_bytes());
    content.extend_from_slice(body);
    content
}

/// The MAC fed with the signed content, without copying the body.
fn hmac_signed_content(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
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

/// `sha256=<lower-case hex HMAC-SHA256(key, body)>`, for endpoints that expect
/// the `X-Webhook-Signature` style (body only, no id or timestamp).
pub fn hex_body_signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = new_hmac(key);
    mac.update(body);
    format!("sha256={}", to_hex(&mac.finalize().into_bytes()))
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    const VECTORS: &str = include_str!("../testdata/standard-webhooks-vectors.json");

    fn vectors() -> Value {
        serde_json::from_str(VECTORS).unwrap()
    }

    fn s<'a>(v: &'a Value, key: &str) -> &'a str {
        v[key].as_str().unwrap_or_else(|| panic!("vector field {key}"))
    }

    fn hex_decode(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    struct Case<'a> {
        msg_id: &'a str,
        timestamp: i64,
        payload: &'a [u8],
    }

    fn case(v: &Value) -> Case<'_> {
        Case {
            msg_id: s(v, "msg_id"),
            timestamp: v["timestamp"].as_i64().unwrap(),
            payload: s(v, "payload").as_bytes(),
        }
    }

    fn base_vector<'a>(all: &'a Value, name: &str) -> &'a Value {
        ["symmetric_vectors", "asymmetric_vectors"]
            .iter()
            .flat_map(|k| all[*k].as_array().unwrap())
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("base vector {name}"))
    }

    fn secret_of(v: &Value) -> EndpointSecret {
        let text = v
            .get("secret")
            .or_else(|| v.get("secret_key"))
            .and_then(Value::as_str)
            .unwrap();
        EndpointSecret::parse(text).unwrap()
    }

    #[test]
    fn symmetric_vectors_reproduce() {
        let all = vectors();
        let list = all["symmetric_vectors"].as_array().unwrap();
        assert!(!list.is_empty());
        for v in list {
            let secret = secret_of(v);
            let EndpointSecret::Symmetric(key) = &secret else {
                panic!("{} is symmetric", v["name"])
            };
            assert_eq!(key.as_bytes(), hex_decode(s(v, "secret_key_bytes_hex")));
            let c = case(v);
            let sig = secret.sign(c.msg_id, c.timestamp, c.payload);
            assert_eq!(sig, s(v, "expected_signature"), "{}", v["name"]);
            assert!(verify_signature(&secret, c.msg_id, c.timestamp, c.payload, &sig));
            assert_eq!(secret.to_wire_string(), s(v, "secret"));
            assert_eq!(secret.public_key(), None);
        }
    }

    #[test]
    fn asymmetric_vectors_reproduce() {
        let all = vectors();
        let list = all["asymmetric_vectors"].as_array().unwrap();
        assert!(!list.is_empty());
        for v in list {
            let secret = secret_of(v);
            assert!(matches!(secret, EndpointSecret::Asymmetric(_)));
            let c = case(v);
            let sig = secret.sign(c.msg_id, c.timestamp, c.payload);
            assert_eq!(sig, s(v, "expected_signature"), "{}", v["name"]);
            assert!(verify_signature(&secret, c.msg_id, c.timestamp, c.payload, &sig));
            assert_eq!(secret.public_key().as_deref(), Some(s(v, "public_key")));
            assert_eq!(secret.to_wire_string(), s(v, "secret_key"));
        }
    }

    #[test]
    fn negative_cases_are_rejected() {
        let all = vectors();
        let list = all["negative_cases"].as_array().unwrap();
        assert!(!list.is_empty());
        for n in list {
            assert_eq!(n["expect"], "reject");
            let base = base_vector(&all, s(n, "base_vector"));
            let c = case(base);
            let header = s(n, "webhook-signature");
            assert!(
                !verify_signature(&secret_of(base), c.msg_id, c.timestamp, c.payload, header),
                "{}",
                n["name"]
            );
        }
    }

    #[test]
    fn multi_signature_cases_are_accepted() {
        let all = vectors();
        let list = all["multi_signature_cases"].as_array().unwrap();
        assert!(!list.is_empty());
        for m in list {
            assert_eq!(m["expect"], "accept");
            let base = base_vector(&all, s(m, "base_vector"));
            let c = case(base);
            let header = s(m, "webhook-signature");
            assert!(
                verify_signature(&secret_of(base), c.msg_id, c.timestamp, c.payload, header),
                "{}",
                m["name"]
            );
        }
        // The spec-style header also carries a v1a entry that the asymmetric key accepts.
        let m = list
            .iter()
            .find(|m| s(m, "webhook-signature").contains("v1a,"))
            .unwrap();
        let asym = secret_of(&all["asymmetric_vectors"][0]);
        let c = case(base_vector(&all, s(m, "base_vector")));
        assert!(verify_signature(
            &asym,
            c.msg_id,
            c.timestamp,
            c.payload,
            s(m, "webhook-signature")
        ));
    }

    #[test]
    fn derived_unpadded_vectors() {
        let all = vectors();
        let list = all["derived_vectors"].as_array().unwrap();
        assert!(!list.is_empty());
        for v in list {
            let text = s(v, "secret");
            let len = v["secret_key_len"].as_u64().unwrap() as usize;
            // Below the 24-byte floor the API refuses the key; receivers still take it.
            let secret = if len < SYMMETRIC_MIN_LEN {
                assert_eq!(
                    EndpointSecret::parse(text),
                    Err(SecretError::SymmetricLength {
                        len,
                        min: SYMMETRIC_MIN_LEN,
                        max: SYMMETRIC_MAX_LEN
                    })
                );
                EndpointSecret::parse_lenient(text).unwrap()
            } else {
                EndpointSecret::parse(text).unwrap()
            };
            let EndpointSecret::Symmetric(key) = &secret else {
                panic!("symmetric")
            };
            assert_eq!(key.as_bytes(), hex_decode(s(v, "secret_key_bytes_hex")));
            let c = case(v);
            assert_eq!(
                secret.sign(c.msg_id, c.timestamp, c.payload),
                s(v, "expected_signature"),
                "{}",
                v["name"]
            );
            // Re-emitted padded, which every library accepts.
            let wire = secret.to_wire_string();
            assert!(wire.ends_with('='), "{wire}");
            assert_eq!(EndpointSecret::parse_lenient(&wire).unwrap(), secret);
        }
    }

    #[test]
    fn generated_secrets_round_trip() {
        for _ in 0..20 {
            let sym = EndpointSecret::generate_symmetric();
            let wire = sym.to_wire_string();
            assert!(wire.starts_with("whsec_"));
            // 24 bytes encode to exactly 32 chars without padding; check canonical padded form.
            assert_eq!(STANDARD.decode(&wire[6..]).unwrap().len(), GENERATED_SYMMETRIC_LEN);
            assert_eq!(EndpointSecret::parse(&wire).unwrap(), sym);
            assert_eq!(EndpointSecret::parse(&wire[6..]).unwrap(), sym, "prefix is optional");
            assert_eq!(
                EndpointSecret::from_storage_bytes(&sym.to_storage_bytes()).unwrap(),
                sym
            );

            let asym = EndpointSecret::generate_asymmetric();
            let wire = asym.to_wire_string();
            assert!(wire.starts_with("whsk_") && wire.ends_with("=="), "{wire}");
            assert_eq!(EndpointSecret::parse(&wire).unwrap(), asym);
            assert!(asym.public_key().unwrap().starts_with("whpk_"));
            assert_eq!(
                EndpointSecret::from_storage_bytes(&asym.to_storage_bytes()).unwrap(),
                asym
            );
            assert_ne!(EndpointSecret::generate_symmetric(), sym);
        }
    }

    #[test]
    fn padded_output_for_lengths_needing_padding() {
        let secret = EndpointSecret::Symmetric(SymmetricKey::new(vec![7; 25]).unwrap());
        let wire = secret.to_wire_string();
        assert!(wire.ends_with("=="), "{wire}");
        assert_eq!(EndpointSecret::parse(wire.trim_end_matches('=')).unwrap(), secret);
    }

    #[test]
    fn bad_secrets_are_rejected() {
        assert_eq!(EndpointSecret::parse("whsec_!!!"), Err(SecretError::Base64));
        assert_eq!(
            EndpointSecret::parse(""),
            Err(SecretError::SymmetricLength {
                len: 0,
                min: 24,
                max: 75
            })
        );
        assert_eq!(
            EndpointSecret::parse_lenient("whsec_"),
            Err(SecretError::SymmetricLength {
                len: 0,
                min: 1,
                max: 75
            })
        );
        let long = format!("whsec_{}", STANDARD.encode([1u8; 76]));
        assert!(matches!(
            EndpointSecret::parse(&long),
            Err(SecretError::SymmetricLength { len: 76, .. })
        ));
        assert!(EndpointSecret::parse(&format!("whsec_{}", STANDARD.encode([1u8; 75]))).is_ok());
        assert_eq!(
            EndpointSecret::parse(&format!("whsk_{}", STANDARD.encode([1u8; 32]))),
            Err(SecretError::AsymmetricLength { len: 32 })
        );
        // A valid seed with somebody else's public key.
        let a = EndpointSecret::generate_asymmetric();
        let b = EndpointSecret::generate_asymmetric();
        let (EndpointSecret::Asymmetric(ka), EndpointSecret::Asymmetric(kb)) = (&a, &b) else {
            unreachable!()
        };
        let mut mixed = ka.to_keypair_bytes();
        mixed[32..].copy_from_slice(kb.verifying_key().as_bytes());
        assert_eq!(
            EndpointSecret::parse(&format!("whsk_{}", STANDARD.encode(mixed))),
            Err(SecretError::PublicKeyMismatch)
        );
        assert_eq!(
            EndpointSecret::parse(&a.public_key().unwrap()),
            Err(SecretError::PublicKeyOnly)
        );
        assert!(SymmetricKey::new(vec![0; 23]).is_err());
    }

    #[test]
    fn storage_bytes_are_checked() {
        assert!(EndpointSecret::from_storage_bytes(&[]).is_err());
        assert!(EndpointSecret::from_storage_bytes(&[1]).is_err());
        assert!(EndpointSecret::from_storage_bytes(&[2; 32]).is_err());
        assert!(EndpointSecret::from_storage_bytes(&[3, 1, 2, 3]).is_err());
        let sym = EndpointSecret::from_storage_bytes(&[1, 9, 9, 9]).unwrap();
        assert!(matches!(sym, EndpointSecret::Symmetric(ref k) if k.as_bytes() == [9, 9, 9]));
        assert_eq!(EndpointSecret::generate_asymmetric().to_storage_bytes().len(), 33);
    }

    #[test]
    fn debug_hides_key_material() {
        let sym = EndpointSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(format!("{sym:?}"), "EndpointSecret::Symmetric(..)");
        let asym = EndpointSecret::generate_asymmetric();
        assert_eq!(format!("{asym:?}"), "EndpointSecret::Asymmetric(..)");
        assert_eq!(format!("{:?}", vec![sym]), "[EndpointSecret::Symmetric(..)]");
    }

    #[test]
    fn header_joins_one_entry_per_secret() {
        let all = vectors();
        let v = &all["symmetric_vectors"][0];
        let a = &all["asymmetric_vectors"][0];
        let c = case(v);
        let (sym, asym) = (secret_of(v), secret_of(a));
        let header = signature_header(&[&sym, &asym], c.msg_id, c.timestamp, c.payload);
        assert_eq!(
            header,
            format!("{} {}", s(v, "expected_signature"), s(a, "expected_signature"))
        );
        assert!(verify_signature(&sym, c.msg_id, c.timestamp, c.payload, &header));
        assert!(verify_signature(&asym, c.msg_id, c.timestamp, c.payload, &header));
        let other = EndpointSecret::generate_symmetric();
        assert!(!verify_signature(&other, c.msg_id, c.timestamp, c.payload, &header));
        assert_eq!(signature_header(&[], c.msg_id, c.timestamp, c.payload), "");
    }

    #[test]
    fn malformed_headers_never_verify() {
        let secret = EndpointSecret::generate_symmetric();
        let asym = EndpointSecret::generate_asymmetric();
        for header in [
            "",
            " ",
            ",",
            "v1",
            "v1,",
            "v1a,",
            "v1,,",
            "v1,====",
            "v1a,AAAA",
            "  v1,x  v1a,y ",
            "\u{0}",
        ] {
            assert!(!verify_signature(&secret, "msg_1", 1, b"{}", header), "{header:?}");
            assert!(!verify_signature(&asym, "msg_1", 1, b"{}", header), "{header:?}");
        }
        // A v1 signature does not pass as v1a and vice versa.
        let sig = secret.sign("msg_1", 1, b"{}");
        assert!(!verify_signature(
            &secret,
            "msg_1",
            1,
            b"{}",
            &sig.replacen("v1,", "v1a,", 1)
        ));
        let sig = asym.sign("msg_1", 1, b"{}");
        assert!(!verify_signature(
            &asym,
            "msg_1",
            1,
            b"{}",
            &sig.replacen("v1a,", "v1,", 1)
        ));
    }

    #[test]
    fn hex_body_signature_matches_rfc4231() {
        // RFC 4231 test case 2.
        assert_eq!(
            hex_body_signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(to_hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }

    fn any_secret() -> impl Strategy<Value = EndpointSecret> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), SYMMETRIC_MIN_LEN..=SYMMETRIC_MAX_LEN)
                .prop_map(|k| EndpointSecret::Symmetric(SymmetricKey::new(k).unwrap())),
            any::<[u8; 32]>().prop_map(|seed| EndpointSecret::Asymmetric(SigningKey::from_bytes(&seed))),
        ]
    }

    proptest! {
        #[test]
        fn sign_then_verify(
            secret in any_secret(),
            msg_id in "msg_[0-9A-Za-z]{1,27}",
            timestamp in 0i64..4_000_000_000,
            body in proptest::collection::vec(any::<u8>(), 1..512),
            index in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let sig = secret.sign(&msg_id, timestamp, &body);
            prop_assert!(verify_signature(&secret, &msg_id, timestamp, &body, &sig));
            prop_assert_eq!(EndpointSecret::parse(&secret.to_wire_string()).unwrap(), secret.clone());

            let mut tampered = body.clone();
            tampered[index.index(body.len())] ^= flip;
            prop_assert!(!verify_signature(&secret, &msg_id, timestamp, &tampered, &sig));
            prop_assert!(!verify_signature(&secret, &msg_id, timestamp + 1, &body, &sig));
        }
    }
}
