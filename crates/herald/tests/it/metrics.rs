//! `/metrics` against what really happened: the real binary, real
//! receivers (answering 200, answering 500, refusing connections), exact
//! counts afterwards; the exposition judged by promtool; and the Grafana
//! dashboard and alert rules in docs/ naming only series a server serves.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Receiver, Server, ServerOptions, counting_receiver, refused_port, temp_dir};
use crate::prom::{Scrape, docs, herald_names, promtool, promtool_check_metrics, scrape};

/// A server whose backlog gauge is counted every 100 ms, at `scale`.
fn server(dir: &std::path::Path, scale: f64) -> Server {
    Server::start_with(
        dir,
        ServerOptions {
            extra_args: vec!["--backlog-refresh-secs".into(), "0.1".into()],
            ..ServerOptions::scaled(scale)
        },
    )
}

/// Scrapes until `done` holds (or the time is up) and returns the last scrape.
async fn wait_scrape(server: &Server, within: Duration, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + within;
    loop {
        let s = scrape(server).await;
        if done(&s) || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const SUCCESS: &str = r#"herald_attempts_total{outcome="success"}"#;
const FAILURE: &str = r#"herald_attempts_total{outcome="failure"}"#;
const DELIVERED: &str = r#"herald_deliveries_total{outcome="delivered"}"#;
const EXHAUSTED: &str = r#"herald_deliveries_total{outcome="exhausted"}"#;
const DISABLED: &str = r#"herald_deliveries_total{outcome="disabled"}"#;
const CANCELLED: &str = r#"herald_deliveries_total{outcome="cancelled"}"#;

/// The attempt histograms agree with the attempt counters, and the
/// ingest histogram with the messages posted.
fn assert_histograms_agree(s: &Scrape, posted: u64) {
    for (outcome, counter) in [("success", SUCCESS), ("failure", FAILURE)] {
        let h = s.histogram("herald_attempt_duration_seconds", &format!("outcome=\"{outcome}\""));
        assert_eq!(h.count, s.value(counter), "{outcome} attempts timed: {h:?}");
        assert!(h.sum >= 0.0 && h.sum <= h.count * 30.0, "{outcome}: {h:?}");
        assert_eq!(
            h.buckets.iter().map(|b| b.0).take(2).collect::<Vec<_>>(),
            [0.005, 0.01],
            "buckets start at 5 ms"
        );
    }
    let batches = s.histogram("herald_ingest_batch_size", "");
    assert_eq!(batches.sum, posted as f64, "every message in one commit: {batches:?}");
    assert!(
        batches.count >= 1.0 && batches.count <= posted as f64,
        "{posted} messages in {} commits",
        batches.count
    );
}

/// No per-endpoint labels: the only labels are `outcome` and `le`.
fn assert_no_endpoint_labels(s: &Scrape) {
    for series in s.samples.keys() {
        let Some((_, labels)) = series.split_once('{') else {
            continue;
        };
        for pair in labels.trim_end_matches('}').split(',') {
            let key = pair.split('=').next().unwrap();
            assert!(["outcome", "le"].contains(&key), "label {key} in {series}");
        }
        assert!(!series.contains("ep_") && !series.contains("app_"), "{series}");
    }
}

/// Five messages to an endpoint that answers 200 and one that answers 500
/// to everything (its whole schedule, eight attempts, runs in about a
/// second at this scale): every counter says exactly what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_histograms_and_gauges_say_exactly_what_happened() {
    let dir = temp_dir();
    let server = server(dir.path(), 100_000.0);
    let ok = Receiver::start().await;
    let down = Receiver::start_with(Arc::new(|_, _| (500, Duration::ZERO, "down".into()))).await;
    let app = server.create_app("metrics").await;
    server
        .create_endpoint(&app, json!({"url": format!("{}/ok", ok.url)}))
        .await;
    let (down_ep, _) = server
        .create_endpoint(&app, json!({"url": format!("{}/down", down.url)}))
        .await;
    let before = scrape(&server).await;
    assert_eq!(before.int(DELIVERED) + before.int(SUCCESS) + before.int(FAILURE), 0);

    for n in 0..5 {
        server.send(&app, "metrics.test", json!({"n": n})).await;
    }
    let s = wait_scrape(&server, Duration::from_secs(30), |s| {
        s.int(DELIVERED) == 5 && s.int(EXHAUSTED) == 5 && s.int("herald_backlog_deliveries") == 0
    })
    .await;
    assert_eq!(ok.requests().len(), 5);
    assert_eq!(down.requests().len(), 40, "first try and seven retries each");
    assert_eq!(s.int("herald_messages_ingested_total"), 5);
    assert_eq!(s.int("herald_deliveries_created_total"), 10);
    assert_eq!(s.int(SUCCESS), 5, "{}", s.text);
    assert_eq!(s.int(FAILURE), 40, "{}", s.text);
    assert_eq!(s.int(DELIVERED), 5);
    assert_eq!(s.int(EXHAUSTED), 5);
    assert_eq!(s.int("herald_deliveries_exhausted_total"), 5, "the older series agrees");
    assert_eq!((s.int(DISABLED), s.int(CANCELLED)), (0, 0));
    assert_eq!(s.int("herald_backlog_deliveries"), 0, "nothing is left to deliver");
    assert_eq!(
        s.int("herald_endpoints_failing"),
        1,
        "the 500 endpoint, not the 200 one"
    );
    assert_eq!(s.int("herald_circuits_open"), 0, "a 500 is an answer: no circuit opens");
    assert_eq!(s.int("herald_deliveries_in_flight"), 0);
    assert_histograms_agree(&s, 5);
    assert_no_endpoint_labels(&s);
    let success = s.histogram("herald_attempt_duration_seconds", r#"outcome="success""#);
    assert_eq!(
        success.buckets.last().unwrap().1,
        5.0,
        "loopback answers are timed: {success:?}"
    );
    if let Some(promtool) = promtool() {
        promtool_check_metrics(&promtool, &s.text);
    }

    // Deleting the failing endpoint takes it out of the count.
    let (status, _) = server
        .request(
            reqwest::Method::DELETE,
            &format!("/app/{app}/endpoint/{down_ep}/"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let s = wait_scrape(&server, Duration::from_secs(10), |s| {
        s.int("herald_endpoints_failing") == 0
    })
    .await;
    assert_eq!(
        s.int("herald_endpoints_failing"),
        0,
        "a deleted endpoint is not failing"
    );
    assert_eq!(s.int(CANCELLED), 0, "it had nothing pending");
}

/// A receiver that refuses connections: its circuit opens and its backlog
/// is counted while it waits; once it listens the backlog drains to zero,
/// every delivery counted once. Another one's backlog is canceled by
/// deleting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backlog_and_open_circuits_while_a_receiver_is_down_and_after_it_drains() {
    const N: u64 = 30;
    let dir = temp_dir();
    // Retries after 0.25 s then 15 s: the backlog outlives the wait.
    let server = server(dir.path(), 20.0);
    let (port, gone) = (refused_port(), refused_port());
    let app = server.create_app("down").await;
    server
        .create_endpoint(&app, json!({"url": format!("http://127.0.0.1:{}/hook", port.port)}))
        .await;
    let other = server.create_app("to-delete").await;
    let (gone_ep, _) = server
        .create_endpoint(&other, json!({"url": format!("http://127.0.0.1:{}/hook", gone.port)}))
        .await;
    for n in 0..N {
        server.send(&app, "backlog.test", json!({"n": n})).await;
    }
    for n in 0..4 {
        server.send(&other, "backlog.test", json!({"n": n})).await;
    }

    let s = wait_scrape(&server, Duration::from_secs(20), |s| {
        s.int("herald_circuits_open") == 2 && s.int("herald_backlog_deliveries") == N + 4
    })
    .await;
    assert_eq!(
        s.int("herald_circuits_open"),
        2,
        "both refusing endpoints' circuits opened"
    );
    assert_eq!(
        s.int("herald_backlog_deliveries"),
        N + 4,
        "held in the store, all counted"
    );
    assert_eq!(s.int("herald_endpoints_failing"), 2);
    assert!(s.int(FAILURE) >= 10, "five refusals open each circuit: {}", s.text);
    assert_eq!(s.int(SUCCESS), 0);
    assert_eq!(s.int(DELIVERED) + s.int(EXHAUSTED) + s.int(CANCELLED), 0);
    assert!(
        s.int("herald_deliveries_resident") < N,
        "the backlog waits in the store, not in memory"
    );
    let counted_at = s.value("herald_backlog_counted_timestamp_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - counted_at).abs() < 5.0, "counted {counted_at}, now {now}");
    assert_histograms_agree(&s, N + 4);
    if let Some(promtool) = promtool() {
        promtool_check_metrics(&promtool, &s.text);
    }

    // Deleting one endpoint cancels its four, and its circuit goes with it.
    let (status, _) = server
        .request(
            reqwest::Method::DELETE,
            &format!("/app/{other}/endpoint/{gone_ep}/"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let s = wait_scrape(&server, Duration::from_secs(10), |s| {
        s.int("herald_backlog_deliveries") == N && s.int("herald_circuits_open") == 1
    })
    .await;
    assert_eq!(s.int(CANCELLED), 4, "{}", s.text);
    assert_eq!(s.int("herald_backlog_deliveries"), N);
    assert_eq!(s.int("herald_circuits_open"), 1);
    assert_eq!(s.int("herald_endpoints_failing"), 1);

    // The other comes back: everything drains, once.
    let seen = counting_receiver(port);
    let s = wait_scrape(&server, Duration::from_secs(30), |s| {
        s.int(DELIVERED) == N && s.int("herald_backlog_deliveries") == 0 && s.int("herald_circuits_open") == 0
    })
    .await;
    let arrivals: usize = seen.lock().unwrap().values().sum();
    assert_eq!(
        (seen.lock().unwrap().len(), arrivals),
        (N as usize, N as usize),
        "each once"
    );
    assert_eq!(s.int(DELIVERED), N, "{}", s.text);
    assert_eq!(s.int(SUCCESS), N, "one successful attempt per delivery");
    assert_eq!(s.int("herald_backlog_deliveries"), 0, "drained");
    assert_eq!(s.int("herald_circuits_open"), 0, "closed again");
    assert_eq!(s.int("herald_endpoints_failing"), 0, "a success ends the failure");
    assert_eq!(s.int("herald_messages_ingested_total"), N + 4);
    assert_histograms_agree(&s, N + 4);
    assert_no_endpoint_labels(&s);
}

fn run_promtool(promtool: &std::path::Path, args: &[&std::ffi::OsStr]) {
    let out = Command::new(promtool).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// docs/alerts.yml is valid Prometheus rules, and each alert fires when
/// it should and not before (tests/prometheus/alerts.test.yml).
#[test]
fn the_example_alert_rules_pass_promtool_and_their_unit_tests() {
    let Some(promtool) = promtool() else { return };
    let rules = docs().join("alerts.yml");
    run_promtool(&promtool, &["check".as_ref(), "rules".as_ref(), rules.as_os_str()]);
    let tests = docs().join("../tests/prometheus/alerts.test.yml");
    run_promtool(&promtool, &["test".as_ref(), "rules".as_ref(), tests.as_os_str()]);
}

/// The dashboard's queries are valid PromQL: promtool checks them as
/// recording rules, with Grafana's variables given values.
fn promtool_check_queries(queries: &[String]) {
    let Some(promtool) = promtool() else { return };
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, q) in queries.iter().enumerate() {
        let q = q.replace("$__rate_interval", "1m").replace("$instance", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {}\n",
            json!(q)
        ));
    }
    let dir = temp_dir();
    let file = dir.path().join("dashboard-queries.yml");
    std::fs::write(&file, rules).unwrap();
    run_promtool(&promtool, &["check".as_ref(), "rules".as_ref(), file.as_os_str()]);
}

/// Every string under an `expr` key, anywhere in `v`.
fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// The Grafana dashboard imports with a Prometheus data source chosen at
/// import, has the panels the operator needs, and, like the alert rules,
/// names only series that a running server serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_alerts_name_only_series_a_server_serves() {
    let text = std::fs::read_to_string(docs().join("grafana-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let inputs = dashboard["__inputs"].as_array().expect("__inputs for import");
    assert!(
        inputs
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "{inputs:?}"
    );
    let panels = dashboard["panels"].as_array().expect("panels");
    for p in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "panel {}", p["title"]);
        for t in p["targets"].as_array().expect("targets") {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "panel {}", p["title"]);
        }
    }
    let mut found = Vec::new();
    exprs(&dashboard, &mut found);
    assert!(found.len() >= 11, "{found:?}");
    promtool_check_queries(&found);
    let in_dashboard: std::collections::BTreeSet<String> = found.iter().flat_map(|e| herald_names(e)).collect();
    for needed in [
        "herald_deliveries_total",
        "herald_attempt_duration_seconds_bucket",
        "herald_backlog_deliveries",
        "herald_circuits_open",
        "herald_endpoints_failing",
        "herald_ingest_batch_size_bucket",
        "herald_deliveries_in_flight",
    ] {
        assert!(in_dashboard.contains(needed), "no panel shows {needed}");
    }
    let alerts = std::fs::read_to_string(docs().join("alerts.yml")).unwrap();
    let in_alerts = herald_names(&alerts);
    assert!(in_alerts.contains("herald_endpoints_failing"), "{in_alerts:?}");

    let dir = temp_dir();
    let server = server(dir.path(), 1.0);
    let s = scrape(&server).await;
    // A sample's name, or (in prose) a family's.
    for name in in_dashboard.iter().chain(&in_alerts) {
        assert!(
            s.names.contains(name) || s.families.contains_key(name),
            "{name} is not served:\n{}",
            s.text
        );
    }
}
