//! The official Svix JavaScript SDK (pinned in `tests/sdk-js/package.json`)
//! against a real server, under Node's test runner: every method of every
//! resource, deliveries checked with the SDK's `Webhook.verify`.
//!
//! Needs `npm ci` in `tests/sdk-js` (scripts/test and .ci/run do it). When
//! the packages are missing the test skips, except under `CI=true`, where a
//! skip would hide a broken suite and fails instead.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::{Server, TOKEN, temp_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svix_js_sdk_works_unchanged() {
    let suite = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/sdk-js"));
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !suite.join("node_modules/svix").is_dir() {
        assert!(!ci, "CI=true but tests/sdk-js has no node_modules: run `npm ci` there");
        eprintln!("skipped: run `npm ci` in tests/sdk-js (scripts/test does)");
        return;
    }
    let node = std::env::var("HERALD_TEST_NODE").unwrap_or_else(|_| "node".to_owned());
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let url = server.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(node)
            .arg("--test")
            .arg("--test-reporter=spec")
            .current_dir(&suite)
            .env("HERALD_URL", url)
            .env("HERALD_TOKEN", TOKEN)
            // The suite itself refuses to skip under CI.
            .env("CI", "true")
            .output()
    })
    .await
    .unwrap()
    .expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the JS SDK suite failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Node's runner exits 0 with every test skipped; that must not pass.
    assert!(
        stdout.contains("every resource through the official JS SDK") && !stdout.contains("# SKIP"),
        "{stdout}"
    );
}
