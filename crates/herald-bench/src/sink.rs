//! The bench's receiver: answers 200 at once and notes, per (message,
//! endpoint), when the first copy arrived and how many did.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use herald_core::signing::{EndpointSecret, verify_signature};

use crate::Latency;

/// Every this many arrivals, one signature is verified.
const SIGNATURE_SAMPLE: u64 = 100;

#[derive(Clone)]
pub struct Sink {
    url: String,
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    epoch: OnceLock<Instant>,
    arrivals: AtomicU64,
    unique: AtomicU64,
    /// (seq, endpoint index) -> (copies, first arrival in µs since the epoch)
    seen: Mutex<HashMap<(u64, u32), (u32, u64)>>,
    secrets: Mutex<Vec<EndpointSecret>>,
    signatures_checked: AtomicU64,
    signatures_bad: AtomicU64,
    unparsed: AtomicU64,
}

pub struct Arrivals {
    pub unique: u64,
    pub duplicates: u64,
    pub latency: Latency,
    pub last_arrival: Option<Duration>,
    pub signatures_checked: u64,
    pub signatures_bad: u64,
}

impl Sink {
    pub async fn start(listen: &str) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let inner = Arc::new(Inner::default());
        let app = axum::Router::new().fallback(receive).with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, inner })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The signing secret of endpoint `/ep{n}`, in creation order.
    pub fn add_secret(&self, key: &str) -> anyhow::Result<()> {
        let secret = EndpointSecret::parse(key).map_err(|e| anyhow::anyhow!("endpoint secret: {e}"))?;
        self.inner
            .secrets
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .push(secret);
        Ok(())
    }

    pub fn expect(&self, n: usize) {
        if let Ok(mut seen) = self.inner.seen.lock() {
            seen.reserve(n.min(2_000_000));
        }
    }

    pub fn set_epoch(&self, at: Instant) {
        let _ = self.inner.epoch.set(at);
    }

    pub fn unique(&self) -> u64 {
        self.inner.unique.load(Ordering::Relaxed)
    }

    /// Matches arrivals against send times (µs since the epoch, by sequence).
    pub fn summary(&self, sent_at_us: &[u64]) -> Arrivals {
        let seen = self.inner.seen.lock().map(|s| s.clone()).unwrap_or_default();
        let mut latencies: Vec<u64> = Vec::with_capacity(seen.len());
        let mut duplicates = 0u64;
        let mut last = 0u64;
        for ((seq, _), (copies, first_us)) in &seen {
            duplicates += u64::from(copies.saturating_sub(1));
            last = last.max(*first_us);
            if let Some(&sent) = sent_at_us.get(*seq as usize)
                && sent != u64::MAX
            {
                latencies.push(first_us.saturating_sub(sent));
            }
        }
        latencies.sort_unstable();
        let pct = |p: f64| -> f64 {
            if latencies.is_empty() {
                return 0.0;
            }
            let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
            latencies[i] as f64 / 1000.0
        };
        Arrivals {
            unique: seen.len() as u64,
            duplicates,
            latency: Latency {
                p50: pct(0.50),
                p90: pct(0.90),
                p99: pct(0.99),
                max: pct(1.0),
            },
            last_arrival: (!seen.is_empty()).then(|| Duration::from_micros(last)),
            signatures_checked: self.inner.signatures_checked.load(Ordering::Relaxed),
            signatures_bad: self.inner.signatures_bad.load(Ordering::Relaxed),
        }
    }
}

/// `{"seq":123,...` -> 123, without a JSON parse on the hot path.
fn seq_of(body: &[u8]) -> Option<u64> {
    let rest = body.strip_prefix(br#"{"seq":"#)?;
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

async fn receive(State(inner): State<Arc<Inner>>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    if uri.path() == "/raw" {
        return StatusCode::OK;
    }
    let now_us = inner.epoch.get().map(|e| e.elapsed().as_micros() as u64).unwrap_or(0);
    let endpoint = uri
        .path()
        .strip_prefix("/ep")
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    let Some(seq) = seq_of(&body) else {
        inner.unparsed.fetch_add(1, Ordering::Relaxed);
        return StatusCode::OK;
    };
    let n = inner.arrivals.fetch_add(1, Ordering::Relaxed);
    let first = {
        let Ok(mut seen) = inner.seen.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR;
        };
        let entry = seen.entry((seq, endpoint)).or_insert((0, now_us));
        entry.0 += 1;
        entry.0 == 1
    };
    if first {
        inner.unique.fetch_add(1, Ordering::Relaxed);
    }
    if n % SIGNATURE_SAMPLE == 0 {
        check_signature(&inner, endpoint, &headers, &body);
    }
    StatusCode::OK
}

fn check_signature(inner: &Inner, endpoint: u32, headers: &HeaderMap, body: &[u8]) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Ok(secrets) = inner.secrets.lock() else {
        return;
    };
    let Some(secret) = secrets.get(endpoint as usize) else {
        return;
    };
    let ts = header("webhook-timestamp").parse::<i64>().unwrap_or(0);
    let ok = verify_signature(secret, header("webhook-id"), ts, body, header("webhook-signature"));
    inner.signatures_checked.fetch_add(1, Ordering::Relaxed);
    if !ok {
        inner.signatures_bad.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_are_read_from_the_payload_prefix() {
        assert_eq!(seq_of(br#"{"seq":42,"pad":"xx"}"#), Some(42));
        assert_eq!(seq_of(br#"{"seq":0}"#), Some(0));
        assert_eq!(seq_of(br#"{"other":1}"#), None);
        assert_eq!(seq_of(br#"{"seq":"#), None);
    }
}
