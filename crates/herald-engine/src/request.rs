//! What goes on the wire for one attempt: the body (the payload exactly as
//! stored, or the endpoint's template filled in, then finished: the verify
//! token put in and the encoding applied) and the Standard Webhooks
//! headers, duplicated under the `svix-*` names so that receivers using Svix
//! libraries verify too. Every signature covers the finished bytes.

use std::borrow::Cow;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use herald_core::credentials::BodyError;
use herald_core::model::DeliveryTarget;
use herald_core::signing::{EndpointSecret, batch_webhook_id, hex_body_signature, signature_header};
use herald_core::transform::RenderContext;
use herald_store::DeliveryJob;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

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

/// The body as sent and the `webhook-id` it goes under, for one request:
/// a delivery, or a batching endpoint's batch (its body their array even
/// when it holds one). An error means the attempt fails unsent.
pub(crate) fn build<'a>(
    target: &DeliveryTarget,
    jobs: &'a [Job],
    started_at: DateTime<Utc>,
) -> (Cow<'a, str>, Result<Bytes, BodyError>) {
    if target.batch.is_none() {
        let job = &jobs[0].job;
        return (
            Cow::Borrowed(job.msg_id.as_str()),
            finish(target, body(target, job, started_at)),
        );
    }
    let id = batch_webhook_id(jobs.iter().map(|j| j.job.msg_id.as_str()));
    let array = || -> Result<Bytes, BodyError> {
        let mut out = Vec::with_capacity(2 + jobs.iter().map(|j| j.job.payload.len() + 1).sum::<usize>());
        out.push(b'[');
        for (i, job) in jobs.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            // Each message's body as it would be alone, its token in it.
            out.extend_from_slice(&with_token(target, body(target, &job.job, started_at))?);
        }
        out.push(b']');
        Ok(target.body_encoding.encode(Bytes::from(out)))
    };
    (Cow::Owned(id), array())
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
