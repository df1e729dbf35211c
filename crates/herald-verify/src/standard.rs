//! Standard Webhooks verification: `webhook-id`, `webhook-timestamp` and
//! `webhook-signature` (or their `svix-*` twins), with the signed content
//! `"{id}.{timestamp}.{body}"`.
//!
//! - `v1,<base64>` entries are HMAC-SHA256 with a `whsec_` secret; `v1a,<base64>`
//!   entries are ed25519 signatures checked with a `whpk_` (or `whsk_`) key.
//! - The header may hold several space-separated entries (the sender is
//!   rotating its secret); one match is enough. Entries of other versions, or
//!   that do not parse, are skipped, as the official libraries skip them.
//! - The verifier may hold several keys too (the receiver is rotating).
//! - The timestamp must be within the tolerance (default 5 min) either side of
//!   now; a fractional timestamp is refused, as the Rust library refuses it.
//! - Tags are compared in constant time.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signature;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use crate::error::{SecretError, VerifyError};
use crate::headers::{Headers, NotText};
use crate::key::Key;

/// How far a `webhook-timestamp` may be from now, either way, by default: the
/// official libraries' 5 minutes.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

const SIGNATURE_HEADER: &str = "webhook-signature";

/// A Standard Webhooks verifier for one or more keys. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Webhook {
    keys: Arc<[Key]>,
    tolerance: Duration,
}

/// Which kind of signature matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `v1`: HMAC-SHA256.
    V1,
    /// `v1a`: ed25519.
    V1a,
}

/// What a verified request carried: its id (the key to deduplicate by) and
/// its timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub id: String,
    pub timestamp: i64,
    pub version: Version,
}

impl Webhook {
    /// A verifier for one key: `whsec_...` (the prefix may be left out),
    /// `whpk_...` or `whsk_...`.
    pub fn new(secret: &str) -> Result<Self, SecretError> {
        Self::from_secrets([secret])
    }

    /// A verifier that accepts a signature by any of `secrets`, for a
    /// receiver part way through rotating its secret.
    pub fn from_secrets<I, S>(secrets: I) -> Result<Self, SecretError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let keys = secrets
            .into_iter()
            .map(|s| Key::parse(s.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(SecretError::NoSecrets);
        }
        Ok(Self {
            keys: keys.into(),
            tolerance: DEFAULT_TOLERANCE,
        })
    }

    /// The same verifier with another timestamp tolerance.
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    pub fn tolerance(&self) -> Duration {
        self.tolerance
    }

    /// Verifies a request's headers and exact body bytes against the clock.
    pub fn verify(&self, headers: &(impl Headers + ?Sized), body: &[u8]) -> Result<Verified, VerifyError> {
        self.verify_at(headers, body, unix_now())
    }

    /// [`verify`](Self::verify) with the clock at `now` (Unix seconds).
    pub fn verify_at(&self, headers: &(impl Headers + ?Sized), body: &[u8], now: i64) -> Result<Verified, VerifyError> {
        // Herald and Svix send both families; other senders one of them.
        let prefix = match headers.header("webhook-id") {
            Ok(Some(_)) | Err(NotText) => "webhook",
            Ok(None) if matches!(headers.header("svix-id"), Ok(Some(_)) | Err(NotText)) => "svix",
            Ok(None) => return Err(VerifyError::MissingHeader("webhook-id".into())),
        };
        let get = |suffix: &str| {
            let name = format!("{prefix}-{suffix}");
            match headers.header(&name) {
                Ok(Some(value)) => Ok(value),
                Ok(None) => Err(VerifyError::MissingHeader(name)),
                Err(NotText) => Err(VerifyError::HeaderNotText(name)),
            }
        };
        let (id, timestamp, signature) = (get("id")?, get("timestamp")?, get("signature")?);
        self.verify_parts(id, timestamp, signature, body, now)
    }

    /// Verifies the three header values given apart, with the clock at `now`.
    pub fn verify_parts(
        &self,
        id: &str,
        timestamp: &str,
        signature: &str,
        body: &[u8],
        now: i64,
    ) -> Result<Verified, VerifyError> {
        let ts = parse_timestamp(timestamp)?;
        self.check_tolerance(ts, now)?;
        let version = self.match_signature(id, ts, body, signature)?;
        Ok(Verified {
            id: id.to_owned(),
            timestamp: ts,
            version,
        })
    }

    /// `v1,<base64>` by the first `whsec_` secret: for tests of a receiver.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> Result<String, SecretError> {
        let key = self
            .keys
            .iter()
            .find_map(|k| match k {
                Key::Hmac(bytes) => Some(bytes),
                Key::Ed25519(_) => None,
            })
            .ok_or(SecretError::CannotSign)?;
        let tag = hmac(key, id, timestamp, body);
        Ok(format!("v1,{}", STANDARD.encode(tag)))
    }

    fn check_tolerance(&self, ts: i64, now: i64) -> Result<(), VerifyError> {
        let tolerance_secs = self.tolerance.as_secs();
        let limit = i64::try_from(tolerance_secs).unwrap_or(i64::MAX);
        let age = now.saturating_sub(ts);
        if age > limit {
            return Err(VerifyError::TimestampTooOld {
                timestamp: ts,
                age_secs: age,
                tolerance_secs,
            });
        }
        if -age > limit {
            return Err(VerifyError::TimestampTooNew {
                timestamp: ts,
                ahead_secs: -age,
                tolerance_secs,
            });
        }
        Ok(())
    }

    fn match_signature(&self, id: &str, ts: i64, body: &[u8], header: &str) -> Result<Version, VerifyError> {
        let has_hmac = self.keys.iter().any(|k| matches!(k, Key::Hmac(_)));
        let has_ed25519 = self.keys.iter().any(|k| matches!(k, Key::Ed25519(_)));
        let entries: Vec<(&str, &str)> = header
            .split(' ')
            .filter_map(|entry| entry.split_once(','))
            .filter(|(version, _)| (has_hmac && *version == "v1") || (has_ed25519 && *version == "v1a"))
            .collect();
        if entries.is_empty() {
            let expected = match (has_hmac, has_ed25519) {
                (true, true) => "v1 or v1a",
                (true, false) => "v1",
                _ => "v1a",
            };
            return Err(VerifyError::NoSignatureOfVersion {
                header: SIGNATURE_HEADER.into(),
                expected,
            });
        }
        // Each HMAC is computed once, however many entries there are.
        let tags: Vec<[u8; 32]> = self
            .keys
            .iter()
            .filter_map(|k| match k {
                Key::Hmac(bytes) => Some(hmac(bytes, id, ts, body)),
                Key::Ed25519(_) => None,
            })
            .collect();
        let mut content: Option<Vec<u8>> = None;
        for (version, b64) in entries {
            // Canonical base64 only: the official libraries compare the
            // base64 text itself, so any other spelling fails there too.
            let Ok(sig) = STANDARD.decode(b64) else { continue };
            if version == "v1" {
                if tags.iter().any(|tag| bool::from(tag.as_slice().ct_eq(&sig))) {
                    return Ok(Version::V1);
                }
                continue;
            }
            let Ok(sig) = Signature::from_slice(&sig) else { continue };
            let content = content.get_or_insert_with(|| signed_content(id, ts, body));
            let verified = self.keys.iter().any(|k| match k {
                Key::Ed25519(public) => public.verify_strict(content, &sig).is_ok(),
                Key::Hmac(_) => false,
            });
            if verified {
                return Ok(Version::V1a);
            }
        }
        Err(VerifyError::NoMatch(SIGNATURE_HEADER.into()))
    }
}

fn parse_timestamp(text: &str) -> Result<i64, VerifyError> {
    let invalid = || VerifyError::InvalidTimestamp(text.to_owned());
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    text.parse().map_err(|_| invalid())
}

fn hmac(key: &[u8], id: &str, ts: i64, body: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    mac.finalize().into_bytes().into()
}

fn signed_content(id: &str, ts: i64, body: &[u8]) -> Vec<u8> {
    let mut content = format!("{id}.{ts}.").into_bytes();
    content.extend_from_slice(body);
    content
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn headers(sig: &str, ts: &str) -> Vec<(&'static str, String)> {
        vec![
            ("webhook-id", "msg_1".to_owned()),
            ("webhook-timestamp", ts.to_owned()),
            ("webhook-signature", sig.to_owned()),
        ]
    }

    #[test]
    fn what_it_signs_it_verifies_and_nothing_else() {
        let wh = Webhook::new(SECRET).unwrap();
        let sig = wh.sign("msg_1", 1000, b"{}").unwrap();
        let ok = wh.verify_at(&headers(&sig, "1000"), b"{}", 1000).unwrap();
        assert_eq!(ok.id, "msg_1");
        assert_eq!(ok.version, Version::V1);
        assert_eq!(
            wh.verify_at(&headers(&sig, "1000"), b"{ }", 1000).unwrap_err(),
            VerifyError::NoMatch("webhook-signature".into())
        );
    }

    #[test]
    fn the_tolerance_holds_both_ways_and_is_configurable() {
        let wh = Webhook::new(SECRET).unwrap();
        let sig = wh.sign("msg_1", 1000, b"x").unwrap();
        let h = headers(&sig, "1000");
        assert!(wh.verify_at(&h, b"x", 1300).is_ok(), "exactly 5 min old is within");
        assert!(matches!(
            wh.verify_at(&h, b"x", 1301),
            Err(VerifyError::TimestampTooOld { age_secs: 301, .. })
        ));
        assert!(matches!(
            wh.verify_at(&h, b"x", 699),
            Err(VerifyError::TimestampTooNew { ahead_secs: 301, .. })
        ));
        let strict = wh.with_tolerance(Duration::from_secs(10));
        assert!(strict.verify_at(&h, b"x", 1011).is_err());
        assert!(strict.verify_at(&h, b"x", 1010).is_ok());
    }

    #[test]
    fn timestamps_must_be_whole_seconds() {
        let wh = Webhook::new(SECRET).unwrap();
        for bad in ["1000.5", "", "-1", "+1000", "1e3", "99999999999999999999"] {
            assert!(
                matches!(
                    wh.verify_at(&headers("v1,x", bad), b"", 1000),
                    Err(VerifyError::InvalidTimestamp(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn missing_headers_are_named_and_svix_headers_work() {
        let wh = Webhook::new(SECRET).unwrap();
        let none: Vec<(&str, &str)> = vec![];
        assert_eq!(
            wh.verify_at(&none, b"", 0).unwrap_err(),
            VerifyError::MissingHeader("webhook-id".into())
        );
        let sig = wh.sign("msg_1", 5, b"b").unwrap();
        let svix = [
            ("svix-id", "msg_1"),
            ("svix-timestamp", "5"),
            ("svix-signature", sig.as_str()),
        ];
        assert!(wh.verify_at(&svix, b"b", 5).is_ok());
        let partial = [("svix-id", "msg_1"), ("svix-timestamp", "5")];
        assert_eq!(
            wh.verify_at(&partial, b"b", 5).unwrap_err(),
            VerifyError::MissingHeader("svix-signature".into())
        );
    }

    #[test]
    fn a_receiver_rotating_its_secret_accepts_either() {
        let old = Webhook::new(SECRET).unwrap();
        let new = Webhook::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let both = Webhook::from_secrets([SECRET, "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"]).unwrap();
        for signer in [&old, &new] {
            let sig = signer.sign("msg_1", 7, b"b").unwrap();
            assert!(both.verify_at(&headers(&sig, "7"), b"b", 7).is_ok());
        }
        assert_eq!(
            Webhook::from_secrets(Vec::<String>::new()).unwrap_err(),
            SecretError::NoSecrets
        );
    }

    #[test]
    fn a_header_without_our_version_says_so() {
        let wh = Webhook::new(SECRET).unwrap();
        assert_eq!(
            wh.verify_at(&headers("v2,abc garbage", "1"), b"", 1).unwrap_err(),
            VerifyError::NoSignatureOfVersion {
                header: "webhook-signature".into(),
                expected: "v1"
            }
        );
    }
}
