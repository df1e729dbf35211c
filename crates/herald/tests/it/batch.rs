//! `batch` endpoints on the wire: up to `maxEvents` messages in one POST
//! whose body is their JSON array, signed as one body under a `batch_`
//! webhook-id, the oldest waiting at most `maxWaitMs`; every message gets
//! its own attempt with the batch's answer.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Received, Receiver, Server, ServerOptions, temp_dir};

fn events(r: &Received) -> Vec<i64> {
    let body: Value = serde_json::from_slice(&r.body).expect("JSON");
    body.as_array()
        .expect("a JSON array")
        .iter()
        .map(|e| e["n"].as_i64().expect("n"))
        .collect()
}

async fn batching(server: &Server, app: &str, receiver: &Receiver, batch: Value) -> (String, String) {
    server
        .create_endpoint(
            app,
            json!({
                "url": format!("{}/hook", receiver.url),
                "batch": batch,
                "retrySchedule": {"kind": "delays", "delaysSecs": [1], "jitter": false},
            }),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_go_out_as_signed_arrays_and_each_gets_an_attempt() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let receiver = Receiver::start().await;
    let app = server.create_app("batch").await;
    let (ep, secret) = batching(&server, &app, &receiver, json!({"maxEvents": 10, "maxWaitMs": 500})).await;
    let (_, read) = server.get(&format!("/app/{app}/endpoint/{ep}/")).await;
    assert_eq!(read["batch"], json!({"maxEvents": 10, "maxWaitMs": 500}), "reads back");
    let mut msgs = Vec::new();
    for n in 0..25 {
        msgs.push(server.send(&app, "batch.test", json!({"n": n})).await);
    }
    let got = receiver
        .wait_until(Duration::from_secs(10), |r| {
            r.iter().map(|x| events(x).len()).sum::<usize>() >= 25
        })
        .await;
    let mut all: Vec<i64> = got.iter().flat_map(events).collect();
    all.sort();
    assert_eq!(all, (0..25).collect::<Vec<_>>(), "every message once");
    let sizes: Vec<usize> = got.iter().map(|r| events(r).len()).collect();
    assert!(sizes.iter().all(|&n| n <= 10), "{sizes:?}");
    assert!(
        sizes.len() <= 5 && sizes.contains(&10),
        "batched, full ones among them: {sizes:?}"
    );
    let webhook = herald_verify::Webhook::new(&secret).unwrap();
    for req in &got {
        let id = req.header("webhook-id");
        assert!(id.starts_with("batch_"), "{id}");
        assert_eq!(req.header("content-type"), "application/json");
        let verified = webhook
            .verify(&req.headers, &req.body)
            .expect("the batch verifies as one body");
        assert_eq!(verified.id, id);
    }
    for msg in &msgs {
        let attempts = server
            .wait_attempts(&app, msg, Duration::from_secs(10), |a| !a.is_empty())
            .await;
        assert_eq!(attempts.len(), 1, "{attempts:?}");
        assert_eq!(attempts[0]["responseStatusCode"], 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_message_waits_max_wait_and_a_failed_batch_is_sent_again_under_its_id() {
    let dir = temp_dir();
    let server = Server::start_with(dir.path(), ServerOptions::scaled(2.0));
    // The first request fails; the rest succeed.
    let receiver = Receiver::start_with(Arc::new(|_: &Received, before| {
        let code = if before == 0 { 503 } else { 200 };
        (code, Duration::ZERO, "x".into())
    }))
    .await;
    let app = server.create_app("batch").await;
    batching(&server, &app, &receiver, json!({"maxEvents": 100, "maxWaitMs": 800})).await;
    let posted = std::time::Instant::now();
    let a = server.send(&app, "batch.test", json!({"n": 1})).await;
    let b = server.send(&app, "batch.test", json!({"n": 2})).await;
    let got = receiver.wait_until(Duration::from_secs(10), |r| r.len() >= 2).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let waited = got[0].at.duration_since(posted);
    // 800 ms at time scale 2.
    assert!(
        waited >= Duration::from_millis(380) && waited < Duration::from_millis(2000),
        "the batch waited {waited:?}"
    );
    assert_eq!(events(&got[0]), vec![1, 2]);
    assert_eq!(events(&got[1]), vec![1, 2], "the same batch again");
    assert_eq!(
        got[0].header("webhook-id"),
        got[1].header("webhook-id"),
        "a batch sent again keeps its id"
    );
    for msg in [&a, &b] {
        let attempts = server
            .wait_attempts(&app, msg, Duration::from_secs(10), |a| a.len() >= 2)
            .await;
        let codes: Vec<i64> = attempts
            .iter()
            .map(|x| x["responseStatusCode"].as_i64().unwrap())
            .collect();
        let mut codes = codes;
        codes.sort();
        assert_eq!(codes, vec![200, 503], "each message has the batch's attempts");
    }
}

#[tokio::test]
async fn bad_batches_get_a_422() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let app = server.create_app("batch").await;
    for (body, field) in [
        (json!({"batch": {"maxEvents": 0}}), "maxEvents"),
        (json!({"batch": {"maxEvents": 1001}}), "maxEvents"),
        (json!({"batch": {"maxEvents": 5, "maxWaitMs": 60001}}), "maxWaitMs"),
        (json!({"batch": {"maxEvents": 5, "fifo": true}}), "batch"),
        (json!({"batch": {"maxEvents": 5}, "fifo": true}), "batch"),
    ] {
        let mut body = body;
        body["url"] = json!("http://127.0.0.1:9/hook");
        let (status, err) = server.post(&format!("/app/{app}/endpoint/"), body.clone()).await;
        assert_eq!(status, 422, "{body}: {err}");
        assert!(err.to_string().contains(field), "{body}: {err}");
    }
    let (ep, _) = server
        .create_endpoint(&app, json!({"url": "http://127.0.0.1:9/hook", "fifo": true}))
        .await;
    let path = format!("/app/{app}/endpoint/{ep}/");
    let (status, err) = server
        .request(reqwest::Method::PATCH, &path, Some(json!({"batch": {"maxEvents": 5}})))
        .await;
    assert_eq!(status, 422, "fifo and batch by PATCH: {err}");
    let (status, ok) = server
        .request(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"fifo": false, "batch": {"maxEvents": 5}})),
        )
        .await;
    assert_eq!(status, 200, "{ok}");
    let (status, ok) = server
        .request(reqwest::Method::PATCH, &path, Some(json!({"batch": null})))
        .await;
    assert_eq!(status, 200, "{ok}");
    assert!(ok.get("batch").is_none(), "{ok}");
}

/// In a batch each message's body is built as it would be alone (here by
/// a jq transformation) and given its verify token, then the array is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_of_a_batch_is_transformed_and_given_its_token() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let receiver = Receiver::start().await;
    let app = server.create_app("batch").await;
    server
        .create_endpoint(
            &app,
            json!({
                "url": format!("{}/hook", receiver.url),
                "batch": {"maxEvents": 3, "maxWaitMs": 2000},
                "transformation": "{id: .msg.id, n: .msg.payload.n}",
                "verifyToken": {"pointer": "/auth/token", "token": "t0k"},
            }),
        )
        .await;
    let mut msgs = Vec::new();
    for n in 0..3 {
        msgs.push(server.send(&app, "batch.test", json!({"n": n})).await);
    }
    let got = receiver.wait_until(Duration::from_secs(10), |r| !r.is_empty()).await;
    let body: Value = serde_json::from_slice(&got[0].body).expect("JSON");
    let want: Vec<Value> = msgs
        .iter()
        .enumerate()
        .map(|(n, id)| json!({"id": id, "n": n, "auth": {"token": "t0k"}}))
        .collect();
    assert_eq!(body, Value::Array(want), "one full batch, each element transformed");
}
