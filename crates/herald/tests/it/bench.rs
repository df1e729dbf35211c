//! `herald bench` measuring a real `herald serve`: what it reports must be
//! what happened on the wire.

use std::process::Command;

use serde_json::Value;

use crate::harness::{Server, ServerOptions, temp_dir};

/// Runs `herald bench --json` against `server` and returns its report.
fn bench(server: &Server, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("bench")
        .args(["--url", &server.url, "--token", &server.token, "--json"])
        .args(args)
        .env_remove("HERALD_BENCH_URL")
        .env_remove("HERALD_BENCH_TOKEN")
        .output()
        .expect("running herald bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "herald bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout}"))
}

fn count(r: &Value, key: &str) -> u64 {
    r[key].as_u64().unwrap_or_else(|| panic!("{key} missing: {r}"))
}

#[tokio::test]
async fn reports_every_delivery_with_latency_memory_and_the_raw_ceiling() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let pid = server.pid().to_string();
    let r = bench(
        &server,
        &[
            "--messages",
            "300",
            "--fanout",
            "2",
            "--concurrency",
            "8",
            "--server-pid",
            &pid,
            "--raw",
        ],
    );
    assert_eq!(count(&r, "sent"), 300);
    assert_eq!(count(&r, "accepted"), 300);
    assert_eq!(count(&r, "delivered"), 600, "two endpoints each: {r}");
    assert_eq!(count(&r, "lost"), 0);
    assert_eq!(count(&r, "duplicates"), 0);
    assert_eq!(count(&r, "unexpected"), 0);
    assert_eq!(r["errors"], serde_json::json!({}));
    assert!(
        count(&r, "signatures_checked") >= 6,
        "every 100th arrival is verified: {r}"
    );
    assert_eq!(count(&r, "signatures_bad"), 0);
    let latency = &r["latency_ms"];
    let p50 = latency["p50"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= latency["p99"].as_f64().unwrap());
    assert!(latency["p99"].as_f64().unwrap() <= latency["max"].as_f64().unwrap());
    assert!(r["accepted_per_sec"].as_f64().unwrap() > 0.0);
    assert!(r["delivered_per_sec"].as_f64().unwrap() > 0.0);
    assert!(r["server_rss_mb"].as_f64().unwrap() > 1.0, "{r}");
    assert!(r["server_rss_max_mb"].as_f64().unwrap() >= r["server_rss_mb"].as_f64().unwrap());
    assert!(r["server_cpu_seconds"].as_f64().is_some());
    assert!(r["raw_posts_per_sec"].as_f64().unwrap() > 100.0, "{r}");
    assert!(r["ratio_to_raw"].as_f64().unwrap() > 0.0);

    // The server saw the same traffic.
    assert_eq!(server.metric("herald_attempts_total{outcome=\"success\"}").await, 600);
}

#[tokio::test]
async fn a_receiver_down_while_sending_shows_the_backlog_draining() {
    let dir = temp_dir();
    // Retries after ~5 ms, then ~300 ms, so the drain is quick.
    let server = Server::start_with(dir.path(), ServerOptions::scaled(1000.0));
    let r = bench(
        &server,
        &[
            "--messages",
            "100",
            "--concurrency",
            "4",
            "--receiver",
            "down",
            "--drain-timeout",
            "30",
        ],
    );
    assert_eq!(r["receiver"], "down");
    assert_eq!(count(&r, "accepted"), 100);
    assert_eq!(count(&r, "delivered"), 100, "{r}");
    assert_eq!(count(&r, "lost"), 0);
    assert!(r["drain_seconds"].as_f64().is_some(), "{r}");
    let drain = &r["drain_ms"];
    assert!(drain["p50"].as_f64().unwrap() <= drain["max"].as_f64().unwrap(), "{r}");
    let failed = server.metric("herald_attempts_total{outcome=\"failure\"}").await;
    assert!(failed > 0, "the sink was never down: no attempt failed");
}

#[test]
fn a_stalled_receiver_holds_deliveries_until_sending_ends() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let r = bench(
        &server,
        &["--messages", "200", "--concurrency", "8", "--receiver", "stalled"],
    );
    assert_eq!(count(&r, "delivered"), 200, "{r}");
    assert_eq!(count(&r, "lost"), 0);
    assert_eq!(count(&r, "duplicates"), 0);
    // Deliveries arrived while sending but were answered only afterwards.
    assert!(r["drain_seconds"].as_f64().is_some());
}

#[test]
fn deliveries_that_never_arrive_are_reported_lost() {
    let dir = temp_dir();
    // The default SSRF policy refuses loopback, so nothing reaches the sink.
    let server = Server::start_with(
        dir.path(),
        ServerOptions {
            allow_private: false,
            ..Default::default()
        },
    );
    let r = bench(
        &server,
        &["--messages", "20", "--concurrency", "4", "--drain-timeout", "1"],
    );
    assert_eq!(count(&r, "accepted"), 20);
    assert_eq!(count(&r, "delivered"), 0);
    assert_eq!(count(&r, "lost"), 20);
}

#[test]
fn a_wrong_token_is_a_clear_failure() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["bench", "--url", &server.url, "--token", "wrong", "--messages", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("401"), "{stderr}");
}
