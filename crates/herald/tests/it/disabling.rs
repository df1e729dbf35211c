//! The disable rule (`disableRule`): an endpoint is disabled after N
//! deliveries in a row were given up, or after failing for a duration, a
//! streak that a restart carries on; the operational webhooks say so, and
//! tell of deliveries that begin failing and recover.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Received, Receiver, Server, ServerOptions, temp_dir};

/// `/hook` answers with `status`; everything else (the operational
/// receiver at `/ops`) with 200.
fn switchable(status: Arc<AtomicU16>) -> crate::harness::Behaviour {
    Arc::new(move |r: &Received, _| {
        let code = if r.path == "/hook" {
            status.load(Ordering::SeqCst)
        } else {
            200
        };
        (code, Duration::ZERO, "x".into())
    })
}

async fn operational(server: &Server, receiver: &Receiver, types: &[&str]) {
    let (status, ops) = server
        .post(
            "/operational-webhook/endpoint/",
            json!({"url": format!("{}/ops", receiver.url), "filterTypes": types}),
        )
        .await;
    assert_eq!(status, 201, "{ops}");
}

/// The operational events received so far, in order.
fn told(receiver: &Receiver) -> Vec<Value> {
    receiver
        .on_path("/ops")
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("JSON"))
        .collect()
}

/// Sends one message and waits until its attempt is recorded, so the
/// next one is surely judged after it.
async fn send_and_settle(server: &Server, app: &str, n: u32) {
    let msg = server.send(app, "disable.test", json!({"n": n})).await;
    let attempts = server
        .wait_attempts(app, &msg, Duration::from_secs(20), |a| !a.is_empty())
        .await;
    assert_eq!(attempts.len(), 1, "message {n}: {attempts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_failed_messages_disable_and_a_success_resets_the_count() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let status = Arc::new(AtomicU16::new(500));
    let receiver = Receiver::start_with(switchable(status.clone())).await;
    operational(&server, &receiver, &["endpoint.disabled"]).await;
    let app = server.create_app("count").await;
    let rule = json!({"failingForSecs": 0, "consecutiveFailedMessages": 3});
    let (ep, _) = server
        .create_endpoint(
            &app,
            json!({"url": format!("{}/hook", receiver.url), "retrySchedule": {"kind": "none"}, "disableRule": rule}),
        )
        .await;
    let path = format!("/app/{app}/endpoint/{ep}/");
    let (_, read) = server.get(&path).await;
    assert_eq!(read["disableRule"], rule, "reads back");

    // Two given up, a success, two more: never three in a row.
    send_and_settle(&server, &app, 1).await;
    send_and_settle(&server, &app, 2).await;
    status.store(200, Ordering::SeqCst);
    send_and_settle(&server, &app, 3).await;
    status.store(500, Ordering::SeqCst);
    send_and_settle(&server, &app, 4).await;
    send_and_settle(&server, &app, 5).await;
    assert!(
        !server.disabled_within(&path, Duration::from_millis(300)).await,
        "a success reset the count"
    );

    send_and_settle(&server, &app, 6).await;
    assert!(
        server.disabled_within(&path, Duration::from_secs(10)).await,
        "the third in a row disables it"
    );
    let got = receiver
        .wait_until(Duration::from_secs(10), |r| r.iter().any(|x| x.path == "/ops"))
        .await;
    assert!(got.iter().any(|r| r.path == "/ops"));
    let events = told(&receiver);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "endpoint.disabled");
    assert_eq!(events[0]["data"]["endpointId"], ep.as_str());
    assert_eq!(events[0]["data"]["trigger"], "automatic");
    assert_eq!(events[0]["data"]["reason"], "consecutiveFailedMessages");
    let since = events[0]["data"]["failSince"].as_str().expect("failSince");
    chrono::DateTime::parse_from_rfc3339(since).expect("failSince is a time");

    // Nothing more goes to it; enabled again, it starts over from zero.
    server.send(&app, "disable.test", json!({"n": 7})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.on_path("/hook").len(), 6, "nothing sent while disabled");
    let (code, read) = server
        .request(reqwest::Method::PATCH, &path, Some(json!({"disabled": false})))
        .await;
    assert_eq!(code, 200, "{read}");
    send_and_settle(&server, &app, 8).await;
    assert!(
        !server.disabled_within(&path, Duration::from_millis(300)).await,
        "one failure after enabling is not three"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_for_a_duration_disables_across_a_restart() {
    // 30 s of failure at a tenth of the time: 3 s; a retry every 100 ms.
    const SCALE: f64 = 10.0;
    let dir = temp_dir();
    let mut server = Server::start_with(dir.path(), ServerOptions::scaled(SCALE));
    let status = Arc::new(AtomicU16::new(503));
    let receiver = Receiver::start_with(switchable(status)).await;
    operational(&server, &receiver, &["endpoint.disabled"]).await;
    let app = server.create_app("duration").await;
    let (ep, _) = server
        .create_endpoint(
            &app,
            json!({
                "url": format!("{}/hook", receiver.url),
                "retrySchedule": {"kind": "delays", "delaysSecs": vec![1; 50], "jitter": false},
                "disableRule": {"failingForSecs": 30},
            }),
        )
        .await;
    let path = format!("/app/{app}/endpoint/{ep}/");
    server.send(&app, "disable.test", json!({"n": 1})).await;
    receiver.wait_until(Duration::from_secs(10), |r| !r.is_empty()).await;
    let first = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!server.disabled_within(&path, Duration::ZERO).await, "not yet");

    // A restart halfway: the streak goes on from its first failure.
    server.kill();
    let restarted_at = chrono::Utc::now();
    let server = Server::start_with(dir.path(), ServerOptions::scaled(SCALE));
    assert!(
        server.disabled_within(&path, Duration::from_secs(15)).await,
        "disabled after 3 s of failure"
    );
    let off_at = chrono::Utc::now();
    receiver
        .wait_until(Duration::from_secs(10), |r| r.iter().any(|x| x.path == "/ops"))
        .await;
    let events = told(&receiver);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["data"]["reason"], "failingFor");
    let since: chrono::DateTime<chrono::Utc> = events[0]["data"]["failSince"]
        .as_str()
        .expect("failSince")
        .parse()
        .expect("a time");
    assert!(
        since < restarted_at && (first - since).num_milliseconds().abs() < 1000,
        "the streak began with the first failure ({first}), not at the restart ({restarted_at}): {since}"
    );
    assert!(
        (off_at - since).num_milliseconds() >= 2900,
        "not before its time: failing since {since}, disabled by {off_at}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_recovered_and_exhausted_are_told() {
    const SCALE: f64 = 20.0;
    let dir = temp_dir();
    let server = Server::start_with(dir.path(), ServerOptions::scaled(SCALE));
    // Message 1 fails four times, then succeeds; message 2 never does.
    let receiver = Receiver::start_with(Arc::new(|r: &Received, before| {
        let n = serde_json::from_slice::<Value>(&r.body).ok().map(|b| b["n"].clone());
        let code = match (r.path.as_str(), n) {
            ("/hook", Some(n)) if n == 1 && before >= 4 => 200,
            ("/hook", _) => 500,
            _ => 200,
        };
        (code, Duration::ZERO, "x".into())
    }))
    .await;
    operational(
        &server,
        &receiver,
        &[
            "message.attempt.failing",
            "message.attempt.recovered",
            "message.attempt.exhausted",
        ],
    )
    .await;
    let app = server.create_app("told").await;
    server
        .create_endpoint(
            &app,
            json!({
                "url": format!("{}/hook", receiver.url),
                "retrySchedule": {"kind": "delays", "delaysSecs": [1, 1, 1, 1, 1], "jitter": false},
            }),
        )
        .await;
    let recovered = server.send(&app, "disable.test", json!({"n": 1})).await;
    let exhausted = server.send(&app, "disable.test", json!({"n": 2})).await;
    receiver
        .wait_until(Duration::from_secs(20), |r| {
            r.iter().filter(|x| x.path == "/ops").count() >= 4
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = told(&receiver);
    let of = |msg: &str| -> Vec<(String, i64)> {
        events
            .iter()
            .filter(|e| e["data"]["msgId"] == msg)
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or_default().to_owned(),
                    e["data"]["lastAttempt"]["responseStatusCode"]
                        .as_i64()
                        .unwrap_or_default(),
                )
            })
            .collect()
    };
    assert_eq!(
        of(&recovered),
        vec![
            ("message.attempt.failing".to_owned(), 500),
            ("message.attempt.recovered".to_owned(), 200)
        ],
        "{events:?}"
    );
    assert_eq!(
        of(&exhausted),
        vec![
            ("message.attempt.failing".to_owned(), 500),
            ("message.attempt.exhausted".to_owned(), 500)
        ],
        "{events:?}"
    );
    assert_eq!(events.len(), 4, "{events:?}");
}

#[tokio::test]
async fn a_bad_rule_is_a_422_and_null_goes_back_to_the_default() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let app = server.create_app("rule-api").await;
    for (rule, field) in [
        (json!({"consecutiveFailedMessages": 0}), "consecutiveFailedMessages"),
        (json!({"failingForSecs": 400 * 24 * 3600}), "failingForSecs"),
    ] {
        let (status, err) = server
            .post(
                &format!("/app/{app}/endpoint/"),
                json!({"url": "http://127.0.0.1:9/hook", "disableRule": rule}),
            )
            .await;
        assert_eq!(status, 422, "{rule}: {err}");
        assert_eq!(err["detail"][0]["loc"], json!(["body", "disableRule", field]), "{err}");
    }
    let (status, err) = server
        .post(
            &format!("/app/{app}/endpoint/"),
            json!({"url": "http://127.0.0.1:9/hook", "disableRule": {"afterDays": 3}}),
        )
        .await;
    assert_eq!(status, 422, "an unknown key: {err}");

    let (id, _) = server
        .create_endpoint(
            &app,
            json!({"url": "http://127.0.0.1:9/hook", "disableRule": {"consecutiveFailedMessages": 5}}),
        )
        .await;
    let path = format!("/app/{app}/endpoint/{id}/");
    let (_, ep) = server.get(&path).await;
    assert_eq!(
        ep["disableRule"],
        json!({"failingForSecs": 432000, "consecutiveFailedMessages": 5}),
        "the duration keeps its default"
    );
    let (status, ep) = server
        .request(reqwest::Method::PATCH, &path, Some(json!({"disableRule": null})))
        .await;
    assert_eq!(status, 200, "{ep}");
    assert!(ep.get("disableRule").is_none(), "{ep}");
}
