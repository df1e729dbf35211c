//! Harness for `herald listen`: the real binary on a random loopback port,
//! its history file in a temp dir, its terminal lines kept, and its JSON API
//! read back.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Process, client, spawn_until_listening, stderr_file};

pub struct Listener {
    process: Process,
    pub url: String,
    /// Every line it printed on stdout.
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub http: reqwest::Client,
}

/// The command for `herald listen --port 0 --db <db> <args>`.
pub fn listen_command(db: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.arg("listen")
        .arg("--port")
        .arg("0")
        .arg("--db")
        .arg(db)
        .args(args)
        .env(
            "HERALD_LOG",
            std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env("NO_COLOR", "1");
    for (name, _) in std::env::vars() {
        if name.starts_with("HERALD_LISTEN_") || name.starts_with("HERALD_RELAY_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

impl Listener {
    pub fn start(db: &Path, args: &[&str]) -> Self {
        let stderr_log: PathBuf = db.with_extension(format!("listen-stderr.{}.log", std::process::id()));
        let mut cmd = listen_command(db, args);
        cmd.stderr(Stdio::from(stderr_file(&stderr_log)));
        let (child, url, stdout) = spawn_until_listening(cmd, &stderr_log);
        Self {
            process: Process::new(child, stderr_log),
            url,
            stdout,
            http: client(),
        }
    }

    pub fn terminate(&mut self) -> ExitStatus {
        self.process.terminate(Duration::from_secs(10))
    }

    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    pub fn kill(&mut self) {
        self.process.kill();
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        self.process.wait_exit(Duration::from_secs(15))
    }

    /// How many terminal lines contain `text`.
    pub fn lines_with(&self, text: &str) -> usize {
        self.stdout
            .lock()
            .expect("lock")
            .iter()
            .filter(|l| l.contains(text))
            .count()
    }

    /// POSTs `body` to `path` on the listener (a request to capture).
    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .body(body)
            .send()
            .await
            .expect("POST to the listener")
    }

    pub async fn api_get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}/_herald/api{path}", self.url))
            .send()
            .await
            .expect("GET");
        (resp.status().as_u16(), resp.json().await.expect("JSON"))
    }

    pub async fn replay(&self, id: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/_herald/api/requests/{id}/replay", self.url))
            .send()
            .await
            .expect("POST replay");
        (resp.status().as_u16(), resp.json().await.expect("JSON"))
    }

    /// The stored requests, newest first.
    pub async fn requests(&self) -> Vec<Value> {
        let (status, list) = self.api_get("/requests").await;
        assert_eq!(status, 200, "{list}");
        list.as_array().expect("a list").clone()
    }

    /// Polls the history until `done` holds or the time is up.
    pub async fn wait_requests(&self, within: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let list = self.requests().await;
            if done(&list) || Instant::now() > deadline {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for a terminal line containing every one of `parts`.
    pub async fn wait_line(&self, within: Duration, parts: &[&str]) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let found = self
                .stdout
                .lock()
                .expect("lock")
                .iter()
                .find(|l| parts.iter().all(|p| l.contains(p)))
                .cloned();
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The secret the listener tests sign with.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A POST of `body` to `url`, signed with [`SECRET`] the Standard Webhooks way.
pub fn signed(http: &reqwest::Client, url: &str, id: &str, body: &str) -> reqwest::RequestBuilder {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let sig = herald_verify::Webhook::new(SECRET)
        .expect("secret")
        .sign(id, ts, body.as_bytes())
        .expect("sign");
    http.post(url)
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .header("content-type", "application/json")
        .body(body.to_owned())
}

/// The value of header `name` in a stored request's JSON.
pub fn stored_header<'a>(request: &'a Value, name: &str) -> Option<&'a str> {
    request["headers"]
        .as_array()?
        .iter()
        .find(|pair| pair[0] == name)
        .and_then(|pair| pair[1].as_str())
}

/// A loopback URL that refuses connections: a port that was just free.
pub async fn refused_url() -> String {
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = probe.local_addr().expect("addr");
    drop(probe);
    format!("http://{addr}")
}
