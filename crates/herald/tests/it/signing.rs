//! An independent verifier accepts what Herald sends: the `standardwebhooks`
//! package from PyPI, run on the exact bytes and headers that arrived.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::harness::{Received, Receiver, Server, temp_dir};

const VERIFY: &str = r#"
import json, sys
from standardwebhooks import Webhook
case = json.load(sys.stdin)
try:
    Webhook(case["secret"]).verify(case["body"].encode("utf-8"), case["headers"])
except Exception as e:
    print("rejected:", repr(e))
    sys.exit(1)
print("verified")
"#;

/// The Python with `standardwebhooks` installed (`scripts/test` makes it).
/// Under CI it must be there: the test fails rather than skips.
pub fn python() -> Option<String> {
    match std::env::var("HERALD_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but HERALD_TEST_PYTHON is not set")
        }
        _ => None,
    }
}

fn verify_with_python(python: &str, secret: &str, req: &Received, body_override: Option<&str>) -> (bool, String) {
    let headers: serde_json::Map<String, serde_json::Value> = ["webhook-id", "webhook-timestamp", "webhook-signature"]
        .iter()
        .map(|h| ((*h).to_owned(), json!(req.header(h))))
        .collect();
    let body = body_override
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8(req.body.to_vec()).unwrap());
    let case = json!({"secret": secret, "headers": headers, "body": body});
    let mut child = Command::new(python)
        .arg("-c")
        .arg(VERIFY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the Python verifier");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(case.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn python_standardwebhooks_verifies_what_arrived() {
    let Some(python) = python() else {
        eprintln!("skipped: HERALD_TEST_PYTHON is not set (run scripts/test)");
        return;
    };
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let receiver = Receiver::start().await;
    let app = server.create_app("verify").await;
    let (_, secret) = server
        .create_endpoint(&app, json!({"url": format!("{}/v", receiver.url)}))
        .await;
    server
        .send(
            &app,
            "verify.me",
            json!({"text": "héllo ✓", "n": [1, 2, 3], "nested": {"a": null}}),
        )
        .await;

    let got = receiver.wait_until(Duration::from_secs(15), |r| !r.is_empty()).await;
    let (ok, out) = verify_with_python(&python, &secret, &got[0], None);
    assert!(ok, "standardwebhooks rejected Herald's delivery: {out}");
    assert!(out.contains("verified"));

    // The verifier is not a rubber stamp: a changed body fails.
    let (ok, out) = verify_with_python(&python, &secret, &got[0], Some(r#"{"text":"tampered"}"#));
    assert!(!ok, "a tampered body verified: {out}");
}

/// Herald's own verify crate accepts what the server sends, byte for byte as
/// it arrived, and refuses it once anything signed is changed.
#[tokio::test]
async fn herald_verify_accepts_what_arrived() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let receiver = Receiver::start().await;
    let app = server.create_app("verify-crate").await;
    let (_, secret) = server
        .create_endpoint(&app, json!({"url": format!("{}/v", receiver.url)}))
        .await;
    let msg = server.send(&app, "verify.me", json!({"text": "héllo ✓"})).await;

    let got = receiver.wait_until(Duration::from_secs(15), |r| !r.is_empty()).await;
    let req = &got[0];
    let webhook = herald_verify::Webhook::new(&secret).unwrap();
    let verified = webhook
        .verify(&req.headers, &req.body)
        .expect("Herald's delivery verifies");
    assert_eq!(verified.id, msg);
    assert_eq!(verified.version, herald_verify::Version::V1);

    let mut tampered = req.body.to_vec();
    tampered.push(b' ');
    assert!(matches!(
        webhook.verify(&req.headers, &tampered),
        Err(herald_verify::VerifyError::NoMatch(_))
    ));
    let other = herald_verify::Webhook::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
    assert!(
        other.verify(&req.headers, &req.body).is_err(),
        "another secret must not verify"
    );
}

/// An endpoint made with a `whsk_` secret is signed in the asymmetric
/// style, `v1a,<base64 ed25519>`, which its receiver checks with only the
/// public half (`whpk_`).
#[tokio::test]
async fn a_whsk_secret_signs_v1a_that_the_public_key_verifies() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let receiver = Receiver::start().await;
    let secret = herald_core::signing::EndpointSecret::generate_asymmetric();
    let public = secret.public_key().expect("an ed25519 key has a public half");
    assert!(public.starts_with("whpk_"), "{public}");
    let app = server.create_app("v1a").await;
    let (_, key) = server
        .create_endpoint(
            &app,
            json!({"url": format!("{}/hook", receiver.url), "secret": secret.to_wire_string()}),
        )
        .await;
    assert!(key.starts_with("whsk_"), "the secret reads back as whsk_: {key}");
    server.send(&app, "v1a.test", json!({"n": 1})).await;
    let got = receiver.wait_until(Duration::from_secs(10), |r| !r.is_empty()).await;
    let req = got.first().expect("a delivery");
    let signature = req.header("webhook-signature");
    assert!(signature.starts_with("v1a,"), "{signature}");
    assert!(!signature.contains("v1,"), "no HMAC beside it: {signature}");
    assert_eq!(req.header("svix-signature"), signature);

    let verifier = herald_verify::Webhook::new(&public).expect("a public key");
    verifier
        .verify(&req.headers, &req.body)
        .expect("the public key verifies what arrived");
    let mut tampered = req.body.to_vec();
    tampered.push(b' ');
    assert!(
        verifier.verify(&req.headers, &tampered).is_err(),
        "a changed body does not verify"
    );
}
