//! What goes on the wire for one attempt: the body (the payload exactly as
//! stored, or the endpoint's template filled in) and the Standard Webhooks
//! headers, duplicated under the `svix-*` names so that receivers using Svix
//! libraries verify too.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use herald_core::model::DeliveryTarget;
use herald_core::signing::signature_header;
use herald_core::transform::RenderContext;
use herald_store::DeliveryJob;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

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

/// The headers of an attempt started at `started_at`: during a rotation's
/// grace period the old secret signs beside the new one, space-separated.
pub(crate) fn headers(target: &DeliveryTarget, msg_id: &str, started_at: DateTime<Utc>, body: &Bytes) -> HeaderMap {
    let timestamp = started_at.timestamp();
    let signature = signature_header(&target.signing_secrets(started_at), msg_id, timestamp, body);
    let timestamp = timestamp.to_string();
    // Custom headers first, so they can never replace the signature headers.
    let mut map = header_map(target.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let fixed = [
        ("webhook-id", msg_id),
        ("webhook-timestamp", timestamp.as_str()),
        ("webhook-signature", signature.as_str()),
        ("svix-id", msg_id),
        ("svix-timestamp", timestamp.as_str()),
        ("svix-signature", signature.as_str()),
    ];
    for (name, value) in fixed {
        if let Ok(v) = HeaderValue::from_str(value) {
            map.insert(HeaderName::from_static(name), v);
        }
    }
    map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    map
}
