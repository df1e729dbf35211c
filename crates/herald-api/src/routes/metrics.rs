//! `GET /metrics`: Prometheus text exposition of the engine's counters.
//! No per-endpoint labels, so the series count stays fixed.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::RouteBoth;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route_both("/metrics", get(metrics))
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let st = s.engine.stats();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::with_capacity(1024);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    metric(
        "herald_messages_ingested_total",
        "counter",
        "Messages accepted and committed.",
        &[("", load(&st.messages_ingested))],
    );
    metric(
        "herald_deliveries_created_total",
        "counter",
        "Deliveries created by fan-out.",
        &[("", load(&st.deliveries_created))],
    );
    metric(
        "herald_attempts_total",
        "counter",
        "Delivery attempts by outcome.",
        &[
            (r#"{outcome="success"}"#, load(&st.attempts_succeeded)),
            (r#"{outcome="failure"}"#, load(&st.attempts_failed)),
        ],
    );
    metric(
        "herald_deliveries_exhausted_total",
        "counter",
        "Deliveries that ran out of retries.",
        &[("", load(&st.deliveries_exhausted))],
    );
    metric(
        "herald_deliveries_loaded_total",
        "counter",
        "Deliveries claimed from the store by the loader.",
        &[("", load(&st.deliveries_loaded))],
    );
    metric(
        "herald_deliveries_in_flight",
        "gauge",
        "Requests in flight now.",
        &[("", st.in_flight.load(Ordering::Relaxed) as u64)],
    );
    metric(
        "herald_deliveries_resident",
        "gauge",
        "Deliveries held in memory now.",
        &[("", s.engine.resident() as u64)],
    );
    metric(
        "herald_deliveries_resident_bytes",
        "gauge",
        "Payload bytes of the deliveries held in memory now.",
        &[("", s.engine.resident_bytes() as u64)],
    );
    metric(
        "herald_circuits_open",
        "gauge",
        "Endpoints whose circuit is open now: unreachable, probed one delivery at a time.",
        &[("", st.circuits_open.load(Ordering::Relaxed) as u64)],
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
