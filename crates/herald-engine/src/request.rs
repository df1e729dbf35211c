//! What goes on the wire for one attempt: the body (the payload exactly as
//! stored, the endpoint's template filled in, or what its jq transformation
//! yields) and the Standard Webhooks
//! headers, duplicated under the `svix-*` names so that receivers using Svix
//! libraries verify too.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use herald_core::model::DeliveryTarget;
use herald_core::signing::{EndpointSecret, hex_body_signature, signature_header};
use herald_core::transform::{EndpointContext, RenderContext, TransformInput};
use herald_store::DeliveryJob;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use crate::attempt::Target;
use crate::transforms::Transforms;
use crate::transport::header_map;

/// The body of the attempt starting at `started_at`: a transformation is
/// run (on the transformation threads) and a template rendered per attempt,
/// since either may show the attempt's number and time. `Err` says why the
/// transformation gave no body; no request is made then.
pub(crate) async fn body(
    target: &Arc<Target>,
    job: &DeliveryJob,
    started_at: DateTime<Utc>,
    transforms: &Transforms,
) -> Result<Bytes, String> {
    let spec = &target.spec;
    match &spec.transformation {
        Some(Err(e)) => return Err(format!("the stored transformation no longer compiles: {e}")),
        Some(Ok(_)) => {
            let (target, job) = (target.clone(), job.clone());
            let ran = transforms.run(move || transform(&target.spec, &job, started_at)).await;
            return ran.unwrap_or_else(|| Err("the transformation threads are shutting down".to_owned()));
        }
        None => {}
    }
    let Some(template) = &spec.payload_template else {
        return Ok(job.payload.clone());
    };
    Ok(Bytes::from(template.render(&render_context(job, started_at))))
}

fn render_context(job: &DeliveryJob, started_at: DateTime<Utc>) -> RenderContext<'_> {
    RenderContext {
        msg_id: job.msg_id.as_str(),
        event_type: job.event_type.as_str(),
        msg_created_at: job.msg_created_at,
        payload: &job.payload,
        attempt_number: job.attempts + 1,
        attempt_timestamp: started_at.timestamp(),
        first_sent_at: job.first_attempt_at.unwrap_or(started_at),
    }
}

/// Runs the target's transformation for this attempt, on the calling
/// thread (one with the stack a run needs).
fn transform(target: &DeliveryTarget, job: &DeliveryJob, started_at: DateTime<Utc>) -> Result<Bytes, String> {
    let Some(Ok(program)) = &target.transformation else {
        return Err("no transformation".to_owned());
    };
    let input = TransformInput {
        delivery: render_context(job, started_at),
        endpoint: EndpointContext {
            id: target.endpoint_id.as_str(),
            uid: target.uid.as_ref().map(|u| u.as_str()),
            url: target.url.as_str(),
            metadata: &target.metadata,
        },
    };
    program.run(&input).map(Bytes::from).map_err(|e| e.to_string())
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
