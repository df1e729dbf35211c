//! Pages in a real headless Chromium (Debian's `chromium` driven by npm
//! `playwright-core`, both installed by `.ci/run`): here herald listen's
//! page, and the helpers the portal and dashboard tests share. A script in
//! `tests/browser/` drives the page; the Rust test starts the servers and
//! checks what arrived. Under `CI=true` nothing skips: a missing browser or
//! node module is a failure.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::harness::{Receiver, temp_dir};
use crate::listener::{Listener, SECRET, signed};

pub(crate) struct Browser {
    pub chromium: PathBuf,
    pub scripts: PathBuf,
}

pub(crate) fn browser() -> Option<Browser> {
    let scripts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser");
    let chromium = PathBuf::from(std::env::var("HERALD_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    let ready = chromium.exists() && scripts.join("node_modules/playwright-core").exists();
    if ready {
        return Some(Browser { chromium, scripts });
    }
    let why = format!(
        "needs {} and `npm ci` in {} (.ci/run installs both)",
        chromium.display(),
        scripts.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but the browser test cannot run: it {why}");
    }
    eprintln!("skipped: the browser test {why}");
    None
}

/// Where a browser test keeps its screenshots: `HERALD_SCREENSHOT_DIR`
/// (`docs/images` to refresh the documentation's), else a temporary dir.
pub(crate) fn screenshot_dir(fallback: &std::path::Path) -> PathBuf {
    let dir = std::env::var("HERALD_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| fallback.join("screenshots"));
    std::fs::create_dir_all(&dir).expect("the screenshot directory");
    dir
}

/// Runs `script` (in `tests/browser/`) under node with `env`, at most
/// `within`; panics with its output when it fails. Answers the `FACT {json}`
/// lines it printed, merged: what the page saw, for the test to check on
/// the wire.
pub(crate) async fn run_script(
    browser: &Browser,
    script: &str,
    env: Vec<(&str, String)>,
    within: Duration,
) -> serde_json::Map<String, serde_json::Value> {
    let mut node = tokio::process::Command::new("node");
    node.arg(browser.scripts.join(script))
        .current_dir(&browser.scripts)
        .env("CHROMIUM", &browser.chromium)
        .envs(env)
        .kill_on_drop(true);
    let out = tokio::time::timeout(within, node.output())
        .await
        .unwrap_or_else(|_| panic!("{script} ran longer than {within:?}"))
        .expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut facts = serde_json::Map::new();
    for line in stdout.lines() {
        if let Some(json) = line.strip_prefix("FACT ") {
            let serde_json::Value::Object(map) = serde_json::from_str(json).expect("a FACT line is JSON") else {
                panic!("a FACT line is an object: {line}");
            };
            facts.extend(map);
        }
    }
    facts
}

/// A page on another origin (its own loopback port) that puts `src` in an
/// iframe, as a platform embedding the portal would.
pub(crate) async fn embedder(src: std::sync::Arc<std::sync::Mutex<String>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind embedder");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let app = axum::Router::new().fallback(move || {
        let src = src.lock().expect("lock").clone();
        async move {
            let escaped = src.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;");
            axum::response::Html(format!(
                "<!doctype html><meta charset=utf-8><title>Acme dashboard</title>\
                 <h1>Acme's own dashboard</h1>\
                 <iframe id=portal title=\"Webhooks\" src=\"{escaped}\" width=1100 height=800></iframe>"
            ))
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listen_page_shows_requests_live_and_replays_them() {
    let Some(browser) = browser() else { return };
    let target = Receiver::start().await;
    let dir = temp_dir();
    let listener = Listener::start(
        &dir.path().join("h.db"),
        &["--forward", &target.url, "--secret", SECRET],
    );

    // One request before the page opens (signed, so it shows as verified).
    let body = r#"{"type":"invoice.created","data":{"id":"inv_41"}}"#;
    let url = format!("{}/webhooks/billing", listener.url);
    let resp = signed(&listener.http, &url, "msg_before", body).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    let screenshot = std::env::var("HERALD_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("listen-page.png"));
    let mut node = Command::new("node");
    node.arg(browser.scripts.join("listen-page.mjs"))
        .current_dir(&browser.scripts)
        .env("LISTEN_URL", &listener.url)
        .env("CHROMIUM", &browser.chromium)
        .env("SCREENSHOT", &screenshot);
    // Blocking, on a thread of its own: the target answers on this runtime.
    let out = tokio::task::spawn_blocking(move || node.output())
        .await
        .unwrap()
        .expect("running node");
    assert!(
        out.status.success(),
        "the page test failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(screenshot.exists(), "a screenshot was taken");

    // On the wire: the request sent from the page's test, then its replay,
    // byte for byte.
    let got = target.wait_until(Duration::from_secs(10), |r| r.len() == 3).await;
    assert_eq!(got.len(), 3, "before, while open, replay");
    let (live, replay) = (&got[1], &got[2]);
    assert_eq!(live.path, "/webhooks/billing");
    assert_eq!(replay.path, live.path);
    assert_eq!(replay.body, live.body);
    assert_eq!(replay.header("x-from-browser-test"), "yes");
}
