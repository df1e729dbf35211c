//! Retention end to end: the real binary with a retention period of a few
//! seconds prunes delivered history, keeps what is still pending, and keeps
//! answering ingest while it prunes; bad settings and out-of-range
//! `payloadRetentionPeriod`s are refused.
//!
//! Payload expiry itself is not reachable here (Svix's shortest
//! `payloadRetentionPeriod` is 5 days): the store suite tests it with a
//! short duration, and `MessageOut`'s unit test the `{"expired":true}` shape.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Receiver, Server, ServerOptions, temp_dir};

/// About 4.3 s; pruning then runs every ~0.43 s.
const RETENTION_DAYS: &str = "0.00005";
const WAIT: Duration = Duration::from_secs(15);
/// More than one batch (500) of old history.
const OLD_MESSAGES: usize = 700;

fn short_retention() -> ServerOptions {
    ServerOptions {
        extra_args: vec!["--retention-days".into(), RETENTION_DAYS.into()],
        ..ServerOptions::default()
    }
}

async fn ids_on_endpoint_attempts(server: &Server, app: &str, ep: &str) -> Vec<String> {
    let (status, list) = server
        .get(&format!("/app/{app}/attempt/endpoint/{ep}/?limit=250"))
        .await;
    assert_eq!(status, 200, "{list}");
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["msgId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn retention_prunes_delivered_history_and_keeps_pending_while_ingest_flows() {
    let dir = temp_dir();
    let server = Server::start_with(dir.path(), short_retention());
    let ok = Receiver::start().await;
    let failing = Receiver::start_with(Arc::new(|_, _| (500, Duration::ZERO, "down".into()))).await;
    let app = server.create_app("retention").await;
    server.create_event_types(&["ok", "fail"]).await;
    let (ok_ep, _) = server
        .create_endpoint(&app, json!({"url": format!("{}/ok", ok.url), "filterTypes": ["ok"]}))
        .await;
    server
        .create_endpoint(
            &app,
            json!({"url": format!("{}/fail", failing.url), "filterTypes": ["fail"]}),
        )
        .await;

    let delivered = server.send(&app, "ok", json!({"n": "first"})).await;
    let attempts = server.wait_attempts(&app, &delivered, WAIT, |a| !a.is_empty()).await;
    assert_eq!(attempts.len(), 1, "delivered once");
    // Its next retry is minutes away: pending for the whole test.
    let pending = server.send(&app, "fail", json!({"n": "pending"})).await;
    let attempts = server.wait_attempts(&app, &pending, WAIT, |a| !a.is_empty()).await;
    assert_eq!(
        attempts[0]["statusText"], "fail",
        "the failing endpoint's first try failed: {attempts:?}"
    );
    for n in 0..OLD_MESSAGES {
        server.send(&app, "ok", json!({ "n": n })).await;
    }
    ok.wait_until(WAIT, |r| r.len() > OLD_MESSAGES).await;

    // Ingest keeps answering while the old history goes, batch by batch.
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut young = Vec::new();
    loop {
        let t = Instant::now();
        let (status, msg) = server
            .post(&format!("/app/{app}/msg/"), json!({"eventType": "ok", "payload": {}}))
            .await;
        slowest = slowest.max(t.elapsed());
        assert_eq!(status, 202, "{msg}");
        young.push(msg["id"].as_str().unwrap().to_owned());
        let (status, _) = server.get(&format!("/app/{app}/msg/{delivered}/")).await;
        if status == 404 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the delivered message was not pruned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        slowest < Duration::from_secs(2),
        "an ingest took {slowest:?} while pruning"
    );

    let (status, body) = server.get(&format!("/app/{app}/attempt/msg/{delivered}/")).await;
    assert_eq!(status, 404, "{body}");
    let last = young.last().unwrap();
    let (status, _) = server.get(&format!("/app/{app}/msg/{last}/")).await;
    assert_eq!(status, 200, "a young message stays");
    assert!(
        !ids_on_endpoint_attempts(&server, &app, &ok_ep)
            .await
            .contains(&delivered)
    );

    let (status, kept) = server.get(&format!("/app/{app}/msg/{pending}/")).await;
    assert_eq!(status, 200, "the pending message stays: {kept}");
    assert_eq!(kept["payload"], json!({"n": "pending"}));
    let (status, attempts) = server.get(&format!("/app/{app}/attempt/msg/{pending}/")).await;
    assert_eq!(status, 200);
    assert!(!attempts["data"].as_array().unwrap().is_empty(), "its attempts stay");
}

#[tokio::test]
async fn retention_payload_period_out_of_range_is_422() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let app = server.create_app("payload-retention").await;
    for days in [4, 91, 0, -1] {
        let (status, body) = server
            .post(
                &format!("/app/{app}/msg/"),
                json!({"eventType": "a.b", "payload": {}, "payloadRetentionPeriod": days}),
            )
            .await;
        assert_eq!(status, 422, "{days}: {body}");
        assert_eq!(
            body["detail"][0]["loc"],
            json!(["body", "payloadRetentionPeriod"]),
            "{body}"
        );
    }
    for days in [5, 90] {
        let (status, msg) = server
            .post(
                &format!("/app/{app}/msg/"),
                json!({"eventType": "a.b", "payload": {"d": days}, "payloadRetentionPeriod": days}),
            )
            .await;
        assert_eq!(status, 202, "{days}: {msg}");
        let id = msg["id"].as_str().unwrap();
        let (status, got) = server.get(&format!("/app/{app}/msg/{id}/")).await;
        assert_eq!(status, 200);
        assert_eq!(got["payload"], json!({"d": days}), "kept until its period passes");
    }
}

#[test]
fn retention_days_must_be_a_positive_number() {
    let dir = temp_dir();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["serve", "--listen", "127.0.0.1:0", "--admin-token", "x", "--data-dir"])
            .arg(dir.path())
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} {env:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for bad in ["0", "-1", "NaN", "inf", "soon"] {
        let err = run(&[&format!("--retention-days={bad}")], &[]);
        assert!(err.contains("--retention-days"), "{bad}: {err}");
    }
    let err = run(&[], &[("HERALD_RETENTION_DAYS", "0")]);
    assert!(err.contains("--retention-days"), "{err}");

    let help = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--retention-days"), "{help}");
    assert!(help.contains("decimal"), "{help}");
    assert!(help.contains("HERALD_RETENTION_DAYS"), "{help}");
}
