//! What goes on the wire for one attempt: the body (the payload exactly as
//! stored, or the endpoint's template filled in) and the Standard Webhooks
//! headers, duplicated under the `svix-*` names so that receivers using Svix
//! libraries verify too.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use herald_core::model::DeliveryTarget;
use herald_core::signing::{EndpointSecret, batch_webhook_id, hex_body_signature, signature_header};
use herald_core::transform::RenderContext;
use herald_store::DeliveryJob;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use crate::ticket::Job;
use crate::transport::header_map;

/// The body of the attempt starting at `started_at`: a template is rendered
/// per attempt, since it may show the attempt's number and time.
pub(crate) fn body(target: &DeliveryTarget, job: &DeliveryJob, started_at: DateTime<Utc>) -> Bytes {
    let Some(template) = &target.payload_template else {
        return job.payload.clone();
    };
    Bytes::from(template.render(&RenderContext {
        msg_id: job.msg_id.as_str(),
        event_type: job.event_type.as_str(),
        msg_created_at: job.msg_created_at,
        payload: &job.payload,
        attempt_number: job.attempts + 1,
        attempt_timestamp: started_at.timestamp(),
        first_sent_at: job.first_attempt_at.unwrap_or(started_at),
    }))
}

/// A batch's body: the JSON array of its messages' bodies, each built as
/// it would be alone, in queue order.
pub(crate) fn batch_body(target: &DeliveryTarget, jobs: &[Job], started_at: DateTime<Utc>) -> Bytes {
    let mut out = Vec::with_capacity(2 + jobs.iter().map(|j| j.job.payload.len() + 1).sum::<usize>());
    out.push(b'[');
    for (i, job) in jobs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&body(target, &job.job, started_at));
    }
    out.push(b']');
    Bytes::from(out)
}

/// A batch's `webhook-id` ([`batch_webhook_id`]).
pub(crate) fn batch_id(jobs: &[Job]) -> String {
    batch_webhook_id(jobs.iter().map(|j| j.job.msg_id.as_str()))
}

/// The headers of an attempt started at `started_at`: during a rotation's
/// grace period the old secret signs beside the new one, space-separated.
pub(crate) fn headers(target: &DeliveryTarget, msg_id: &str, started_at: DateTime<Utc>, body: &Bytes) -> HeaderMap {
    let timestamp = started_at.timestamp();
    let standard = target.body_signature.as_ref().is_none_or(|b| b.standard_signature);
    let signature = standard.then(|| signature_header(&target.signing_secrets(started_at), msg_id, timestamp, body));
    let timestamp = timestamp.to_string();
    // Custom headers first, so they can never replace the signature headers.
    let mut map = header_map(target.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let signature = signature.as_deref();
    let fixed = [
        ("webhook-id", Some(msg_id)),
        ("webhook-timestamp", Some(timestamp.as_str())),
        ("webhook-signature", signature),
        ("svix-id", Some(msg_id)),
        ("svix-timestamp", Some(timestamp.as_str())),
        ("svix-signature", signature),
    ];
    for (name, value) in fixed {
        if let Some(value) = value
            && let Ok(v) = HeaderValue::from_str(value)
        {
            map.insert(HeaderName::from_static(name), v);
        }
    }
    if let Some(style) = &target.body_signature
        && let Some(value) = body_signature(target, body)
        && let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(style.header.as_bytes()),
            HeaderValue::from_str(&value),
        )
    {
        map.insert(name, value);
    }
    map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    map
}

/// `sha256=<hex>` with the current secret. One value, not one per secret
/// as in `webhook-signature`: receivers of this style compare a single
/// one, so a rotation takes effect at once. An asymmetric secret has no
/// HMAC key, so nothing is sent (the API refuses the pair).
fn body_signature(target: &DeliveryTarget, body: &[u8]) -> Option<String> {
    match target.secrets.first()? {
        EndpointSecret::Symmetric(key) => Some(hex_body_signature(key.as_bytes(), body)),
        EndpointSecret::Asymmetric(_) => None,
    }
}
