//! Relay channel ids that the server can check without storing them:
//! `rly_` + base64url(16 random bytes ‖ the first 16 bytes of
//! HMAC-SHA256(relay key, those random bytes)). Nobody without the key can
//! make one that passes, so the URL is unguessable, and a channel outlives
//! a restart (and works on every node sharing the encryption key) with no
//! table and no migration.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

const PREFIX: &str = "rly_";
const RANDOM_LEN: usize = 16;
const TAG_LEN: usize = 16;

/// Keeps channel ids apart from anything else the same secret keys.
const PURPOSE: &[u8] = b"herald relay channel id v1";

#[derive(Clone)]
pub struct ChannelKey([u8; 32]);

impl std::fmt::Debug for ChannelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChannelKey(..)")
    }
}

impl ChannelKey {
    /// The relay's key, derived from a server secret (the encryption key).
    pub fn derive(secret: &[u8]) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
        mac.update(PURPOSE);
        Self(mac.finalize().into_bytes().into())
    }

    /// A new channel id.
    pub fn mint(&self) -> String {
        let random: [u8; RANDOM_LEN] = rand::random();
        let mut raw = Vec::with_capacity(RANDOM_LEN + TAG_LEN);
        raw.extend_from_slice(&random);
        raw.extend_from_slice(&self.tag(&random));
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw))
    }

    /// True iff `id` is one this key minted.
    pub fn check(&self, id: &str) -> bool {
        let Some(b64) = id.strip_prefix(PREFIX) else {
            return false;
        };
        let Ok(raw) = URL_SAFE_NO_PAD.decode(b64) else {
            return false;
        };
        if raw.len() != RANDOM_LEN + TAG_LEN {
            return false;
        }
        let (random, tag) = raw.split_at(RANDOM_LEN);
        bool::from(self.tag(random).as_slice().ct_eq(tag))
    }

    fn tag(&self, random: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(random);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ids_check_and_nothing_else_does() {
        let key = ChannelKey::derive(b"server secret");
        let id = key.mint();
        assert!(id.starts_with("rly_") && id.len() == 4 + 43, "{id}");
        assert!(key.check(&id));
        assert_ne!(key.mint(), id, "random");
        assert!(!ChannelKey::derive(b"another server").check(&id));
        let mut forged = id.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        assert!(!key.check(std::str::from_utf8(&forged).unwrap()));
        for bad in ["", "rly_", "rly_!!", "abc", &id[4..]] {
            assert!(!key.check(bad), "{bad}");
        }
    }
}
