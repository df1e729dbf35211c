//! Test harness: the real `herald` binary on a random loopback port, and a
//! real HTTP receiver in the test process that records what arrived.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::Notify;

pub const TOKEN: &str = "test-admin-token";

pub struct Server {
    process: Process,
    pub url: String,
    /// Every line the server printed on stdout.
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub token: String,
    pub http: reqwest::Client,
}

#[derive(Clone)]
pub struct ServerOptions {
    pub allow_private: bool,
    pub time_scale: Option<f64>,
    pub extra_args: Vec<String>,
    /// `None`: no `--admin-token`, so the server uses or generates its own.
    pub admin_token: Option<String>,
    pub env: Vec<(String, String)>,
    /// A command the server runs under (e.g. `prlimit --nofile=...`).
    pub wrapper: Vec<String>,
    /// `--listen`; `None` for a random loopback port.
    pub listen: Option<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            allow_private: true,
            time_scale: None,
            extra_args: Vec::new(),
            admin_token: Some(TOKEN.to_owned()),
            env: Vec::new(),
            wrapper: Vec::new(),
            listen: None,
        }
    }
}

impl ServerOptions {
    /// Every retry delay divided by `scale` (`HERALD_TIME_SCALE`).
    pub fn scaled(scale: f64) -> Self {
        Self {
            time_scale: Some(scale),
            ..Self::default()
        }
    }
}

impl Server {
    pub fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, ServerOptions::default())
    }

    pub fn start_with(data_dir: &Path, opts: ServerOptions) -> Self {
        let stderr_log = data_dir.with_extension(format!("stderr.{}.log", std::process::id()));
        let stderr = stderr_file(&stderr_log);
        let mut cmd = match opts.wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(env!("CARGO_BIN_EXE_herald"));
                cmd
            }
            None => Command::new(env!("CARGO_BIN_EXE_herald")),
        };
        cmd.arg("serve")
            .arg("--listen")
            .arg(opts.listen.as_deref().unwrap_or("127.0.0.1:0"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(&opts.extra_args)
            .args(database_url_arg(data_dir, &opts.extra_args))
            .env_remove("HERALD_ALLOW_PRIVATE_TARGETS")
            .env_remove("HERALD_DATABASE_URL")
            .env_remove("HERALD_ADMIN_TOKEN")
            .env(
                "HERALD_LOG",
                std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        if let Some(token) = &opts.admin_token {
            cmd.arg("--admin-token").arg(token);
        }
        cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
        if opts.allow_private {
            cmd.arg("--allow-private-targets").arg("127.0.0.0/8");
        }
        match opts.time_scale {
            Some(scale) => cmd.env("HERALD_TIME_SCALE", scale.to_string()),
            None => cmd.env_remove("HERALD_TIME_SCALE"),
        };
        let (child, url, lines) = spawn_until_listening(cmd, &stderr_log);
        let token = opts.admin_token.clone().unwrap_or_else(|| {
            std::fs::read_to_string(data_dir.join("admin-token"))
                .map(|t| t.trim().to_owned())
                .unwrap_or_default()
        });
        Self {
            process: Process::new(child, stderr_log),
            url,
            stdout: lines,
            token,
            http: client(),
        }
    }

    /// One unlabelled (or fully labelled) sample from `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
            .trim()
            .parse()
            .expect("a number")
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGTERM, then wait for the process to exit by itself.
    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
        self.process.terminate(within)
    }

    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{}", self.url, path)
    }

    pub async fn request(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, self.api(path)).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON body: {text}"))
        };
        (status, value)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.request(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, None).await
    }

    /// Creates an application and returns its id.
    pub async fn create_app(&self, name: &str) -> String {
        let (status, app) = self.post("/app/", json!({"name": name})).await;
        assert_eq!(status, 201, "{app}");
        app["id"].as_str().expect("id").to_owned()
    }

    /// Creates these event types (endpoints may filter only on existing ones).
    pub async fn create_event_types(&self, names: &[&str]) {
        for name in names {
            let (status, et) = self
                .post("/event-type/", json!({"name": name, "description": name}))
                .await;
            assert_eq!(status, 201, "{et}");
        }
    }

    /// Creates an endpoint from `body` and returns (id, signing secret).
    pub async fn create_endpoint(&self, app: &str, body: Value) -> (String, String) {
        let (status, ep) = self.post(&format!("/app/{app}/endpoint/"), body).await;
        assert_eq!(status, 201, "{ep}");
        let id = ep["id"].as_str().expect("id").to_owned();
        let (status, secret) = self.get(&format!("/app/{app}/endpoint/{id}/secret/")).await;
        assert_eq!(status, 200, "{secret}");
        (id, secret["key"].as_str().expect("key").to_owned())
    }

    pub async fn send(&self, app: &str, event_type: &str, payload: Value) -> String {
        let (status, msg) = self
            .post(
                &format!("/app/{app}/msg/"),
                json!({"eventType": event_type, "payload": payload}),
            )
            .await;
        assert_eq!(status, 202, "{msg}");
        msg["id"].as_str().expect("id").to_owned()
    }

    /// Polls the endpoint at `path` until it reads back disabled (true) or
    /// `within` has passed (false).
    pub async fn disabled_within(&self, path: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let (_, ep) = self.get(path).await;
            if ep["disabled"] == true {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls the attempts of a message until `done` holds or the time is up.
    pub async fn wait_attempts(
        &self,
        app: &str,
        msg: &str,
        within: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let (status, list) = self.get(&format!("/app/{app}/attempt/msg/{msg}/?limit=250")).await;
            assert_eq!(status, 200, "{list}");
            let data = list["data"].as_array().cloned().unwrap_or_default();
            if done(&data) || Instant::now() > deadline {
                return data;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The file a child's stderr is appended to (read back when it fails).
pub fn stderr_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("stderr log")
}

/// Spawns `cmd` (stdout piped) and waits for its `herald listening on URL`
/// line; every stdout line is kept. Panics with its stderr if it never comes.
pub fn spawn_until_listening(mut cmd: Command, stderr_log: &Path) -> (Child, String, Arc<Mutex<Vec<String>>>) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawning herald");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = lines.clone();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("herald listening on ")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(addr.to_owned());
            }
            seen.lock().expect("lock").push(line);
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(url) => (child, url, lines),
        Err(_) => {
            let _ = child.kill();
            panic!(
                "herald did not start: {}",
                std::fs::read_to_string(stderr_log).unwrap_or_default()
            );
        }
    }
}

/// A child `herald` process, killed when dropped.
pub struct Process {
    child: Option<Child>,
    stderr_log: PathBuf,
}

impl Process {
    pub fn new(child: Child, stderr_log: PathBuf) -> Self {
        Self {
            child: Some(child),
            stderr_log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("wait");
        }
    }

    /// SIGTERM, then wait for the process to exit by itself.
    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("herald did not exit within {within:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                panic!("herald did not exit within {within:?}: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    /// The sender's address: one per TCP connection, so reuse shows.
    pub peer: std::net::SocketAddr,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

/// How the receiver answers: given the request and how many requests with
/// the same `webhook-id` arrived before it, a status, a delay and a body.
pub type Behaviour = Arc<dyn Fn(&Received, usize) -> (u16, Duration, String) + Send + Sync>;

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
}

struct ReceiverState {
    requests: Mutex<Vec<Received>>,
    arrived: Notify,
    behaviour: Mutex<Behaviour>,
    /// Sent with every error response (status >= 400).
    error_headers: Mutex<Vec<(&'static str, String)>>,
}

impl Receiver {
    /// Adds a header to every error response from now on (e.g. `retry-after`).
    pub fn add_error_header(&self, name: &'static str, value: &str) {
        self.state
            .error_headers
            .lock()
            .expect("lock")
            .push((name, value.to_owned()));
    }

    pub async fn start() -> Self {
        Self::start_with(Arc::new(|_, _| (200, Duration::ZERO, "ok".into()))).await
    }

    pub async fn start_with(behaviour: Behaviour) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(ReceiverState {
            requests: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            behaviour: Mutex::new(behaviour),
            error_headers: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new().fallback(handle).with_state(state.clone());
        tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
            let _ = axum::serve(listener, service).await;
        });
        Self { url, state }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.state.requests.lock().expect("lock").clone()
    }

    pub fn on_path(&self, path: &str) -> Vec<Received> {
        self.requests().into_iter().filter(|r| r.path == path).collect()
    }

    /// Waits until `done` holds over everything received, or the time is up.
    pub async fn wait_until(&self, within: Duration, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.state.arrived.notified();
            let all = self.requests();
            if done(&all) {
                return all;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.requests();
            }
        }
    }
}

async fn handle(
    axum::extract::State(state): axum::extract::State<Arc<ReceiverState>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let received = Received {
        path: uri.path().to_owned(),
        peer,
        headers,
        body,
        at: Instant::now(),
    };
    let (status, delay, text) = {
        let requests = state.requests.lock().expect("lock");
        let id = received.header("webhook-id");
        let before = requests.iter().filter(|r| r.header("webhook-id") == id).count();
        let behaviour = state.behaviour.lock().expect("lock").clone();
        behaviour(&received, before)
    };
    state.requests.lock().expect("lock").push(received);
    state.arrived.notify_waiters();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut resp = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), text).into_response();
    if (300..400).contains(&status) {
        resp.headers_mut()
            .insert("location", axum::http::HeaderValue::from_static("/redirected"));
    }
    if status >= 400 {
        for (name, value) in state.error_headers.lock().expect("lock").iter() {
            resp.headers_mut()
                .insert(*name, axum::http::HeaderValue::from_str(value).expect("header value"));
        }
    }
    resp
}

/// A plain HTTP client for tests; reqwest is built without a bundled crypto
/// provider, so ours is installed first.
/// `--database-url` for the test database the data directory names, unless
/// the test chose a database itself.
fn database_url_arg(data_dir: &Path, extra_args: &[String]) -> Vec<String> {
    if extra_args.iter().any(|a| a.starts_with("--database-url")) {
        return Vec::new();
    }
    match std::fs::read_to_string(data_dir.join(DATABASE_URL_FILE)) {
        Ok(url) => vec!["--database-url".to_owned(), url.trim().to_owned()],
        Err(_) => Vec::new(),
    }
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A server's data directory for one test, and under
/// `HERALD_TEST_BACKEND=postgres` the fresh PostgreSQL database that every
/// server started on it uses (named in the directory's [`DATABASE_URL_FILE`]),
/// dropped with it.
pub struct TestDir {
    // Declared first: the database goes before the directory.
    _database: Option<herald_store::postgres::TestDatabase>,
    dir: tempfile::TempDir,
}

impl TestDir {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// In a data directory: the `--database-url` its servers are started with.
pub const DATABASE_URL_FILE: &str = "test-database-url";

/// Which store the end-to-end tests run on: `HERALD_TEST_BACKEND`
/// (`sqlite`, the default, or `postgres`).
pub fn on_postgres() -> bool {
    match std::env::var("HERALD_TEST_BACKEND").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("HERALD_TEST_BACKEND must be sqlite or postgres, got {other}"),
    }
}

/// Whether `needle` is anywhere in what the server on `data_dir` stored:
/// the SQLite files, or every row of its PostgreSQL test database.
pub async fn stored_contains(data_dir: &Path, needle: &[u8]) -> bool {
    if let Ok(url) = std::fs::read_to_string(data_dir.join(DATABASE_URL_FILE)) {
        return herald_store::postgres::rows_contain(url.trim(), needle).await;
    }
    ["herald.db", "herald.db-wal"]
        .iter()
        .filter_map(|f| std::fs::read(data_dir.join(f)).ok())
        .any(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
}

pub fn temp_dir() -> TestDir {
    let dir = tempfile::Builder::new()
        .prefix("herald-it-")
        .tempdir()
        .expect("temp dir");
    let database = on_postgres().then(|| {
        let db = herald_store::postgres::TestDatabase::create_blocking().unwrap_or_else(|| {
            panic!(
                "HERALD_TEST_BACKEND=postgres needs {}",
                herald_store::postgres::TEST_URL_VAR
            )
        });
        std::fs::write(dir.path().join(DATABASE_URL_FILE), db.url()).expect("writing the test database's URL");
        db
    });
    TestDir {
        _database: database,
        dir,
    }
}

/// A loopback port that refuses connections and that nobody else can take:
/// a socket bound to it that does not listen. Ports picked by number and
/// freed again were shared between tests running at once (one test's
/// receiver got another's deliveries).
pub struct RefusedPort {
    socket: tokio::net::TcpSocket,
    pub port: u16,
}

pub fn refused_port() -> RefusedPort {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("binding a loopback port");
    let port = socket.local_addr().expect("the bound port").port();
    RefusedPort { socket, port }
}

impl RefusedPort {
    /// Starts listening on the port, which was never free in between.
    pub fn listen(self) -> tokio::net::TcpListener {
        self.socket.listen(1024).expect("listening on the refused port")
    }
}

/// A receiver on `port` (refusing until now) that answers 200 at once and
/// only counts arrivals by `webhook-id` (it keeps no bodies, however large).
pub fn counting_receiver(port: RefusedPort) -> Arc<Mutex<HashMap<String, usize>>> {
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let counts = seen.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let counts = counts.clone();
        async move {
            let id = headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            *counts.lock().unwrap().entry(id).or_default() += 1;
            "ok"
        }
    });
    let listener = port.listen();
    tokio::spawn(async move { axum::serve(listener, app).await });
    seen
}
