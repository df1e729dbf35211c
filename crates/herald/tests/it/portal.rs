//! The customer portal in a real headless Chromium, opened through the url
//! `app-portal-access` returns (`tests/browser/portal.mjs` drives it): what
//! the page does is checked here where it lands — the endpoint it created,
//! the test event and the resend on the receiver, each verified with the
//! secret the page showed before and after its rotation, the recovered
//! delivery, the revoked token — and that the other application was left
//! as it was. The real binary, a real receiver and two embedding origins,
//! all on loopback.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::browser::{browser, embedder, run_script, screenshot_dir};
use crate::harness::{Received, Receiver, Server, ServerOptions, temp_dir};

async fn portal_url(server: &Server, app: &str, body: Value) -> (String, String) {
    let (status, access) = server.post(&format!("/auth/app-portal-access/{app}/"), body).await;
    assert_eq!(status, 200, "{access}");
    (
        access["url"].as_str().unwrap().to_owned(),
        access["token"].as_str().unwrap().to_owned(),
    )
}

fn verifies(secret: &str, r: &Received) -> bool {
    herald_verify::Webhook::new(secret)
        .unwrap()
        .verify(&r.headers, &r.body)
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_manages_endpoints_and_history_through_its_url_and_reaches_no_other_app() {
    let Some(browser) = browser() else { return };
    // `/flaky` fails until the test heals it, so there is something to recover.
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let receiver = Receiver::start_with(Arc::new(move |r: &Received, _| {
        let fail = r.path == "/flaky" && !h.load(Ordering::SeqCst);
        (if fail { 500 } else { 200 }, Duration::ZERO, "ok".into())
    }))
    .await;
    let src = Arc::new(Mutex::new(String::new()));
    let embed_allowed = embedder(src.clone()).await;
    let embed_denied = embedder(src.clone()).await;

    let dir = temp_dir();
    let server = Server::start_with(
        dir.path(),
        ServerOptions {
            // The flaky message's retries are over in a moment.
            time_scale: Some(1_000_000.0),
            extra_args: vec!["--portal-frame-ancestors".into(), embed_allowed.clone()],
            ..ServerOptions::default()
        },
    );
    for (name, description, schemas) in [
        (
            "invoice.paid",
            "An invoice was paid",
            json!({"1": {"type": "object", "examples": [{"id": "inv_1", "amount": 4200}]}}),
        ),
        ("invoice.created", "An invoice was created", Value::Null),
    ] {
        let (status, et) = server
            .post(
                "/event-type/",
                json!({"name": name, "description": description, "schemas": schemas}),
            )
            .await;
        assert_eq!(status, 201, "{et}");
    }
    let (_, app) = server.post("/app/", json!({"name": "Acme", "uid": "acme"})).await;
    let app = app["id"].as_str().unwrap().to_owned();
    let (_, other) = server.post("/app/", json!({"name": "Other", "uid": "other"})).await;
    let other = other["id"].as_str().unwrap().to_owned();
    let (other_ep, _) = server
        .create_endpoint(
            &other,
            json!({"url": format!("{}/other-secret-endpoint", receiver.url)}),
        )
        .await;
    let other_msg = server.send(&other, "invoice.paid", json!({"for": "other"})).await;

    // A delivery that failed for good, to recover from the page.
    let (flaky, _) = server
        .create_endpoint(&app, json!({"url": format!("{}/flaky", receiver.url)}))
        .await;
    let flaky_msg = server.send(&app, "invoice.created", json!({"id": "inv_0"})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, dest) = server.get(&format!("/app/{app}/msg/{flaky_msg}/endpoint/")).await;
        if dest["data"][0]["status"] == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the flaky delivery never failed: {dest}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    healthy.store(true, Ordering::SeqCst);
    let flaky_before = receiver.on_path("/flaky").len();

    let (url, token) = portal_url(&server, &app, json!({})).await;
    assert_eq!(url, format!("{}/portal/#key={token}", server.url));
    let (readonly_url, _) = portal_url(&server, &app, json!({"readOnly": true})).await;
    let (_, other_token) = portal_url(&server, &other, json!({})).await;
    *src.lock().unwrap() = url.clone();

    let shots = screenshot_dir(dir.path());
    let facts = run_script(
        &browser,
        "portal.mjs",
        vec![
            ("PORTAL_URL", url),
            ("READONLY_URL", readonly_url),
            ("APP_ID", app.clone()),
            ("RECEIVER_URL", receiver.url.clone()),
            ("FLAKY_EP", flaky.clone()),
            ("OTHER_APP_ID", other.clone()),
            ("OTHER_EP", other_ep.clone()),
            ("OTHER_MSG", other_msg.clone()),
            ("OTHER_TOKEN", other_token),
            ("OTHER_MARKER", "other-secret-endpoint".into()),
            ("EMBED_ALLOWED", embed_allowed),
            ("EMBED_DENIED", embed_denied),
            ("SCREENSHOT_DIR", shots.display().to_string()),
        ],
        Duration::from_secs(300),
    )
    .await;
    let fact = |k: &str| {
        facts[k]
            .as_str()
            .unwrap_or_else(|| panic!("no {k} in {facts:?}"))
            .to_owned()
    };
    let (ep, before, after, test_msg) = (
        fact("endpointId"),
        fact("secretBefore"),
        fact("secretAfter"),
        fact("testMsgId"),
    );

    // The endpoint as the page made and edited it.
    let (status, got) = server.get(&format!("/app/{app}/endpoint/{ep}/")).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["url"], format!("{}/portal-hook", receiver.url));
    assert_eq!(got["filterTypes"], json!(["invoice.paid"]));
    assert_eq!(got["rateLimit"], 5);
    assert_eq!(got["timeoutSecs"], 7.0);
    assert_eq!(got["description"], "Acme billing (edited)");
    assert_eq!(got["disabled"], false, "disabled, then enabled again");
    let (_, headers) = server.get(&format!("/app/{app}/endpoint/{ep}/headers/")).await;
    assert_eq!(headers["headers"], json!({"x-tenant": "acme"}));
    let (_, secret) = server.get(&format!("/app/{app}/endpoint/{ep}/secret/")).await;
    assert_eq!(secret["key"], json!(after), "the page showed the secret in force");

    // The test event and its resend arrived, signed as the page said.
    let sent: Vec<Received> = receiver
        .on_path("/portal-hook")
        .into_iter()
        .filter(|r| r.header("webhook-id") == test_msg)
        .collect();
    assert_eq!(sent.len(), 2, "the test event, then its resend");
    assert_eq!(
        serde_json::from_slice::<Value>(&sent[0].body).unwrap(),
        json!({"success": true})
    );
    assert!(
        verifies(&before, &sent[0]),
        "the test event verifies with the first secret"
    );
    assert!(!verifies(&after, &sent[0]), "and not with the one rotated in later");
    assert!(
        verifies(&after, &sent[1]),
        "the resend after rotation verifies with the new secret"
    );
    assert!(verifies(&before, &sent[1]), "the old secret still signs beside it");
    assert_eq!(sent[0].body, sent[1].body);

    // Recovered: the failed message went to /flaky again, and was taken.
    let flaky_after = receiver.on_path("/flaky");
    assert!(flaky_after.len() > flaky_before, "recover sent nothing");
    assert_eq!(flaky_after.last().unwrap().header("webhook-id"), flaky_msg);
    let (status, _) = server.get(&format!("/app/{app}/endpoint/{flaky}/")).await;
    assert_eq!(status, 404, "the page deleted the flaky endpoint");

    // Logging out revoked the token.
    let resp = server
        .http
        .get(server.api(&format!("/app/{app}/")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // The other application is as it was.
    let (_, eps) = server.get(&format!("/app/{other}/endpoint/")).await;
    assert_eq!(eps["data"].as_array().unwrap().len(), 1, "{eps}");
    assert_eq!(eps["data"][0]["id"], json!(other_ep));
    let (_, msgs) = server.get(&format!("/app/{other}/msg/")).await;
    assert_eq!(msgs["data"].as_array().unwrap().len(), 1, "{msgs}");
    let (_, attempts) = server.get(&format!("/app/{other}/attempt/msg/{other_msg}/")).await;
    assert_eq!(
        attempts["data"].as_array().unwrap().len(),
        1,
        "nothing of Other's was resent"
    );
    for name in [
        "portal-endpoints",
        "portal-endpoint",
        "portal-message",
        "portal-phone",
        "portal-embedded",
    ] {
        assert!(shots.join(format!("{name}.png")).exists(), "{name}.png was taken");
    }
}
