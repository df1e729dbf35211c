//! herald listen's page in a real headless Chromium (Debian's `chromium`
//! driven by npm `playwright-core`, both installed by `.ci/run`): the script
//! in `tests/browser/` checks the page, this test starts the listener and
//! the target and checks what the target received. Under `CI=true` it never
//! skips: a missing browser or node module is a failure.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::harness::{Receiver, temp_dir};
use crate::listener::{Listener, SECRET, signed};

struct Browser {
    chromium: PathBuf,
    scripts: PathBuf,
}

fn browser() -> Option<Browser> {
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
