//! `herald bench`: measures a running server that speaks the Svix v1 API
//! (Herald or another implementation) from the outside.
//!
//! It creates an application whose endpoints point at its own in-process
//! sink, posts messages as fast as allowed (or at a fixed rate), and matches
//! what arrives at the sink against what was accepted, by `webhook-id` and
//! endpoint: throughput, end-to-end latency (POST sent -> request received),
//! losses, duplicates and deliveries nobody asked for. With `--receiver
//! down` or `stalled` the sink refuses or holds deliveries until every
//! message has been sent, then opens: a backlog, and how it drains.

mod load;
mod procstat;
mod sink;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::json;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use load::{Counters, Limit, LoadClient, NOT_ACCEPTED, Producer, SendLog, UNKNOWN_ID, load_client};
pub use sink::{Arrival, ReceiverMode, Sink, id_hash};

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
    /// Also measure plain loopback POST/s (of --payload-bytes) from the
    /// producers' client to a sink like the one deliveries go to: the
    /// ceiling the machine allows.
    #[arg(long)]
    pub raw: bool,
    /// How the sink behaves until every message has been sent: `up` answers
    /// at once; `down` refuses connections (a receiver outage: the server
    /// retries on its schedule); `stalled` takes requests in but answers
    /// none (deliveries wait, so sending measures ingest alone). After
    /// sending, it answers everything and the drain is measured.
    #[arg(long, value_enum, default_value_t = ReceiverMode::Up)]
    pub receiver: ReceiverMode,
    /// How long to wait for deliveries after the last message was sent
    /// (default 60 s; 900 s with `--receiver down`, since retries come on
    /// the server's schedule).
    #[arg(long)]
    pub drain_timeout: Option<f64>,
    /// Print one JSON object on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The sink answers on this address (a free loopback port by default).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub sink_listen: String,
}

#[derive(Debug, Default, Serialize, PartialEq)]
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
    /// Distinct (message, endpoint) pairs that arrived under the id the
    /// server accepted the message with.
    pub delivered: u64,
    /// Accepted (message, endpoint) pairs that never arrived.
    pub lost: u64,
    /// Extra copies of a (message, endpoint) pair.
    pub duplicates: u64,
    /// Arrivals under an id the server never answered with.
    pub unexpected: u64,
    pub errors: BTreeMap<String, u64>,
    /// Accepted messages per second of sending.
    pub accepted_per_sec: f64,
    /// Deliveries per second, from the start (or, with `--receiver down` or
    /// `stalled`, from the moment the sink opened) to the last arrival.
    pub delivered_per_sec: f64,
    pub latency_ms: Latency,
    pub signatures_checked: u64,
    pub signatures_bad: u64,
    pub fanout: u32,
    pub payload_bytes: usize,
    pub concurrency: usize,
    pub receiver: ReceiverMode,
    pub send_seconds: f64,
    /// From the start to the last arrival.
    pub total_seconds: f64,
    /// With `--receiver down` or `stalled`: from the sink opening to the
    /// last arrival.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_seconds: Option<f64>,
    /// With `--receiver down` or `stalled`: when deliveries arrived, counted
    /// from the sink opening (0 for those that arrived while it was held).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_ms: Option<Latency>,
    /// Resident size at the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_mb: Option<f64>,
    /// Largest resident size sampled during the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_max_mb: Option<f64>,
    /// The server's peak resident size over its whole life (`VmHWM`): exact,
    /// where the sampled maximum can miss a short spike.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_hwm_mb: Option<f64>,
    /// CPU the server used during the run (user + system).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_seconds: Option<f64>,
    /// CPU this bench used, for comparison: it shares the machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bench_cpu_seconds: Option<f64>,
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
    if args.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        bail!("--rate must be above 0");
    }
    let base = args.url.trim_end_matches('/').to_owned();
    let http = http_client(args.concurrency)?;
    let api = Api {
        http: http.clone(),
        base: base.clone(),
        token: token.clone(),
    };
    let mut report = Report {
        fanout: args.fanout,
        payload_bytes: args.payload_bytes,
        concurrency: args.concurrency,
        receiver: args.receiver,
        ..Report::default()
    };

    let client = load_client(args.concurrency)?;
    if args.raw {
        let raw = raw_ceiling(&client, args.concurrency, args.payload_bytes, Duration::from_secs(3)).await?;
        eprintln!("raw loopback POST to a sink: {raw:.0}/s");
        report.raw_posts_per_sec = Some(raw);
    }

    let sink = Sink::start(&args.sink_listen, args.receiver).await?;
    let app_id = set_up(&api, &sink, args.fanout).await?;

    let limit = match (args.messages, args.duration) {
        (Some(n), _) => Limit::Count(n),
        (None, Some(s)) => Limit::Time(Duration::from_secs_f64(s)),
        (None, None) => Limit::Count(10_000),
    };
    let expected = match limit {
        Limit::Count(n) => n,
        Limit::Time(d) => (args.rate.unwrap_or(20_000.0) * d.as_secs_f64()) as u64 + 1,
    };
    let counters = Arc::new(Counters::default());
    counters.reserve(expected as usize);
    sink.reserve(expected.saturating_mul(u64::from(args.fanout)) as usize);

    let sampler = args
        .server_pid
        .map(|pid| procstat::RssSampler::start(pid, Duration::from_millis(250)));
    let server_before = args.server_pid.and_then(|pid| procstat::read(Some(pid)));
    let bench_before = procstat::read(None);
    let started = Instant::now();
    sink.set_epoch(started);
    let phase = Arc::new(AtomicU64::new(PHASE_SENDING));
    let progress = tokio::spawn(show_progress(
        counters.clone(),
        sink.clone(),
        u64::from(args.fanout),
        limit,
        started,
        phase.clone(),
    ));

    let msg_uri: hyper::Uri = format!("{base}/api/v1/app/{app_id}/msg/")
        .parse()
        .context("the message URL")?;
    let auth = hyper::header::HeaderValue::from_str(&format!("Bearer {token}")).context("the token")?;
    let padding = "x".repeat(args.payload_bytes.saturating_sub(24));
    let producers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            tokio::spawn(
                Producer {
                    client: client.clone(),
                    uri: msg_uri.clone(),
                    auth: auth.clone(),
                    padding: padding.clone(),
                    counters: counters.clone(),
                    limit,
                    rate: args.rate,
                    started,
                }
                .run(),
            )
        })
        .collect();
    for p in producers {
        p.await?;
    }
    let send_done = started.elapsed();
    phase.store(PHASE_DRAINING, Ordering::Relaxed);
    let held_back = args.receiver != ReceiverMode::Up;
    let window_start = if held_back {
        sink.open().await?;
        started.elapsed()
    } else {
        Duration::ZERO
    };

    let accepted = counters.accepted.load(Ordering::Relaxed);
    let want = accepted * u64::from(args.fanout);
    let drain_timeout = args.drain_timeout.unwrap_or(if args.receiver == ReceiverMode::Down {
        900.0
    } else {
        60.0
    });
    let drain_deadline = Instant::now() + Duration::from_secs_f64(drain_timeout);
    while sink.unique() < want && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    progress.abort();
    let _ = progress.await;
    sink.stop();

    let matched = match_arrivals(&counters.log(), &sink.arrivals(), window_start);
    report.sent = counters.sent.load(Ordering::Relaxed);
    report.accepted = accepted;
    report.delivered = matched.delivered;
    report.duplicates = matched.duplicates;
    report.unexpected = matched.unexpected;
    report.lost = want.saturating_sub(matched.delivered);
    report.errors = counters.errors();
    if sink.unparsed() > 0 {
        report.errors.insert("sink_unparsed".into(), sink.unparsed());
    }
    report.send_seconds = send_done.as_secs_f64();
    let last = matched.last_arrival.unwrap_or(send_done);
    report.total_seconds = last.as_secs_f64();
    report.accepted_per_sec = accepted as f64 / report.send_seconds.max(1e-9);
    let window = last.saturating_sub(window_start).as_secs_f64();
    report.delivered_per_sec = matched.delivered as f64 / window.max(1e-9);
    if held_back {
        report.drain_seconds = Some(window);
        report.drain_ms = Some(matched.since_open);
    }
    report.latency_ms = matched.latency;
    (report.signatures_checked, report.signatures_bad) = sink.signatures();
    if let (Some(raw), true) = (report.raw_posts_per_sec, report.delivered_per_sec > 0.0) {
        report.ratio_to_raw = Some(report.delivered_per_sec / raw);
    }
    if let Some(pid) = args.server_pid {
        let after = procstat::read(Some(pid));
        report.server_rss_mb = after.map(|p| p.rss_mb);
        // A run shorter than one sampling interval still has the end reading.
        let sampled = sampler.and_then(procstat::RssSampler::finish);
        report.server_rss_max_mb = match (sampled, report.server_rss_mb) {
            (Some(s), Some(end)) => Some(s.max(end)),
            (s, end) => s.or(end),
        };
        report.server_rss_hwm_mb = after.map(|p| p.peak_rss_mb);
        if let (Some(b), Some(a)) = (server_before, after) {
            report.server_cpu_seconds = Some(a.cpu_seconds - b.cpu_seconds);
        }
    }
    if let (Some(b), Some(a)) = (bench_before, procstat::read(None)) {
        report.bench_cpu_seconds = Some(a.cpu_seconds - b.cpu_seconds);
    }
    Ok(report)
}

/// A fresh application (so runs never mix) with `fanout` endpoints on the
/// sink; returns the application id.
async fn set_up(api: &Api, sink: &Sink, fanout: u32) -> anyhow::Result<String> {
    // Servers that require event types to exist get one; where it exists
    // already, or types are free-form, the answer does not matter.
    let _ = api
        .post(
            "/event-type/",
            json!({"name": "bench.event", "description": "herald bench"}),
        )
        .await;
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
    for i in 0..fanout {
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
    Ok(app_id)
}

/// Arrivals matched against what was accepted.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Matched {
    delivered: u64,
    duplicates: u64,
    unexpected: u64,
    latency: Latency,
    /// How long after `opened` deliveries arrived (0 for earlier ones).
    since_open: Latency,
    last_arrival: Option<Duration>,
}

/// Percentiles of microsecond samples, in milliseconds.
fn percentiles(mut samples: Vec<u64>) -> Latency {
    samples.sort_unstable();
    let pct = |p: f64| -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[i] as f64 / 1000.0
    };
    Latency {
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        max: pct(1.0),
    }
}

/// An arrival counts as delivered when its `webhook-id` is the id the
/// server accepted its payload's sequence number under. `opened` is when the
/// sink started answering, to tell how a backlog drained.
fn match_arrivals(log: &SendLog, arrivals: &HashMap<(u64, u32), Arrival>, opened: Duration) -> Matched {
    let mut out = Matched::default();
    let mut latencies: Vec<u64> = Vec::with_capacity(arrivals.len());
    let mut since_open: Vec<u64> = Vec::with_capacity(arrivals.len());
    let opened_us = opened.as_micros() as u64;
    let mut last = None::<u64>;
    for (&(id, _endpoint), a) in arrivals {
        out.duplicates += u64::from(a.copies.saturating_sub(1));
        let seq = a.seq as usize;
        let accepted_as = log.id.get(seq).copied().unwrap_or(NOT_ACCEPTED);
        if accepted_as == NOT_ACCEPTED || (accepted_as != id && accepted_as != UNKNOWN_ID) {
            out.unexpected += 1;
            continue;
        }
        out.delivered += 1;
        last = Some(last.map_or(a.first_us, |l| l.max(a.first_us)));
        since_open.push(a.first_us.saturating_sub(opened_us));
        if let Some(&sent) = log.at_us.get(seq) {
            latencies.push(a.first_us.saturating_sub(sent));
        }
    }
    out.latency = percentiles(latencies);
    out.since_open = percentiles(since_open);
    out.last_arrival = last.map(Duration::from_micros);
    out
}

const PHASE_SENDING: u64 = 0;
const PHASE_DRAINING: u64 = 1;

/// A progress bar on stderr (hidden when stderr is not a terminal): time or
/// messages while sending, then deliveries while draining.
async fn show_progress(
    counters: Arc<Counters>,
    sink: Sink,
    fanout: u64,
    limit: Limit,
    started: Instant,
    phase: Arc<AtomicU64>,
) {
    let style = ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {prefix} | {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let first_len = match limit {
        Limit::Count(n) => n,
        Limit::Time(d) => d.as_secs(),
    };
    let bar = ProgressBar::new(first_len).with_style(style);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut draining = false;
    let _clear = ClearOnDrop(bar.clone());
    loop {
        tick.tick().await;
        let accepted = counters.accepted.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        if !draining && phase.load(Ordering::Relaxed) == PHASE_DRAINING {
            draining = true;
        }
        match (draining, limit) {
            (false, Limit::Count(n)) => {
                bar.set_prefix("messages");
                bar.set_length(n);
                bar.set_position(accepted);
            }
            (false, Limit::Time(d)) => {
                bar.set_prefix("seconds");
                bar.set_length(d.as_secs());
                bar.set_position(started.elapsed().as_secs());
            }
            (true, _) => {
                bar.set_prefix("deliveries");
                bar.set_length(accepted * fanout);
                bar.set_position(sink.unique());
            }
        }
        bar.set_message(format!(
            "accepted {accepted} ({:.0}/s), delivered {}, errors {}",
            accepted as f64 / secs,
            sink.unique(),
            counters.error_count()
        ));
    }
}

/// Clears the bar when the progress task is aborted.
struct ClearOnDrop(ProgressBar);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Plain POSTs of `body_bytes` from the producers' client to a sink like
/// the bench's own, for `for_how_long`: what this machine allows.
async fn raw_ceiling(
    client: &LoadClient,
    concurrency: usize,
    body_bytes: usize,
    for_how_long: Duration,
) -> anyhow::Result<f64> {
    let sink = Sink::start("127.0.0.1:0", ReceiverMode::Up).await?;
    let uri: hyper::Uri = format!("{}/raw", sink.url()).parse()?;
    let body = Bytes::from(vec![b'x'; body_bytes]);
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, uri, body, done) = (client.clone(), uri.clone(), body.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while started.elapsed() < for_how_long {
                let Ok(request) = hyper::Request::post(uri.clone()).body(Full::new(body.clone())) else {
                    return;
                };
                if let Ok(resp) = client.request(request).await
                    && resp.into_body().collect().await.is_ok()
                {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    sink.stop();
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
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
    let window = match r.drain_seconds {
        Some(d) => format!("{d:.2} s after the receiver opened"),
        None => format!("{:.2} s", r.total_seconds),
    };
    line(
        "deliveries",
        format!(
            "{} ({:.0}/s over {window}, fan-out {})",
            r.delivered, r.delivered_per_sec, r.fanout
        ),
    );
    line(
        "lost / dup / unexpected",
        format!("{} / {} / {}", r.lost, r.duplicates, r.unexpected),
    );
    line(
        "latency ms",
        format!(
            "p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
            r.latency_ms.p50, r.latency_ms.p90, r.latency_ms.p99, r.latency_ms.max
        ),
    );
    if let Some(d) = &r.drain_ms {
        line(
            "drained by ms",
            format!("p50 {:.0}  p90 {:.0}  p99 {:.0}  all {:.0}", d.p50, d.p90, d.p99, d.max),
        );
    }
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
            format!(
                "{rss:.1} at the end, {:.1} at most (lifetime peak {:.1})",
                r.server_rss_max_mb.unwrap_or(rss),
                r.server_rss_hwm_mb.unwrap_or(rss)
            ),
        );
    }
    if let Some(cpu) = r.server_cpu_seconds {
        line("server CPU s", format!("{cpu:.2}"));
    }
    if let Some(cpu) = r.bench_cpu_seconds {
        line("bench CPU s", format!("{cpu:.2}"));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn log(entries: &[(u64, u64)]) -> SendLog {
        SendLog {
            at_us: entries.iter().map(|e| e.0).collect(),
            id: entries.iter().map(|e| e.1).collect(),
        }
    }

    fn arrival(copies: u32, first_us: u64, seq: u64) -> Arrival {
        Arrival { copies, first_us, seq }
    }

    #[test]
    fn arrivals_match_by_the_accepted_id() {
        // seq 0 accepted as "a", 1 as "b", 2 never accepted.
        let log = log(&[(1_000, id_hash("a")), (2_000, id_hash("b")), (3_000, NOT_ACCEPTED)]);
        let arrivals = HashMap::from([
            ((id_hash("a"), 0), arrival(1, 5_000, 0)),
            ((id_hash("a"), 1), arrival(3, 9_000, 0)),
            ((id_hash("b"), 0), arrival(1, 8_000, 1)),
            // seq 1's payload under an id the server never gave it.
            ((id_hash("x"), 0), arrival(1, 7_000, 1)),
            // seq 2 was never accepted.
            ((id_hash("c"), 0), arrival(1, 8_000, 2)),
        ]);
        let m = match_arrivals(&log, &arrivals, Duration::ZERO);
        assert_eq!(m.delivered, 3);
        assert_eq!(m.duplicates, 2);
        assert_eq!(m.unexpected, 2);
        assert_eq!(m.last_arrival, Some(Duration::from_micros(9_000)));
        // Latencies 4, 6 and 8 ms.
        assert_eq!(m.latency.p50, 6.0);
        assert_eq!(m.latency.max, 8.0);
        // Arrivals at 5, 8 and 9 ms; the sink opened at 7 ms.
        let opened = match_arrivals(&log, &arrivals, Duration::from_millis(7)).since_open;
        assert_eq!((opened.p50, opened.max), (1.0, 2.0));
    }

    #[test]
    fn answers_without_an_id_match_by_sequence_number() {
        let log = log(&[(0, UNKNOWN_ID)]);
        let arrivals = HashMap::from([((id_hash("z"), 0), arrival(1, 2_500, 0))]);
        let m = match_arrivals(&log, &arrivals, Duration::ZERO);
        assert_eq!((m.delivered, m.unexpected), (1, 0));
        assert_eq!(m.latency.p99, 2.5);
    }

    #[test]
    fn nothing_arrived() {
        let m = match_arrivals(&log(&[(0, id_hash("a"))]), &HashMap::new(), Duration::ZERO);
        assert_eq!(m, Matched::default());
    }
}
