//! Per-endpoint delivery policy: an endpoint's own retry schedule is what
//! the receiver sees on the wire, and it reads back, changes and goes back
//! to the default through the API.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Receiver, Server, ServerOptions, temp_dir};

/// Every delay divided by this: a schedule's seconds arrive as 50 ms steps.
const SCALE: f64 = 20.0;

/// The gaps between the arrivals of one message, in milliseconds.
fn gaps_ms(r: &Receiver) -> Vec<u128> {
    let at: Vec<_> = r.requests().iter().map(|x| x.at).collect();
    at.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect()
}

/// An endpoint whose receiver always fails, with `schedule`; one message
/// sent. Returns once `arrivals` requests came in, and after a quiet period
/// long enough for one more retry to have shown.
async fn failing_with(schedule: Value, arrivals: usize) -> (Receiver, Vec<u128>) {
    let dir = temp_dir();
    let server = Server::start_with(dir.path(), ServerOptions::scaled(SCALE));
    let receiver = Receiver::start_with(Arc::new(|_, _| (500, Duration::ZERO, "down".into()))).await;
    let app = server.create_app("policy").await;
    server
        .create_endpoint(
            &app,
            json!({"url": format!("{}/hook", receiver.url), "retrySchedule": schedule}),
        )
        .await;
    server.send(&app, "policy.test", json!({"n": 1})).await;
    receiver
        .wait_until(Duration::from_secs(20), |r| r.len() >= arrivals)
        .await;
    // Longer than any step of these schedules (at most 10 s / SCALE).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let gaps = gaps_ms(&receiver);
    assert_eq!(receiver.requests().len(), arrivals, "then no more: gaps {gaps:?}");
    let ids: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "one message, retried: {ids:?}");
    (receiver, gaps)
}

/// Each gap is at least its step (scaled) and not far past it: the timing
/// pattern, not only the count.
fn assert_steps(gaps: &[u128], steps_secs: &[f64]) {
    assert_eq!(gaps.len(), steps_secs.len(), "{gaps:?}");
    for (gap, step) in gaps.iter().zip(steps_secs) {
        let want = (step * 1000.0 / SCALE) as u128;
        assert!(
            *gap + 5 >= want && *gap <= want + 400,
            "gap {gap} ms for a step of {want} ms: {gaps:?}"
        );
    }
}

#[tokio::test]
async fn explicit_delays_without_jitter_are_kept_exactly() {
    let (_r, gaps) = failing_with(json!({"kind": "delays", "delaysSecs": [2, 6, 4], "jitter": false}), 4).await;
    assert_steps(&gaps, &[2.0, 6.0, 4.0]);
}

#[tokio::test]
async fn exponential_grows_to_its_cap_and_stops() {
    // 2 s, 4 s, then capped at 6 s, 6 s: four retries.
    let (_r, gaps) = failing_with(
        json!({"kind": "exponential", "initialSecs": 2, "factor": 2, "maxSecs": 6, "attempts": 4, "jitter": false}),
        5,
    )
    .await;
    assert_steps(&gaps, &[2.0, 4.0, 6.0, 6.0]);
}

#[tokio::test]
async fn kind_none_sends_once() {
    let (_r, gaps) = failing_with(json!({"kind": "none"}), 1).await;
    assert!(gaps.is_empty());
}

#[tokio::test]
async fn the_schedule_reads_back_changes_and_resets() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let app = server.create_app("policy-api").await;
    let schedule = json!({"kind": "delays", "delaysSecs": [60.0, 120.0, 180.0, 240.0], "jitter": false});
    let (id, _) = server
        .create_endpoint(
            &app,
            json!({"url": "http://127.0.0.1:9/hook", "retrySchedule": schedule}),
        )
        .await;
    let path = format!("/app/{app}/endpoint/{id}/");
    let (status, ep) = server.get(&path).await;
    assert_eq!(status, 200, "{ep}");
    assert_eq!(ep["retrySchedule"], schedule);

    // Jitter is on unless turned off, and shows so.
    let exp = json!({"kind": "exponential", "initialSecs": 1, "factor": 3, "maxSecs": 600, "attempts": 6});
    let (status, ep) = server
        .request(reqwest::Method::PATCH, &path, Some(json!({"retrySchedule": exp})))
        .await;
    assert_eq!(status, 200, "{ep}");
    assert_eq!(
        ep["retrySchedule"],
        json!({"kind": "exponential", "initialSecs": 1.0, "factor": 3.0, "maxSecs": 600.0, "attempts": 6, "jitter": true})
    );

    // A patch that leaves it out keeps it; `null` goes back to the default.
    let (_, ep) = server
        .request(reqwest::Method::PATCH, &path, Some(json!({"description": "x"})))
        .await;
    assert_eq!(ep["retrySchedule"]["kind"], "exponential");
    let (status, ep) = server
        .request(reqwest::Method::PATCH, &path, Some(json!({"retrySchedule": null})))
        .await;
    assert_eq!(status, 200, "{ep}");
    assert!(ep.get("retrySchedule").is_none(), "{ep}");
    let (_, ep) = server.get(&path).await;
    assert!(ep.get("retrySchedule").is_none(), "{ep}");
}

#[tokio::test]
async fn a_bad_schedule_is_a_422_naming_the_field() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let app = server.create_app("policy-bad").await;
    let create = |schedule: &Value| {
        let body = json!({"url": "http://127.0.0.1:9/hook", "retrySchedule": schedule});
        let path = format!("/app/{app}/endpoint/");
        let server = &server;
        async move { server.post(&path, body).await }
    };
    for (schedule, field) in [
        (json!({"kind": "delays", "delaysSecs": []}), "delaysSecs"),
        (json!({"kind": "delays", "delaysSecs": [5, 0]}), "delaysSecs"),
        (json!({"kind": "delays", "delaysSecs": [700000]}), "delaysSecs"),
        (
            json!({"kind": "exponential", "initialSecs": 5, "factor": 2, "maxSecs": 1, "attempts": 3}),
            "maxSecs",
        ),
        (
            json!({"kind": "exponential", "initialSecs": 1, "factor": 0.5, "maxSecs": 9, "attempts": 3}),
            "factor",
        ),
        (
            json!({"kind": "exponential", "initialSecs": 1, "factor": 2, "maxSecs": 9, "attempts": 51}),
            "attempts",
        ),
    ] {
        let (status, err) = create(&schedule).await;
        assert_eq!(status, 422, "{schedule}: {err}");
        assert_eq!(
            err["detail"][0]["loc"],
            json!(["body", "retrySchedule", field]),
            "{schedule}: {err}"
        );
    }
    // A shape that is not a schedule (an unknown kind, a misspelt field).
    for schedule in [
        json!({"kind": "linear", "delaysSecs": [5]}),
        json!({"kind": "delays", "delays": [5]}),
        json!([5, 10]),
    ] {
        let (status, err) = create(&schedule).await;
        assert_eq!(status, 422, "{schedule}: {err}");
        assert!(err.to_string().contains("retrySchedule"), "{schedule}: {err}");
    }
    let (_, list) = server.get(&format!("/app/{app}/endpoint/")).await;
    assert_eq!(list["data"], json!([]), "nothing was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_the_endpoint_at_once_and_says_so() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let dir = temp_dir();
    let server = Server::start_with(dir.path(), ServerOptions::scaled(SCALE));
    let gone = Arc::new(AtomicBool::new(true));
    let answer = gone.clone();
    let receiver = Receiver::start_with(Arc::new(move |r: &crate::harness::Received, _| {
        let status = if r.path == "/hook" && answer.load(Ordering::SeqCst) {
            410
        } else {
            200
        };
        (status, Duration::ZERO, "gone".into())
    }))
    .await;
    let (status, ops) = server
        .post(
            "/operational-webhook/endpoint/",
            json!({"url": format!("{}/ops", receiver.url), "filterTypes": ["endpoint.disabled"]}),
        )
        .await;
    assert_eq!(status, 201, "{ops}");
    let app = server.create_app("gone").await;
    let (ep, _) = server
        .create_endpoint(&app, json!({"url": format!("{}/hook", receiver.url)}))
        .await;
    let path = format!("/app/{app}/endpoint/{ep}/");

    let first = server.send(&app, "policy.test", json!({"n": 1})).await;
    let got = receiver
        .wait_until(Duration::from_secs(20), |r| r.iter().any(|x| x.path == "/ops"))
        .await;
    let told: Vec<Value> = got
        .iter()
        .filter(|r| r.path == "/ops")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["type"], "endpoint.disabled");
    assert_eq!(told[0]["data"]["endpointId"], ep.as_str());
    assert_eq!(told[0]["data"]["trigger"], "automatic");
    let (_, read) = server.get(&path).await;
    assert_eq!(read["disabled"], true, "{read}");

    // The 410 was not retried (the default schedule's first retry is 5 s,
    // a quarter second here), and nothing more goes to it while disabled.
    server.send(&app, "policy.test", json!({"n": 2})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.on_path("/hook").len(), 1, "one request, for the first message");
    let (_, attempts) = server.get(&format!("/app/{app}/attempt/msg/{first}/")).await;
    assert_eq!(attempts["data"].as_array().unwrap().len(), 1, "{attempts}");
    assert_eq!(attempts["data"][0]["responseStatusCode"], 410);
    let (_, list) = server.get(&format!("/app/{app}/msg/{first}/endpoint/")).await;
    assert_eq!(list["data"][0]["status"], 2, "given up (Fail): {list}");

    // Enabled again by the API, it receives new messages, and `recover`
    // sends what failed. A message posted while it was disabled was never
    // meant for it (fan-out skips a disabled endpoint), so `recover` leaves
    // it; `replay-missing` is what would send it.
    gone.store(false, Ordering::SeqCst);
    let (status, read) = server
        .request(reqwest::Method::PATCH, &path, Some(json!({"disabled": false})))
        .await;
    assert_eq!(status, 200, "{read}");
    server.send(&app, "policy.test", json!({"n": 3})).await;
    let since = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let (status, task) = server
        .post(&format!("/app/{app}/endpoint/{ep}/recover/"), json!({"since": since}))
        .await;
    assert_eq!(status, 202, "{task}");
    let got = receiver
        .wait_until(Duration::from_secs(20), |r| {
            r.iter().filter(|x| x.path == "/hook").count() >= 3
        })
        .await;
    let ns: Vec<i64> = got
        .iter()
        .filter(|r| r.path == "/hook")
        .skip(1)
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["n"].as_i64().unwrap())
        .collect();
    let mut sorted = ns.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![1, 3], "the one that failed, and the new one: {ns:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.on_path("/hook").len(), 3, "and nothing more");
}

#[tokio::test]
async fn https_can_be_required_of_every_endpoint() {
    let dir = temp_dir();
    let receiver = Receiver::start().await;
    let plain = format!("{}/hook", receiver.url);
    // Saved while the server still allowed it.
    let (app, old) = {
        let server = Server::start(dir.path());
        let app = server.create_app("https").await;
        let (ep, _) = server.create_endpoint(&app, json!({"url": plain})).await;
        (app, ep)
    };

    let server = Server::start_with(
        dir.path(),
        ServerOptions {
            extra_args: vec!["--require-https".into()],
            ..ServerOptions::default()
        },
    );
    let refused = |what: &str, status: u16, err: &Value| {
        assert_eq!(status, 422, "{what}: {err}");
        assert_eq!(err["detail"][0]["loc"], json!(["body", "url"]), "{what}: {err}");
        assert!(err.to_string().contains("https://"), "{what}: {err}");
    };
    let (status, err) = server
        .post(&format!("/app/{app}/endpoint/"), json!({"url": plain}))
        .await;
    refused("create", status, &err);
    let (status, err) = server
        .request(
            reqwest::Method::PATCH,
            &format!("/app/{app}/endpoint/{old}/"),
            Some(json!({"url": "http://127.0.0.1:9/other"})),
        )
        .await;
    refused("patch", status, &err);
    let (status, err) = server
        .post("/operational-webhook/endpoint/", json!({"url": plain}))
        .await;
    refused("operational", status, &err);
    let (status, ep) = server
        .post(
            &format!("/app/{app}/endpoint/"),
            json!({"url": "https://127.0.0.1:9/hook", "filterTypes": null, "description": "tls"}),
        )
        .await;
    assert_eq!(status, 201, "https is accepted: {ep}");

    // The endpoint saved before gets nothing: its attempt is blocked.
    let msg = server.send(&app, "policy.test", json!({"n": 1})).await;
    let attempts = server
        .wait_attempts(&app, &msg, Duration::from_secs(20), |a| {
            a.iter().any(|x| x["endpointId"] == old.as_str())
        })
        .await;
    let on_old: Vec<&Value> = attempts.iter().filter(|x| x["endpointId"] == old.as_str()).collect();
    assert_eq!(on_old[0]["errorKind"], "blocked", "{on_old:?}");
    assert!(
        on_old[0]["response"].as_str().unwrap().contains("https://"),
        "{on_old:?}"
    );
    assert!(receiver.requests().is_empty(), "nothing went out over http");
}

#[tokio::test]
async fn send_example_sends_the_test_event_now_when_no_type_is_given() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let receiver = Receiver::start().await;
    server.create_event_types(&["invoice.paid"]).await;
    let app = server.create_app("example").await;
    // Subscribed to something else: a test event goes to it all the same.
    let (ep, secret) = server
        .create_endpoint(
            &app,
            json!({"url": format!("{}/hook", receiver.url), "filterTypes": ["invoice.paid"]}),
        )
        .await;
    let (status, msg) = server
        .post(&format!("/app/{app}/endpoint/{ep}/send-example/"), json!({}))
        .await;
    assert_eq!(status, 200, "{msg}");
    assert_eq!(msg["eventType"], "webhook.test");
    let got = receiver.wait_until(Duration::from_secs(10), |r| !r.is_empty()).await;
    assert_eq!(got.len(), 1);
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body, json!({"success": true}));
    assert_eq!(got[0].header("webhook-id"), msg["id"].as_str().unwrap());
    let verified = herald_verify::Webhook::new(&secret)
        .unwrap()
        .verify(&got[0].headers, &got[0].body);
    assert!(verified.is_ok(), "signed like any delivery: {verified:?}");
}

/// `sha256=<hex HMAC-SHA256(key, body)>` as openssl computes it: code that
/// shares nothing with Herald's.
fn openssl_hmac_hex(key: &[u8], body: &[u8]) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-mac", "HMAC", "-macopt", &format!("hexkey:{hex}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
    // "HMAC-SHA2-256(stdin)= <hex>"
    format!("sha256={}", out.trim().rsplit(' ').next().unwrap())
}

#[tokio::test]
async fn body_signatures_are_sent_in_the_header_asked_for() {
    use base64::Engine as _;
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let receiver = Receiver::start().await;
    let app = server.create_app("body-sig").await;
    let key: Vec<u8> = (1..=32).collect();
    let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(&key));
    let (only, _) = server
        .create_endpoint(
            &app,
            json!({"url": format!("{}/only", receiver.url), "secret": secret,
                   "bodySignature": {"header": "X-Signature", "standardSignature": false}}),
        )
        .await;
    server
        .create_endpoint(
            &app,
            json!({"url": format!("{}/both", receiver.url), "secret": secret, "bodySignature": {}}),
        )
        .await;
    let (_, read) = server.get(&format!("/app/{app}/endpoint/{only}/")).await;
    assert_eq!(
        read["bodySignature"],
        json!({"header": "x-signature", "standardSignature": false})
    );
    server.send(&app, "policy.test", json!({"n": 1, "text": "é"})).await;
    let got = receiver.wait_until(Duration::from_secs(10), |r| r.len() >= 2).await;
    let only_req = got.iter().find(|r| r.path == "/only").unwrap();
    let both_req = got.iter().find(|r| r.path == "/both").unwrap();

    let want = openssl_hmac_hex(&key, &only_req.body);
    assert_eq!(only_req.header("x-signature"), want);
    assert!(only_req.headers.get("webhook-signature").is_none(), "only this style");
    assert!(only_req.headers.get("svix-signature").is_none());
    assert!(!only_req.header("webhook-id").is_empty(), "the id stays");
    herald_verify::BodySignature::from_whsec(&secret)
        .unwrap()
        .header_name("x-signature")
        .verify(&only_req.headers, &only_req.body)
        .expect("herald-verify agrees");

    assert_eq!(
        both_req.header("x-webhook-signature"),
        openssl_hmac_hex(&key, &both_req.body)
    );
    herald_verify::Webhook::new(&secret)
        .unwrap()
        .verify(&both_req.headers, &both_req.body)
        .expect("and the Standard Webhooks signature beside it");

    // `null` goes back to Standard Webhooks alone.
    let (status, ep) = server
        .request(
            reqwest::Method::PATCH,
            &format!("/app/{app}/endpoint/{only}/"),
            Some(json!({"bodySignature": null})),
        )
        .await;
    assert_eq!(status, 200, "{ep}");
    assert!(ep.get("bodySignature").is_none(), "{ep}");
}

#[tokio::test]
async fn a_body_signature_needs_a_symmetric_secret_and_a_free_header() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let app = server.create_app("body-sig-bad").await;
    let url = "http://127.0.0.1:9/hook";
    let (status, err) = server
        .post(
            &format!("/app/{app}/endpoint/"),
            json!({"url": url, "secret": herald_core::signing::EndpointSecret::generate_asymmetric().to_wire_string(),
                   "bodySignature": {}}),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["detail"][0]["loc"], json!(["body", "bodySignature"]), "{err}");
    for header in ["webhook-signature", "Content-Type", "bad header"] {
        let (status, err) = server
            .post(
                &format!("/app/{app}/endpoint/"),
                json!({"url": url, "bodySignature": {"header": header}}),
            )
            .await;
        assert_eq!(status, 422, "{header}: {err}");
        assert_eq!(
            err["detail"][0]["loc"],
            json!(["body", "bodySignature", "header"]),
            "{header}: {err}"
        );
    }
}

#[tokio::test]
async fn rate_limit_spaces_requests_evenly() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let receiver = Receiver::start().await;
    let app = server.create_app("rate").await;
    server
        .create_endpoint(&app, json!({"url": format!("{}/slow", receiver.url), "rateLimit": 20}))
        .await;
    server
        .create_endpoint(&app, json!({"url": format!("{}/free", receiver.url)}))
        .await;
    for n in 0..40 {
        server.send(&app, "policy.test", json!({"n": n})).await;
    }
    let got = receiver
        .wait_until(Duration::from_secs(20), |r| {
            r.iter().filter(|x| x.path == "/slow").count() >= 40
        })
        .await;
    let at = |path: &str| -> Vec<std::time::Instant> { got.iter().filter(|r| r.path == path).map(|r| r.at).collect() };
    let (slow, free) = (at("/slow"), at("/free"));
    // 40 at 20 a second: the last at least 39 intervals (1.95 s) after the
    // first, and no one-second window holds more than 20 (21 allowed for
    // the jitter of loopback between start and arrival).
    let span = slow[39] - slow[0];
    assert!(span >= Duration::from_millis(1900), "{span:?}");
    for (i, t) in slow.iter().enumerate() {
        let within = slow[i..]
            .iter()
            .take_while(|u| **u - *t < Duration::from_secs(1))
            .count();
        assert!(within <= 21, "{within} requests within a second of request {i}");
    }
    // The endpoint with no limit is not held back by the other's.
    assert_eq!(free.len(), 40);
    assert!(
        free[39] < slow[39] - Duration::from_millis(1000),
        "{:?} vs {:?}",
        free[39] - free[0],
        span
    );
}
