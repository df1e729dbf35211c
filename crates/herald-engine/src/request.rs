//! What goes on the wire for one attempt: the body (the payload exactly as
//! stored, the endpoint's template filled in, or what its jq transformation
//! yields; then finished: the verify token put in and the encoding applied;
//! for a batching endpoint, the array of its messages' bodies) and the
//! Standard Webhooks headers, duplicated under the `svix-*` names so that
//! receivers using Svix libraries verify too. Every signature covers the
//! finished bytes.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use herald_core::credentials::BodyError;
use herald_core::model::DeliveryTarget;
use herald_core::signing::{EndpointSecret, batch_webhook_id, hex_body_signature, signature_header};
use herald_core::transform::{EndpointContext, RenderContext, TransformInput};
use herald_store::DeliveryJob;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use crate::attempt::Target;
use crate::ticket::Job;
use crate::transforms::Transforms;
use crate::transport::header_map;

/// Why an attempt's body could not be built: nothing is sent.
#[derive(Debug)]
pub(crate) enum Unsent {
    /// The transformation gave no body.
    Transformation(String),
    /// The verify token has no object to go in.
    Body(BodyError),
}

/// The body as sent and the `webhook-id` it goes under, for one request:
/// a delivery, or a batching endpoint's batch (its body their array even
/// when it holds one, each message's body built and given its token as it
/// would be alone, the array encoded once).
pub(crate) async fn build<'a>(
    target: &Arc<Target>,
    jobs: &'a [Job],
    started_at: DateTime<Utc>,
    transforms: &Transforms,
) -> (Cow<'a, str>, Result<Bytes, Unsent>) {
    let spec = &target.spec;
    if spec.batch.is_none() {
        let job = &jobs[0].job;
        let built = match body(target, job, started_at, transforms).await {
            Ok(b) => finish(spec, b).map_err(Unsent::Body),
            Err(why) => Err(Unsent::Transformation(why)),
        };
        return (Cow::Borrowed(job.msg_id.as_str()), built);
    }
    let id = batch_webhook_id(jobs.iter().map(|j| j.job.msg_id.as_str()));
    let mut out = Vec::with_capacity(2 + jobs.iter().map(|j| j.job.payload.len() + 1).sum::<usize>());
    out.push(b'[');
    for (i, job) in jobs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let one = match body(target, &job.job, started_at, transforms).await {
            Ok(b) => with_token(spec, b).map_err(Unsent::Body),
            Err(why) => Err(Unsent::Transformation(why)),
        };
        match one {
            Ok(b) => out.extend_from_slice(&b),
            Err(e) => return (Cow::Owned(id), Err(e)),
        }
    }
    out.push(b']');
    (Cow::Owned(id), Ok(spec.body_encoding.encode(Bytes::from(out))))
}

/// The body as sent, from the JSON body however it was built: the verify
/// token set at its pointer, then the endpoint's encoding. A step of its
/// own, after whatever built the body, so every way of building one gets
/// it.
pub(crate) fn finish(target: &DeliveryTarget, body: Bytes) -> Result<Bytes, BodyError> {
    Ok(target.body_encoding.encode(with_token(target, body)?))
}

fn with_token(target: &DeliveryTarget, body: Bytes) -> Result<Bytes, BodyError> {
    Ok(match &target.verify_token {
        Some(token) => Bytes::from(token.insert(&body)?),
        None => body,
    })
}

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
    if let Some(auth) = &target.basic_auth
        && let Ok(mut value) = HeaderValue::from_str(&auth.header_value())
    {
        // Never indexed by HTTP/2's header compression.
        value.set_sensitive(true);
        map.insert(AUTHORIZATION, value);
    }
    map.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(target.body_encoding.content_type()),
    );
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use herald_core::credentials::{BasicAuth, BodyEncoding, Credential, JsonPointer, VerifyToken};
    use herald_core::model::{Endpoint, EndpointSettings};
    use herald_core::validate::EndpointUrl;
    use herald_core::{AppId, EndpointId};

    use super::*;

    fn target(f: impl FnOnce(&mut EndpointSettings)) -> DeliveryTarget {
        let mut settings = EndpointSettings::new(EndpointUrl::parse("https://example.com/").unwrap());
        f(&mut settings);
        let ep = Endpoint {
            id: EndpointId::new(),
            app_id: AppId::new(),
            uid: None,
            settings,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        };
        DeliveryTarget::new(ep, vec![EndpointSecret::generate_symmetric()])
    }

    #[test]
    fn the_token_goes_in_before_the_form_encoding_and_the_signature_covers_the_result() {
        let t = target(|s| {
            s.verify_token = Some(VerifyToken {
                pointer: JsonPointer::parse("/info/token").unwrap(),
                token: Credential::new("t 1"),
            });
            s.body_encoding = BodyEncoding::Form;
            s.basic_auth = Some(BasicAuth {
                username: "u".into(),
                password: Credential::new("p"),
            });
        });
        let body = finish(&t, Bytes::from_static(br#"{"a":1}"#)).unwrap();
        assert_eq!(
            &body[..],
            b"payload=%7B%22a%22%3A1%2C%22info%22%3A%7B%22token%22%3A%22t+1%22%7D%7D"
        );
        let now = Utc::now();
        let h = headers(&t, "msg_1", now, &body);
        assert_eq!(h[CONTENT_TYPE], "application/x-www-form-urlencoded");
        assert_eq!(h[AUTHORIZATION], "Basic dTpw");
        assert!(h[AUTHORIZATION].is_sensitive());
        let want = signature_header(&t.signing_secrets(now), "msg_1", now.timestamp(), &body);
        assert_eq!(h["webhook-signature"], want.as_str());

        let plain = target(|_| {});
        assert_eq!(&finish(&plain, Bytes::from_static(b"[1]")).unwrap()[..], b"[1]");
        assert_eq!(headers(&plain, "msg_1", now, &body)[CONTENT_TYPE], "application/json");
        assert!(headers(&plain, "msg_1", now, &body).get(AUTHORIZATION).is_none());
        assert!(
            finish(
                &target(|s| s.verify_token = t.verify_token.clone()),
                Bytes::from_static(b"[1]")
            )
            .is_err()
        );
    }
}
