//! `herald bench`: measures a running server that speaks the Svix v1 API
//! (Herald or another implementation) from the outside.
//!
//! It creates an application whose endpoints point at its own in-process
//! sink, posts messages as fast as allowed (or at a fixed rate), and matches
//! what arrives at the sink against what was accepted: throughput, end-to-end
//! latency (POST sent -> request received), losses and duplicates. Each
//! payload carries its sequence number, so the sink can time it without a
//! shared map on the hot path.

mod sink;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::json;

pub use sink::Sink;

#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    /// Base URL of the server under test.
    #[arg(long, env = "HERALD_BENCH_URL", default_value = "http://127.0.0.1:8071")]
    pub url: String,
    /// API token for the server under test.
    #[arg(long, env = "HERALD_BENCH_TOKEN")]
    pub token: Option<String>,
    /// Messages to send (default 10,000 when no --duration is given).
    #[arg(long, conflicts_with = "duration")]
    pub messages: Option<u64>,
    /// Seconds to keep sending.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Messages per second; full speed when absent.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Endpoints per application, all pointing at the sink.
    #[arg(long, default_value_t = 1)]
    pub fanout: u32,
    /// Payload size in bytes (approximate; at least the sequence field).
    #[arg(long, default_value_t = 256)]
    pub payload_bytes: usize,
    /// Concurrent producers.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Process id of the server, to report its memory and CPU.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Also measure plain loopback POST/s from this client to the sink: the
    /// ceiling the machine allows.
    #[arg(long)]
    pub raw: bool,
    /// How long to wait for deliveries after the last message was accepted.
    #[arg(long, default_value_t = 60.0)]
    pub drain_timeout: f64,
    /// Print one JSON object on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The sink answers on this address (a free loopback port by default).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub sink_listen: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub sent: u64,
    pub accepted: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub errors: BTreeMap<String, u64>,
    pub accepted_per_sec: f64,
    pub delivered_per_sec: f64,
    pub latency_ms: Latency,
    pub signatures_checked: u64,
    pub signatures_bad: u64,
    pub fanout: u32,
    pub payload_bytes: usize,
    pub concurrency: usize,
    pub send_seconds: f64,
    pub total_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_mb: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_peak_rss_mb: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_posts_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_to_raw: Option<f64>,
}

fn http_client(concurrency: usize) -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(concurrency.max(1))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?)
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn post(&self, path: &str, body: serde_json::Value) -> anyhow::Result<serde_json::Value> {
        self.send(
            "POST",
            path,
            self.http.post(format!("{}/api/v1{path}", self.base)).json(&body),
        )
        .await
    }

    async fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        self.send("GET", path, self.http.get(format!("{}/api/v1{path}", self.base)))
            .await
    }

    async fn send(&self, method: &str, path: &str, req: reqwest::RequestBuilder) -> anyhow::Result<serde_json::Value> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{method} {path} answered {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }
}

/// Runs the benchmark and returns its report; progress goes to stderr.
pub async fn run(args: BenchArgs) -> anyhow::Result<Report> {
    let token = args
        .token
        .clone()
        .context("--token (or HERALD_BENCH_TOKEN) is required")?;
    if args.fanout == 0 || args.concurrency == 0 {
        bail!("--fanout and --concurrency must be at least 1");
    }
    let base = args.url.trim_end_matches('/').to_owned();
    let http = http_client(args.concurrency)?;
    let api = Api {
        http: http.clone(),
        base: base.clone(),
        token,
    };

    let sink = Sink::start(&args.sink_listen).await?;
    let mut report = Report {
        fanout: args.fanout,
        payload_bytes: args.payload_bytes,
        concurrency: args.concurrency,
        ..Report::default()
    };

    if args.raw {
        let raw = raw_ceiling(&http, &sink, args.concurrency, Duration::from_secs(3)).await?;
        eprintln!("raw loopback POST to the sink: {raw:.0}/s");
        report.raw_posts_per_sec = Some(raw);
    }

    // Fresh application and endpoints, so runs never mix.
    let run_id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let app = api
        .post(
            "/app/",
            json!({"name": format!("bench {run_id}"), "uid": format!("bench-{run_id}")}),
        )
        .await?;
    let app_id = app["id"].as_str().context("application id")?.to_owned();
    for i in 0..args.fanout {
        let ep = api
            .post(
                &format!("/app/{app_id}/endpoint/"),
                json!({"url": format!("{}/ep{i}", sink.url()), "description": "herald bench sink"}),
            )
            .await?;
        let ep_id = ep["id"].as_str().context("endpoint id")?;
        let secret = api.get(&format!("/app/{app_id}/endpoint/{ep_id}/secret/")).await?;
        sink.add_secret(secret["key"].as_str().context("secret key")?)?;
    }

    let proc_before = args.server_pid.and_then(proc_stats);
    let limit = match (args.messages, args.duration) {
        (Some(n), _) => Limit::Count(n),
        (None, Some(s)) => Limit::Time(Duration::from_secs_f64(s)),
        (None, None) => Limit::Count(10_000),
    };
    let expected_hint = match limit {
        Limit::Count(n) => n,
        Limit::Time(d) => (args.rate.unwrap_or(50_000.0) * d.as_secs_f64()) as u64 + 1,
    };
    sink.expect(expected_hint as usize);

    let started = Instant::now();
    sink.set_epoch(started);
    let counters = Arc::new(Counters::default());
    let msg_url = format!("{base}/api/v1/app/{app_id}/msg/");
    let padding = "x".repeat(args.payload_bytes.saturating_sub(24));
    let progress = tokio::spawn(progress(
        counters.clone(),
        sink.clone(),
        u64::from(args.fanout),
        started,
    ));
    let mut producers = Vec::new();
    for _ in 0..args.concurrency {
        let ctx = Producer {
            http: http.clone(),
            url: msg_url.clone(),
            token: api.token.clone(),
            padding: padding.clone(),
            counters: counters.clone(),
            limit,
            rate: args.rate,
            started,
        };
        producers.push(tokio::spawn(ctx.run()));
    }
    for p in producers {
        p.await?;
    }
    let send_done = started.elapsed();
    let accepted = counters.accepted.load(Ordering::Relaxed);
    let want = accepted * u64::from(args.fanout);
    let drain_deadline = Instant::now() + Duration::from_secs_f64(args.drain_timeout);
    while sink.unique() < want && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    progress.abort();
    eprintln!();

    let arrivals = sink.summary(&counters.sent_at_us());
    report.sent = counters.sent.load(Ordering::Relaxed);
    report.accepted = accepted;
    report.delivered = arrivals.unique;
    report.duplicates = arrivals.duplicates;
    report.lost = want.saturating_sub(arrivals.unique);
    report.errors = counters.errors();
    report.send_seconds = send_done.as_secs_f64();
    report.total_seconds = arrivals.last_arrival.unwrap_or(send_done).as_secs_f64();
    report.accepted_per_sec = accepted as f64 / report.send_seconds.max(1e-9);
    report.delivered_per_sec = arrivals.unique as f64 / report.total_seconds.max(1e-9);
    report.latency_ms = arrivals.latency;
    report.signatures_checked = arrivals.signatures_checked;
    report.signatures_bad = arrivals.signatures_bad;
    if let (Some(raw), true) = (report.raw_posts_per_sec, report.delivered_per_sec > 0.0) {
        report.ratio_to_raw = Some(report.delivered_per_sec / raw);
    }
    if let Some(pid) = args.server_pid {
        let after = proc_stats(pid);
        report.server_rss_mb = after.as_ref().map(|p| p.rss_mb);
        report.server_peak_rss_mb = after.as_ref().map(|p| p.peak_rss_mb);
        if let (Some(b), Some(a)) = (proc_before, after) {
            report.server_cpu_seconds = Some(a.cpu_seconds - b.cpu_seconds);
        }
    }
    Ok(report)
}

#[derive(Clone, Copy)]
enum Limit {
    Count(u64),
    Time(Duration),
}

#[derive(Default)]
struct Counters {
    next_seq: AtomicU64,
    sent: AtomicU64,
    accepted: AtomicU64,
    errors: std::sync::Mutex<BTreeMap<String, u64>>,
    /// Microseconds since the start at which each sequence number was sent.
    sent_at: std::sync::Mutex<Vec<u64>>,
}

impl Counters {
    fn error(&self, kind: String) {
        if let Ok(mut e) = self.errors.lock() {
            *e.entry(kind).or_default() += 1;
        }
    }
    fn errors(&self) -> BTreeMap<String, u64> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }
    fn sent_at_us(&self) -> Vec<u64> {
        self.sent_at.lock().map(|v| v.clone()).unwrap_or_default()
    }
    fn record_send(&self, seq: u64, at_us: u64) {
        if let Ok(mut v) = self.sent_at.lock() {
            let i = seq as usize;
            if v.len() <= i {
                v.resize(i + 1, u64::MAX);
            }
            v[i] = at_us;
        }
    }
}

struct Producer {
    http: reqwest::Client,
    url: String,
    token: String,
    padding: String,
    counters: Arc<Counters>,
    limit: Limit,
    rate: Option<f64>,
    started: Instant,
}

impl Producer {
    async fn run(self) {
        loop {
            let seq = self.counters.next_seq.fetch_add(1, Ordering::Relaxed);
            match self.limit {
                Limit::Count(n) if seq >= n => return,
                Limit::Time(d) if self.started.elapsed() >= d => return,
                _ => {}
            }
            if let Some(rate) = self.rate {
                let due = self.started + Duration::from_secs_f64(seq as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
            }
            let body = format!(
                r#"{{"eventType":"bench.event","payload":{{"seq":{seq},"pad":"{}"}}}}"#,
                self.padding
            );
            let at = self.started.elapsed().as_micros() as u64;
            self.counters.record_send(seq, at);
            self.counters.sent.fetch_add(1, Ordering::Relaxed);
            let sent = self
                .http
                .post(&self.url)
                .bearer_auth(&self.token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status().is_success() => {
                    // Drain the body so the connection goes back to the pool.
                    let _ = resp.bytes().await;
                    self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                }
                Ok(resp) => self.counters.error(format!("http_{}", resp.status().as_u16())),
                Err(e) if e.is_timeout() => self.counters.error("timeout".into()),
                Err(e) if e.is_connect() => self.counters.error("connect".into()),
                Err(_) => self.counters.error("other".into()),
            }
        }
    }
}

async fn progress(counters: Arc<Counters>, sink: Sink, fanout: u64, started: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let accepted = counters.accepted.load(Ordering::Relaxed);
        eprint!(
            "\r[{:>5.1}s] accepted {accepted:>9}  delivered {:>9}/{:<9}  errors {:>5}",
            started.elapsed().as_secs_f64(),
            sink.unique(),
            accepted * fanout,
            counters.errors().values().sum::<u64>()
        );
    }
}

/// Plain POSTs from the same client to the same sink for `for_how_long`.
async fn raw_ceiling(
    http: &reqwest::Client,
    sink: &Sink,
    concurrency: usize,
    for_how_long: Duration,
) -> anyhow::Result<f64> {
    let url = format!("{}/raw", sink.url());
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, url, done) = (http.clone(), url.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while started.elapsed() < for_how_long {
                if let Ok(r) = http.post(&url).body(r#"{"raw":true}"#).send().await {
                    let _ = r.bytes().await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

struct ProcStats {
    rss_mb: f64,
    peak_rss_mb: f64,
    cpu_seconds: f64,
}

/// Memory and CPU of a local process, from /proc (Linux).
fn proc_stats(pid: u32) -> Option<ProcStats> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| -> Option<f64> {
        status
            .lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse::<f64>()
            .ok()
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at ")".
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ProcStats {
        rss_mb: kb("VmRSS:")? / 1024.0,
        peak_rss_mb: kb("VmHWM:")? / 1024.0,
        cpu_seconds: ticks / 100.0,
    })
}

/// The human-readable form of a report.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<22} {v}\n"));
    line("messages sent", r.sent.to_string());
    line(
        "messages accepted",
        format!(
            "{} ({:.0}/s over {:.2} s)",
            r.accepted, r.accepted_per_sec, r.send_seconds
        ),
    );
    line(
        "deliveries",
        format!(
            "{} ({:.0}/s over {:.2} s, fan-out {})",
            r.delivered, r.delivered_per_sec, r.total_seconds, r.fanout
        ),
    );
    line("lost / duplicates", format!("{} / {}", r.lost, r.duplicates));
    line(
        "latency ms",
        format!(
            "p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
            r.latency_ms.p50, r.latency_ms.p90, r.latency_ms.p99, r.latency_ms.max
        ),
    );
    line(
        "signatures checked",
        format!("{} ({} bad)", r.signatures_checked, r.signatures_bad),
    );
    if !r.errors.is_empty() {
        line("errors", format!("{:?}", r.errors));
    }
    if let Some(rss) = r.server_rss_mb {
        line(
            "server RSS MB",
            format!("{rss:.1} (peak {:.1})", r.server_peak_rss_mb.unwrap_or(rss)),
        );
    }
    if let Some(cpu) = r.server_cpu_seconds {
        line("server CPU s", format!("{cpu:.2}"));
    }
    if let Some(raw) = r.raw_posts_per_sec {
        line(
            "raw POST/s ceiling",
            format!(
                "{raw:.0} (deliveries at {:.0}% of it)",
                r.ratio_to_raw.unwrap_or(0.0) * 100.0
            ),
        );
    }
    out
}
