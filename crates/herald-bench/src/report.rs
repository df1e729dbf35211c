//! What a run found, as one serializable report (for `--json`) and its
//! human-readable table. Kept apart from the measuring so the shape of the
//! output can change without touching how it is measured.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ReceiverMode;

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
    /// CPU the server used during the run (user + system), summed over
    /// every `--server-pid`.
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
