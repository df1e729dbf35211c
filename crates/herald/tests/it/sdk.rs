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
    // What the SDK saw recorded really arrived: the four invoice.paid
    // messages the script sends, one of them twice (its resend).
    let got = receiver.wait_until(Duration::from_secs(5), |r| r.len() >= 5).await;
    assert!(got.iter().all(|r| r.path == "/sdk"));
    let mut per_msg = std::collections::BTreeMap::<String, usize>::new();
    for r in &got {
        *per_msg.entry(r.header("webhook-id").to_owned()).or_default() += 1;
    }
    let mut counts: Vec<usize> = per_msg.into_values().collect();
    counts.sort_unstable();
    assert_eq!(counts, [1, 1, 1, 2], "four messages, one resent");
}
