//! The engine in-process over a real SQLite store, against a real receiver.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod slow_store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use herald_core::model::EndpointSettings;
use herald_core::signing::EndpointSecret;
use herald_core::ssrf::PrivateTargets;
use herald_core::validate::{EndpointUrl, EventTypeName};
use herald_engine::{Engine, EngineConfig};
use herald_store::sqlite::SqliteStore;
use herald_store::{AppRef, EncryptionKey, Lease, NewApplication, NewEndpoint, NewMessage, NodeId, Store};
use tokio_util::sync::CancellationToken;

struct Fixture {
    store: Arc<dyn Store>,
    engine: Arc<Engine>,
    stop: CancellationToken,
    arrivals: Arc<Mutex<HashMap<String, usize>>>,
    receiver: String,
    _dir: tempfile::TempDir,
}

/// A receiver that takes `delay` to answer 200, counting arrivals per `webhook-id`.
async fn receiver(delay: Duration) -> (String, Arc<Mutex<HashMap<String, usize>>>) {
    let arrivals: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let seen = arrivals.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap, _body: Bytes| {
        let seen = seen.clone();
        async move {
            let id = headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            *seen.lock().unwrap().entry(id).or_default() += 1;
            tokio::time::sleep(delay).await;
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, arrivals)
}

async fn fixture(config: EngineConfig, delay: Duration) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("h.db"), EncryptionKey::generate()).unwrap());
    let (receiver, arrivals) = receiver(delay).await;
    let stop = CancellationToken::new();
    let engine = Engine::start(
        store.clone(),
        EngineConfig {
            private_targets: PrivateTargets::AllowAll,
            ..config
        },
        stop.clone(),
    )
    .await
    .unwrap();
    Fixture {
        store,
        engine,
        stop,
        arrivals,
        receiver,
        _dir: dir,
    }
}

async fn app_with_endpoint(f: &Fixture) -> (String, herald_core::EndpointId) {
    let app = f
        .store
        .create_app(NewApplication {
            uid: None,
            name: "a".into(),
            metadata: Default::default(),
            throttle_rate: None,
        })
        .await
        .unwrap();
    let ep = f
        .store
        .create_endpoint(
            &app.id,
            NewEndpoint {
                uid: None,
                settings: EndpointSettings::new(EndpointUrl::parse(&format!("{}/hook", f.receiver)).unwrap()),
                secret: EndpointSecret::generate_symmetric(),
            },
        )
        .await
        .unwrap();
    (app.id.to_string(), ep.id)
}

fn message(app: &str, n: usize) -> NewMessage {
    NewMessage {
        app: AppRef(app.to_owned()),
        event_type: EventTypeName::parse("engine.test").unwrap(),
        event_id: None,
        channels: None,
        tags: None,
        payload: Bytes::from(format!(r#"{{"n":{n}}}"#)),
        payload_retention: None,
        only_endpoint: None,
        lease: None,
    }
}

/// A lease for a node other than the engine's.
fn other_node() -> Lease {
    Lease {
        owner: NodeId::new("another-node"),
        ttl: Duration::from_secs(60),
    }
}

async fn wait_for(f: &Fixture, n: usize, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while f.arrivals.lock().unwrap().len() < n && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_on_held_work_are_renewed_and_nothing_is_sent_twice() {
    // Claims last 400 ms while a one-at-a-time lane keeps work queued for ~2 s.
    let f = fixture(
        EngineConfig {
            claim_ttl: Duration::from_millis(400),
            max_in_flight_per_endpoint: 1,
            ..EngineConfig::default()
        },
        Duration::from_millis(250),
    )
    .await;
    let (app, _) = app_with_endpoint(&f).await;
    for n in 0..8 {
        f.engine.ingest(message(&app, n)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(900)).await;
    // Work still queued in memory must still be claimed: nobody else may take it.
    let stolen = f.store.claim_due(&other_node(), 100, usize::MAX).await.unwrap();
    assert!(stolen.is_empty(), "{} held deliveries had lapsed claims", stolen.len());

    wait_for(&f, 8, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let arrivals = f.arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 8);
    assert!(arrivals.values().all(|&n| n == 1), "duplicates: {arrivals:?}");
    f.stop.cancel();
    f.engine.stopped().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_work_for_a_deleted_endpoint_ends_without_requests() {
    let f = fixture(
        EngineConfig {
            max_in_flight_per_endpoint: 1,
            ..EngineConfig::default()
        },
        Duration::from_millis(300),
    )
    .await;
    let (app, ep) = app_with_endpoint(&f).await;
    for n in 0..6 {
        f.engine.ingest(message(&app, n)).await.unwrap();
    }
    wait_for(&f, 1, Duration::from_secs(5)).await;
    let app_id = f.store.get_app(&app).await.unwrap().id;
    f.store.delete_endpoint(&app_id, &ep).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = f.arrivals.lock().unwrap().len();
    assert!(
        sent <= 2,
        "{sent} requests after the endpoint was deleted with 5 queued"
    );
    assert_eq!(
        f.engine.resident(),
        0,
        "deliveries of a deleted endpoint stayed in memory"
    );
    f.stop.cancel();
    f.engine.stopped().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_returns_claims_on_unsent_work() {
    let f = fixture(
        EngineConfig {
            max_in_flight_per_endpoint: 1,
            shutdown_grace: Duration::from_secs(5),
            ..EngineConfig::default()
        },
        Duration::from_millis(200),
    )
    .await;
    let (app, _) = app_with_endpoint(&f).await;
    for n in 0..10 {
        f.engine.ingest(message(&app, n)).await.unwrap();
    }
    wait_for(&f, 1, Duration::from_secs(5)).await;
    f.stop.cancel();
    f.engine.stopped().await;
    let sent = f.arrivals.lock().unwrap().len();
    assert!(
        sent < 10,
        "everything was sent before the stop; the test proves nothing"
    );
    // What was not sent is claimable again at once, without a restart.
    let back = f.store.claim_due(&other_node(), 100, usize::MAX).await.unwrap();
    assert_eq!(back.len(), 10 - sent, "{sent} sent, {} handed back", back.len());
}

/// While an outcome is not yet durable its delivery stays held, and its
/// claim is renewed on time although the outcome write takes longer than
/// the lease: nobody else can claim it, and it is sent once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_stays_held_while_its_outcome_is_written_and_renewal_does_not_wait_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("h.db"), EncryptionKey::generate()).unwrap());
    let store: Arc<dyn Store> = Arc::new(slow_store::SlowRecords {
        inner: sqlite.clone(),
        delay: Duration::from_millis(1500),
    });
    let (receiver, arrivals) = receiver(Duration::ZERO).await;
    let stop = CancellationToken::new();
    let engine = Engine::start(
        store.clone(),
        EngineConfig {
            private_targets: PrivateTargets::AllowAll,
            claim_ttl: Duration::from_millis(300),
            ..EngineConfig::default()
        },
        stop.clone(),
    )
    .await
    .unwrap();
    let f = Fixture {
        store,
        engine,
        stop,
        arrivals,
        receiver,
        _dir: dir,
    };
    let (app, _) = app_with_endpoint(&f).await;
    f.engine.ingest(message(&app, 0)).await.unwrap();
    wait_for(&f, 1, Duration::from_secs(5)).await;
    // The outcome is being written for 1.5 s, five leases long.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stolen = sqlite.claim_due(&other_node(), 10, usize::MAX).await.unwrap();
        assert!(
            stolen.is_empty(),
            "a delivery whose outcome was being written was claimed by another node"
        );
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let arrivals = f.arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 1);
    assert!(arrivals.values().all(|&n| n == 1), "sent twice: {arrivals:?}");
    assert_eq!(f.engine.resident(), 0, "it left memory once its outcome was written");
    f.stop.cancel();
    f.engine.stopped().await;
}
