//! `herald listen` end to end: the real binary on loopback, real senders,
//! a real target; what the sender got, what the target got on the wire and
//! what the history and the terminal say.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Receiver, Server, temp_dir};
use crate::listener::{Listener, SECRET, listen_command, refused_url, signed, stored_header};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn any_method_on_any_path_is_captured_and_answered_with_the_configured_status() {
    let dir = temp_dir();
    let listener = Listener::start(&dir.path().join("h.db"), &["--status", "201"]);
    let put = listener
        .http
        .put(format!("{}/a/b?x=1&y=two", listener.url))
        .header("x-thing", "yes")
        .body("raw \u{00e9} body")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let delete = listener.http.delete(format!("{}/", listener.url)).send().await.unwrap();
    assert_eq!(delete.status(), 201);

    let list = listener.requests().await;
    assert_eq!(list.len(), 2);
    let (newest, oldest) = (&list[0], &list[1]);
    assert_eq!(newest["method"], "DELETE");
    assert_eq!(newest["path"], "/");
    assert_eq!(oldest["method"], "PUT");
    assert_eq!(oldest["path"], "/a/b");
    assert_eq!(oldest["query"], "x=1&y=two");
    assert_eq!(oldest["body"], "raw \u{00e9} body");
    assert_eq!(oldest["bodyEncoding"], "utf8");
    assert_eq!(stored_header(oldest, "x-thing"), Some("yes"));
    assert_eq!(oldest["verified"], Value::Null, "no --secret: nothing checked");
    assert_eq!(oldest["forward"], Value::Null);
    assert!(oldest["receivedAt"].as_str().unwrap().ends_with('Z'));
    assert!(newest["id"].as_i64() > oldest["id"].as_i64());

    let one = listener.api_get(&format!("/requests/{}", oldest["id"])).await;
    assert_eq!(one.0, 200);
    assert_eq!(one.1["path"], "/a/b");
}

#[tokio::test]
async fn signatures_are_verified_and_a_failure_says_why() {
    let dir = temp_dir();
    let listener = Listener::start(&dir.path().join("h.db"), &["--secret", SECRET]);
    let url = format!("{}/hooks", listener.url);
    let good = signed(&listener.http, &url, "msg_good", r#"{"a":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 200);
    let forged = signed(&listener.http, &url, "msg_bad", r#"{"a":1}"#)
        .body(r#"{"a":2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 200, "the listener records, it does not refuse");
    let unsigned = listener.http.post(&url).body("{}").send().await.unwrap();
    assert_eq!(unsigned.status(), 200);

    let list = listener.requests().await;
    assert_eq!(list.len(), 3);
    let by_id = |id: &str| {
        list.iter()
            .find(|r| stored_header(r, "webhook-id") == Some(id))
            .unwrap()
    };
    assert_eq!(by_id("msg_good")["verified"], true);
    assert_eq!(by_id("msg_good")["verifyError"], Value::Null);
    assert_eq!(by_id("msg_bad")["verified"], false);
    assert_eq!(
        by_id("msg_bad")["verifyError"],
        "no signature in the webhook-signature header matches"
    );
    assert_eq!(list[0]["verified"], false);
    assert_eq!(list[0]["verifyError"], "the webhook-id header is missing");

    // One terminal line per request: time, method, path, verification.
    let line = listener
        .wait_line(WAIT, &["POST", "/hooks", "UNVERIFIED", "matches"])
        .await;
    assert!(line.is_some(), "{:?}", listener.stdout.lock().unwrap());
    let line = listener
        .wait_line(WAIT, &["POST", "/hooks", " verified"])
        .await
        .unwrap();
    assert!(
        line.as_bytes()[2] == b':' && line.as_bytes()[5] == b':',
        "starts with the time: {line}"
    );
    assert!(!line.contains('\x1b'), "no colours off a terminal: {line:?}");
}

#[tokio::test]
async fn body_signatures_are_verified_in_the_header_named() {
    let dir = temp_dir();
    let listener = Listener::start(
        &dir.path().join("h.db"),
        &["--secret", "shared secret", "--signature-header", "X-Webhook-Signature"],
    );
    let sign = herald_verify::BodySignature::new("shared secret").unwrap();
    let body = r#"{"event":"alarm"}"#;
    for (signature, id) in [(sign.sign(body.as_bytes()), "good"), (sign.sign(b"other"), "bad")] {
        let resp = listener
            .http
            .post(format!("{}/{id}", listener.url))
            .header("x-webhook-signature", signature)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let list = listener.requests().await;
    let by_path = |p: &str| list.iter().find(|r| r["path"] == p).unwrap();
    assert_eq!(by_path("/good")["verified"], true);
    assert_eq!(by_path("/bad")["verified"], false);
    assert_eq!(
        by_path("/bad")["verifyError"],
        "no signature in the x-webhook-signature header matches"
    );
}

#[tokio::test]
async fn herald_serve_deliveries_verify_at_the_listener() {
    let dir = temp_dir();
    let listener = Listener::start(&dir.path().join("h.db"), &["--secret", SECRET]);
    let server = Server::start(&dir.path().join("server"));
    let app = server.create_app("to-listener").await;
    server
        .create_endpoint(
            &app,
            json!({"url": format!("{}/from-herald", listener.url), "secret": SECRET}),
        )
        .await;
    let msg = server.send(&app, "invoice.paid", json!({"amount": 4200})).await;
    let list = listener.wait_requests(WAIT, |l| !l.is_empty()).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["path"], "/from-herald");
    assert_eq!(stored_header(&list[0], "webhook-id"), Some(msg.as_str()));
    assert_eq!(list[0]["verified"], true, "{}", list[0]);
    assert_eq!(list[0]["body"], r#"{"amount":4200}"#);
}

#[tokio::test]
async fn history_survives_a_restart_and_the_oldest_are_pruned() {
    let dir = temp_dir();
    let db = dir.path().join("h.db");
    let mut listener = Listener::start(&db, &["--max-requests", "3"]);
    for i in 0..5 {
        let resp = listener.post(&format!("/n/{i}"), format!("{i}")).await;
        assert_eq!(resp.status(), 200);
    }
    assert!(listener.terminate().success(), "{}", listener.stderr());
    let listener = Listener::start(&db, &["--max-requests", "3"]);
    let paths: Vec<_> = listener
        .requests()
        .await
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(paths, ["/n/4", "/n/3", "/n/2"]);
}

#[tokio::test]
async fn a_forwarded_request_gets_the_targets_answer_and_replays_byte_for_byte() {
    let target = Receiver::start_with(std::sync::Arc::new(|_, _| {
        (418, Duration::ZERO, "short and stout".into())
    }))
    .await;
    let dir = temp_dir();
    let listener = Listener::start(
        &dir.path().join("h.db"),
        &["--secret", SECRET, "--forward", &format!("{}/base", target.url)],
    );
    let body = r#"{ "spaced":  true, "é": [1.50] }"#;
    let resp = signed(
        &listener.http,
        &format!("{}/hooks/stripe?x=1", listener.url),
        "msg_fw",
        body,
    )
    .header("x-extra", "kept")
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 418, "the sender gets the target's answer");
    assert_eq!(resp.text().await.unwrap(), "short and stout");

    let got = target.wait_until(WAIT, |r| !r.is_empty()).await;
    let first = &got[0];
    assert_eq!(first.path, "/base/hooks/stripe");
    assert_eq!(&first.body[..], body.as_bytes());
    assert_eq!(first.header("x-extra"), "kept");
    assert_eq!(first.header("content-type"), "application/json");
    let stored = &listener.requests().await[0];
    assert_eq!(stored["forward"]["status"], 418);
    assert_eq!(stored["forward"]["body"], "short and stout");
    assert_eq!(
        stored["forward"]["url"],
        format!("{}/base/hooks/stripe?x=1", target.url)
    );
    assert!(
        listener
            .wait_line(WAIT, &["POST", "/hooks/stripe?x=1", "verified", "→ 418"])
            .await
            .is_some()
    );

    let (status, replayed) = listener.replay(&stored["id"]).await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["replays"], 1);
    assert_eq!(replayed["forward"]["status"], 418);
    let got = target.wait_until(WAIT, |r| r.len() == 2).await;
    let again = &got[1];
    assert_eq!(again.path, first.path);
    assert_eq!(again.body, first.body, "byte for byte");
    for name in [
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x-extra",
        "content-type",
    ] {
        assert_eq!(again.header(name), first.header(name), "{name}");
    }
    herald_verify::Webhook::new(SECRET)
        .unwrap()
        .verify(&again.headers, &again.body)
        .expect("the replay still verifies at the target");
    assert!(
        listener
            .wait_line(WAIT, &["replay", "/hooks/stripe", "→ 418"])
            .await
            .is_some()
    );
}

#[tokio::test]
async fn with_a_status_and_a_target_the_answer_is_immediate_and_forwarding_goes_on() {
    let target = Receiver::start_with(std::sync::Arc::new(|_, _| {
        (200, Duration::from_millis(800), "slow".into())
    }))
    .await;
    let dir = temp_dir();
    let listener = Listener::start(&dir.path().join("h.db"), &["--forward", &target.url, "--status", "202"]);
    let started = std::time::Instant::now();
    let resp = listener.post("/x", "b").await;
    assert_eq!(resp.status(), 202);
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "answered without waiting"
    );
    let list = listener
        .wait_requests(WAIT, |l| l.first().is_some_and(|r| !r["forward"].is_null()))
        .await;
    assert_eq!(list[0]["forward"]["status"], 200);
    assert_eq!(target.requests().len(), 1);
}

#[tokio::test]
async fn an_unreachable_target_is_a_502_json_and_is_recorded() {
    let dead = refused_url().await;
    let dir = temp_dir();
    let listener = Listener::start(&dir.path().join("h.db"), &["--forward", &dead]);
    let resp = listener.post("/x", "b").await;
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "forward_failed");
    assert!(body["detail"].as_str().unwrap().contains("could not connect"), "{body}");
    let stored = &listener.requests().await[0];
    assert_eq!(stored["forward"]["status"], Value::Null);
    assert!(
        stored["forward"]["error"]
            .as_str()
            .unwrap()
            .contains("could not connect")
    );
}

#[tokio::test]
async fn bodies_over_the_cap_are_refused_with_413_json_and_not_stored() {
    let dir = temp_dir();
    let listener = Listener::start(&dir.path().join("h.db"), &["--max-body-bytes", "100"]);
    let resp = listener.post("/big", "x".repeat(101)).await;
    assert_eq!(resp.status(), 413);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "payload_too_large");
    assert!(body["detail"].as_str().unwrap().contains("100 bytes"));
    let ok = listener.post("/small", "x".repeat(100)).await;
    assert_eq!(ok.status(), 200);
    let list = listener.requests().await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["path"], "/small");
    assert!(
        listener
            .wait_line(WAIT, &["POST", "/big", "refused 413"])
            .await
            .is_some()
    );
}

#[tokio::test]
async fn api_errors_are_json_with_the_right_status() {
    let dir = temp_dir();
    let listener = Listener::start(&dir.path().join("h.db"), &[]);
    listener.http.post(format!("{}/x", listener.url)).send().await.unwrap();
    let id = listener.requests().await[0]["id"].clone();
    let cases = [
        (listener.api_get("/requests/999999").await, 404, "not_found"),
        (listener.api_get("/requests/abc").await, 404, "not_found"),
        (listener.api_get("/requests?limit=0").await, 422, "invalid_limit"),
        (listener.api_get("/requests?before=x").await, 422, "invalid_before"),
        (listener.api_get("/nothing-here").await, 404, "not_found"),
        (listener.replay(&id).await, 409, "no_target"),
    ];
    for ((status, body), want_status, want_code) in cases {
        assert_eq!(
            (status, body["code"].as_str()),
            (want_status, Some(want_code)),
            "{body}"
        );
        assert!(!body["detail"].as_str().unwrap().is_empty());
    }
    assert_eq!(
        listener.requests().await.len(),
        1,
        "nothing under /_herald/ is captured"
    );
}

#[tokio::test]
async fn bad_flags_fail_at_start_naming_the_flag() {
    let dir = temp_dir();
    let db = dir.path().join("h.db");
    let cases: [(&[&str], &str); 3] = [
        (&["--secret", "whsec_!!!"], "--secret"),
        (&["--forward", "ftp://example.com"], "--forward"),
        (&["--status", "42"], "--status"),
    ];
    for (args, flag) in cases {
        let out = listen_command(&db, args).output().unwrap();
        assert!(!out.status.success(), "{args:?} started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn live_events_carry_each_request_and_end_at_shutdown() {
    let dir = temp_dir();
    let mut listener = Listener::start(&dir.path().join("h.db"), &[]);
    let mut events = listener
        .http
        .get(format!("{}/_herald/api/events", listener.url))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let resp = listener.post("/live/one", "hello").await;
    assert_eq!(resp.status(), 200);
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(WAIT, events.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(text.starts_with("event: request\ndata: "), "{text}");
    let json: Value = serde_json::from_str(text.lines().nth(1).unwrap().trim_start_matches("data: ")).unwrap();
    assert_eq!(json["path"], "/live/one");
    assert_eq!(json["body"], "hello");
    // An open page must not hold up a shutdown.
    let status = listener.terminate();
    assert!(status.success(), "{}", listener.stderr());
}
