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
//!
//! This file holds `run`, the order of a measurement; the pieces live beside
//! it: `args` (the flags), `api` (setup calls), `load` (the producers),
//! `sink` (the receiver), `matching` (arrivals against acceptances),
//! `progress`, `raw` (the `--raw` ceiling), `procstat` and `report`.

mod api;
mod args;
mod load;
mod matching;
mod procstat;
mod progress;
mod raw;
mod report;
mod sink;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use api::{Api, http_client, set_up};
use load::{Counters, Limit, Producer, load_client};
use matching::match_arrivals;
use progress::{PHASE_DRAINING, PHASE_SENDING, show_progress};
use raw::raw_ceiling;

pub use args::BenchArgs;
pub use report::{Latency, Report, render};
pub use sink::{Arrival, ReceiverMode, Sink, id_hash};

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
    let bases: Vec<String> = args.url.iter().map(|u| u.trim_end_matches('/').to_owned()).collect();
    let base = bases.first().context("--url is required")?.clone();
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

    let sink = Sink::start(
        &args.sink_listen,
        args.receiver,
        std::time::Duration::from_millis(args.sink_delay_ms),
    )
    .await?;
    let app_id = set_up(&api, &sink, args.fanout, args.endpoint_json.as_ref()).await?;

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

    let first_pid = args.server_pid.first().copied();
    let sampler = first_pid.map(|pid| procstat::RssSampler::start(pid, Duration::from_millis(250)));
    let cpu_before = procstat::cpu_of(&args.server_pid);
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

    let msg_uris: Arc<Vec<hyper::Uri>> = Arc::new(
        bases
            .iter()
            .map(|b| {
                format!("{b}/api/v1/app/{app_id}/msg/")
                    .parse()
                    .context("the message URL")
            })
            .collect::<anyhow::Result<_>>()?,
    );
    let auth = hyper::header::HeaderValue::from_str(&format!("Bearer {token}")).context("the token")?;
    let padding = "x".repeat(args.payload_bytes.saturating_sub(24));
    let producers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            tokio::spawn(
                Producer {
                    client: client.clone(),
                    uris: msg_uris.clone(),
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
    if let Some(pid) = first_pid {
        let after = procstat::read(Some(pid));
        report.server_rss_mb = after.map(|p| p.rss_mb);
        // A run shorter than one sampling interval still has the end reading.
        let sampled = sampler.and_then(procstat::RssSampler::finish);
        report.server_rss_max_mb = match (sampled, report.server_rss_mb) {
            (Some(s), Some(end)) => Some(s.max(end)),
            (s, end) => s.or(end),
        };
        report.server_rss_hwm_mb = after.map(|p| p.peak_rss_mb);
        if let (Some(b), Some(a)) = (cpu_before, procstat::cpu_of(&args.server_pid)) {
            report.server_cpu_seconds = Some(a - b);
        }
    }
    if let (Some(b), Some(a)) = (bench_before, procstat::read(None)) {
        report.bench_cpu_seconds = Some(a.cpu_seconds - b.cpu_seconds);
    }
    Ok(report)
}
