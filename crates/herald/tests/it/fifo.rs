//! `fifo` endpoints on the wire: message n+1 is not sent before message n
//! succeeded or was given up, while n waits for a retry and across a
//! SIGKILL and restart of the server.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Received, Receiver, Server, ServerOptions, temp_dir};

fn n_of(r: &Received) -> i64 {
    serde_json::from_slice::<Value>(&r.body).expect("JSON")["n"]
        .as_i64()
        .expect("n")
}

/// The `n` of every request received, in arrival order.
fn arrivals(receiver: &Receiver) -> Vec<i64> {
    receiver.requests().iter().map(n_of).collect()
}

/// Fails the first `times` attempts of message `n`, accepts everything else.
fn failing_first(n: i64, times: usize) -> crate::harness::Behaviour {
    Arc::new(move |r: &Received, before| {
        let code = if n_of(r) == n && before < times { 500 } else { 200 };
        (code, Duration::ZERO, "x".into())
    })
}

async fn fifo_endpoint(server: &Server, app: &str, receiver: &Receiver, delays: &[u32]) -> String {
    let (ep, _) = server
        .create_endpoint(
            app,
            json!({
                "url": format!("{}/hook", receiver.url),
                "fifo": true,
                "retrySchedule": {"kind": "delays", "delaysSecs": delays, "jitter": false},
            }),
        )
        .await;
    ep
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_messages_wait_for_a_retried_one() {
    let dir = temp_dir();
    let server = Server::start_with(dir.path(), ServerOptions::scaled(10.0));
    let receiver = Receiver::start_with(failing_first(3, 2)).await;
    let app = server.create_app("fifo").await;
    let ep = fifo_endpoint(&server, &app, &receiver, &[1, 1, 1]).await;
    let (_, read) = server.get(&format!("/app/{app}/endpoint/{ep}/")).await;
    assert_eq!(read["fifo"], true, "reads back");
    for n in 1..=30 {
        server.send(&app, "fifo.test", json!({"n": n})).await;
    }
    receiver.wait_until(Duration::from_secs(20), |r| r.len() >= 32).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut want: Vec<i64> = (1..=30).collect();
    want.splice(2..3, [3, 3, 3]);
    assert_eq!(
        arrivals(&receiver),
        want,
        "in order, 3 twice refused before it went through"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_given_up_message_lets_the_next_go() {
    let dir = temp_dir();
    let server = Server::start_with(dir.path(), ServerOptions::scaled(10.0));
    let receiver = Receiver::start_with(failing_first(2, usize::MAX)).await;
    let app = server.create_app("fifo").await;
    fifo_endpoint(&server, &app, &receiver, &[1]).await;
    for n in 1..=4 {
        server.send(&app, "fifo.test", json!({"n": n})).await;
    }
    receiver.wait_until(Duration::from_secs(20), |r| r.len() >= 5).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(arrivals(&receiver), vec![1, 2, 2, 3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_holds_across_a_kill_and_restart() {
    let dir = temp_dir();
    let mut server = Server::start(dir.path());
    let receiver = Receiver::start_with(failing_first(1, 1)).await;
    let app = server.create_app("fifo").await;
    fifo_endpoint(&server, &app, &receiver, &[3]).await;
    let first = server.send(&app, "fifo.test", json!({"n": 1})).await;
    for n in 2..=5 {
        server.send(&app, "fifo.test", json!({"n": n})).await;
    }
    // Message 1's first attempt is refused and recorded: it waits 3 s.
    server
        .wait_attempts(&app, &first, Duration::from_secs(10), |a| !a.is_empty())
        .await;
    server.kill();
    let server = Server::start(dir.path());
    // A message posted after the restart wakes the endpoint's lane at once.
    server.send(&app, "fifo.test", json!({"n": 6})).await;
    receiver.wait_until(Duration::from_secs(20), |r| r.len() >= 7).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        arrivals(&receiver),
        vec![1, 1, 2, 3, 4, 5, 6],
        "2-6 waited for 1 across the restart"
    );
    let got = receiver.requests();
    let waited = got[1].at.duration_since(got[0].at);
    assert!(
        waited >= Duration::from_millis(2900),
        "message 1's retry kept its schedule across the restart: {waited:?}"
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_fifo_on_and_off_by_patch() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let receiver = Receiver::start().await;
    let app = server.create_app("fifo").await;
    let (ep, _) = server
        .create_endpoint(&app, json!({"url": format!("{}/hook", receiver.url)}))
        .await;
    let path = format!("/app/{app}/endpoint/{ep}/");
    let (status, body) = server
        .request(reqwest::Method::PATCH, &path, Some(json!({"fifo": true})))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["fifo"], true);
    for n in 1..=5 {
        server.send(&app, "fifo.test", json!({"n": n})).await;
    }
    receiver.wait_until(Duration::from_secs(10), |r| r.len() >= 5).await;
    assert_eq!(arrivals(&receiver), vec![1, 2, 3, 4, 5]);
    let (status, body) = server
        .request(reqwest::Method::PATCH, &path, Some(json!({"fifo": false})))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("fifo").is_none(), "off is not shown: {body}");
    server.send(&app, "fifo.test", json!({"n": 6})).await;
    receiver.wait_until(Duration::from_secs(10), |r| r.len() >= 6).await;
    assert_eq!(arrivals(&receiver).len(), 6);
    let (status, body) = server
        .request(reqwest::Method::PATCH, &path, Some(json!({"fifo": "yes"})))
        .await;
    assert_eq!(status, 422, "{body}");
}
