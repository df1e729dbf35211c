//! Work whose caller or owner went away: messages from clients that hung up
//! are still delivered at once, and deleting an endpoint or an application
//! stops its queued, in-flight and retrying deliveries with no attempt
//! recorded after the delete.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::harness::{Receiver, Server, ServerOptions, TOKEN, TestDir, temp_dir};

/// A client that writes a whole `POST .../msg/` and closes the connection
/// without reading the answer.
async fn post_and_hang_up(server: &Server, app: &str, n: usize) {
    let body = json!({"eventType": "hangup.test", "payload": {"n": n}}).to_string();
    let head = format!(
        "POST /api/v1/app/{app}/msg/ HTTP/1.1\r\nhost: herald\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut conn = TcpStream::connect(server.url.trim_start_matches("http://"))
        .await
        .unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(body.as_bytes()).await.unwrap();
    drop(conn);
}

async fn message_ids(server: &Server, app: &str) -> HashSet<String> {
    let (status, list) = server.get(&format!("/app/{app}/msg/?limit=250")).await;
    assert_eq!(status, 200, "{list}");
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_from_clients_that_hang_up_are_delivered_at_once() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let receiver = Receiver::start().await;
    let app = server.create_app("hangup").await;
    server
        .create_endpoint(&app, json!({"url": format!("{}/h", receiver.url)}))
        .await;
    for n in 0..50 {
        post_and_hang_up(&server, &app, n).await;
    }

    // Whatever was committed is delivered promptly, not when a claim lapses.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut committed = message_ids(&server, &app).await;
    while committed.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        committed = message_ids(&server, &app).await;
    }
    assert!(!committed.is_empty(), "no message from the 50 clients was committed");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let committed = message_ids(&server, &app).await;
    let got = receiver
        .wait_until(Duration::from_secs(5), |r| {
            let seen: HashSet<&str> = r.iter().map(|x| x.header("webhook-id")).collect();
            committed.iter().all(|id| seen.contains(id.as_str()))
        })
        .await;
    let seen: HashSet<&str> = got.iter().map(|x| x.header("webhook-id")).collect();
    let missing = committed.iter().filter(|id| !seen.contains(id.as_str())).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} committed messages were not delivered within 5 s",
        committed.len()
    );
}

/// An application with one endpoint whose receiver takes 3 s per request
/// (two in flight at a time, the rest queued) and one that always answers
/// 500 (retries held in memory), each with six messages under way.
struct Busy {
    server: Server,
    app: String,
    slow: Receiver,
    failing: Receiver,
    slow_id: String,
    failing_id: String,
    messages: Vec<String>,
    _dir: TestDir,
}

async fn busy_app() -> Busy {
    let dir = temp_dir();
    let server = Server::start_with(
        dir.path(),
        ServerOptions {
            // The second retry comes 6 s after the first failure.
            time_scale: Some(50.0),
            extra_args: vec!["--max-in-flight-per-endpoint".into(), "2".into()],
            ..Default::default()
        },
    );
    let slow = Receiver::start_with(Arc::new(|_, _| (200, Duration::from_secs(3), "ok".into()))).await;
    let failing = Receiver::start_with(Arc::new(|_, _| (500, Duration::ZERO, "no".into()))).await;
    let app = server.create_app("busy").await;
    let (slow_id, _) = server
        .create_endpoint(&app, json!({"url": format!("{}/slow", slow.url)}))
        .await;
    let (failing_id, _) = server
        .create_endpoint(&app, json!({"url": format!("{}/failing", failing.url)}))
        .await;
    let mut messages = Vec::new();
    for n in 0..6 {
        messages.push(server.send(&app, "busy.test", json!({"n": n})).await);
    }
    // Two requests in flight to the slow one, each failing message tried
    // twice and waiting for its third try.
    slow.wait_until(Duration::from_secs(10), |r| r.len() >= 2).await;
    failing.wait_until(Duration::from_secs(10), |r| r.len() >= 12).await;
    assert_eq!(slow.requests().len(), 2);
    Busy {
        server,
        app,
        slow,
        failing,
        slow_id,
        failing_id,
        messages,
        _dir: dir,
    }
}

async fn attempts(b: &Busy) -> Vec<Value> {
    let mut all = Vec::new();
    for msg in &b.messages {
        let (status, list) = b
            .server
            .get(&format!("/app/{}/attempt/msg/{msg}/?limit=250", b.app))
            .await;
        if status == 404 {
            continue;
        }
        assert_eq!(status, 200, "{list}");
        all.extend(list["data"].as_array().unwrap().iter().cloned());
    }
    all
}

/// Nothing arrives after `deleted` (a request already on the wire when the
/// delete was made is allowed 50 ms to land), and memory is given back.
async fn assert_stopped(b: &Busy, deleted: Instant) {
    // Past the slow receiver's answer time and the failing one's next retry.
    tokio::time::sleep(Duration::from_secs(7)).await;
    for (name, r) in [("slow", &b.slow), ("failing", &b.failing)] {
        let late = r
            .requests()
            .iter()
            .filter(|x| x.at > deleted + Duration::from_millis(50))
            .count();
        assert_eq!(late, 0, "{late} requests reached the {name} endpoint after the delete");
    }
    assert_eq!(b.server.metric("herald_deliveries_in_flight").await, 0);
    assert_eq!(b.server.metric("herald_deliveries_resident").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_endpoint_stops_its_queued_in_flight_and_retrying_work() {
    let b = busy_app().await;
    // The failing endpoint's answers so far are recorded by the recorder a
    // moment after they arrive: wait for those records, so that "after the
    // delete" counts only what the delete should have stopped.
    let arrived = b.failing.requests().len();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut before = attempts(&b).await;
    while before.len() < arrived && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        before = attempts(&b).await;
    }
    assert!(
        before.iter().all(|a| a["endpointId"] != b.slow_id.as_str()),
        "the slow endpoint's requests are still in flight"
    );
    let deleted = Instant::now();
    for id in [&b.slow_id, &b.failing_id] {
        let (status, body) = b
            .server
            .request(reqwest::Method::DELETE, &format!("/app/{}/endpoint/{id}/", b.app), None)
            .await;
        assert_eq!(status, 204, "{body}");
    }
    assert_stopped(&b, deleted).await;
    let after = attempts(&b).await;
    assert_eq!(
        after.len(),
        before.len(),
        "attempts were recorded after the delete: {after:#?}"
    );
    assert!(
        after.iter().all(|a| a["endpointId"] != b.slow_id.as_str()),
        "the canceled in-flight requests were recorded as attempts"
    );
    assert!(after.iter().any(|a| a["endpointId"] == b.failing_id.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_application_stops_all_its_work() {
    let b = busy_app().await;
    let deleted = Instant::now();
    let (status, body) = b
        .server
        .request(reqwest::Method::DELETE, &format!("/app/{}/", b.app), None)
        .await;
    assert_eq!(status, 204, "{body}");
    assert_stopped(&b, deleted).await;
    let (status, _) = b.server.get(&format!("/app/{}/msg/", b.app)).await;
    assert_eq!(status, 404, "the application's history is gone with it");
}
