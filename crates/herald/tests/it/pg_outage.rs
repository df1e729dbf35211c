//! PostgreSQL restarted under load: while the database is down, ingest
//! answers 503 with a JSON body (never a 202 without a commit); the node
//! reconnects by itself when it is back; every message that was accepted
//! is delivered. The test runs its own PostgreSQL server (`initdb` into a
//! temporary directory, as the `postgres` user, on a port of its own), so
//! restarting it disturbs no other test. It needs the server binaries
//! (`pg_config --bindir`) and root (to run them as `postgres`); outside CI
//! it returns when either is missing, under `CI=true` it fails.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Server, ServerOptions, counting_receiver, refused_port};

/// A PostgreSQL server of the test's own, stopped when dropped.
struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl PrivatePostgres {
    fn create() -> Option<Self> {
        let bin = Command::new("pg_config")
            .arg("--bindir")
            .output()
            .ok()
            .filter(|o| o.status.success());
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let Some(bin) = bin.filter(|_| is_root) else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "under CI=true this test needs PostgreSQL's server binaries and root"
            );
            return None;
        };
        let bin = PathBuf::from(String::from_utf8_lossy(&bin.stdout).trim());
        let dir = tempfile::Builder::new()
            .prefix("herald-pg-")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        run("chown", &["postgres", dir.path().to_str().expect("path")]);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("addr")
            .port();
        as_postgres(
            &bin.join("initdb"),
            &["-D", path(&data), "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        let pg = Self {
            bin,
            data,
            port,
            _dir: dir,
        };
        pg.start();
        Some(pg)
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn start(&self) {
        let options = format!("-p {} -c listen_addresses=127.0.0.1 -k {}", self.port, path(&self.data));
        let log = self.data.join("server.log");
        as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", path(&self.data), "-o", &options, "-l", path(&log), "-w", "start"],
        );
    }

    fn stop(&self) {
        as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", path(&self.data), "-m", "fast", "-w", "stop"],
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", path(&self.data), "-m", "immediate", "stop"])
            .output();
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().expect(program);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn as_postgres(program: &Path, args: &[&str]) {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(program)
        .args(args)
        .output()
        .expect("runuser");
    assert!(
        out.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_load_loses_nothing_accepted() {
    let Some(pg) = PrivatePostgres::create() else { return };
    let dir = tempfile::Builder::new()
        .prefix("herald-node-")
        .tempdir()
        .expect("temp dir");
    let server = Server::start_with(
        dir.path(),
        ServerOptions {
            extra_args: vec!["--database-url".into(), pg.url()],
            ..ServerOptions::default()
        },
    );
    let port = refused_port();
    let url = format!("http://127.0.0.1:{}/hook", port.port);
    let seen = counting_receiver(port);
    let app = server.create_app("outage").await;
    server.create_endpoint(&app, json!({"url": url})).await;

    // Posters run through the outage: each message is posted until it is
    // accepted once; every answer that is not 202 must be a JSON 503.
    let accepted: Arc<Mutex<HashSet<String>>> = Arc::default();
    let unavailable = Arc::new(Mutex::new(0usize));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut posters = tokio::task::JoinSet::new();
    for p in 0..8 {
        let (http, url, token) = (
            server.http.clone(),
            server.api(&format!("/app/{app}/msg/")),
            server.token.clone(),
        );
        let (accepted, unavailable, stop) = (accepted.clone(), unavailable.clone(), stop.clone());
        posters.spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let res = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"eventType": "outage.test", "payload": {"p": p, "n": n}}))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                let Ok(res) = res else { continue };
                let status = res.status().as_u16();
                let body: Value = res.json().await.unwrap_or(Value::Null);
                match status {
                    202 => {
                        accepted
                            .lock()
                            .unwrap()
                            .insert(body["id"].as_str().expect("id").to_owned());
                        n += 1;
                    }
                    503 => {
                        assert!(body["detail"].is_string(), "a 503 says why in JSON: {body}");
                        *unavailable.lock().unwrap() += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    other => panic!("ingest answered {other} during the outage: {body}"),
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = accepted.lock().unwrap().len();
    pg.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = accepted.lock().unwrap().len();
    pg.start();
    let restarted = Instant::now();
    // Ingest works again without restarting the node.
    while accepted.lock().unwrap().len() < during + 100 && restarted.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while let Some(r) = posters.join_next().await {
        r.expect("poster");
    }
    let accepted = accepted.lock().unwrap().clone();
    assert!(before > 0, "messages were accepted before the outage");
    assert!(
        *unavailable.lock().unwrap() > 0,
        "ingest answered 503 while the database was down"
    );
    assert!(
        accepted.len() >= during + 100,
        "ingest recovered after the restart: {} accepted, {during} by the restart",
        accepted.len()
    );

    // Every accepted message arrives; `webhook-id` is the message id.
    let deadline = Instant::now() + Duration::from_secs(60);
    let missing = loop {
        let got = seen.lock().unwrap().keys().cloned().collect::<HashSet<_>>();
        let missing: Vec<_> = accepted.difference(&got).cloned().collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        missing.is_empty(),
        "{} of {} accepted messages never arrived, e.g. {:?}",
        missing.len(),
        accepted.len(),
        &missing[..missing.len().min(5)]
    );
}
