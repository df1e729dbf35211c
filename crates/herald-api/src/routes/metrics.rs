//! `GET /metrics`: the engine's and the store's counters in Prometheus
//! text. No per-endpoint labels, so the series count stays fixed however
//! many endpoints there are; every series is described in docs/metrics.md.
//!
//! A scrape reads atomics only: the one number that needs the database
//! (the backlog) is counted every few seconds by the engine, not here.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::RouteBoth;
use crate::AppState;
use crate::prometheus::{CONTENT_TYPE, Exposition};

pub fn router() -> Router<AppState> {
    Router::new().route_both("/metrics", get(metrics))
}

fn n(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn g(a: &AtomicUsize) -> u64 {
    a.load(Ordering::Relaxed) as u64
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let st = s.engine.stats();
    let store = s.store.metrics();
    let mut e = Exposition::new();

    e.counter(
        "herald_messages_ingested_total",
        "Messages accepted and committed.",
        &[(&[], n(&st.messages_ingested))],
    );
    e.counter(
        "herald_deliveries_created_total",
        "Deliveries created by fan-out: one per message and subscribed endpoint.",
        &[(&[], n(&st.deliveries_created))],
    );
    e.counter(
        "herald_deliveries_total",
        "Deliveries that ended, by outcome: delivered (a 2xx), exhausted (its retry schedule ran out), \
         disabled (ended unsent, its endpoint disabled), cancelled (its endpoint or application deleted).",
        &[
            (&[("outcome", "delivered")], n(&st.deliveries_delivered)),
            (&[("outcome", "exhausted")], n(&st.deliveries_exhausted)),
            (&[("outcome", "disabled")], n(&st.deliveries_disabled)),
            (&[("outcome", "cancelled")], n(&store.deliveries_cancelled)),
        ],
    );
    e.counter(
        "herald_deliveries_exhausted_total",
        "Deliveries that ran out of retries (the same as herald_deliveries_total{outcome=\"exhausted\"}).",
        &[(&[], n(&st.deliveries_exhausted))],
    );
    e.counter(
        "herald_attempts_total",
        "Delivery attempts by outcome: success is a 2xx, failure anything else (an error status, a timeout, \
         no connection).",
        &[
            (&[("outcome", "success")], n(&st.attempts_succeeded)),
            (&[("outcome", "failure")], n(&st.attempts_failed)),
        ],
    );
    e.histogram(
        "herald_attempt_duration_seconds",
        "How long delivery attempts took, from the request's start to the end of the answer or the failure, \
         by outcome.",
        &[
            (&[("outcome", "success")], st.attempt_durations.success.snapshot()),
            (&[("outcome", "failure")], st.attempt_durations.failure.snapshot()),
        ],
    );
    e.counter(
        "herald_deliveries_loaded_total",
        "Deliveries claimed from the store by the loader (after a restart, an overflow of memory, for a \
         later retry, or a lapsed claim).",
        &[(&[], n(&st.deliveries_loaded))],
    );
    e.gauge(
        "herald_backlog_deliveries",
        "Deliveries waiting to be delivered: pending (never tried or awaiting a retry) in the store, held \
         in memory or not, over every node; counted every few seconds.",
        &[(&[], n(&st.backlog))],
    );
    e.gauge_f64(
        "herald_backlog_counted_timestamp_seconds",
        "When herald_backlog_deliveries was last counted, in Unix seconds.",
        n(&st.backlog_counted_at_ms) as f64 / 1000.0,
    );
    e.gauge(
        "herald_deliveries_in_flight",
        "Requests in flight now.",
        &[(&[], g(&st.in_flight))],
    );
    e.gauge(
        "herald_deliveries_resident",
        "Deliveries held in memory now.",
        &[(&[], s.engine.resident() as u64)],
    );
    e.gauge(
        "herald_deliveries_resident_bytes",
        "Payload bytes of the deliveries held in memory now.",
        &[(&[], s.engine.resident_bytes() as u64)],
    );
    e.gauge(
        "herald_circuits_open",
        "Endpoints whose circuit is open now: unreachable, probed one delivery at a time.",
        &[(&[], g(&st.circuits_open))],
    );
    e.gauge(
        "herald_endpoints_failing",
        "Endpoints whose latest attempt from this node failed (no 2xx) and was made within the last day; \
         an endpoint leaves the count when an attempt to it succeeds or it is deleted or disabled.",
        &[(&[], g(&st.endpoints_failing))],
    );
    e.histogram(
        "herald_ingest_batch_size",
        "Messages committed per group commit of the store's writer (one fsync each), for commits that \
         carried any.",
        &[(&[], store.ingest_batch.snapshot())],
    );
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], e.into_text())
}
