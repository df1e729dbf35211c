//! Micro-benchmarks of the per-delivery work in `herald-core`: signing a
//! request (and checking a signature, the receiver's half), matching a
//! message against an application's endpoints, building a body from a
//! payload template, and observing a `/metrics` histogram (done once per
//! attempt).
//!
//! `cargo bench -p herald-core`; results are recorded in BENCHMARKS.md.

use std::hint::black_box;
use std::time::Duration;

use chrono::Utc;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use herald_core::model::{Endpoint, EndpointSettings, subscribers};
use herald_core::signing::{EndpointSecret, signature_header, verify_signature};
use herald_core::transform::{PayloadTemplate, RenderContext};
use herald_core::validate::{Channel, EndpointUrl, EventTypeName};
use herald_core::{AppId, EndpointId};

const MSG_ID: &str = "msg_2Qh7a5ZKQ1bW8cX3dE4fG5hI6jK";
const TIMESTAMP: i64 = 1_795_000_000;

fn signing(c: &mut Criterion) {
    let symmetric = EndpointSecret::generate_symmetric();
    let asymmetric = EndpointSecret::generate_asymmetric();
    let mut group = c.benchmark_group("signing");
    for size in [256usize, 4096, 65_536] {
        let body = vec![b'x'; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("sign_v1_hmac", size), &body, |b, body| {
            b.iter(|| signature_header(&[&symmetric], MSG_ID, TIMESTAMP, black_box(body)))
        });
        group.bench_with_input(BenchmarkId::new("sign_v1a_ed25519", size), &body, |b, body| {
            b.iter(|| signature_header(&[&asymmetric], MSG_ID, TIMESTAMP, black_box(body)))
        });
        let header = signature_header(&[&symmetric], MSG_ID, TIMESTAMP, &body);
        group.bench_with_input(BenchmarkId::new("verify_v1_hmac", size), &body, |b, body| {
            b.iter(|| {
                assert!(verify_signature(
                    &symmetric,
                    MSG_ID,
                    TIMESTAMP,
                    black_box(body),
                    &header
                ))
            })
        });
    }
    // During a rotation every request carries two signatures.
    let old = EndpointSecret::generate_symmetric();
    let body = vec![b'x'; 256];
    group.throughput(Throughput::Bytes(256));
    group.bench_function("sign_v1_hmac_two_secrets/256", |b| {
        b.iter(|| signature_header(&[&symmetric, &old], MSG_ID, TIMESTAMP, black_box(&body)))
    });
    group.finish();
}

fn endpoint(i: usize, filter_types: Option<Vec<&str>>, channels: Option<Vec<&str>>) -> Endpoint {
    let now = Utc::now();
    let mut settings =
        EndpointSettings::new(EndpointUrl::parse(&format!("https://hooks.example.com/{i}")).expect("valid URL"));
    settings.filter_types = filter_types.map(|t| {
        t.into_iter()
            .map(|n| EventTypeName::parse(n.to_owned()).expect("valid event type"))
            .collect()
    });
    settings.channels = channels.map(|c| {
        c.into_iter()
            .map(|n| Channel::parse(n.to_owned()).expect("valid channel"))
            .collect()
    });
    Endpoint {
        id: EndpointId::new(),
        app_id: AppId::new(),
        uid: None,
        settings,
        created_at: now,
        updated_at: now,
    }
}

/// An application's endpoints in a realistic mix: a quarter take everything,
/// half filter on a few of 20 event types, a quarter filter on channels.
fn mixed_endpoints(n: usize) -> Vec<Endpoint> {
    (0..n)
        .map(|i| match i % 4 {
            0 => endpoint(i, None, None),
            1 | 2 => endpoint(
                i,
                Some(vec![
                    [
                        "invoice.paid",
                        "invoice.created",
                        "user.created",
                        "user.deleted",
                        "order.shipped",
                    ][i % 5],
                    "order.created",
                    "payment.failed",
                ]),
                None,
            ),
            _ => endpoint(i, None, Some(vec![["eu", "us", "apac"][i % 3], "global"])),
        })
        .collect()
}

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("fan_out");
    let channels = [Channel::parse("eu".to_owned()).expect("valid channel")];
    for n in [1usize, 10, 100, 1000] {
        let endpoints = mixed_endpoints(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("match_event_type", n), &endpoints, |b, eps| {
            b.iter(|| subscribers(black_box(eps), "invoice.paid", None).count())
        });
        group.bench_with_input(BenchmarkId::new("match_type_and_channel", n), &endpoints, |b, eps| {
            b.iter(|| subscribers(black_box(eps), "order.created", Some(&channels)).count())
        });
    }
    group.finish();
}

/// The envelopes of SPEC §6 that need a template.
const ALARM_TEMPLATE: &str = r#"{"event": "{{msg.eventType}}", "webhook_id": "{{msg.id}}",
    "timestamp": "{{attempt.timestamp}}", "data": "{{msg.payload}}"}"#;
const CRM_TEMPLATE: &str = r#"{"_id": "{{msg.id}}", "event": "{{msg.eventType}}", "createdAt": "{{msg.timestamp}}",
    "deliveryAttempts": "{{attempt.number}}", "firstSentAt": "{{attempt.firstSentAt}}",
    "items": ["{{msg.payload}}"], "infoWebhook": {"verifyToken": "vt-42"}}"#;

fn payload_transformation(c: &mut Criterion) {
    let mut group = c.benchmark_group("transform");
    let now = Utc::now();
    for size in [256usize, 4096] {
        let payload = format!(r#"{{"zone":3,"pad":"{}"}}"#, "x".repeat(size.saturating_sub(20)));
        let ctx = RenderContext {
            msg_id: MSG_ID,
            event_type: "alarm.triggered",
            msg_created_at: now,
            payload: payload.as_bytes(),
            attempt_number: 2,
            attempt_timestamp: TIMESTAMP,
            first_sent_at: now,
        };
        group.throughput(Throughput::Bytes(payload.len() as u64));
        // What a raw endpoint costs: the payload as posted, shared, not copied.
        let raw = bytes::Bytes::from(payload.clone());
        group.bench_with_input(BenchmarkId::new("raw", size), &raw, |b, raw| {
            b.iter(|| black_box(raw).clone())
        });
        for (name, source) in [("alarm_envelope", ALARM_TEMPLATE), ("crm_envelope", CRM_TEMPLATE)] {
            let template = PayloadTemplate::parse(source).expect("valid template");
            group.bench_with_input(BenchmarkId::new(name, size), &ctx, |b, ctx| {
                b.iter(|| template.render(black_box(ctx)))
            });
        }
    }
    group.throughput(Throughput::Elements(1));
    group.bench_function("compile_crm_template", |b| {
        b.iter(|| PayloadTemplate::parse(black_box(CRM_TEMPLATE)))
    });
    group.finish();
}

fn metrics(c: &mut Criterion) {
    // The attempt-latency bounds: 5 ms to 30 s in microseconds.
    const BOUNDS: &[u64] = &[
        5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
        30_000_000,
    ];
    let h = herald_core::metrics::Histogram::new(BOUNDS, 1_000_000);
    let mut group = c.benchmark_group("metrics");
    group.throughput(Throughput::Elements(1));
    let mut v = 0u64;
    group.bench_function("histogram_observe", |b| {
        b.iter(|| {
            // Spread over every bucket, so no branch is always predicted.
            v = (v + 7_919) % 40_000_000;
            h.observe(black_box(v))
        })
    });
    group.finish();
}

fn config() -> Criterion {
    // Short runs: these are tracked for regressions, not for the last 1%.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! { name = benches; config = config(); targets = signing, fan_out, payload_transformation, metrics }
criterion_main!(benches);
