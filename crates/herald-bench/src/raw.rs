//! The `--raw` ceiling: plain loopback POSTs from the producers' client to a
//! sink like the one deliveries go to, so a run's delivery rate can be read
//! against what the machine allows at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use crate::load::LoadClient;
use crate::{ReceiverMode, Sink};

/// Plain POSTs of `body_bytes` from the producers' client to a sink like
/// the bench's own, for `for_how_long`: what this machine allows.
pub(crate) async fn raw_ceiling(
    client: &LoadClient,
    concurrency: usize,
    body_bytes: usize,
    for_how_long: Duration,
) -> anyhow::Result<f64> {
    let sink = Sink::start("127.0.0.1:0", ReceiverMode::Up, std::time::Duration::ZERO).await?;
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
