//! Verify incoming webhooks before trusting them.
//!
//! - [`Webhook`]: [Standard Webhooks](https://www.standardwebhooks.com) (what
//!   Herald and Svix send): `v1` HMAC-SHA256 with `whsec_` secrets and `v1a`
//!   ed25519 with `whpk_`/`whsk_` keys, a timestamp tolerance (default 5 min),
//!   several signatures per header and several keys per verifier (rotation).
//! - [`BodySignature`]: `X-Webhook-Signature: sha256=<hex HMAC of the body>`,
//!   under a header name of your choice.
//! - [`Deduplicator`]: senders retry, so the same `webhook-id` can arrive more
//!   than once; this remembers ids for a TTL in bounded memory.
//! - `VerifiedEvent<T>` (feature `axum`): an extractor that hands a handler
//!   the verified event, parsed.
//!
//! Comparisons of signatures run in constant time. Every refusal is a
//! [`VerifyError`] that says which rule failed.
//!
//! ```
//! use herald_verify::{Webhook, VerifyError};
//!
//! let webhook = Webhook::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
//! let body = br#"{"test": 2432232314}"#;
//! let headers = [
//!     ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
//!     ("webhook-timestamp", "1614265330"),
//!     ("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
//! ];
//! // `verify` checks against the clock; this example is from 2021.
//! let verified = webhook.verify_at(&headers, body, 1614265330)?;
//! assert_eq!(verified.id, "msg_p5jXN8AQM9LWM0D4loKWxJek");
//!
//! // One byte changed and it no longer verifies.
//! let err = webhook.verify_at(&headers, br#"{"test": 2432232315}"#, 1614265330).unwrap_err();
//! assert!(matches!(err, VerifyError::NoMatch(_)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Body signatures, under a platform's own header name:
//!
//! ```
//! use herald_verify::BodySignature;
//!
//! let verifier = BodySignature::new("my shared secret")?.header_name("X-Hub-Signature-256");
//! let signature = verifier.sign(b"{}"); // "sha256=<hex>", as the sender computes it
//! verifier.verify(&[("x-hub-signature-256", signature.as_str())], b"{}")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Dropping duplicates:
//!
//! ```
//! use std::time::Duration;
//! use herald_verify::Deduplicator;
//!
//! let seen = Deduplicator::new(Duration::from_secs(24 * 3600), 100_000);
//! assert!(seen.first_seen("msg_1"));  // process it
//! assert!(!seen.first_seen("msg_1")); // a retry: answer 2xx, do nothing
//! ```
#![cfg_attr(
    feature = "axum",
    doc = r#"
With the `axum` feature, a handler gets the verified event:

```
use axum::{Router, routing::post};
use herald_verify::{VerifiedEvent, Webhook};
use serde::Deserialize;

#[derive(Deserialize)]
struct InvoicePaid { id: String, amount: u64 }

async fn on_invoice(VerifiedEvent { id, event, .. }: VerifiedEvent<InvoicePaid>) -> &'static str {
    println!("{id}: invoice {} paid {}", event.id, event.amount);
    "ok"
}

let webhook = Webhook::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
let app: Router = Router::new().route("/webhooks", post(on_invoice)).with_state(webhook);
# Ok::<(), Box<dyn std::error::Error>>(())
```
"#
)]

mod body_signature;
mod dedup;
mod error;
#[cfg(feature = "axum")]
mod extract;
mod headers;
mod key;
mod standard;

pub use body_signature::{BodySignature, DEFAULT_BODY_SIGNATURE_HEADER};
pub use dedup::Deduplicator;
pub use error::{SecretError, VerifyError};
#[cfg(feature = "axum")]
pub use extract::{VerifiedEvent, WebhookRejection};
pub use headers::{Headers, NotText};
pub use key::{HMAC_PREFIX, PUBLIC_KEY_PREFIX, SECRET_KEY_PREFIX};
pub use standard::{DEFAULT_TOLERANCE, Verified, Version, Webhook};
