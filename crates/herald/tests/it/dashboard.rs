//! The operator dashboard in a real headless Chromium
//! (`tests/browser/dashboard.mjs` drives it): logging in with the admin
//! token, an application's screens, the server's health with a failing
//! endpoint to find, and an operational webhook endpoint added from the
//! page, whose event is checked here, signed with the secret the page showed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::browser::{browser, run_script, screenshot_dir};
use crate::harness::{Received, Receiver, Server, ServerOptions, temp_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_logs_in_shows_every_app_and_the_servers_health_and_adds_operational_webhooks() {
    let Some(browser) = browser() else { return };
    let receiver = Receiver::start_with(Arc::new(|r: &Received, _| {
        let status = if r.path == "/broken" { 500 } else { 200 };
        (status, Duration::ZERO, "ok".into())
    }))
    .await;
    let dir = temp_dir();
    let server = Server::start_with(dir.path(), ServerOptions::scaled(1_000_000.0));
    let acme = server.create_app("Acme").await;
    let other = server.create_app("Other").await;
    server
        .create_endpoint(&acme, json!({"url": format!("{}/ok", receiver.url)}))
        .await;
    let broken_url = format!("{}/broken", receiver.url);
    server.create_endpoint(&other, json!({"url": broken_url})).await;
    let ok_msg = server.send(&acme, "invoice.paid", json!({"id": "inv_1"})).await;
    let broken_msg = server.send(&other, "invoice.paid", json!({"id": "inv_2"})).await;
    server
        .wait_attempts(&acme, &ok_msg, Duration::from_secs(10), |a| !a.is_empty())
        .await;
    server
        .wait_attempts(&other, &broken_msg, Duration::from_secs(10), |a| !a.is_empty())
        .await;

    let facts = run_script(
        &browser,
        "dashboard.mjs",
        vec![
            ("BASE", server.url.clone()),
            ("ADMIN_TOKEN", server.token.clone()),
            ("ACME_ID", acme.clone()),
            ("BROKEN_URL", broken_url),
            ("RECEIVER_URL", receiver.url.clone()),
            ("SCREENSHOT_DIR", screenshot_dir(dir.path()).display().to_string()),
        ],
        Duration::from_secs(180),
    )
    .await;
    let secret = facts["opSecret"].as_str().expect("opSecret");
    let created = facts["createdEndpointId"].as_str().expect("createdEndpointId");

    let got = receiver
        .wait_until(Duration::from_secs(15), |r| r.iter().any(|x| x.path == "/ops"))
        .await;
    let ops: Vec<&Received> = got.iter().filter(|r| r.path == "/ops").collect();
    assert_eq!(ops.len(), 1, "one endpoint was created after the operational endpoint");
    let event: Value = serde_json::from_slice(&ops[0].body).unwrap();
    assert_eq!(event["type"], "endpoint.created", "{event}");
    assert_eq!(event["data"]["appId"], json!(acme));
    assert_eq!(event["data"]["endpointId"], json!(created));
    herald_verify::Webhook::new(secret)
        .unwrap()
        .verify(&ops[0].headers, &ops[0].body)
        .expect("signed with the secret the dashboard showed");
    let (_, list) = server.get("/operational-webhook/endpoint/").await;
    assert_eq!(list["data"][0]["description"], "SRE pager", "{list}");
    assert_eq!(list["data"][0]["filterTypes"], json!(["endpoint.created"]));
}
