//! Resource ids in the Svix style: `app_`, `ep_`, `msg_`, `atmpt_` followed by
//! a 27-character base62 encoding of 6 bytes of Unix milliseconds and 14
//! random bytes.
//!
//! Putting the time first makes ids sortable, so a list ordered by id is
//! ordered by creation and an id doubles as a pagination cursor and a time
//! filter ([`min_id_for_time`]). Within one process ids are also strictly
//! increasing: in the same millisecond the random part counts up instead of
//! being redrawn (as monotonic ULIDs do), so two messages created back to back
//! never swap places in a listing.

use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// Characters after the `_` separator.
pub const ID_BODY_LEN: usize = 27;

const RAW_LEN: usize = 20;
const TIME_LEN: usize = 6;
const RANDOM_LEN: usize = RAW_LEN - TIME_LEN;
/// The largest millisecond value that fits the 6-byte time field.
const MAX_MS: u64 = (1 << (8 * TIME_LEN)) - 1;

/// Digits in ASCII order, so comparing two encodings as strings compares the
/// numbers they encode.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("expected an id starting with `{expected}_`")]
    WrongPrefix { expected: &'static str },
    #[error("expected `{prefix}_` followed by {ID_BODY_LEN} base62 characters")]
    Malformed { prefix: &'static str },
}

/// Generates an id newtype with a fixed prefix. The macro keeps the four id
/// types identical apart from their prefix, so they cannot drift apart.
macro_rules! define_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        // A `Default` that invents a fresh random id would surprise more than help.
        #[allow(clippy::new_without_default)]
        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id, later than every id this process issued before.
            pub fn new() -> Self {
                Self(generate($prefix))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }

            /// Accepts exactly `prefix_` + 27 base62 characters.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                check($prefix, s)?;
                Ok(Self(s.to_owned()))
            }

            /// Wraps a value without checking it: for ids read back from storage,
            /// which were checked on the way in.
            pub fn from_trusted(value: String) -> Self {
                Self(value)
            }

            /// The creation time encoded in the id, in Unix milliseconds.
            pub fn timestamp_ms(&self) -> Option<i64> {
                id_time_ms(&self.0)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

define_id!(
    /// An application: one customer of the platform, owning endpoints and messages.
    AppId,
    "app"
);
define_id!(
    /// An endpoint: a URL that receives an application's messages.
    EndpointId,
    "ep"
);
define_id!(
    /// A message: one event posted by the platform, fanned out to endpoints.
    MessageId,
    "msg"
);
define_id!(
    /// One HTTP attempt to deliver a message to an endpoint.
    AttemptId,
    "atmpt"
);
define_id!(
    /// A background task (recover, replay-missing), as Svix names them.
    TaskId,
    "qtask"
);
define_id!(
    /// An app-scoped API token (its id, never the token itself).
    TokenId,
    "tok"
);

/// The creation time (Unix milliseconds) of any id of the form
/// `prefix_<27 base62>`, whatever its prefix. `None` when it is not such an id.
pub fn id_time_ms(id: &str) -> Option<i64> {
    let (_, body) = id.rsplit_once('_')?;
    let raw = decode(body.as_bytes())?;
    let mut ms = [0u8; 8];
    ms[8 - TIME_LEN..].copy_from_slice(&raw[..TIME_LEN]);
    // 48 bits always fit an i64.
    i64::try_from(u64::from_be_bytes(ms)).ok()
}

/// The smallest id with this prefix created at `ms` (Unix milliseconds):
/// every id made at or after `ms` sorts `>=` it, every earlier id sorts `<`.
/// Out-of-range times are clamped to what the 6-byte field can hold.
pub fn min_id_for_time(prefix: &str, ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0).min(MAX_MS);
    format!("{prefix}_{}", encode_str(&compose(ms, [0; RANDOM_LEN])))
}

fn check(prefix: &'static str, s: &str) -> Result<(), IdError> {
    let body = s
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .ok_or(IdError::WrongPrefix { expected: prefix })?;
    match decode(body.as_bytes()) {
        Some(_) => Ok(()),
        None => Err(IdError::Malformed { prefix }),
    }
}

struct Last {
    ms: u64,
    random: [u8; RANDOM_LEN],
}

/// The last id issued, so the next one can be made strictly larger.
static LAST: Mutex<Option<Last>> = Mutex::new(None);

fn generate(prefix: &str) -> String {
    format!("{prefix}_{}", encode_str(&next_raw()))
}

fn next_raw() -> [u8; RAW_LEN] {
    let now = now_ms();
    // The state is a plain value that is always consistent, so a panic in
    // another thread while holding the lock leaves nothing to repair.
    let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
    let (ms, random) = match last.as_ref() {
        // Same millisecond, or the clock went backwards: keep the last time and
        // count up, so order follows creation rather than the wall clock.
        Some(prev) if now <= prev.ms => match increment(prev.random) {
            Some(random) => (prev.ms, random),
            // 2^112 ids in one millisecond cannot happen, but stay correct anyway.
            None => ((prev.ms + 1).min(MAX_MS), rand::random()),
        },
        _ => (now, rand::random()),
    };
    *last = Some(Last { ms, random });
    compose(ms, random)
}

fn now_ms() -> u64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    u64::try_from(ms).unwrap_or(MAX_MS).min(MAX_MS)
}

/// Adds one to a 112-bit big-endian integer; `None` on overflow.
fn increment(mut random: [u8; RANDOM_LEN]) -> Option<[u8; RANDOM_LEN]> {
    for byte in random.iter_mut().rev() {
        let (next, carry) = byte.overflowing_add(1);
        *byte = next;
        if !carry {
            return Some(random);
        }
    }
    None
}

fn compose(ms: u64, random: [u8; RANDOM_LEN]) -> [u8; RAW_LEN] {
    let mut raw = [0u8; RAW_LEN];
    raw[..TIME_LEN].copy_from_slice(&ms.to_be_bytes()[8 - TIME_LEN..]);
    raw[TIME_LEN..].copy_from_slice(&random);
    raw
}

/// Base62 of a 160-bit big-endian number, left-padded with `0` to 27 digits
/// (62^27 > 2^160, so 27 always suffice and the width is fixed).
fn encode(raw: &[u8; RAW_LEN]) -> [u8; ID_BODY_LEN] {
    // The 160-bit number as five big-endian 32-bit limbs, so each long
    // division by 62 takes five steps instead of twenty.
    let mut limbs = [0u32; RAW_LEN / 4];
    for (limb, chunk) in limbs.iter_mut().zip(raw.chunks_exact(4)) {
        *limb = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    let mut out = [BASE62[0]; ID_BODY_LEN];
    for slot in out.iter_mut().rev() {
        // Long division of the whole number by 62; the remainder is the next digit.
        let mut rem: u64 = 0;
        for limb in limbs.iter_mut() {
            let acc = (rem << 32) | u64::from(*limb);
            *limb = (acc / 62) as u32;
            rem = acc % 62;
        }
        *slot = BASE62[rem as usize];
    }
    out
}

fn encode_str(raw: &[u8; RAW_LEN]) -> String {
    // Every byte comes from the ASCII alphabet.
    encode(raw).iter().map(|&b| char::from(b)).collect()
}

/// Inverse of [`encode`]: `None` unless exactly 27 base62 digits whose value
/// fits 160 bits.
fn decode(body: &[u8]) -> Option<[u8; RAW_LEN]> {
    if body.len() != ID_BODY_LEN {
        return None;
    }
    let mut num = [0u8; RAW_LEN];
    for &c in body {
        let mut carry = u32::from(digit(c)?);
        for byte in num.iter_mut().rev() {
            let acc = u32::from(*byte) * 62 + carry;
            *byte = (acc & 0xff) as u8;
            carry = acc >> 8;
        }
        if carry != 0 {
            return None;
        }
    }
    Some(num)
}

fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'Z' => Some(c - b'A' + 10),
        b'a'..=b'z' => Some(c - b'a' + 36),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn now() -> i64 {
        i64::try_from(now_ms()).unwrap()
    }

    #[test]
    fn ids_have_prefix_and_fixed_length() {
        let id = MessageId::new();
        assert!(id.as_str().starts_with("msg_"));
        assert_eq!(id.as_str().len(), "msg_".len() + ID_BODY_LEN);
        assert_eq!(AppId::new().as_str().len(), 4 + ID_BODY_LEN);
        assert_eq!(EndpointId::new().as_str().len(), 3 + ID_BODY_LEN);
        assert_eq!(AttemptId::new().as_str().len(), 6 + ID_BODY_LEN);
    }

    #[test]
    fn parse_round_trips_and_rejects_bad_input() {
        let id = AppId::new();
        assert_eq!(AppId::parse(id.as_str()).unwrap(), id);
        assert_eq!(id.to_string().parse::<AppId>().unwrap(), id);

        let body = &id.as_str()[4..];
        assert_eq!(
            EndpointId::parse(id.as_str()),
            Err(IdError::WrongPrefix { expected: "ep" })
        );
        assert!(AppId::parse(&format!("app{body}")).is_err());
        assert!(AppId::parse(&format!("app_{}", &body[1..])).is_err());
        assert!(AppId::parse(&format!("app_{body}0")).is_err());
        assert!(AppId::parse(&format!("app_{}-", &body[1..])).is_err());
        assert!(AppId::parse("").is_err());
        // 27 digits can exceed 160 bits; those cannot come from us.
        assert_eq!(
            AppId::parse(&format!("app_{}", "z".repeat(ID_BODY_LEN))),
            Err(IdError::Malformed { prefix: "app" })
        );
        // Svix's own KSUIDs have the same shape.
        assert!(AppId::parse("app_24NVKcPqNLXKu3xQhJnw8fSumZK").is_ok());
    }

    #[test]
    fn serde_is_a_plain_string() {
        let id = MessageId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<MessageId>(&json).unwrap(), id);
    }

    #[test]
    fn time_is_recoverable() {
        let before = now();
        let id = MessageId::new();
        let after = now();
        let t = id_time_ms(id.as_str()).unwrap();
        // A few ms of slack: the monotonic counter keeps the last time if the clock steps back.
        assert!((before - 5..=after + 5).contains(&t), "{before} <= {t} <= {after}");
        assert_eq!(id.timestamp_ms(), Some(t));
        assert_eq!(id_time_ms("msg_short"), None);
        assert_eq!(id_time_ms("no-separator"), None);
    }

    #[test]
    fn min_id_bounds_ids_by_time() {
        let t = now();
        let lower = min_id_for_time("msg", t - 1000);
        let id = MessageId::new();
        let upper = min_id_for_time("msg", t + 60_000);
        assert!(lower.as_str() < id.as_str() && id.as_str() < upper.as_str());
        assert_eq!(id_time_ms(&lower), Some(t - 1000));
        assert!(MessageId::parse(&lower).is_ok());
        assert_eq!(min_id_for_time("msg", -5), format!("msg_{}", "0".repeat(ID_BODY_LEN)));
        assert_eq!(id_time_ms(&min_id_for_time("msg", i64::MAX)), Some(MAX_MS as i64));
    }

    #[test]
    fn encoding_extremes() {
        assert_eq!(encode(&[0; RAW_LEN]), [b'0'; ID_BODY_LEN]);
        let max = encode(&[0xff; RAW_LEN]);
        assert_eq!(decode(&max), Some([0xff; RAW_LEN]));
        // Same maximum as KSUID, which uses the same 20-byte/27-char layout.
        assert_eq!(&max, b"aWgEPTl1tmebfsQzFP4bxwgy80V");
    }

    #[test]
    fn increment_carries_and_overflows() {
        let mut r = [0u8; RANDOM_LEN];
        r[RANDOM_LEN - 1] = 0xff;
        let next = increment(r).unwrap();
        assert_eq!(next[RANDOM_LEN - 2..], [1, 0]);
        assert_eq!(increment([0xff; RANDOM_LEN]), None);
    }

    #[test]
    fn ids_from_many_threads_are_unique() {
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..500).map(|_| AttemptId::new()).collect::<Vec<_>>()))
            .collect();
        let mut all: Vec<AttemptId> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    proptest! {
        #[test]
        fn sequential_ids_strictly_increase(_seed in any::<u8>()) {
            let ids: Vec<MessageId> = (0..1000).map(|_| MessageId::new()).collect();
            for pair in ids.windows(2) {
                prop_assert!(pair[0].as_str() < pair[1].as_str(), "{} !< {}", pair[0], pair[1]);
            }
        }

        #[test]
        fn encode_decode_round_trip(raw in any::<[u8; RAW_LEN]>()) {
            let enc = encode(&raw);
            prop_assert_eq!(enc.len(), ID_BODY_LEN);
            prop_assert_eq!(decode(&enc), Some(raw));
        }

        #[test]
        fn string_order_is_numeric_order(a in any::<[u8; RAW_LEN]>(), b in any::<[u8; RAW_LEN]>()) {
            prop_assert_eq!(a.cmp(&b), encode(&a).cmp(&encode(&b)));
        }

        #[test]
        fn composed_time_is_decoded(ms in 0..=MAX_MS, random in any::<[u8; RANDOM_LEN]>()) {
            let id = format!("ep_{}", encode_str(&compose(ms, random)));
            prop_assert!(EndpointId::parse(&id).is_ok());
            prop_assert_eq!(id_time_ms(&id), Some(ms as i64));
        }
    }
}
