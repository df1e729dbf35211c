//! The producers: post messages at full speed or at a fixed rate, and note
//! for each sequence number when it was sent and which message id the server
//! answered with, so arrivals can be matched by `webhook-id`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Deserialize;

use crate::sink::id_hash;

/// `SendLog::id` for a sequence number that was not (or not yet) accepted.
pub(crate) const NOT_ACCEPTED: u64 = u64::MAX;
/// `SendLog::id` for a message accepted with an answer that carried no id;
/// its arrivals are matched by sequence number alone.
pub(crate) const UNKNOWN_ID: u64 = 0;

#[derive(Clone, Copy, Debug)]
pub enum Limit {
    Count(u64),
    Time(Duration),
}

/// Per sequence number: when it was sent (µs since the start) and the hash
/// of the id it was accepted under.
#[derive(Default, Clone)]
pub(crate) struct SendLog {
    pub at_us: Vec<u64>,
    pub id: Vec<u64>,
}

impl SendLog {
    fn slot(&mut self, seq: u64) -> usize {
        let i = seq as usize;
        if self.at_us.len() <= i {
            self.at_us.resize(i + 1, u64::MAX);
            self.id.resize(i + 1, NOT_ACCEPTED);
        }
        i
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    next_seq: AtomicU64,
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    log: Mutex<SendLog>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Counters {
    pub fn error(&self, kind: &str) {
        *lock(&self.errors).entry(kind.to_owned()).or_default() += 1;
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        lock(&self.errors).clone()
    }

    pub fn error_count(&self) -> u64 {
        lock(&self.errors).values().sum()
    }

    pub fn log(&self) -> SendLog {
        lock(&self.log).clone()
    }

    fn record_send(&self, seq: u64, at_us: u64) {
        let mut log = lock(&self.log);
        let i = log.slot(seq);
        log.at_us[i] = at_us;
    }

    fn record_accept(&self, seq: u64, id: u64) {
        let mut log = lock(&self.log);
        let i = log.slot(seq);
        log.id[i] = id;
    }

    pub fn reserve(&self, n: usize) {
        let mut log = lock(&self.log);
        let n = n.min(10_000_000);
        log.at_us.reserve(n);
        log.id.reserve(n);
    }
}

#[derive(Deserialize)]
struct Accepted<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
}

/// The producers' client: hyper-util's pooled client, which costs a third
/// less CPU per request than reqwest, and the bench shares the machine with
/// the server it measures.
pub(crate) type LoadClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

pub(crate) fn load_client(concurrency: usize) -> anyhow::Result<LoadClient> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_platform_verifier(rustls::crypto::ring::default_provider())?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(concurrency.max(1))
        .build(https))
}

/// How long one POST may take before it counts as a timeout.
const POST_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct Producer {
    pub client: LoadClient,
    /// Message n goes to `uris[n % len]` (one per node).
    pub uris: std::sync::Arc<Vec<hyper::Uri>>,
    pub auth: HeaderValue,
    pub padding: String,
    pub counters: std::sync::Arc<Counters>,
    pub limit: Limit,
    pub rate: Option<f64>,
    pub started: Instant,
}

impl Producer {
    pub async fn run(self) {
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
            // The sequence number leads the payload so the sink finds it
            // without parsing JSON.
            let body = format!(
                r#"{{"eventType":"bench.event","payload":{{"seq":{seq},"pad":"{}"}}}}"#,
                self.padding
            );
            self.counters
                .record_send(seq, self.started.elapsed().as_micros() as u64);
            self.counters.sent.fetch_add(1, Ordering::Relaxed);
            let uri = self.uris[(seq % self.uris.len() as u64) as usize].clone();
            let request = hyper::Request::post(uri)
                .header(AUTHORIZATION, self.auth.clone())
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(Full::new(Bytes::from(body)));
            let Ok(request) = request else {
                self.counters.error("other");
                continue;
            };
            let exchange = async {
                let resp = self.client.request(request).await?;
                let status = resp.status();
                let body = resp.into_body().collect().await.map(|b| b.to_bytes());
                Ok::<_, hyper_util::client::legacy::Error>((status, body))
            };
            match tokio::time::timeout(POST_TIMEOUT, exchange).await {
                Err(_) => self.counters.error("timeout"),
                Ok(Err(e)) if e.is_connect() => self.counters.error("connect"),
                Ok(Err(_)) => self.counters.error("other"),
                Ok(Ok((status, body))) if status.is_success() => {
                    let body = body.unwrap_or_default();
                    let id = serde_json::from_slice::<Accepted>(&body)
                        .ok()
                        .and_then(|a| a.id)
                        .map_or(UNKNOWN_ID, |id| id_hash(&id));
                    self.counters.record_accept(seq, id);
                    self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Ok((status, _))) => self.counters.error(&format!("http_{}", status.as_u16())),
            }
        }
    }
}
