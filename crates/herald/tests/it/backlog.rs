//! A backlog larger than memory waits in the store and drains once the
//! receiver is back.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::harness::{Receiver, Server, ServerOptions, temp_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_beyond_memory_stays_in_the_store_and_drains() {
    const RESIDENT: u64 = 20;
    const MESSAGES: usize = 300;
    let dir = temp_dir();
    let up = Arc::new(AtomicBool::new(false));
    let flag = up.clone();
    let receiver = Receiver::start_with(Arc::new(move |_, _| {
        if flag.load(Ordering::SeqCst) {
            (200, Duration::ZERO, "ok".into())
        } else {
            (503, Duration::ZERO, "down".into())
        }
    }))
    .await;
    // Retries come fast (the ~27 h schedule takes ~10 s) and memory holds 20 deliveries.
    let server = Server::start_with(
        dir.path(),
        ServerOptions {
            time_scale: Some(10_000.0),
            extra_args: vec!["--max-resident".into(), RESIDENT.to_string()],
            ..Default::default()
        },
    );
    let app = server.create_app("backlog").await;
    server
        .create_endpoint(&app, json!({"url": format!("{}/b", receiver.url)}))
        .await;

    let mut ids = HashSet::new();
    let mut most_resident = 0;
    for n in 0..MESSAGES {
        ids.insert(server.send(&app, "backlog.test", json!({"n": n})).await);
        if n % 25 == 0 {
            most_resident = most_resident.max(server.metric("herald_deliveries_resident").await);
        }
    }
    for _ in 0..10 {
        most_resident = most_resident.max(server.metric("herald_deliveries_resident").await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        most_resident <= RESIDENT + 2,
        "{most_resident} deliveries were held in memory (limit {RESIDENT})"
    );
    assert!(
        server.metric("herald_attempts_total{outcome=\"failure\"}").await > 0,
        "the receiver was never tried"
    );

    up.store(true, Ordering::SeqCst);
    let delivered = |r: &[crate::harness::Received]| -> HashSet<String> {
        r.iter()
            .filter(|x| x.path == "/b")
            .map(|x| x.header("webhook-id").to_owned())
            .collect()
    };
    let got = receiver
        .wait_until(Duration::from_secs(60), |r| ids.is_subset(&delivered(r)))
        .await;
    let missing = ids.difference(&delivered(&got)).count();
    assert_eq!(missing, 0, "{missing} of {MESSAGES} messages never arrived");
    assert!(
        server.metric("herald_deliveries_loaded_total").await > 0,
        "nothing came back from the store"
    );
    assert!(server.metric("herald_deliveries_resident").await <= RESIDENT + 2);
}

/// The server's resident set now and at its peak, in MiB, from /proc.
fn rss_mib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading /proc status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} missing from /proc/{pid}/status"))
            / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// 2,000 messages of 512 KiB (a gigabyte) backlogged while the receiver is
/// down: memory is bounded by bytes, not by count (10,000 deliveries would
/// be 5 GB), and everything drains once the receiver is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gigabyte_of_large_payloads_backlogged_stays_within_memory_and_drains() {
    const MESSAGES: usize = 2000;
    let dir = temp_dir();
    let server = Server::start_with(dir.path(), ServerOptions::scaled(5.0));
    let port = crate::harness::refused_port();
    let app = server.create_app("large").await;
    server
        .create_endpoint(&app, json!({"url": format!("http://127.0.0.1:{}/large", port.port)}))
        .await;
    let filler = "x".repeat(512 * 1024 - 64);
    let mut ids = HashSet::new();
    let mut peak_during = 0;
    let mut producers = Vec::new();
    let url = server.api(&format!("/app/{app}/msg/"));
    for worker in 0..4 {
        let (http, url, filler) = (server.http.clone(), url.clone(), filler.clone());
        producers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..MESSAGES / 4 {
                let body = json!({"eventType": "large.test", "payload": {"w": worker, "n": n, "data": filler}});
                let resp = http
                    .post(&url)
                    .bearer_auth(crate::harness::TOKEN)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 202);
                let v: serde_json::Value = resp.json().await.unwrap();
                ids.push(v["id"].as_str().unwrap().to_owned());
            }
            ids
        }));
    }
    while !producers.iter().all(|p| p.is_finished()) {
        peak_during = peak_during.max(rss_mib(server.pid()).0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for p in producers {
        ids.extend(p.await.unwrap());
    }
    assert_eq!(ids.len(), MESSAGES);
    let (_, peak) = rss_mib(server.pid());
    eprintln!("1 GB of 512 KiB payloads backlogged: server RSS peak {peak} MiB (sampled {peak_during} MiB)");
    assert!(peak <= 200, "server RSS peaked at {peak} MiB with a 1 GB backlog");

    let seen = crate::harness::counting_receiver(port);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while seen.lock().unwrap().len() < MESSAGES && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got: HashSet<String> = seen.lock().unwrap().keys().cloned().collect();
    assert!(
        ids.is_subset(&got),
        "{} of {MESSAGES} large messages never arrived",
        ids.difference(&got).count()
    );
    let (_, peak) = rss_mib(server.pid());
    eprintln!("after draining: server RSS peak {peak} MiB");
    assert!(
        peak <= 200,
        "server RSS peaked at {peak} MiB while draining a 1 GB backlog"
    );
}
