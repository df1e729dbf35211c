//! What building one attempt's body costs, per form: the payload template
//! rendered, the equivalent jq transformation run (the alarm-platform
//! envelope of SPEC §6, and the chat-CRM one), and compiling each (done
//! once per endpoint version, never per attempt). Also how long a runaway
//! program runs before the sandbox stops it.
//!
//! `cargo bench -p herald-core --bench transform`; results in BENCHMARKS.md.

use std::hint::black_box;

use chrono::Utc;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use herald_core::model::Metadata;
use herald_core::transform::{EndpointContext, PayloadTemplate, RenderContext, TransformInput, Transformation};

const MSG_ID: &str = "msg_2Qh7a5ZKQ1bW8cX3dE4fG5hI6jK";

const ALARM_TEMPLATE: &str = r#"{"event": "{{msg.eventType}}", "webhook_id": "{{msg.id}}",
    "timestamp": "{{attempt.timestamp}}", "data": "{{msg.payload}}"}"#;
const ALARM_JQ: &str =
    "{event: .msg.eventType, webhook_id: .msg.id, timestamp: .attempt.timestamp, data: .msg.payload}";
const CRM_JQ: &str = "{_id: .msg.id, event: .msg.eventType, createdAt: .msg.timestamp,
    deliveryAttempts: .attempt.number, firstSentAt: .attempt.firstSentAt, items: [.msg.payload],
    infoWebhook: {verifyToken: .endpoint.metadata.verifyToken}}";

fn per_attempt(c: &mut Criterion) {
    let mut group = c.benchmark_group("body");
    let now = Utc::now();
    let metadata: Metadata = [("verifyToken".to_owned(), "vt-42".to_owned())].into();
    let template = PayloadTemplate::parse(ALARM_TEMPLATE).expect("valid template");
    let alarm = Transformation::compile(ALARM_JQ).expect("compiles");
    let crm = Transformation::compile(CRM_JQ).expect("compiles");
    for size in [256usize, 4096] {
        let payload = format!(
            r#"{{"zone":3,"armed":true,"pad":"{}"}}"#,
            "x".repeat(size.saturating_sub(34))
        );
        let input = TransformInput {
            delivery: RenderContext {
                msg_id: MSG_ID,
                event_type: "alarm.triggered",
                msg_created_at: now,
                payload: payload.as_bytes(),
                attempt_number: 2,
                attempt_timestamp: 1_795_000_000,
                first_sent_at: now,
            },
            endpoint: EndpointContext {
                id: "ep_2Qh7a5ZKQ1bW8cX3dE4fG5hI6jK",
                uid: Some("site-7"),
                url: "https://alarm.example.com/hook",
                metadata: &metadata,
            },
        };
        assert_eq!(alarm.run(&input).expect("runs"), template.render(&input.delivery));
        group.throughput(Throughput::Bytes(payload.len() as u64));
        group.bench_with_input(BenchmarkId::new("template_alarm", size), &input, |b, input| {
            b.iter(|| template.render(black_box(&input.delivery)))
        });
        group.bench_with_input(BenchmarkId::new("jq_alarm", size), &input, |b, input| {
            b.iter(|| alarm.run(black_box(input)))
        });
        group.bench_with_input(BenchmarkId::new("jq_crm", size), &input, |b, input| {
            b.iter(|| crm.run(black_box(input)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("compile");
    group.throughput(Throughput::Elements(1));
    group.bench_function("template_alarm", |b| {
        b.iter(|| PayloadTemplate::parse(black_box(ALARM_TEMPLATE)))
    });
    group.bench_function("jq_alarm", |b| b.iter(|| Transformation::compile(black_box(ALARM_JQ))));
    group.bench_function("jq_crm", |b| b.iter(|| Transformation::compile(black_box(CRM_JQ))));
    group.finish();

    let mut group = c.benchmark_group("runaway");
    group.sample_size(10);
    let runaway = Transformation::compile("[range(1e12)] | length").expect("compiles");
    let payload = br#"{"zone":3}"#;
    let input = TransformInput {
        delivery: RenderContext {
            msg_id: MSG_ID,
            event_type: "alarm.triggered",
            msg_created_at: now,
            payload,
            attempt_number: 1,
            attempt_timestamp: 1_795_000_000,
            first_sent_at: now,
        },
        endpoint: EndpointContext {
            id: "ep_1",
            uid: None,
            url: "https://alarm.example.com/hook",
            metadata: &metadata,
        },
    };
    // Cut off by whichever limit comes first: 50 ms or the step limit.
    group.bench_function("jq_range_until_stopped", |b| {
        b.iter(|| assert!(runaway.run(black_box(&input)).is_err()))
    });
    group.finish();
}

criterion_group!(benches, per_attempt);
criterion_main!(benches);
