//! What goes on the wire for one attempt: the body exactly as stored and the
//! Standard Webhooks headers, duplicated under the `svix-*` names so that
//! receivers using Svix libraries verify too.

use bytes::Bytes;
use herald_core::model::DeliveryTarget;
use herald_core::signing::signature_header;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use crate::transport::header_map;

pub(crate) fn headers(target: &DeliveryTarget, msg_id: &str, timestamp: i64, body: &Bytes) -> HeaderMap {
    let secrets: Vec<_> = target.secrets.iter().collect();
    let signature = signature_header(&secrets, msg_id, timestamp, body);
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
