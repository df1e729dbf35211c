//! The official Svix Python SDK against a real server: every call it makes
//! must succeed and parse with the SDK's own models.

use std::process::Command;
use std::time::Duration;

use crate::harness::{Receiver, Server, ServerOptions, TOKEN, temp_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svix_python_sdk_works_unchanged() {
    let Some(python) = crate::signing::python() else {
        eprintln!("skipped: HERALD_TEST_PYTHON is not set (run scripts/test)");
        return;
    };
    let dir = temp_dir();
    // The failing endpoint's schedule (about 43 h) must run out within the
    // script, so recover has a failed delivery to send again.
    let server = Server::start_with(dir.path(), ServerOptions::scaled(100_000.0));
    let receiver = Receiver::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/sdk/svix_python.py");
    let (url, rx) = (server.url.clone(), receiver.url.clone());
    let out = tokio::task::spawn_blocking(move || Command::new(python).arg(script).args([&url, TOKEN, &rx]).output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the SDK failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all SDK calls succeeded"), "{stdout}");
    // The delivery the SDK saw recorded really arrived, and so did its resend.
    let got = receiver.wait_until(Duration::from_secs(5), |r| r.len() >= 2).await;
    assert_eq!(got.len(), 2, "the message and its resend");
    assert!(got.iter().all(|r| r.path == "/sdk"));
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
}
