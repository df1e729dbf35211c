//! The bench's receiver: answers 200 at once and notes, per (`webhook-id`,
//! endpoint), how many copies arrived, when the first did, and which sequence
//! number its payload carried, so the report can match arrivals against what
//! was accepted.
//!
//! It is plain hyper (HTTP/1.1, no router): the sink shares the machine with
//! the server it measures, so every microsecond it spends is taken from the
//! server. While messages are being sent it can also be *down* (its port
//! closed, so deliveries are refused) or *stalled* (requests are taken in
//! and noted but not answered), and open up once sending is over, to
//! measure a backlog and its drain.

use std::collections::HashMap;
use std::convert::Infallible;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use herald_core::signing::{EndpointSecret, verify_signature};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Every this many arrivals, one signature is verified.
const SIGNATURE_SAMPLE: u64 = 100;

/// A stable 64-bit digest of a message id; the sink and the producers key on
/// it so neither keeps a string per message.
pub fn id_hash(id: &str) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(id)
}

/// How the receiver behaves while messages are being sent; afterwards it
/// always answers 200 at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverMode {
    /// Answers 200 at once.
    #[default]
    Up,
    /// Its port is closed: connections are refused (the server records
    /// failed attempts and retries on its schedule).
    Down,
    /// Takes requests in and notes them, but answers none: the server's
    /// requests wait in flight and the rest of its work queues up, so what
    /// is measured while sending is ingest alone.
    Stalled,
}

#[derive(Clone)]
pub struct Sink {
    addr: SocketAddr,
    mode: ReceiverMode,
    inner: Arc<Inner>,
    stop: CancellationToken,
}

#[derive(Default)]
struct Inner {
    /// Stalled requests wait until this is set.
    open: AtomicBool,
    opened: Notify,
    epoch: OnceLock<Instant>,
    arrivals: AtomicU64,
    unique: AtomicU64,
    /// Requests without a `webhook-id` (or `svix-id`) or without a sequence
    /// number in the body: not the bench's traffic.
    unparsed: AtomicU64,
    seen: Mutex<HashMap<(u64, u32), Arrival>>,
    secrets: Mutex<Vec<EndpointSecret>>,
    signatures_checked: AtomicU64,
    signatures_bad: AtomicU64,
    /// How long each answer waits.
    delay: std::time::Duration,
}

/// What arrived for one (`webhook-id`, endpoint).
#[derive(Clone, Copy, Debug)]
pub struct Arrival {
    pub copies: u32,
    /// Microseconds since the epoch when the first copy arrived.
    pub first_us: u64,
    /// The sequence number in the first copy's payload.
    pub seq: u64,
    /// It came in a batch (a JSON array body): keyed by its sequence
    /// number, since the request's `webhook-id` names the batch.
    pub batched: bool,
}

/// The key of a message that arrived in a batch: its sequence number, kept
/// apart from every id hash's space by the top bit.
fn batched_key(seq: u64) -> u64 {
    seq | (1 << 63)
}

/// The sequence numbers of a batch body (a JSON array of payloads).
pub(crate) fn batch_seqs(body: &[u8]) -> Option<Vec<u64>> {
    let items: Vec<serde_json::Value> = serde_json::from_slice(body).ok()?;
    items.iter().map(|v| v["seq"].as_u64()).collect()
}

impl Sink {
    /// Binds `listen`. A sink started down releases the port at once and
    /// refuses connections until [`Sink::open`]; a stalled one answers
    /// nothing until then.
    pub async fn start(listen: &str, mode: ReceiverMode, delay: std::time::Duration) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the sink to {listen}"))?;
        let sink = Self {
            addr: listener.local_addr()?,
            mode,
            inner: Arc::new(Inner {
                open: AtomicBool::new(mode == ReceiverMode::Up),
                delay,
                ..Inner::default()
            }),
            stop: CancellationToken::new(),
        };
        if mode != ReceiverMode::Down {
            sink.serve(listener);
        }
        Ok(sink)
    }

    /// From now on every request is answered at once: a down sink takes its
    /// port back, a stalled one answers what it holds.
    pub async fn open(&self) -> anyhow::Result<()> {
        if self.inner.open.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if self.mode == ReceiverMode::Down {
            let listener = TcpListener::bind(self.addr)
                .await
                .with_context(|| format!("re-binding the sink to {} (was the port taken meanwhile?)", self.addr))?;
            self.serve(listener);
        }
        self.inner.opened.notify_waiters();
        Ok(())
    }

    fn serve(&self, listener: TcpListener) {
        let inner = self.inner.clone();
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                };
                let _ = stream.set_nodelay(true);
                let inner = inner.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| receive(inner.clone(), req));
                    let conn =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.cancelled() => {}
                    }
                });
            }
        });
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The signing secret of endpoint `/ep{n}`, in creation order.
    pub fn add_secret(&self, key: &str) -> anyhow::Result<()> {
        let secret = EndpointSecret::parse(key).map_err(|e| anyhow::anyhow!("endpoint secret: {e}"))?;
        lock(&self.inner.secrets).push(secret);
        Ok(())
    }

    pub fn reserve(&self, n: usize) {
        lock(&self.inner.seen).reserve(n.min(4_000_000));
    }

    pub fn set_epoch(&self, at: Instant) {
        let _ = self.inner.epoch.set(at);
    }

    /// Distinct (`webhook-id`, endpoint) pairs that arrived.
    pub fn unique(&self) -> u64 {
        self.inner.unique.load(Ordering::Relaxed)
    }

    pub fn unparsed(&self) -> u64 {
        self.inner.unparsed.load(Ordering::Relaxed)
    }

    pub fn signatures(&self) -> (u64, u64) {
        (
            self.inner.signatures_checked.load(Ordering::Relaxed),
            self.inner.signatures_bad.load(Ordering::Relaxed),
        )
    }

    /// Every arrival so far, keyed by (id hash, endpoint index).
    pub fn arrivals(&self) -> HashMap<(u64, u32), Arrival> {
        lock(&self.inner.seen).clone()
    }

    /// Closes the port and every open connection.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain counters behind,
    // which are still worth reporting.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `{"seq":123,...` -> 123, without a JSON parse on the hot path.
pub(crate) fn seq_of(body: &[u8]) -> Option<u64> {
    let rest = body.strip_prefix(br#"{"seq":"#)?;
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Standard Webhooks names first; Svix's own names for servers that send only those.
fn webhook_header<'a>(headers: &'a HeaderMap, suffix: &str) -> Option<&'a str> {
    header(headers, &format!("webhook-{suffix}")).or_else(|| header(headers, &format!("svix-{suffix}")))
}

async fn receive(inner: Arc<Inner>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let ok = || Response::new(Full::new(Bytes::new()));
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return Ok(ok());
    };
    if parts.uri.path() == "/raw" {
        return Ok(ok());
    }
    let now_us = inner.epoch.get().map(|e| e.elapsed().as_micros() as u64).unwrap_or(0);
    let endpoint = parts
        .uri
        .path()
        .strip_prefix("/ep")
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    let id = header(&parts.headers, "webhook-id").or_else(|| header(&parts.headers, "svix-id"));
    let keys: Vec<(u64, u64, bool)> = match (id, body.first()) {
        (Some(_), Some(b'[')) => batch_seqs(&body)
            .unwrap_or_default()
            .into_iter()
            .map(|seq| (batched_key(seq), seq, true))
            .collect(),
        (Some(id), _) => seq_of(&body).map(|seq| (id_hash(id), seq, false)).into_iter().collect(),
        (None, _) => Vec::new(),
    };
    let Some(id) = id.filter(|_| !keys.is_empty()) else {
        inner.unparsed.fetch_add(1, Ordering::Relaxed);
        return Ok(ok());
    };
    let n = inner.arrivals.fetch_add(1, Ordering::Relaxed);
    let hold = !inner.open.load(Ordering::Acquire);
    let firsts = {
        let mut seen = lock(&inner.seen);
        keys.iter()
            .filter(|&&(key, seq, batched)| {
                let entry = seen.entry((key, endpoint)).or_insert(Arrival {
                    copies: 0,
                    first_us: now_us,
                    seq,
                    batched,
                });
                entry.copies += 1;
                entry.copies == 1
            })
            .count()
    };
    inner.unique.fetch_add(firsts as u64, Ordering::Relaxed);
    if n.is_multiple_of(SIGNATURE_SAMPLE) {
        check_signature(&inner, endpoint, &parts.headers, id, &body);
    }
    if hold {
        let opened = inner.opened.notified();
        tokio::pin!(opened);
        opened.as_mut().enable();
        if !inner.open.load(Ordering::Acquire) {
            opened.await;
        }
    }
    if !inner.delay.is_zero() {
        // A thread's sleep keeps to the microsecond where tokio's timer
        // rounds up to its millisecond ticks (a "1 ms" answer would take 2).
        let delay = inner.delay;
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(delay)).await;
    }
    Ok(ok())
}

fn check_signature(inner: &Inner, endpoint: u32, headers: &HeaderMap, id: &str, body: &[u8]) {
    let secrets = lock(&inner.secrets);
    let Some(secret) = secrets.get(endpoint as usize) else {
        return;
    };
    let ts = webhook_header(headers, "timestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .unwrap_or(0);
    let signature = webhook_header(headers, "signature").unwrap_or("");
    let ok = verify_signature(secret, id, ts, body, signature);
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

    #[test]
    fn id_hash_is_stable_and_tells_ids_apart() {
        assert_eq!(id_hash("msg_1"), id_hash("msg_1"));
        assert_ne!(id_hash("msg_1"), id_hash("msg_2"));
    }

    async fn post(client: &reqwest::Client, url: String, id: &str, secret: &EndpointSecret, body: &'static str) {
        let ts = 1_700_000_000;
        let resp = client
            .post(url)
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", secret.sign(id, ts, body.as_bytes()))
            .body(body)
            .send()
            .await
            .expect("sink answers");
        assert_eq!(resp.status(), 200);
    }

    /// Copies are counted per `webhook-id` and endpoint: the same id twice at
    /// one endpoint is a duplicate, at two endpoints it is two deliveries.
    #[tokio::test]
    async fn counts_arrivals_by_webhook_id_and_endpoint() {
        let sink = Sink::start("127.0.0.1:0", ReceiverMode::Up, std::time::Duration::ZERO)
            .await
            .expect("sink");
        sink.set_epoch(Instant::now());
        let secret = EndpointSecret::generate_symmetric();
        sink.add_secret(&secret.to_wire_string()).expect("secret");
        sink.add_secret(&secret.to_wire_string()).expect("secret");
        let client = crate::http_client(4).expect("client");
        let body = r#"{"seq":7,"pad":""}"#;
        post(&client, format!("{}/ep0", sink.url()), "msg_a", &secret, body).await;
        post(&client, format!("{}/ep0", sink.url()), "msg_a", &secret, body).await;
        post(&client, format!("{}/ep1", sink.url()), "msg_a", &secret, body).await;
        post(&client, format!("{}/ep0", sink.url()), "msg_b", &secret, r#"{"seq":8}"#).await;
        // Not bench traffic: no sequence number.
        post(&client, format!("{}/ep0", sink.url()), "msg_c", &secret, r#"{"x":1}"#).await;

        assert_eq!(sink.unique(), 3);
        assert_eq!(sink.unparsed(), 1);
        let arrivals = sink.arrivals();
        let a0 = arrivals[&(id_hash("msg_a"), 0)];
        assert_eq!((a0.copies, a0.seq), (2, 7));
        assert_eq!(arrivals[&(id_hash("msg_a"), 1)].copies, 1);
        assert_eq!(arrivals[&(id_hash("msg_b"), 0)].seq, 8);
        // The first arrival is sampled, and it was signed correctly.
        assert_eq!(sink.signatures(), (1, 0));
    }

    #[tokio::test]
    async fn a_sink_started_down_refuses_until_opened() {
        let sink = Sink::start("127.0.0.1:0", ReceiverMode::Down, std::time::Duration::ZERO)
            .await
            .expect("sink");
        let client = crate::http_client(4).expect("client");
        let refused = client.post(format!("{}/raw", sink.url())).send().await;
        assert!(
            refused.is_err_and(|e| e.is_connect()),
            "a down sink must refuse connections"
        );
        sink.open().await.expect("open");
        let resp = client.post(format!("{}/raw", sink.url())).send().await.expect("up");
        assert_eq!(resp.status(), 200);
        sink.stop();
    }

    #[tokio::test]
    async fn a_stalled_sink_notes_requests_but_answers_once_opened() {
        let sink = Sink::start("127.0.0.1:0", ReceiverMode::Stalled, std::time::Duration::ZERO)
            .await
            .expect("sink");
        sink.set_epoch(Instant::now());
        let secret = EndpointSecret::generate_symmetric();
        sink.add_secret(&secret.to_wire_string()).expect("secret");
        let client = crate::http_client(4).expect("client");
        let url = format!("{}/ep0", sink.url());
        let held = tokio::spawn(async move { post(&client, url, "msg_h", &secret, r#"{"seq":1}"#).await });
        // The request arrives and is counted, but no answer comes.
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        while sink.unique() == 0 && Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(sink.unique(), 1);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!held.is_finished(), "a stalled sink answered");
        sink.open().await.expect("open");
        tokio::time::timeout(std::time::Duration::from_secs(5), held)
            .await
            .expect("answered once opened")
            .expect("200");
        sink.stop();
    }
}
