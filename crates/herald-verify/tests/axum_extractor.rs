//! The `VerifiedEvent` extractor in a real router: a verified request reaches
//! the handler parsed; a forged, malformed or oversized one is refused with a
//! JSON body and the handler never runs.
#![cfg(feature = "axum")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::http::{Request, StatusCode};
use axum::routing::post;
use herald_verify::{VerifiedEvent, Webhook};
use serde::Deserialize;
use tower_service::Service as _;

#[derive(Deserialize)]
struct Invoice {
    amount: u64,
}

#[derive(Clone)]
struct AppState {
    webhook: Webhook,
    handled: Arc<AtomicUsize>,
}

impl FromRef<AppState> for Webhook {
    fn from_ref(state: &AppState) -> Webhook {
        state.webhook.clone()
    }
}

async fn on_invoice(
    axum::extract::State(state): axum::extract::State<AppState>,
    VerifiedEvent { id, event, .. }: VerifiedEvent<Invoice>,
) -> String {
    state.handled.fetch_add(1, Ordering::SeqCst);
    format!("{id}:{}", event.amount)
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn app(handled: Arc<AtomicUsize>) -> Router {
    let state = AppState {
        webhook: Webhook::new(SECRET).unwrap(),
        handled,
    };
    Router::new()
        .route("/hook", post(on_invoice))
        .layer(DefaultBodyLimit::max(1024))
        .with_state(state)
}

fn signed(body: &str, signature: Option<&str>) -> Request<Body> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let sig = signature.map(str::to_owned).unwrap_or_else(|| {
        Webhook::new(SECRET)
            .unwrap()
            .sign("msg_9", now, body.as_bytes())
            .unwrap()
    });
    Request::post("/hook")
        .header("webhook-id", "msg_9")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", sig)
        .body(Body::from(body.to_owned()))
        .unwrap()
}

async fn call(app: &mut Router, req: Request<Body>) -> (StatusCode, String) {
    let resp = app.call(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn the_handler_gets_the_verified_parsed_event() {
    let handled = Arc::new(AtomicUsize::new(0));
    let mut app = app(handled.clone());
    let (status, body) = call(&mut app, signed(r#"{"amount": 4200}"#, None)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "msg_9:4200"));
    assert_eq!(handled.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn refusals_are_json_and_the_handler_never_runs() {
    let handled = Arc::new(AtomicUsize::new(0));
    let mut app = app(handled.clone());
    let forged = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    let cases = [
        (
            signed(r#"{"amount": 1}"#, Some(forged)),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        (
            signed(r#"{"amount": "lots"}"#, None),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_event",
        ),
        (
            signed(&"x".repeat(2048), None),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_unreadable",
        ),
    ];
    for (req, want_status, want_code) in cases {
        let (status, body) = call(&mut app, req).await;
        assert_eq!(status, want_status, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["code"], want_code, "{body}");
        assert!(!json["detail"].as_str().unwrap().is_empty());
    }
    assert_eq!(handled.load(Ordering::SeqCst), 0);
}
