//! `examples/providers/*.json` on the wire: each file, posted as it is
//! (only its URL pointed at a real receiver on loopback), reproduces its
//! platform's published behaviour (SPEC §6): retry timing under
//! `HERALD_TIME_SCALE`, headers and signature checked the way that platform
//! tells its receivers to, body shape, batching, disabling and reactivation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::harness::{Received, Receiver, Server, ServerOptions, temp_dir};

/// The provider file `name`, with its URL on `receiver` at `path`.
fn provider(name: &str, receiver: &Receiver, path: &str) -> Value {
    let file = format!("{}/../../examples/providers/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    body["url"] = json!(format!("{}{path}", receiver.url));
    body
}

/// The gaps between consecutive requests on `path`.
fn gaps(received: &[Received], path: &str) -> Vec<Duration> {
    let at: Vec<_> = received.iter().filter(|r| r.path == path).map(|r| r.at).collect();
    at.windows(2).map(|w| w[1].duration_since(w[0])).collect()
}

/// Each gap is its scheduled wait, give or take what a busy machine adds.
fn assert_waits(got: &[Duration], want_secs: &[f64], scale: f64) {
    assert_eq!(got.len(), want_secs.len(), "{got:?}");
    for (g, w) in got.iter().zip(want_secs) {
        let w = Duration::from_secs_f64(w / scale);
        assert!(
            *g >= w.mul_f64(0.9) && *g <= w.mul_f64(1.5) + Duration::from_millis(200),
            "waited {got:?}, scheduled {want_secs:?} s at scale {scale}"
        );
    }
}

fn json_of(r: &Received) -> Value {
    serde_json::from_slice(&r.body).expect("JSON body")
}

/// `path` answers with `status` for the first `fails` requests of each
/// message, then 200; any other path, 200.
fn failing(path: &'static str, fails: usize, status: u16) -> crate::harness::Behaviour {
    Arc::new(move |r: &Received, before| {
        let code = if r.path == path && before < fails { status } else { 200 };
        (code, Duration::ZERO, "x".into())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaster_basic_auth_and_retries_a_minute_apart_more_each_time() {
    const SCALE: f64 = 120.0;
    let dir = temp_dir();
    let server = Server::start_with(dir.path(), ServerOptions::scaled(SCALE));
    let receiver = Receiver::start_with(failing("/lock", 4, 500)).await;
    let app = server.create_app("chaster").await;
    // `filterTypes` names event types that exist.
    server.create_event_types(&["lock.created", "lock.deleted"]).await;
    server
        .create_endpoint(&app, provider("chaster", &receiver, "/lock"))
        .await;
    // Another event type goes nowhere: the URL is this event type's.
    server.send(&app, "lock.deleted", json!({"lockId": "x"})).await;
    let msg = server
        .send(&app, "lock.created", json!({"lockId": "l1", "userId": "u1"}))
        .await;
    let got = receiver.wait_until(Duration::from_secs(20), |r| r.len() >= 5).await;
    assert_eq!(got.len(), 5, "the first try and four retries: {got:?}");
    assert_waits(&gaps(&got, "/lock"), &[60.0, 120.0, 180.0, 240.0], SCALE);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("extension-id:replace-with-the-extension-secret")
    );
    for r in &got {
        assert_eq!(r.header("authorization"), basic);
        assert_eq!(
            json_of(r),
            json!({"lockId": "l1", "userId": "u1"}),
            "one JSON event, as posted"
        );
    }
    let attempts = server
        .wait_attempts(&app, &msg, Duration::from_secs(10), |a| a.len() >= 5)
        .await;
    let mut codes: Vec<i64> = attempts
        .iter()
        .map(|a| a["responseStatusCode"].as_i64().unwrap())
        .collect();
    codes.sort();
    assert_eq!(codes, vec![200, 500, 500, 500, 500], "history with status codes");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.requests().len(), 5, "lock.deleted was not sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chekt_hmac_envelope_test_event_and_disabling_after_three() {
    const SCALE: f64 = 100.0;
    let dir = temp_dir();
    let server = Server::start_with(dir.path(), ServerOptions::scaled(SCALE));
    let dead = Arc::new(AtomicU16::new(200));
    let behaviour = {
        let dead = dead.clone();
        let retried = failing("/alarm", 2, 503);
        Arc::new(move |r: &Received, before| match r.path.as_str() {
            "/dead" => (dead.load(Ordering::SeqCst), Duration::ZERO, "down".into()),
            _ => retried(r, before),
        }) as crate::harness::Behaviour
    };
    let receiver = Receiver::start_with(behaviour).await;
    let app = server.create_app("chekt").await;
    let file = provider("chekt", &receiver, "/alarm");
    let (ep, secret) = server.create_endpoint(&app, file.clone()).await;
    assert_eq!(secret, file["secret"].as_str().unwrap());

    let msg = server
        .send(&app, "alarm.triggered", json!({"site": 7, "zone": "B"}))
        .await;
    let got = receiver.wait_until(Duration::from_secs(20), |r| r.len() >= 3).await;
    assert_eq!(got.len(), 3, "{got:?}");
    assert_waits(&gaps(&got, "/alarm"), &[5.0, 30.0], SCALE);
    // CHeKT's receivers: HMAC-SHA256 of the raw body with the shared
    // secret, lower-case hex, after `sha256=`.
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    for r in &got {
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(&r.body);
        let want: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(r.header("x-webhook-signature"), format!("sha256={want}"));
        assert_eq!(r.header("webhook-signature"), "", "only the platform's own signature");
        let body = json_of(r);
        assert_eq!(body["event"], "alarm.triggered");
        assert_eq!(body["webhook_id"], msg.as_str());
        assert_eq!(body["data"], json!({"site": 7, "zone": "B"}));
        assert_eq!(body["timestamp"].to_string(), r.header("webhook-timestamp"), "{body}");
        assert_eq!(body.as_object().unwrap().len(), 4, "{body}");
    }

    // The platform's test event.
    let (status, out) = server
        .post(&format!("/app/{app}/endpoint/{ep}/send-example/"), json!({}))
        .await;
    assert!(status == 202 || status == 200, "{status} {out}");
    let got = receiver
        .wait_until(Duration::from_secs(10), |r| {
            r.iter().any(|x| json_of(x)["event"] == "webhook.test")
        })
        .await;
    assert!(got.iter().any(|x| json_of(x)["event"] == "webhook.test"));

    // Three deliveries in a row given up disable the endpoint.
    dead.store(500, Ordering::SeqCst);
    let (dead_ep, _) = server
        .create_endpoint(&app, provider("chekt", &receiver, "/dead"))
        .await;
    let path = format!("/app/{app}/endpoint/{dead_ep}/");
    for n in 0..2 {
        server
            .post(
                &format!("/app/{app}/msg/"),
                json!({"eventType": "alarm.triggered", "payload": {"n": n}}),
            )
            .await;
    }
    assert!(
        !server.disabled_within(&path, Duration::from_secs(5)).await,
        "two given up"
    );
    server.send(&app, "alarm.triggered", json!({"n": 2})).await;
    assert!(
        server.disabled_within(&path, Duration::from_secs(10)).await,
        "the third disables it"
    );
    let (status, ep) = server
        .request(reqwest::Method::PATCH, &path, Some(json!({"disabled": false})))
        .await;
    assert_eq!(status, 200, "{ep}");
    assert_eq!(ep["disabled"], false, "re-activated by API");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synthesisvr_http_batches_no_retries_and_a_two_second_timeout() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let receiver = Receiver::start_with(Arc::new(|r: &Received, _| match r.path.as_str() {
        "/down" => (500, Duration::ZERO, "x".into()),
        "/slow" => (200, Duration::from_millis(3000), "x".into()),
        _ => (200, Duration::ZERO, "x".into()),
    }))
    .await;
    let app = server.create_app("venue").await;
    let file = provider("synthesisvr", &receiver, "/events");
    assert!(file["url"].as_str().unwrap().starts_with("http://"), "plain http");
    server.create_endpoint(&app, file).await;
    let posted = Instant::now();
    for n in 0..20 {
        server.send(&app, "session.started", json!({"station": n})).await;
    }
    let got = receiver
        .wait_until(Duration::from_secs(10), |r| {
            r.iter()
                .map(|x| json_of(x).as_array().map_or(0, Vec::len))
                .sum::<usize>()
                >= 20
        })
        .await;
    let mut stations: Vec<i64> = got
        .iter()
        .flat_map(|r| json_of(r).as_array().cloned().expect("a JSON array"))
        .map(|e| e["station"].as_i64().unwrap())
        .collect();
    stations.sort();
    assert_eq!(stations, (0..20).collect::<Vec<_>>());
    assert!(got.len() <= 2, "batched: {} requests", got.len());
    assert!(
        got[0].at.duration_since(posted) >= Duration::from_millis(900),
        "the batch waited for more"
    );
    let app2 = server.create_app("venue-2").await;
    server
        .create_endpoint(&app2, provider("synthesisvr", &receiver, "/down"))
        .await;
    let down = server.send(&app2, "session.started", json!({"station": 1})).await;
    let app3 = server.create_app("venue-3").await;
    server
        .create_endpoint(&app3, provider("synthesisvr", &receiver, "/slow"))
        .await;
    let slow = server.send(&app3, "session.started", json!({"station": 2})).await;
    let attempts = server
        .wait_attempts(&app3, &slow, Duration::from_secs(10), |a| !a.is_empty())
        .await;
    assert_eq!(attempts[0]["errorKind"], "timeout", "{attempts:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let attempts = server
        .wait_attempts(&app2, &down, Duration::from_secs(5), |a| !a.is_empty())
        .await;
    assert_eq!(attempts.len(), 1, "no retries: {attempts:?}");
    assert_eq!(receiver.on_path("/down").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chative_verify_token_envelope_five_retries_then_deactivated_and_recovered() {
    const SCALE: f64 = 50.0;
    let dir = temp_dir();
    let server = Server::start_with(dir.path(), ServerOptions::scaled(SCALE));
    let status = Arc::new(AtomicU16::new(500));
    let receiver = Receiver::start_with({
        let status = status.clone();
        Arc::new(move |_: &Received, _| (status.load(Ordering::SeqCst), Duration::ZERO, "x".into()))
    })
    .await;
    let app = server.create_app("crm").await;
    let file = provider("chative", &receiver, "/crm");
    let token = file["verifyToken"]["token"].as_str().unwrap().to_owned();
    let (ep, _) = server.create_endpoint(&app, file).await;
    let path = format!("/app/{app}/endpoint/{ep}/");
    let since = chrono::Utc::now() - chrono::Duration::minutes(1);
    let msg = server
        .send(&app, "message.received", json!({"text": "hi", "from": "u9"}))
        .await;
    let got = receiver.wait_until(Duration::from_secs(20), |r| r.len() >= 6).await;
    assert_eq!(got.len(), 6, "the first try and 5 retries");
    assert_waits(&gaps(&got, "/crm"), &[5.0; 5], SCALE);
    let first_sent = json_of(&got[0])["firstSentAt"].clone();
    for (i, r) in got.iter().enumerate() {
        // Chative's receivers compare the token in the body with theirs.
        let body = json_of(r);
        assert_eq!(body["infoWebhook"]["verifyToken"], token.as_str(), "{body}");
        assert_eq!(body["_id"], msg.as_str());
        assert_eq!(body["event"], "message.received");
        assert_eq!(body["deliveryAttempts"], i as i64 + 1);
        assert_eq!(body["firstSentAt"], first_sent);
        assert_eq!(body["items"], json!([{"text": "hi", "from": "u9"}]));
        assert!(body["createdAt"].is_string());
    }
    assert!(
        server.disabled_within(&path, Duration::from_secs(10)).await,
        "deactivated"
    );
    let (_, read) = server.get(&path).await;
    assert!(!read.to_string().contains(&token), "the token is never shown: {read}");

    // Re-activated by API, then what failed is sent again.
    status.store(200, Ordering::SeqCst);
    let (code, out) = server
        .request(reqwest::Method::PATCH, &path, Some(json!({"disabled": false})))
        .await;
    assert_eq!(code, 200, "{out}");
    let (code, out) = server
        .post(
            &format!("/app/{app}/endpoint/{ep}/recover/"),
            json!({"since": since.to_rfc3339()}),
        )
        .await;
    assert!(code == 202 || code == 200, "{code} {out}");
    let got = receiver.wait_until(Duration::from_secs(10), |r| r.len() >= 7).await;
    assert_eq!(got.len(), 7);
    assert_eq!(json_of(&got[6])["_id"], msg.as_str());
    let attempts = server
        .wait_attempts(&app, &msg, Duration::from_secs(10), |a| {
            a.iter().any(|x| x["responseStatusCode"] == 200)
        })
        .await;
    assert!(attempts.iter().any(|x| x["responseStatusCode"] == 200), "{attempts:?}");
}
