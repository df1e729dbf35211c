//! Properties of the verifiers over arbitrary input: what is signed
//! verifies, and changing any byte of the body, the id or the timestamp
//! makes it fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_verify::{BodySignature, VerifyError, Webhook};
use proptest::prelude::*;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn headers(id: &str, ts: i64, sig: &str) -> Vec<(String, String)> {
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), ts.to_string()),
        ("webhook-signature".into(), sig.into()),
    ]
}

proptest! {
    #[test]
    fn a_signed_body_verifies_and_any_changed_byte_does_not(
        id in "msg_[A-Za-z0-9]{1,30}",
        ts in 0i64..4_000_000_000,
        body in proptest::collection::vec(any::<u8>(), 0..512),
        flip in any::<prop::sample::Index>(),
    ) {
        let wh = Webhook::new(SECRET).unwrap();
        let sig = wh.sign(&id, ts, &body).unwrap();
        prop_assert!(wh.verify_at(&headers(&id, ts, &sig), &body, ts).is_ok());
        let other_id = format!("{}x", id);
        prop_assert!(wh.verify_at(&headers(&other_id, ts, &sig), &body, ts).is_err());
        prop_assert!(wh.verify_at(&headers(&id, ts + 1, &sig), &body, ts).is_err());
        if !body.is_empty() {
            let mut changed = body.clone();
            let i = flip.index(changed.len());
            changed[i] ^= 0x01;
            prop_assert_eq!(
                wh.verify_at(&headers(&id, ts, &sig), &changed, ts).unwrap_err(),
                VerifyError::NoMatch("webhook-signature".into())
            );
        }
    }

    #[test]
    fn a_body_signature_verifies_only_its_body(
        key in proptest::collection::vec(any::<u8>(), 1..64),
        body in proptest::collection::vec(any::<u8>(), 1..512),
        flip in any::<prop::sample::Index>(),
    ) {
        let v = BodySignature::from_keys([key]).unwrap();
        let sig = v.sign(&body);
        prop_assert!(v.verify_value(&sig, &body).is_ok());
        let mut changed = body.clone();
        let i = flip.index(changed.len());
        changed[i] ^= 0x80;
        prop_assert!(v.verify_value(&sig, &changed).is_err());
    }
}
