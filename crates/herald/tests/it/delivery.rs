//! What arrives on the wire: fan-out, headers, body, retries, failures.

use std::sync::Arc;
use std::time::Duration;

use herald_core::signing::{EndpointSecret, verify_signature};
use serde_json::{Value, json};

use crate::harness::{Receiver, Server, ServerOptions, TOKEN, temp_dir};

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn fan_out_follows_filter_types_channels_and_disabled() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let receiver = Receiver::start().await;
    let app = server.create_app("fanout").await;
    server.create_event_types(&["invoice.paid"]).await;
    let url = |p: &str| format!("{}/{p}", receiver.url);
    server.create_endpoint(&app, json!({"url": url("all")})).await;
    server
        .create_endpoint(&app, json!({"url": url("invoices"), "filterTypes": ["invoice.paid"]}))
        .await;
    server
        .create_endpoint(&app, json!({"url": url("eu"), "channels": ["eu"]}))
        .await;
    server
        .create_endpoint(
            &app,
            json!({"url": url("eu-invoices"), "eventTypes": ["invoice.paid"], "channels": ["eu", "us"]}),
        )
        .await;
    server
        .create_endpoint(&app, json!({"url": url("off"), "disabled": true}))
        .await;

    let send = |event_type: &'static str, channels: Value| {
        let server = &server;
        let app = app.clone();
        async move {
            let (status, msg) = server
                .post(
                    &format!("/app/{app}/msg/"),
                    json!({"eventType": event_type, "channels": channels, "payload": {}}),
                )
                .await;
            assert_eq!(status, 202);
            msg["id"].as_str().unwrap().to_owned()
        }
    };
    let m1 = send("invoice.paid", Value::Null).await;
    let m2 = send("user.created", json!(["eu"])).await;
    let m3 = send("invoice.paid", json!(["us"])).await;

    // all: 3; invoices: m1, m3; eu: m2; eu-invoices: m3; off: none => 7
    let got = receiver.wait_until(WAIT, |r| r.len() >= 7).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_after = receiver.requests();
    assert_eq!(got.len(), 7);
    assert_eq!(got_after.len(), 7, "no further deliveries");
    let ids = |path: &str| {
        let mut v: Vec<String> = receiver
            .on_path(path)
            .iter()
            .map(|r| r.header("webhook-id").to_owned())
            .collect();
        v.sort();
        v
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(ids("/all"), sorted(vec![m1.clone(), m2.clone(), m3.clone()]));
    assert_eq!(ids("/invoices"), sorted(vec![m1.clone(), m3.clone()]));
    assert_eq!(ids("/eu"), vec![m2.clone()]);
    assert_eq!(ids("/eu-invoices"), vec![m3.clone()]);
    assert!(ids("/off").is_empty());
}

#[tokio::test]
async fn request_on_the_wire_is_signed_and_byte_exact() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let receiver = Receiver::start().await;
    let app = server.create_app("wire").await;
    let (_, secret) = server
        .create_endpoint(
            &app,
            json!({"url": format!("{}/hook", receiver.url), "headers": {"x-custom": "yes"}}),
        )
        .await;

    // Odd spacing, key order and unicode must survive untouched.
    let raw_payload = r#"{ "z": 1,   "a": "é ✓ \u00e9",  "n": [1.50, 2e3] }"#;
    let body = format!(r#"{{"eventType":"wire.test","payload":{raw_payload}}}"#);
    let resp = server
        .http
        .post(server.api(&format!("/app/{app}/msg/")))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let msg: Value = resp.json().await.unwrap();
    let msg_id = msg["id"].as_str().unwrap();

    let got = receiver.wait_until(WAIT, |r| !r.is_empty()).await;
    let req = &got[0];
    assert_eq!(req.path, "/hook");
    assert_eq!(&req.body[..], raw_payload.as_bytes());
    assert_eq!(req.header("content-type"), "application/json");
    assert!(req.header("user-agent").starts_with("Herald/"));
    assert_eq!(req.header("x-custom"), "yes");
    assert_eq!(req.header("webhook-id"), msg_id);
    for (std, svix) in [
        ("webhook-id", "svix-id"),
        ("webhook-timestamp", "svix-timestamp"),
        ("webhook-signature", "svix-signature"),
    ] {
        assert_eq!(req.header(std), req.header(svix), "{std} and {svix} differ");
    }
    let ts: i64 = req.header("webhook-timestamp").parse().expect("integer timestamp");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - ts).abs() < 30, "timestamp {ts} not near {now}");
    let secret = EndpointSecret::parse(&secret).unwrap();
    assert!(verify_signature(
        &secret,
        msg_id,
        ts,
        &req.body,
        req.header("webhook-signature")
    ));
    assert!(!verify_signature(
        &secret,
        msg_id,
        ts + 1,
        &req.body,
        req.header("webhook-signature")
    ));
}

#[tokio::test]
async fn failures_are_retried_with_the_same_id_and_every_attempt_recorded() {
    let dir = temp_dir();
    // 5 s and 5 min become 5 ms and 300 ms.
    let server = Server::start_with(dir.path(), ServerOptions::scaled(1000.0));
    let receiver = Receiver::start_with(Arc::new(|_, before| {
        if before < 2 {
            (500, Duration::ZERO, format!("boom {before}"))
        } else {
            (200, Duration::ZERO, "fine".into())
        }
    }))
    .await;
    let app = server.create_app("retry").await;
    server
        .create_endpoint(&app, json!({"url": format!("{}/flaky", receiver.url)}))
        .await;
    let msg = server.send(&app, "retry.test", json!({"k": "v"})).await;

    let got = receiver.wait_until(WAIT, |r| r.len() >= 3).await;
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|r| r.header("webhook-id") == msg));
    // The second retry waits ~300 ms (5 min / 1000, ±20 %).
    let gap = got[2].at - got[1].at;
    assert!(gap >= Duration::from_millis(200), "second retry came after {gap:?}");

    let attempts = server.wait_attempts(&app, &msg, WAIT, |a| a.len() >= 3).await;
    assert_eq!(attempts.len(), 3);
    // Newest first.
    let statuses: Vec<i64> = attempts.iter().map(|a| a["status"].as_i64().unwrap()).collect();
    assert_eq!(statuses, vec![0, 2, 2]);
    assert_eq!(attempts[2]["responseStatusCode"], 500);
    assert_eq!(attempts[2]["response"], "boom 0");
    assert_eq!(attempts[2]["statusText"], "fail");
    assert_eq!(attempts[2]["errorKind"], "status");
    assert_eq!(attempts[0]["response"], "fine");
    assert_eq!(attempts[0]["attemptNumber"], 3);
    assert!(attempts[0]["url"].as_str().unwrap().ends_with("/flaky"));
    assert!(attempts[0]["responseDurationMs"].as_i64().is_some());

    let ep_attempts = server
        .get(&format!(
            "/app/{app}/attempt/endpoint/{}/?status=2",
            attempts[0]["endpointId"].as_str().unwrap()
        ))
        .await
        .1;
    assert_eq!(ep_attempts["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn the_schedule_ends_after_eight_attempts() {
    let dir = temp_dir();
    // The whole default schedule (~27.5 h) takes about a second.
    let server = Server::start_with(dir.path(), ServerOptions::scaled(100_000.0));
    let receiver = Receiver::start_with(Arc::new(|_, _| (503, Duration::ZERO, "down".into()))).await;
    let app = server.create_app("exhaust").await;
    let (ep, _) = server
        .create_endpoint(&app, json!({"url": format!("{}/down", receiver.url)}))
        .await;
    let msg = server.send(&app, "x.y", json!({})).await;

    receiver.wait_until(Duration::from_secs(30), |r| r.len() >= 8).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.requests().len(), 8, "first try + 7 retries, then no more");
    let attempts = server.wait_attempts(&app, &msg, WAIT, |a| a.len() >= 8).await;
    assert_eq!(attempts.len(), 8);
    let (_, stats) = server.get(&format!("/app/{app}/endpoint/{ep}/stats/")).await;
    assert_eq!(stats["fail"], 1, "{stats}");
    assert_eq!(stats["pending"], 0, "{stats}");
}

#[tokio::test]
async fn redirects_are_failures_and_not_followed() {
    let dir = temp_dir();
    let server = Server::start_with(dir.path(), ServerOptions::scaled(1_000_000.0));
    let receiver = Receiver::start_with(Arc::new(|r, _| {
        if r.path == "/moved" {
            (302, Duration::ZERO, String::new())
        } else {
            (200, Duration::ZERO, String::new())
        }
    }))
    .await;
    let app = server.create_app("redirect").await;
    server
        .create_endpoint(&app, json!({"url": format!("{}/moved", receiver.url)}))
        .await;
    let msg = server.send(&app, "x.y", json!({})).await;
    let attempts = server.wait_attempts(&app, &msg, WAIT, |a| !a.is_empty()).await;
    assert_eq!(attempts[attempts.len() - 1]["responseStatusCode"], 302);
    assert_eq!(attempts[attempts.len() - 1]["status"], 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.on_path("/redirected").is_empty(), "the redirect was followed");
}

#[tokio::test]
async fn slow_endpoints_time_out_and_long_responses_are_cut() {
    let dir = temp_dir();
    let server = Server::start_with(dir.path(), ServerOptions::scaled(1_000_000.0));
    let receiver = Receiver::start_with(Arc::new(|r, _| match r.path.as_str() {
        "/slow" => (200, Duration::from_secs(3), String::new()),
        _ => (200, Duration::ZERO, "y".repeat(10_000)),
    }))
    .await;
    let app = server.create_app("timeouts").await;
    let (slow, _) = server
        .create_endpoint(
            &app,
            json!({"url": format!("{}/slow", receiver.url), "timeoutSecs": 0.3}),
        )
        .await;
    server
        .create_endpoint(&app, json!({"url": format!("{}/chatty", receiver.url)}))
        .await;
    let msg = server.send(&app, "x.y", json!({})).await;

    let attempts = server
        .wait_attempts(&app, &msg, WAIT, |a| {
            a.iter().any(|x| x["endpointId"] == slow.as_str()) && a.len() >= 2
        })
        .await;
    let slow_attempt = attempts.iter().find(|a| a["endpointId"] == slow.as_str()).unwrap();
    assert_eq!(slow_attempt["errorKind"], "timeout", "{slow_attempt}");
    assert_eq!(slow_attempt["responseStatusCode"], 0);
    assert!(slow_attempt["responseDurationMs"].as_u64().unwrap() < 2000);
    let chatty = attempts.iter().find(|a| a["endpointId"] != slow.as_str()).unwrap();
    assert_eq!(chatty["status"], 0);
    assert_eq!(chatty["response"].as_str().unwrap().len(), 4096);
}

#[tokio::test]
async fn the_ssrf_guard_refuses_loopback_by_default() {
    let dir = temp_dir();
    let server = Server::start_with(
        dir.path(),
        ServerOptions {
            allow_private: false,
            time_scale: Some(1_000_000.0),
            ..Default::default()
        },
    );
    let receiver = Receiver::start().await;
    let app = server.create_app("ssrf").await;
    let port = receiver.url.rsplit(':').next().unwrap().to_owned();
    server
        .create_endpoint(&app, json!({"url": format!("http://127.0.0.1:{port}/literal")}))
        .await;
    server
        .create_endpoint(&app, json!({"url": format!("http://localhost:{port}/named")}))
        .await;
    server
        .create_endpoint(&app, json!({"url": format!("http://[::ffff:127.0.0.1]:{port}/mapped")}))
        .await;
    let msg = server.send(&app, "x.y", json!({})).await;
    let endpoints = |a: &[Value]| {
        a.iter()
            .map(|x| x["endpointId"].as_str().unwrap().to_owned())
            .collect::<std::collections::HashSet<_>>()
    };
    let attempts = server
        .wait_attempts(&app, &msg, WAIT, |a| endpoints(a).len() == 3)
        .await;
    assert_eq!(endpoints(&attempts).len(), 3, "every endpoint had an attempt");
    for a in &attempts {
        assert_eq!(a["errorKind"], "blocked", "{a}");
        assert_eq!(a["responseStatusCode"], 0);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        receiver.requests().is_empty(),
        "a blocked delivery reached the receiver"
    );
}

#[tokio::test]
async fn retry_after_on_429_is_honoured() {
    let dir = temp_dir();
    // Scale 10: the first retry normally comes after 0.4-0.6 s; Retry-After: 20 asks for 2 s.
    let server = Server::start_with(dir.path(), ServerOptions::scaled(10.0));
    let receiver = Receiver::start_with(Arc::new(|_, before| {
        if before == 0 {
            (429, Duration::ZERO, "slow down".into())
        } else {
            (200, Duration::ZERO, "ok".into())
        }
    }))
    .await;
    receiver.add_error_header("retry-after", "20");
    let app = server.create_app("retry-after").await;
    server
        .create_endpoint(&app, json!({"url": format!("{}/limited", receiver.url)}))
        .await;
    server.send(&app, "x.y", json!({})).await;

    let got = receiver.wait_until(WAIT, |r| r.len() >= 2).await;
    assert_eq!(got.len(), 2);
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(1800),
        "retried after {gap:?}, before Retry-After allowed"
    );
    assert!(gap < Duration::from_secs(5), "retried after {gap:?}");
}

#[tokio::test]
async fn deliveries_reuse_keep_alive_connections() {
    let dir = temp_dir();
    let server = Server::start_with(
        dir.path(),
        ServerOptions {
            extra_args: vec!["--max-in-flight-per-endpoint".into(), "4".into()],
            ..Default::default()
        },
    );
    let receiver = Receiver::start().await;
    let app = server.create_app("pool").await;
    server
        .create_endpoint(&app, json!({"url": format!("{}/pooled", receiver.url)}))
        .await;
    for n in 0..60 {
        server.send(&app, "pool.test", json!({"n": n})).await;
    }
    let got = receiver.wait_until(WAIT, |r| r.len() >= 60).await;
    assert_eq!(got.len(), 60);
    let connections: std::collections::HashSet<_> = got.iter().map(|r| r.peer).collect();
    // At most 4 at a time to this endpoint, each kept alive and reused.
    assert!(
        connections.len() <= 4,
        "60 deliveries used {} connections",
        connections.len()
    );
}
