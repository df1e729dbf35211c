//! The verifier against the Standard Webhooks vectors (copied from
//! `shared/reference`): it accepts what the official libraries accept and
//! rejects what they reject, with the clock at each vector's timestamp.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_verify::{VerifyError, Version, Webhook};
use serde_json::Value;

const VECTORS: &str = include_str!("../testdata/standard-webhooks-vectors.json");

fn vectors() -> Value {
    serde_json::from_str(VECTORS).unwrap()
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("vector field {key}"))
}

fn timestamp(v: &Value) -> i64 {
    match &v["timestamp"] {
        Value::Number(n) => n.as_i64().unwrap(),
        other => other.as_str().unwrap().parse().unwrap(),
    }
}

fn verify(secret: &str, base: &Value, signature: &str) -> Result<Version, VerifyError> {
    let ts = timestamp(base).to_string();
    let headers = [
        ("webhook-id", text(base, "msg_id")),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", signature),
    ];
    Webhook::new(secret)
        .unwrap()
        .verify_at(&headers, text(base, "payload").as_bytes(), timestamp(base))
        .map(|v| v.version)
}

fn list<'a>(all: &'a Value, key: &str) -> &'a [Value] {
    let list = all[key].as_array().unwrap_or_else(|| panic!("{key}"));
    assert!(!list.is_empty(), "{key} is empty");
    list
}

fn base<'a>(all: &'a Value, name: &str) -> &'a Value {
    ["symmetric_vectors", "asymmetric_vectors"]
        .iter()
        .flat_map(|k| list(all, k))
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("base vector {name}"))
}

#[test]
fn symmetric_and_unpadded_secret_vectors_verify() {
    let all = vectors();
    // The derived vectors' unpadded secrets are accepted by the Python and
    // JavaScript libraries, so they are accepted here.
    for v in list(&all, "symmetric_vectors")
        .iter()
        .chain(list(&all, "derived_vectors"))
    {
        let sig = text(v, "expected_signature");
        assert_eq!(verify(text(v, "secret"), v, sig), Ok(Version::V1), "{}", v["name"]);
        // What we sign for the same input is the vector's signature.
        let signed = Webhook::new(text(v, "secret"))
            .unwrap()
            .sign(text(v, "msg_id"), timestamp(v), text(v, "payload").as_bytes())
            .unwrap();
        assert_eq!(signed, sig, "{}", v["name"]);
    }
}

#[test]
fn asymmetric_vector_verifies_with_the_public_and_the_secret_key() {
    let all = vectors();
    for v in list(&all, "asymmetric_vectors") {
        let sig = text(v, "expected_signature");
        assert_eq!(verify(text(v, "public_key"), v, sig), Ok(Version::V1a), "{}", v["name"]);
        assert_eq!(verify(text(v, "secret_key"), v, sig), Ok(Version::V1a), "{}", v["name"]);
        // A v1a signature is not a v1 one: an HMAC secret finds nothing to check.
        assert!(matches!(
            verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", v, sig),
            Err(VerifyError::NoSignatureOfVersion { .. })
        ));
    }
}

#[test]
fn negative_and_multi_signature_cases_match_the_official_verdicts() {
    let all = vectors();
    let cases = list(&all, "negative_cases")
        .iter()
        .chain(list(&all, "multi_signature_cases"));
    for case in cases {
        let base = base(&all, text(case, "base_vector"));
        let secret = base
            .get("secret")
            .or_else(|| base.get("public_key"))
            .and_then(Value::as_str)
            .unwrap();
        let verdict = verify(secret, base, text(case, "webhook-signature"));
        match text(case, "expect") {
            "accept" => assert!(verdict.is_ok(), "{}: {verdict:?}", case["name"]),
            "reject" => assert!(verdict.is_err(), "{} was accepted", case["name"]),
            other => panic!("unknown verdict {other}"),
        }
    }
}

#[test]
fn a_spec_style_header_verifies_with_either_key_kind() {
    let all = vectors();
    let case = list(&all, "multi_signature_cases")
        .iter()
        .find(|c| text(c, "webhook-signature").contains("v1a,"))
        .expect("a case mixing v1 and v1a");
    let sym = base(&all, text(case, "base_vector"));
    let asym = base(&all, "svix-server-asymmetric-v1a");
    let header = text(case, "webhook-signature");
    assert_eq!(verify(text(sym, "secret"), sym, header), Ok(Version::V1));
    assert_eq!(verify(text(asym, "public_key"), asym, header), Ok(Version::V1a));
}

#[test]
fn the_vectors_fail_outside_the_tolerance() {
    let all = vectors();
    let v = &list(&all, "symmetric_vectors")[0];
    let ts = timestamp(v).to_string();
    let headers = [
        ("webhook-id", text(v, "msg_id")),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", text(v, "expected_signature")),
    ];
    let wh = Webhook::new(text(v, "secret")).unwrap();
    // Against today's clock a 2021 timestamp is far too old.
    assert!(matches!(
        wh.verify(&headers, text(v, "payload").as_bytes()),
        Err(VerifyError::TimestampTooOld { .. })
    ));
}
