//! A backlog larger than memory waits in the store and drains once the
//! receiver is back.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::harness::{Receiver, Server, ServerOptions, temp_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_beyond_memory_stays_in_the_store_and_drains() {
    const RESIDENT: u64 = 20;
    const MESSAGES: usize = 300;
    let dir = temp_dir();
    let up = Arc::new(AtomicBool::new(false));
    let flag = up.clone();
    let receiver = Receiver::start_with(Arc::new(move |_, _| {
        if flag.load(Ordering::SeqCst) {
            (200, Duration::ZERO, "ok".into())
        } else {
            (503, Duration::ZERO, "down".into())
        }
    }))
    .await;
    // Retries come fast (the ~27 h schedule takes ~10 s) and memory holds 20 deliveries.
    let server = Server::start_with(
        dir.path(),
        ServerOptions {
            time_scale: Some(10_000.0),
            extra_args: vec!["--max-resident".into(), RESIDENT.to_string()],
            ..Default::default()
        },
    );
    let app = server.create_app("backlog").await;
    server
        .create_endpoint(&app, json!({"url": format!("{}/b", receiver.url)}))
        .await;

    let mut ids = HashSet::new();
    let mut most_resident = 0;
    for n in 0..MESSAGES {
        ids.insert(server.send(&app, "backlog.test", json!({"n": n})).await);
        if n % 25 == 0 {
            most_resident = most_resident.max(server.metric("herald_deliveries_resident").await);
        }
    }
    for _ in 0..10 {
        most_resident = most_resident.max(server.metric("herald_deliveries_resident").await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        most_resident <= RESIDENT + 2,
        "{most_resident} deliveries were held in memory (limit {RESIDENT})"
    );
    assert!(
        server.metric("herald_attempts_total{outcome=\"failure\"}").await > 0,
        "the receiver was never tried"
    );

    up.store(true, Ordering::SeqCst);
    let delivered = |r: &[crate::harness::Received]| -> HashSet<String> {
        r.iter()
            .filter(|x| x.path == "/b")
            .map(|x| x.header("webhook-id").to_owned())
            .collect()
    };
    let got = receiver
        .wait_until(Duration::from_secs(60), |r| ids.is_subset(&delivered(r)))
        .await;
    let missing = ids.difference(&delivered(&got)).count();
    assert_eq!(missing, 0, "{missing} of {MESSAGES} messages never arrived");
    assert!(
        server.metric("herald_deliveries_loaded_total").await > 0,
        "nothing came back from the store"
    );
    assert!(server.metric("herald_deliveries_resident").await <= RESIDENT + 2);
}
