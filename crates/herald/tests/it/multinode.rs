//! Several `herald serve` nodes on one PostgreSQL database, as real
//! processes: any node takes API traffic, a delivery goes out once however
//! many nodes could claim it, a killed node's claims are taken over once its
//! lease lapses, an ordered endpoint stays ordered across nodes, and a
//! restarting node fails only its own background tasks. Each
//! test makes a fresh database of its own; outside CI, without
//! `HERALD_TEST_POSTGRES_URL`, they have nothing to run against and return.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_store::EncryptionKey;
use herald_store::postgres::TestDatabase;
use serde_json::{Value, json};

use crate::harness::{Received, Receiver, Server, ServerOptions, counting_receiver, refused_port};

/// Nodes sharing one database, one encryption key and one admin token,
/// each with a data directory (and so a node id) of its own.
struct Cluster {
    nodes: Vec<Server>,
    db: TestDatabase,
    key: String,
    lease_secs: f64,
    _dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    /// `None` when no PostgreSQL server is configured (outside CI).
    async fn start(n: usize, lease_secs: f64) -> Option<Self> {
        let db = TestDatabase::create().await?;
        let mut cluster = Self {
            nodes: Vec::new(),
            db,
            key: EncryptionKey::generate().to_base64(),
            lease_secs,
            _dirs: Vec::new(),
        };
        for _ in 0..n {
            cluster.add_node();
        }
        Some(cluster)
    }

    fn add_node(&mut self) -> usize {
        let dir = tempfile::Builder::new()
            .prefix("herald-node-")
            .tempdir()
            .expect("temp dir");
        let server = Server::start_with(dir.path(), self.options());
        self._dirs.push(dir);
        self.nodes.push(server);
        self.nodes.len() - 1
    }

    fn options(&self) -> ServerOptions {
        ServerOptions {
            extra_args: vec![
                "--database-url".into(),
                self.db.url().to_owned(),
                "--encryption-key".into(),
                self.key.clone(),
                "--lease-secs".into(),
                self.lease_secs.to_string(),
            ],
            ..ServerOptions::default()
        }
    }

    /// Stops node `i` (SIGTERM) and starts it again on its data directory,
    /// so with the same node id.
    fn restart(&mut self, i: usize) {
        self.nodes[i].terminate(Duration::from_secs(10));
        self.nodes[i] = Server::start_with(self._dirs[i].path(), self.options());
    }

    /// Node `i`'s id, as it wrote it in its data directory.
    fn node_id(&self, i: usize) -> herald_store::NodeId {
        let id = std::fs::read_to_string(self._dirs[i].path().join("node-id")).expect("node-id");
        herald_store::NodeId::new(id.trim())
    }
}

fn n_of(r: &Received) -> i64 {
    serde_json::from_slice::<Value>(&r.body).expect("JSON")["n"]
        .as_i64()
        .expect("n")
}

/// Posts messages `range` round-robin over the nodes, `concurrency` at a time.
async fn post_round_robin(cluster: &Cluster, app: &str, range: std::ops::Range<i64>, concurrency: usize) {
    let urls: Vec<String> = cluster
        .nodes
        .iter()
        .map(|s| s.api(&format!("/app/{app}/msg/")))
        .collect();
    let http = cluster.nodes[0].http.clone();
    let token = cluster.nodes[0].token.clone();
    let next = Arc::new(Mutex::new(range));
    let mut posters = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (urls, http, token, next) = (urls.clone(), http.clone(), token.clone(), next.clone());
        posters.spawn(async move {
            loop {
                let Some(n) = next.lock().unwrap().next() else { return };
                let url = &urls[n as usize % urls.len()];
                let res = http
                    .post(url)
                    .bearer_auth(&token)
                    .json(&json!({"eventType": "multi.test", "payload": {"n": n}}))
                    .send()
                    .await
                    .expect("POST msg");
                assert_eq!(res.status(), 202, "message {n} on {url}: {:?}", res.text().await);
            }
        });
    }
    while let Some(r) = posters.join_next().await {
        r.expect("poster");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_ten_thousand_messages_once_each() {
    let Some(cluster) = Cluster::start(3, 30.0).await else {
        return;
    };
    let port = refused_port();
    let url = format!("http://127.0.0.1:{}/hook", port.port);
    let seen = counting_receiver(port);
    let app = cluster.nodes[0].create_app("multi").await;
    cluster.nodes[1].create_endpoint(&app, json!({"url": url})).await;

    let started = Instant::now();
    post_round_robin(&cluster, &app, 0..10_000, 48).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().len() < 10_000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Anything sent twice would arrive within moments of the first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = seen.lock().unwrap().clone();
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(
        seen.len(),
        10_000,
        "every message delivered (in {:?})",
        started.elapsed()
    );
    assert!(
        duplicates.is_empty(),
        "{} delivered more than once: {duplicates:?}",
        duplicates.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_deliveries_are_taken_over_after_its_lease() {
    let Some(mut cluster) = Cluster::start(2, 3.0).await else {
        return;
    };
    // Slow answers keep node 0's claims queued in its memory when it dies.
    let receiver = Receiver::start_with(Arc::new(|_, _| (200, Duration::from_millis(50), "ok".into()))).await;
    let app = cluster.nodes[0].create_app("takeover").await;
    cluster.nodes[0]
        .create_endpoint(&app, json!({"url": format!("{}/hook", receiver.url), "maxInFlight": 1}))
        .await;
    for n in 0..200 {
        cluster.nodes[0].send(&app, "multi.test", json!({"n": n})).await;
    }
    receiver.wait_until(Duration::from_secs(10), |r| r.len() >= 10).await;
    cluster.nodes[0].kill();
    let killed_at = Instant::now();
    let before = receiver.requests().len();
    assert!(
        before < 150,
        "node 0 had delivered {before} of 200 before it died: too fast for this test"
    );

    let all = receiver
        .wait_until(Duration::from_secs(30), |r| {
            let mut ns: Vec<i64> = r.iter().map(n_of).collect();
            ns.sort_unstable();
            ns.dedup();
            ns.len() == 200
        })
        .await;
    let mut ns: Vec<i64> = all.iter().map(n_of).collect();
    ns.sort_unstable();
    ns.dedup();
    assert_eq!(
        ns,
        (0..200).collect::<Vec<_>>(),
        "every message delivered after node 0 died"
    );
    let first_after = all[before..].first().expect("deliveries after the kill").at;
    let waited = first_after.saturating_duration_since(killed_at);
    assert!(
        waited >= Duration::from_millis(2_000),
        "node 1 took over after {waited:?}, before node 0's 3 s lease could lapse"
    );
    assert!(
        waited <= Duration::from_secs(8),
        "node 1 took over only after {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_endpoint_fed_from_three_nodes_receives_in_order() {
    let Some(cluster) = Cluster::start(3, 30.0).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let app = cluster.nodes[0].create_app("ordered").await;
    cluster.nodes[2]
        .create_endpoint(&app, json!({"url": format!("{}/hook", receiver.url), "fifo": true}))
        .await;
    // One after another, so that the order they were accepted in is known.
    for n in 0..300 {
        cluster.nodes[n % 3].send(&app, "multi.test", json!({"n": n})).await;
    }
    let all = receiver.wait_until(Duration::from_secs(30), |r| r.len() >= 300).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got: Vec<i64> = receiver.requests().iter().map(n_of).collect();
    assert_eq!(all.len(), 300, "all delivered");
    assert_eq!(got, (0..300).collect::<Vec<i64>>(), "in the order accepted, once each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_at_once_migrate_one_at_a_time() {
    let Some(db) = TestDatabase::create().await else { return };
    // Without the advisory lock, all but one would fail creating tables
    // that another had just created.
    let runs: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
                .args(["migrate", "--database-url", db.url()])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("herald migrate")
        })
        .collect();
    for run in runs {
        let out = run.wait_with_output().expect("herald migrate");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("migrations applied"));
    }
    // And the migrated database serves.
    let dir = tempfile::Builder::new()
        .prefix("herald-node-")
        .tempdir()
        .expect("temp dir");
    let server = Server::start_with(
        dir.path(),
        ServerOptions {
            extra_args: vec!["--database-url".into(), db.url().to_owned()],
            ..ServerOptions::default()
        },
    );
    server.create_app("migrated").await;
}

/// Arrival times of every request that reached `receiver`, in order.
fn arrivals(got: &[Received]) -> Vec<Instant> {
    got.iter().map(|r| r.at).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_endpoint_fed_from_three_nodes_keeps_its_rate() {
    let Some(cluster) = Cluster::start(3, 30.0).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let app = cluster.nodes[0].create_app("paced").await;
    cluster.nodes[1]
        .create_endpoint(&app, json!({"url": format!("{}/hook", receiver.url), "rateLimit": 20}))
        .await;
    // Each node alone would send 20 a second; three at once, 60.
    post_round_robin(&cluster, &app, 0..60, 12).await;
    let got = receiver.wait_until(Duration::from_secs(30), |r| r.len() >= 60).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ns: Vec<i64> = receiver.requests().iter().map(n_of).collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..60).collect::<Vec<_>>(), "every message once");
    let at = arrivals(&got);
    // 60 at 20 a second: at least 59 intervals (2.95 s) from first to last,
    // and no second holding more than 20 (22 allowed for loopback jitter).
    let span = at[59] - at[0];
    assert!(span >= Duration::from_millis(2_800), "60 requests within {span:?}");
    for (i, t) in at.iter().enumerate() {
        let within = at[i..].iter().take_while(|u| **u - *t < Duration::from_secs(1)).count();
        assert!(within <= 22, "{within} requests within a second of request {i}");
    }
}

/// Runs `sql` on the cluster's database and returns its one row's
/// integer columns.
async fn db_ints(db: &TestDatabase, sql: &str) -> Vec<i64> {
    let (client, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
        .await
        .expect("connecting to the test database");
    tokio::spawn(conn);
    let row = client.query_one(sql, &[]).await.expect(sql);
    (0..row.len()).map(|i| row.get::<_, i64>(i)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_has_one_circuit_over_all_nodes() {
    let Some(cluster) = Cluster::start(3, 30.0).await else {
        return;
    };
    let port = refused_port();
    let url = format!("http://127.0.0.1:{}/hook", port.port);
    let app = cluster.nodes[0].create_app("dead").await;
    // Retries a second apart: work a node hands over is due again at once,
    // rather than at a later step of the default schedule.
    cluster.nodes[1]
        .create_endpoint(
            &app,
            json!({"url": url, "retrySchedule": {"kind": "delays", "delaysSecs": vec![1; 50], "jitter": false}}),
        )
        .await;
    for n in 0..30 {
        cluster.nodes[n % 3].send(&app, "multi.test", json!({"n": n})).await;
    }
    // Every node finds the endpoint dead; the circuit whose node took the
    // hold keeps the whole backlog, parked under that node's claims.
    let deadline = Instant::now() + Duration::from_secs(25);
    let settled = loop {
        let counts = db_ints(
            &cluster.db,
            "SELECT count(*), count(*) FILTER (WHERE parked), count(DISTINCT claimed_by), \
             (SELECT count(*) FROM endpoint_hold), \
             count(*) FILTER (WHERE claimed_by = (SELECT owner FROM endpoint_hold LIMIT 1)) \
             FROM delivery WHERE status = 1",
        )
        .await;
        if counts == [30, 30, 1, 1, 30] {
            break None;
        }
        if Instant::now() > deadline {
            break Some(counts);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        settled, None,
        "[pending, parked, nodes holding them, holds, held by the holder] never became [30, 30, 1, 1, 30]"
    );
    // Messages posted to any node now go to the holder's open circuit.
    for n in 30..36 {
        cluster.nodes[n % 3].send(&app, "multi.test", json!({"n": n})).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let counts = db_ints(
            &cluster.db,
            "SELECT count(*), count(DISTINCT claimed_by) FROM delivery WHERE status = 1 AND parked",
        )
        .await;
        if counts == [36, 1] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "[parked, nodes holding them]: {counts:?}, not [36, 1]"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Back up: the holder's probe closes the circuit and everything arrives, once.
    let seen = counting_receiver(port);
    let deadline = Instant::now() + Duration::from_secs(40);
    while seen.lock().unwrap().len() < 36 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 36, "every message delivered once the endpoint came back");
    assert!(seen.values().all(|n| *n == 1), "sent twice: {seen:?}");
}

/// A node that restarts fails the background tasks its last run left
/// running, and leaves alone those another live node is running. (A task
/// runs in its node's process and ends quickly, so the running tasks here
/// are recorded straight into the store, each under one node's id.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarting_node_fails_only_its_own_background_tasks() {
    use herald_store::postgres::{PgOptions, PgStore};
    use herald_store::{Store, TaskKind, TaskStore};

    let Some(mut cluster) = Cluster::start(2, 30.0).await else {
        return;
    };
    let app = cluster.nodes[0].create_app("tasks").await;
    let key = EncryptionKey::parse(&cluster.key).expect("the cluster's key");
    let store = PgStore::open(cluster.db.url(), key, PgOptions::default())
        .await
        .expect("opening the cluster's database");
    let app_id = herald_core::AppId::from_trusted(app);
    let ours = store
        .create_task(&app_id, TaskKind::EndpointRecover, &cluster.node_id(0))
        .await
        .expect("node 0's task");
    let theirs = store
        .create_task(&app_id, TaskKind::EndpointReplay, &cluster.node_id(1))
        .await
        .expect("node 1's task");
    store.close().await;
    let status = |body: &Value| body["status"].as_str().unwrap_or_default().to_owned();

    cluster.restart(0);
    for node in &cluster.nodes {
        let (code, body) = node.get(&format!("/background-task/{}/", ours.id)).await;
        assert_eq!((code, status(&body)), (200, "failed".to_owned()), "{body}");
        let (code, body) = node.get(&format!("/background-task/{}/", theirs.id)).await;
        assert_eq!(
            (code, status(&body)),
            (200, "running".to_owned()),
            "node 1 is still running it: {body}"
        );
    }

    cluster.restart(1);
    let (_, body) = cluster.nodes[0].get(&format!("/background-task/{}/", theirs.id)).await;
    assert_eq!(status(&body), "failed", "{body}");
}

/// What reaches `receiver` on `path` once a message is posted to each node
/// in turn, each verified with `secret`: one per node, in time.
async fn one_from_each_node(cluster: &Cluster, app: &str, receiver: &Receiver, path: &str, secret: &str, what: &str) {
    let before = receiver.on_path(path).len();
    for node in &cluster.nodes {
        node.send(app, "multi.test", json!({"what": what})).await;
    }
    let want = before + cluster.nodes.len();
    receiver
        .wait_until(Duration::from_secs(10), |r| {
            r.iter().filter(|x| x.path == path).count() >= want
        })
        .await;
    let got = receiver.on_path(path);
    assert_eq!(got.len(), want, "{what}: one delivery per node on {path}");
    let webhook = herald_verify::Webhook::new(secret).expect("a secret");
    for r in &got[before..] {
        assert!(
            webhook.verify(&r.headers, &r.body).is_ok(),
            "{what}: a delivery not signed with the secret in force"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_changes_made_on_one_node_reach_every_node() {
    let Some(cluster) = Cluster::start(3, 30.0).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let app = cluster.nodes[0].create_app("changes").await;
    let (ep, first) = cluster.nodes[0]
        .create_endpoint(&app, json!({"url": format!("{}/a", receiver.url)}))
        .await;
    // Every node caches the endpoint's target.
    one_from_each_node(&cluster, &app, &receiver, "/a", &first, "before").await;

    let path = format!("/app/{app}/endpoint/{ep}/");
    let (status, rotated) = cluster.nodes[0].post(&format!("{path}secret/rotate/"), json!({})).await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["key"].as_str().expect("key").to_owned();
    assert_ne!(first, second);
    one_from_each_node(&cluster, &app, &receiver, "/a", &second, "after rotation").await;

    let (status, body) = cluster.nodes[0]
        .request(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"url": format!("{}/b", receiver.url)})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    one_from_each_node(&cluster, &app, &receiver, "/b", &second, "after the URL changed").await;

    let (status, body) = cluster.nodes[0]
        .request(reqwest::Method::PATCH, &path, Some(json!({"disabled": true})))
        .await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for node in &cluster.nodes {
        node.send(&app, "multi.test", json!({"what": "disabled"})).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let total = receiver.requests().len();
    assert_eq!(
        total, 9,
        "a node delivered to the endpoint after it was disabled elsewhere"
    );

    let (status, body) = cluster.nodes[0].request(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 204, "{body}");
    for node in &cluster.nodes[1..] {
        let (status, _) = node.get(&path).await;
        assert_eq!(status, 404, "the deleted endpoint is gone on every node");
    }
}

/// `herald bench` given one `--url` per node (what `scripts/bench/scaleout.sh`
/// runs): message n goes to node n mod 2, every message arrives once, and
/// the CPU of both `--server-pid`s is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_posts_to_every_node_given() {
    let Some(cluster) = Cluster::start(2, 30.0).await else {
        return;
    };
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["bench", "--json", "--messages", "200", "--concurrency", "4"])
        .args(["--token", &a.token, "--url", &a.url, "--url", &b.url])
        .args([
            "--server-pid",
            &a.pid().to_string(),
            "--server-pid",
            &b.pid().to_string(),
        ])
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
    let r: Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(r["accepted"], 200, "{r}");
    assert_eq!(r["delivered"], 200, "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["duplicates"], 0, "{r}");
    assert!(r["server_cpu_seconds"].as_f64().is_some(), "{r}");
    assert_eq!(a.metric("herald_messages_ingested_total").await, 100);
    assert_eq!(b.metric("herald_messages_ingested_total").await, 100);
}
