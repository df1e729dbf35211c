//! Payload templates (SPEC §5): the body an endpoint receives is built from
//! the message and the attempt, signed as sent, and the API validates and
//! shows the template as it was given.

use std::sync::Arc;
use std::time::Duration;

use herald_core::signing::{EndpointSecret, verify_signature};
use serde_json::{Value, json};

use crate::harness::{Receiver, Server, ServerOptions, TOKEN, temp_dir};

const WAIT: Duration = Duration::from_secs(15);

/// The chat-CRM envelope of SPEC §6, keys in this order.
const CRM_TEMPLATE: &str = r#"{"_id": "{{msg.id}}", "event": "{{msg.eventType}}", "createdAt": "{{msg.timestamp}}",
    "deliveryAttempts": "{{attempt.number}}", "firstSentAt": "{{attempt.firstSentAt}}",
    "sentAt": "{{attempt.timestamp}}", "items": ["{{msg.payload}}"], "infoWebhook": {"verifyToken": "vt-42"}}"#;

/// A server whose first retry (5 s) comes after ~5 ms, and a receiver that
/// fails the first request and takes the rest.
async fn retrying_server_and_receiver(dir: &std::path::Path) -> (Server, Receiver) {
    let server = Server::start_with(dir, ServerOptions::scaled(1000.0));
    let receiver = Receiver::start_with(Arc::new(|_, before| {
        if before == 0 {
            (500, Duration::ZERO, "not yet".into())
        } else {
            (200, Duration::ZERO, "ok".into())
        }
    }))
    .await;
    (server, receiver)
}

#[tokio::test]
async fn templated_bodies_are_built_per_attempt_and_signed_as_sent() {
    let dir = temp_dir();
    let (server, receiver) = retrying_server_and_receiver(dir.path()).await;
    let app = server.create_app("crm").await;
    let template: Value = serde_json::from_str(CRM_TEMPLATE).unwrap();
    let (_, secret) = server
        .create_endpoint(
            &app,
            json!({"url": format!("{}/crm", receiver.url), "payloadTemplate": template}),
        )
        .await;
    let (status, msg) = server
        .post(
            &format!("/app/{app}/msg/"),
            json!({"eventType": "contact.created", "payload": {"name": "Ada", "tags": ["x"]}}),
        )
        .await;
    assert_eq!(status, 202);
    let msg_id = msg["id"].as_str().unwrap();

    let got = receiver.wait_until(WAIT, |r| r.len() >= 2).await;
    assert_eq!(got.len(), 2, "one failed attempt, one retry");
    let secret = EndpointSecret::parse(&secret).unwrap();
    let mut bodies = Vec::new();
    for (i, req) in got.iter().enumerate() {
        let text = std::str::from_utf8(&req.body).unwrap();
        assert!(
            text.starts_with(r#"{"_id":""#),
            "keys keep the template's order: {text}"
        );
        let ts: i64 = req.header("webhook-timestamp").parse().unwrap();
        assert!(
            verify_signature(&secret, msg_id, ts, &req.body, req.header("webhook-signature")),
            "attempt {} is signed over the body as sent",
            i + 1
        );
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["_id"], msg_id);
        assert_eq!(body["event"], "contact.created");
        assert_eq!(body["createdAt"], msg["timestamp"], "the message's timestamp");
        assert_eq!(body["deliveryAttempts"], i + 1);
        assert_eq!(body["sentAt"], ts, "attempt.timestamp is webhook-timestamp");
        assert_eq!(body["items"], json!([{"name": "Ada", "tags": ["x"]}]));
        assert_eq!(body["infoWebhook"]["verifyToken"], "vt-42");
        bodies.push(body);
    }
    assert!(bodies[0]["firstSentAt"].is_string());
    assert_eq!(
        bodies[1]["firstSentAt"], bodies[0]["firstSentAt"],
        "a retry shows when the delivery was first sent"
    );
}

#[tokio::test]
async fn payload_templates_are_validated_and_shown_as_given() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let app = server.create_app("tpl").await;

    let (status, err) = server
        .post(
            &format!("/app/{app}/endpoint/"),
            json!({"url": "https://example.com/h", "payloadTemplate": {"a": "{{msg.nope}}"}}),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["detail"][0]["loc"], json!(["body", "payloadTemplate"]));
    let why = err["detail"][0]["msg"].as_str().unwrap();
    assert!(why.contains("msg.nope") && why.contains("msg.payload"), "{why}");
    let (status, _) = server
        .post(
            &format!("/app/{app}/endpoint/"),
            json!({"url": "https://example.com/h", "payloadTemplate": "{{msg.payload}}"}),
        )
        .await;
    assert_eq!(status, 422, "a template must be an object or array");
    let (status, raw) = server
        .post(
            &format!("/app/{app}/endpoint/"),
            json!({"url": "https://example.com/h", "payloadTemplate": null}),
        )
        .await;
    assert_eq!(status, 201, "{raw}");
    assert!(raw.get("payloadTemplate").is_none(), "null is the raw payload");

    // Created with keys out of alphabetical order: shown in the same order.
    let body = r#"{"url": "https://example.com/h", "payloadTemplate": {"zeta": "{{msg.id}}", "alpha": 1}}"#;
    let resp = server
        .http
        .post(server.api(&format!("/app/{app}/endpoint/")))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains(r#""payloadTemplate":{"zeta": "{{msg.id}}", "alpha": 1}"#),
        "{text}"
    );
    let ep: Value = serde_json::from_str(&text).unwrap();
    let ep_path = format!("/app/{app}/endpoint/{}/", ep["id"].as_str().unwrap());

    let (status, patched) = server
        .request(reqwest::Method::PATCH, &ep_path, Some(json!({"description": "x"})))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        patched["payloadTemplate"]["zeta"], "{{msg.id}}",
        "an unrelated patch keeps it"
    );
    let (status, patched) = server
        .request(reqwest::Method::PATCH, &ep_path, Some(json!({"payloadTemplate": null})))
        .await;
    assert_eq!(status, 200);
    assert!(
        patched.get("payloadTemplate").is_none(),
        "null goes back to the raw payload"
    );
    let (_, got) = server.get(&ep_path).await;
    assert!(got.get("payloadTemplate").is_none());
}

/// The alarm-platform envelope of SPEC §6 with the attempt number and the
/// endpoint's uid besides.
const ALARM_PROGRAM: &str = "{event: .msg.eventType, webhook_id: .msg.id, timestamp: .attempt.timestamp,
    attempt: .attempt.number, data: .msg.payload, site: .endpoint.uid}";

#[tokio::test]
async fn jq_transformations_build_the_body_per_attempt_and_are_signed_as_sent() {
    let dir = temp_dir();
    let (server, receiver) = retrying_server_and_receiver(dir.path()).await;
    let app = server.create_app("alarm").await;
    let (_, secret) = server
        .create_endpoint(
            &app,
            json!({"url": format!("{}/alarm", receiver.url), "uid": "site-7", "transformation": ALARM_PROGRAM}),
        )
        .await;
    // `json!` sorts keys, so the payload is posted as {"armed":true,"zone":3}.
    let msg_id = server
        .send(&app, "alarm.triggered", json!({"zone": 3, "armed": true}))
        .await;

    let got = receiver.wait_until(WAIT, |r| r.len() >= 2).await;
    assert_eq!(got.len(), 2, "one failed attempt, one retry");
    let secret = EndpointSecret::parse(&secret).unwrap();
    for (i, req) in got.iter().enumerate() {
        let ts: i64 = req.header("webhook-timestamp").parse().unwrap();
        assert_eq!(
            std::str::from_utf8(&req.body).unwrap(),
            format!(
                r#"{{"event":"alarm.triggered","webhook_id":"{msg_id}","timestamp":{ts},"attempt":{},"data":{{"armed":true,"zone":3}},"site":"site-7"}}"#,
                i + 1
            ),
            "compact JSON in the program's key order, the payload's kept"
        );
        assert!(
            verify_signature(&secret, &msg_id, ts, &req.body, req.header("webhook-signature")),
            "attempt {} is signed over the body as sent",
            i + 1
        );
        assert_eq!(req.header("content-type"), "application/json");
    }
}

#[tokio::test]
async fn a_failing_transformation_is_an_attempt_and_sends_nothing_until_fixed() {
    let dir = temp_dir();
    // Retries after ~5 ms, ~300 ms, ~1.8 s.
    let server = Server::start_with(dir.path(), ServerOptions::scaled(1000.0));
    let receiver = Receiver::start().await;
    let app = server.create_app("broken").await;
    let program = r#"if .attempt.number < 0 then . else error("no site for zone \(.msg.payload.zone)") end"#;
    let (ep, _) = server
        .create_endpoint(
            &app,
            json!({"url": format!("{}/hook", receiver.url), "transformation": program}),
        )
        .await;
    let msg_id = server.send(&app, "alarm.triggered", json!({"zone": 3})).await;

    let attempts = server.wait_attempts(&app, &msg_id, WAIT, |a| a.len() >= 2).await;
    assert!(attempts.len() >= 2, "retried on its schedule: {attempts:?}");
    for a in &attempts {
        assert_eq!(a["errorKind"], "transformation", "{a}");
        assert_eq!(a["responseStatusCode"], 0, "{a}");
        assert_eq!(a["status"], 2, "failed: {a}");
        let why = a["response"].as_str().unwrap();
        assert!(why.contains("no site for zone 3"), "{why}");
    }
    assert!(receiver.requests().is_empty(), "no request was made");

    // Fixed while the delivery waits: its next attempt uses the new program.
    let (status, patched) = server
        .request(
            reqwest::Method::PATCH,
            &format!("/app/{app}/endpoint/{ep}/"),
            Some(json!({"transformation": "{zone: .msg.payload.zone, n: .attempt.number}"})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    let got = receiver.wait_until(WAIT, |r| !r.is_empty()).await;
    assert_eq!(got.len(), 1, "delivered once fixed");
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["zone"], 3);
    assert!(body["n"].as_u64().unwrap() >= 3, "the failed attempts counted: {body}");

    // A runaway program is cut off by the sandbox, recorded the same way.
    let (status, _) = server
        .request(
            reqwest::Method::PATCH,
            &format!("/app/{app}/endpoint/{ep}/"),
            Some(json!({"transformation": "[range(1e12)] | length"})),
        )
        .await;
    assert_eq!(status, 200);
    let runaway = server.send(&app, "alarm.triggered", json!({"zone": 4})).await;
    let attempts = server.wait_attempts(&app, &runaway, WAIT, |a| !a.is_empty()).await;
    assert_eq!(attempts[0]["errorKind"], "transformation", "{attempts:?}");
    let why = attempts[0]["response"].as_str().unwrap();
    assert!(why.contains("ms") || why.contains("steps"), "{why}");
    assert_eq!(receiver.requests().len(), 1, "still nothing more sent");
}

#[tokio::test]
async fn transformations_are_validated_and_shown_as_given() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let app = server.create_app("jq").await;
    let eps = format!("/app/{app}/endpoint/");

    let (status, err) = server
        .post(
            &eps,
            json!({"url": "https://example.com/h", "transformation": "{a: .msg | nosuch}"}),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["detail"][0]["loc"], json!(["body", "transformation"]));
    let why = err["detail"][0]["msg"].as_str().unwrap();
    assert!(why.contains("undefined filter nosuch/0"), "{why}");
    let (status, err) = server
        .post(&eps, json!({"url": "https://example.com/h", "transformation": "{a: "}))
        .await;
    assert_eq!(status, 422, "{err}");
    let (status, err) = server
        .post(
            &eps,
            json!({"url": "https://example.com/h", "transformation": ".", "payloadTemplate": {"a": 1}}),
        )
        .await;
    assert_eq!(status, 422, "not both: {err}");
    assert_eq!(err["detail"][0]["loc"], json!(["body", "transformation"]));

    let program = "{id: .msg.id}  # kept as written";
    let (status, ep) = server
        .post(&eps, json!({"url": "https://example.com/h", "transformation": program}))
        .await;
    assert_eq!(status, 201, "{ep}");
    assert_eq!(ep["transformation"], program);
    let ep_path = format!("{eps}{}/", ep["id"].as_str().unwrap());
    let (_, got) = server.get(&ep_path).await;
    assert_eq!(got["transformation"], program);
    let (_, list) = server.get(&eps).await;
    assert_eq!(list["data"][0]["transformation"], program);

    let (status, err) = server
        .request(
            reqwest::Method::PATCH,
            &ep_path,
            Some(json!({"payloadTemplate": {"a": 1}})),
        )
        .await;
    assert_eq!(status, 422, "a template beside the stored program: {err}");
    let (status, err) = server
        .request(
            reqwest::Method::PUT,
            &ep_path,
            Some(json!({"url": "https://example.com/h", "transformation": ".", "payloadTemplate": {"a": 1}})),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    let (status, patched) = server
        .request(
            reqwest::Method::PATCH,
            &ep_path,
            Some(json!({"transformation": null, "payloadTemplate": {"a": 1}})),
        )
        .await;
    assert_eq!(status, 200, "swapped in one patch: {patched}");
    assert!(patched.get("transformation").is_none(), "null removes it");
    assert_eq!(patched["payloadTemplate"], json!({"a": 1}));
    let too_big = format!(". # {}", "x".repeat(64 * 1024));
    let (status, err) = server
        .request(
            reqwest::Method::PATCH,
            &ep_path,
            Some(json!({"payloadTemplate": null, "transformation": too_big})),
        )
        .await;
    assert_eq!(status, 422, "{err}");
}
