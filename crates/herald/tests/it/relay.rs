//! The relay end to end on loopback: `herald serve` with a channel, a
//! `herald listen --relay` connected to it, a sender and the listener's
//! local target — including queued requests, reconnecting listeners and a
//! restarted server, and every refusal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Receiver, Server, ServerOptions, TOKEN, temp_dir};
use crate::listener::{Listener, SECRET, listen_command, signed, stored_header};

const WAIT: Duration = Duration::from_secs(15);

async fn create_channel(server: &Server) -> (String, String) {
    let (status, body) = server.post("/relay/", serde_json::json!({})).await;
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_str().unwrap().to_owned(),
        body["url"].as_str().unwrap().to_owned(),
    )
}

fn relay_listener(dir: &std::path::Path, server: &Server, channel: &str, extra: &[&str]) -> Listener {
    let mut args = vec!["--relay", &server.url, "--token", TOKEN, "--channel", channel];
    args.extend_from_slice(extra);
    Listener::start(&dir.join("listen.db"), &args)
}

async fn wait_connected(listener: &Listener, times: usize) {
    let deadline = Instant::now() + WAIT;
    while listener.lines_with("relay connected") < times {
        assert!(
            Instant::now() < deadline,
            "not connected: {:?}",
            listener.stdout.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_relayed_request_reaches_the_local_target_and_its_answer_reaches_the_sender() {
    let dir = temp_dir();
    let server = Server::start(&dir.path().join("server"));
    let (channel, url) = create_channel(&server).await;
    assert_eq!(url, format!("{}/relay/{channel}", server.url));
    let target = Receiver::start_with(Arc::new(|_, _| (201, Duration::ZERO, "made it".into()))).await;
    let listener = relay_listener(
        dir.path(),
        &server,
        &channel,
        &["--forward", &target.url, "--secret", SECRET],
    );
    wait_connected(&listener, 1).await;

    let body = r#"{"event": "invoice.paid",  "amount": 4200}"#;
    let resp = signed(&server.http, &format!("{url}/hooks/x?q=1"), "msg_relay", body)
        .header("x-custom", "through")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "the target's status comes back");
    assert_eq!(resp.text().await.unwrap(), "made it");

    let got = target.wait_until(WAIT, |r| !r.is_empty()).await;
    assert_eq!(got[0].path, "/hooks/x");
    assert_eq!(&got[0].body[..], body.as_bytes());
    assert_eq!(got[0].header("x-custom"), "through");
    assert_eq!(got[0].header("webhook-id"), "msg_relay");
    let stored = &listener.requests().await[0];
    assert_eq!(stored["source"], "relay");
    assert_eq!(stored["path"], "/hooks/x");
    assert_eq!(stored["query"], "q=1");
    assert_eq!(stored["verified"], true, "{stored}");
    assert_eq!(stored["forward"]["status"], 201);
    assert!(
        listener
            .wait_line(WAIT, &["relay POST", "/hooks/x?q=1", "verified", "→ 201"])
            .await
            .is_some()
    );
}

#[tokio::test]
async fn requests_without_a_listener_get_202_and_are_handed_over_when_one_connects() {
    let dir = temp_dir();
    let server = Server::start(&dir.path().join("server"));
    let (channel, url) = create_channel(&server).await;
    for i in 0..3 {
        let resp = server
            .http
            .post(format!("{url}/q/{i}"))
            .body(format!("body {i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let json: Value = resp.json().await.unwrap();
        assert_eq!(json["queued"], true, "{json}");
    }
    let target = Receiver::start().await;
    let listener = relay_listener(dir.path(), &server, &channel, &["--forward", &target.url]);
    let got = target.wait_until(WAIT, |r| r.len() == 3).await;
    let mut paths: Vec<_> = got.iter().map(|r| r.path.clone()).collect();
    paths.sort();
    assert_eq!(paths, ["/q/0", "/q/1", "/q/2"]);
    let stored = listener.wait_requests(WAIT, |l| l.len() == 3).await;
    assert!(stored.iter().all(|r| r["source"] == "relay"));
    assert!(stored.iter().any(|r| r["body"] == "body 1"));
}

#[tokio::test]
async fn a_listener_that_comes_back_gets_what_arrived_meanwhile_and_survives_a_server_restart() {
    let dir = temp_dir();
    let data = dir.path().join("server");
    let mut server = Server::start(&data);
    let (channel, url) = create_channel(&server).await;
    let target = Receiver::start().await;
    let mut listener = relay_listener(dir.path(), &server, &channel, &["--forward", &target.url]);
    wait_connected(&listener, 1).await;
    let resp = server.http.post(format!("{url}/one")).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    // The listener dies; once the server notices, requests are kept.
    listener.kill();
    let deadline = Instant::now() + WAIT;
    loop {
        let resp = server.http.post(format!("{url}/while-away")).send().await.unwrap();
        match resp.status().as_u16() {
            202 => break,
            // Sent to the dead socket before the server saw it close.
            502 => assert!(Instant::now() < deadline, "never queued"),
            other => panic!("unexpected {other}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listener = relay_listener(dir.path(), &server, &channel, &["--forward", &target.url]);
    target
        .wait_until(WAIT, |r| r.iter().any(|r| r.path == "/while-away"))
        .await;
    assert!(target.on_path("/while-away").len() == 1);
    wait_connected(&listener, 1).await;

    // The server restarts on the same port: the channel id still holds
    // (no table: it is signed) and the listener reconnects by itself.
    let addr = server.url.trim_start_matches("http://").to_owned();
    server.kill();
    let server = Server::start_with(
        &data,
        ServerOptions {
            listen: Some(addr),
            ..ServerOptions::default()
        },
    );
    assert_eq!(server.url, url.split("/relay/").next().unwrap());
    wait_connected(&listener, 2).await;
    let resp = server.http.post(format!("{url}/after-restart")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    target
        .wait_until(WAIT, |r| r.iter().any(|r| r.path == "/after-restart"))
        .await;
    let history = listener.requests().await;
    assert!(history.iter().any(|r| r["path"] == "/after-restart"));
    assert!(stored_header(&history[0], "host").is_some());
}

#[tokio::test]
async fn bad_channels_bodies_and_tokens_are_refused_clearly() {
    let dir = temp_dir();
    let server = Server::start_with(
        &dir.path().join("server"),
        ServerOptions {
            extra_args: vec!["--max-payload-bytes".into(), "1000".into()],
            ..ServerOptions::default()
        },
    );
    let (channel, url) = create_channel(&server).await;

    let unknown = server
        .http
        .post(format!("{}/relay/rly_bogus/x", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let json: Value = unknown.json().await.unwrap();
    assert_eq!(json["code"], "not_found", "{json}");

    let big = server.http.post(&url).body("x".repeat(1001)).send().await.unwrap();
    assert_eq!(big.status(), 413);
    let json: Value = big.json().await.unwrap();
    assert_eq!(json["code"], "payload_too_large", "{json}");

    let anonymous = server
        .http
        .post(format!("{}/api/v1/relay/", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    for (token, chan, status) in [("wrong-token", channel.as_str(), "401"), (TOKEN, "rly_bogus", "404")] {
        let out = listen_command(
            &dir.path().join("l.db"),
            &["--relay", &server.url, "--token", token, "--channel", chan],
        )
        .stdout(std::process::Stdio::null())
        .output()
        .unwrap();
        assert!(!out.status.success(), "a refused listener must stop");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("refused") && stderr.contains(status), "{stderr}");
    }
}

#[tokio::test]
async fn a_second_listener_on_a_channel_replaces_the_first() {
    let dir = temp_dir();
    let server = Server::start(&dir.path().join("server"));
    let (channel, url) = create_channel(&server).await;
    for sub in ["a", "b"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let mut first = relay_listener(&dir.path().join("a"), &server, &channel, &["--status", "201"]);
    wait_connected(&first, 1).await;
    let second = relay_listener(&dir.path().join("b"), &server, &channel, &["--status", "202"]);
    wait_connected(&second, 1).await;
    let status = first.wait_exit();
    assert!(!status.success());
    assert!(
        first.stderr().contains("another listener connected"),
        "{}",
        first.stderr()
    );
    let resp = server.http.post(&url).send().await.unwrap();
    assert_eq!(resp.status(), 202, "the second listener answers");
}

#[tokio::test]
async fn a_listeners_socket_outlives_the_servers_http_timeouts() {
    let dir = temp_dir();
    let server = Server::start_with(
        &dir.path().join("server"),
        ServerOptions {
            extra_args: ["--header-read-timeout-secs", "1", "--idle-timeout-secs", "1"]
                .map(String::from)
                .to_vec(),
            ..ServerOptions::default()
        },
    );
    let (channel, url) = create_channel(&server).await;
    let listener = relay_listener(dir.path(), &server, &channel, &["--status", "204"]);
    wait_connected(&listener, 1).await;
    // Quiet for longer than both timeouts, then a request and a bit more.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let resp = server.http.post(&url).body("still there").send().await.unwrap();
    assert_eq!(resp.status(), 204);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        listener.lines_with("relay connected"),
        1,
        "{:?}",
        listener.stdout.lock().unwrap()
    );
    assert_eq!(listener.lines_with("connection lost"), 0);
}
