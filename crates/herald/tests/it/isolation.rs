//! Endpoints are isolated from each other: hanging endpoints do not delay a
//! healthy one, unreachable endpoints have their circuits opened and their
//! backlog held in the store, and a held backlog drains at once when its
//! endpoint comes back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::net::TcpListener;

use crate::harness::{Received, Receiver, Server, ServerOptions, counting_receiver, refused_port, temp_dir};

/// Listeners that accept connections and never answer; they hold every
/// socket until dropped.
async fn hanging_endpoints(n: usize) -> (Vec<String>, Vec<tokio::task::JoinHandle<()>>) {
    let mut urls = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..n {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        urls.push(format!("http://{}/hang", listener.local_addr().unwrap()));
        tasks.push(tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        }));
    }
    (urls, tasks)
}

async fn wait_metric(server: &Server, name: &str, within: Duration, done: impl Fn(u64) -> bool) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let v = server.metric(name).await;
        if done(v) || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Posts `n` messages at about `rate` per second and returns, per message
/// id, when its POST started.
async fn post_paced(server: &Server, app: &str, n: usize, rate: f64) -> HashMap<String, Instant> {
    let mut sent = HashMap::new();
    let start = Instant::now();
    for i in 0..n {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let at = Instant::now();
        let id = server.send(app, "isolation.test", json!({"n": i})).await;
        sent.insert(id, at);
    }
    sent
}

/// 40 endpoints that accept connections and never answer, one that answers
/// at once, all in one application: the healthy one's post-to-arrival p99
/// stays within 100 ms. With `max_in_flight` low enough that the hanging
/// endpoints could take the whole budget, the fair share keeps room.
async fn hanging_endpoints_do_not_delay_a_healthy_one(max_in_flight: &str) {
    let dir = temp_dir();
    let server = Server::start_with(
        dir.path(),
        ServerOptions {
            extra_args: vec!["--max-in-flight".into(), max_in_flight.into()],
            ..Default::default()
        },
    );
    let healthy = Receiver::start().await;
    let (hanging, _held) = hanging_endpoints(40).await;
    let app = server.create_app("isolation").await;
    for url in &hanging {
        server.create_endpoint(&app, json!({"url": url})).await;
    }
    server
        .create_endpoint(&app, json!({"url": format!("{}/healthy", healthy.url)}))
        .await;

    let sent = post_paced(&server, &app, 300, 100.0).await;
    let got = healthy
        .wait_until(Duration::from_secs(20), |r| r.len() >= sent.len())
        .await;
    assert_eq!(got.len(), sent.len(), "every message reached the healthy endpoint");
    let mut latencies: Vec<Duration> = got
        .iter()
        .map(|r| r.at.duration_since(sent[r.header("webhook-id")]))
        .collect();
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    let in_flight = server.metric("herald_deliveries_in_flight").await;
    eprintln!(
        "healthy endpoint beside 40 hanging ones: p99 {p99:?}, max {:?}",
        latencies[latencies.len() - 1]
    );
    assert!(
        p99 <= Duration::from_millis(100),
        "healthy endpoint p99 {p99:?} beside 40 hanging ones (max in flight {max_in_flight}, {in_flight} in flight)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_endpoints_do_not_delay_a_healthy_one_at_the_default_budget() {
    hanging_endpoints_do_not_delay_a_healthy_one("512").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_endpoints_do_not_take_a_budget_they_could_fill() {
    hanging_endpoints_do_not_delay_a_healthy_one("96").await;
}

/// 50 endpoints refusing connections, each with a backlog: their circuits
/// open, the backlog waits in the store (not in memory, not retried), and
/// when they come back everything is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_endpoints_open_their_circuits_and_hold_their_backlog() {
    let dir = temp_dir();
    let server = Server::start_with(dir.path(), ServerOptions::scaled(20.0));
    let app = server.create_app("circuits").await;
    let mut ports = Vec::new();
    for _ in 0..50 {
        let port = refused_port();
        server
            .create_endpoint(&app, json!({"url": format!("http://127.0.0.1:{}/hook", port.port)}))
            .await;
        ports.push(port);
    }
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(server.send(&app, "circuit.test", json!({"n": n})).await);
    }
    let open = wait_metric(&server, "herald_circuits_open", Duration::from_secs(20), |v| v == 50).await;
    assert_eq!(open, 50, "every refusing endpoint's circuit opened");

    // Held, not retried: over two seconds, at most a probe or two per endpoint.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.metric(r#"herald_attempts_total{outcome="failure"}"#).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = server.metric(r#"herald_attempts_total{outcome="failure"}"#).await - before;
    assert!(
        during <= 2 * 50,
        "{during} attempts in 2 s with 2,000 deliveries held behind 50 open circuits"
    );
    let resident = server.metric("herald_deliveries_resident").await;
    assert!(resident <= 50, "{resident} deliveries in memory behind open circuits");

    // They come back: every delivery arrives, once.
    let mut receivers = Vec::new();
    for port in ports {
        receivers.push(counting_receiver(port));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let complete = |rs: &[Arc<Mutex<HashMap<String, usize>>>]| {
        rs.iter().all(|r| {
            let r = r.lock().unwrap();
            ids.iter().all(|id| r.contains_key(id))
        })
    };
    while !complete(&receivers) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        complete(&receivers),
        "not every held delivery arrived once its endpoint was back"
    );
    let dups: usize = receivers
        .iter()
        .map(|r| r.lock().unwrap().values().filter(|&&n| n > 1).count())
        .sum();
    assert_eq!(dups, 0, "deliveries sent twice");
    let open = wait_metric(&server, "herald_circuits_open", Duration::from_secs(5), |v| v == 0).await;
    assert_eq!(open, 0, "circuits closed again");
}

/// A backlog of 10,000 held behind an open circuit is released at once when
/// the endpoint answers, not at each delivery's own retry time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_backlog_of_ten_thousand_drains_when_the_endpoint_returns() {
    const N: usize = 10_000;
    let dir = temp_dir();
    // Most deliveries are never tried while the circuit is open; the few
    // that were wait a minute or more for their own next retry (5 min / 5).
    // The scale keeps the probe interval (up to 60 s / 5) short.
    let server = Server::start_with(dir.path(), ServerOptions::scaled(5.0));
    let app = server.create_app("backlog").await;
    let port = refused_port();
    server
        .create_endpoint(&app, json!({"url": format!("http://127.0.0.1:{}/hook", port.port)}))
        .await;
    let posted = Arc::new(AtomicUsize::new(0));
    let mut producers = Vec::new();
    for worker in 0..8 {
        let (http, url, token, posted) = (
            server.http.clone(),
            server.api(&format!("/app/{app}/msg/")),
            server.token.clone(),
            posted.clone(),
        );
        producers.push(tokio::spawn(async move {
            for n in 0..N / 8 {
                let resp = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"eventType": "backlog.test", "payload": {"w": worker, "n": n}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 202);
                posted.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for p in producers {
        p.await.unwrap();
    }
    assert_eq!(posted.load(Ordering::Relaxed), N);
    let open = wait_metric(&server, "herald_circuits_open", Duration::from_secs(10), |v| v == 1).await;
    assert_eq!(open, 1);

    let seen = counting_receiver(port);
    let back = Instant::now();
    let deadline = back + Duration::from_secs(60);
    while seen.lock().unwrap().len() < N && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained = back.elapsed();
    let got = seen.lock().unwrap().len();
    assert_eq!(
        got, N,
        "{got} of {N} held deliveries arrived within {drained:?} of the endpoint's return"
    );
    eprintln!("held backlog of {N} drained in {drained:?} (debug build)");
}

/// `maxInFlight` caps an endpoint's requests in flight whatever its
/// adaptive limit: a receiver that takes 300 ms never has more than two at
/// once, so any three arrivals span at least one answer's time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoints_own_cap_bounds_its_requests_in_flight() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let receiver = Receiver::start_with(Arc::new(|_: &Received, _| {
        (200, Duration::from_millis(300), "ok".into())
    }))
    .await;
    let app = server.create_app("capped").await;
    let (ep, _) = server
        .create_endpoint(&app, json!({"url": format!("{}/hook", receiver.url), "maxInFlight": 2}))
        .await;
    let (_, read) = server.get(&format!("/app/{app}/endpoint/{ep}/")).await;
    assert_eq!(read["maxInFlight"], 2, "reads back");
    for n in 0..8 {
        server.send(&app, "cap.test", json!({"n": n})).await;
    }
    let got = receiver.wait_until(Duration::from_secs(20), |r| r.len() >= 8).await;
    assert_eq!(got.len(), 8);
    let mut at: Vec<_> = got.iter().map(|r| r.at).collect();
    at.sort();
    let windows: Vec<Duration> = at.windows(3).map(|w| w[2].duration_since(w[0])).collect();
    assert!(
        windows.iter().all(|w| *w >= Duration::from_millis(280)),
        "three in flight at once: {windows:?}"
    );
    assert!(
        at.windows(2)
            .any(|w| w[1].duration_since(w[0]) < Duration::from_millis(100)),
        "two did go out together"
    );
    for bad in [json!(0), json!(10_001), json!("two")] {
        let (status, err) = server
            .post(
                &format!("/app/{app}/endpoint/"),
                json!({"url": format!("{}/x", receiver.url), "maxInFlight": bad}),
            )
            .await;
        assert_eq!(status, 422, "{bad}: {err}");
    }
}
