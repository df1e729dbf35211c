//! Operational webhooks on the wire: endpoints managed at
//! `/api/v1/operational-webhook/endpoint/` receive Herald's own events about
//! endpoints and exhausted deliveries, signed with their own secret and
//! filtered by type; the application they travel through is nobody's to see.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Received, Receiver, Server, ServerOptions, temp_dir};

fn events(got: &[Received], path: &str) -> Vec<Value> {
    got.iter()
        .filter(|r| r.path == path)
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

fn types(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_changes_and_exhausted_deliveries_are_told_signed_and_filtered() {
    let dir = temp_dir();
    // Every retry delay divided by a million: the default schedule is over in well under a second.
    let server = Server::start_with(dir.path(), ServerOptions::scaled(1_000_000.0));
    let receiver = Receiver::start_with(std::sync::Arc::new(|r: &Received, _| {
        let status = if r.path.starts_with("/broken") { 500 } else { 200 };
        (status, Duration::ZERO, "ok".into())
    }))
    .await;

    let (status, all) = server
        .post(
            "/operational-webhook/endpoint/",
            json!({"url": format!("{}/ops", receiver.url), "description": "everything"}),
        )
        .await;
    assert_eq!(status, 201, "{all}");
    let (status, some) = server
        .post(
            "/operational-webhook/endpoint/",
            json!({"url": format!("{}/ops-exhausted", receiver.url), "filterTypes": ["message.attempt.exhausted"], "uid": "pager"}),
        )
        .await;
    assert_eq!(status, 201, "{some}");
    assert_eq!(some["filterTypes"], json!(["message.attempt.exhausted"]));
    let (status, secret) = server
        .get(&format!(
            "/operational-webhook/endpoint/{}/secret/",
            all["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200, "{secret}");
    let secret = secret["key"].as_str().unwrap().to_owned();

    let app = server.create_app("customer").await;
    let (ep, _) = server
        .create_endpoint(&app, json!({"url": format!("{}/broken", receiver.url)}))
        .await;
    let msg = server.send(&app, "a.b", json!({"n": 1})).await;
    // Every attempt fails; once the schedule is spent the delivery is exhausted.
    receiver
        .wait_until(Duration::from_secs(20), |r| !events(r, "/ops-exhausted").is_empty())
        .await;
    let (status, _) = server
        .request(
            Method::PATCH,
            &format!("/app/{app}/endpoint/{ep}/"),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .request(Method::DELETE, &format!("/app/{app}/endpoint/{ep}/"), None)
        .await;
    assert_eq!(status, 204);

    let want = [
        "endpoint.created",
        "endpoint.updated",
        "endpoint.disabled",
        "endpoint.deleted",
        "message.attempt.exhausted",
    ];
    let got = receiver
        .wait_until(Duration::from_secs(20), |r| {
            let t = types(&events(r, "/ops"));
            want.iter().all(|w| t.iter().any(|x| x == w)) && !events(r, "/ops-exhausted").is_empty()
        })
        .await;
    let everything = events(&got, "/ops");
    let seen = types(&everything);
    for w in want {
        assert!(seen.iter().any(|t| t == w), "{w} missing from {seen:?}");
    }
    let created = everything.iter().find(|e| e["type"] == "endpoint.created").unwrap();
    assert_eq!(created["data"]["appId"], json!(app));
    assert_eq!(created["data"]["endpointId"], json!(ep));
    let disabled = everything.iter().find(|e| e["type"] == "endpoint.disabled").unwrap();
    assert_eq!(disabled["data"]["trigger"], "manual");
    let exhausted = everything
        .iter()
        .find(|e| e["type"] == "message.attempt.exhausted")
        .unwrap();
    assert_eq!(exhausted["data"]["msgId"], json!(msg), "{exhausted}");
    assert_eq!(
        exhausted["data"]["lastAttempt"]["responseStatusCode"], 500,
        "{exhausted}"
    );

    // The filtered endpoint got only what it asked for.
    let filtered = types(&events(&got, "/ops-exhausted"));
    assert!(
        filtered.iter().all(|t| t == "message.attempt.exhausted"),
        "{filtered:?}"
    );

    // Signed with the operational endpoint's own secret.
    let req = got.iter().find(|r| r.path == "/ops").unwrap();
    herald_verify::Webhook::new(&secret)
        .unwrap()
        .verify(&req.headers, &req.body)
        .expect("an operational webhook verifies with its endpoint's secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operational_endpoints_are_managed_in_svix_shapes_and_their_app_is_hidden() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let (status, list) = server.get("/operational-webhook/endpoint/").await;
    assert_eq!((status, &list["data"]), (200, &json!([])), "{list}");
    let (status, bad) = server
        .post(
            "/operational-webhook/endpoint/",
            json!({"url": "https://ops.example.com/", "filterTypes": ["invoice.paid"]}),
        )
        .await;
    assert_eq!(status, 422, "{bad}");
    assert_eq!(bad["detail"][0]["loc"], json!(["body", "filterTypes", "0"]));

    let (status, ep) = server
        .post(
            "/operational-webhook/endpoint/",
            json!({"url": "https://ops.example.com/", "rateLimit": 3, "metadata": {"team": "sre"}}),
        )
        .await;
    assert_eq!(status, 201, "{ep}");
    let id = ep["id"].as_str().unwrap();
    assert!(id.starts_with("ep_"));
    assert_eq!(
        (ep["rateLimit"].as_u64(), &ep["metadata"]),
        (Some(3), &json!({"team": "sre"}))
    );
    let path = format!("/operational-webhook/endpoint/{id}/");
    let (status, put) = server
        .request(
            Method::PUT,
            &path,
            Some(json!({"url": "https://ops2.example.com/", "disabled": true, "filterTypes": ["endpoint.deleted"]})),
        )
        .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(
        (put["url"].as_str(), put["disabled"].as_bool()),
        (Some("https://ops2.example.com/"), Some(true))
    );
    let (_, before) = server.get(&format!("{path}secret/")).await;
    let (status, _) = server.post(&format!("{path}secret/rotate/"), json!({})).await;
    assert_eq!(status, 204);
    let (_, after) = server.get(&format!("{path}secret/")).await;
    assert_ne!(before["key"], after["key"]);
    assert!(after["key"].as_str().unwrap().starts_with("whsec_"));
    let (status, _) = server
        .request(
            Method::PUT,
            &format!("{path}headers/"),
            Some(json!({"headers": {"X-Team": "sre"}})),
        )
        .await;
    assert_eq!(status, 204);
    let (_, headers) = server.get(&format!("{path}headers/")).await;
    assert_eq!(headers["headers"], json!({"x-team": "sre"}));
    let (_, list) = server.get("/operational-webhook/endpoint/").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");

    // Their application is in no list and at no address.
    let (_, apps) = server.get("/app/").await;
    assert_eq!(apps["data"], json!([]), "{apps}");
    for path in [
        "/app/herald:operational-webhooks/",
        "/app/herald%3Aoperational-webhooks/endpoint/",
        "/auth/app-portal-access/herald:operational-webhooks/",
    ] {
        let (status, text) = server.request(Method::GET, path, None).await;
        let (post_status, _) = server.post(path, json!({})).await;
        assert!(status == 404 || status == 405, "{path}: {status} {text}");
        assert!(post_status == 404 || post_status == 405, "{path}: POST {post_status}");
    }
    let (status, _) = server.request(Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    let (status, _) = server.get(&path).await;
    assert_eq!(status, 404);
}
