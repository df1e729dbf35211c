//! The catch-all route: any method on any path outside `/_herald/` is a
//! request to capture. Bodies over `--max-body-bytes` are refused with a 413
//! (and not stored); everything else goes to the [`Inspector`].

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::AppState;
use crate::forward::Answer;
use crate::inspector::json_answer;
use crate::record::{Incoming, Source};

pub(crate) async fn capture(State(state): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let limit = state.max_body_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let refuse = || {
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let reason = format!("body over {limit} bytes");
        state
            .inspector
            .terminal()
            .print_refused(parts.method.as_str(), target, 413, &reason);
        too_large(limit)
    };
    if declared.is_some_and(|n| n > limit) {
        return refuse();
    }
    let body = match read(body, limit).await {
        Ok(body) => body,
        Err(Unread::TooLarge) => return refuse(),
        Err(Unread::Broken(e)) => {
            return into_response(json_answer(
                StatusCode::BAD_REQUEST,
                "body_unreadable",
                &format!("could not read the request body: {e}"),
            ));
        }
    };
    let incoming = Incoming {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts.headers.iter().map(|(n, v)| (n.clone(), v.clone())).collect(),
        body,
        source: Source::Local,
    };
    match Arc::clone(&state.inspector).handle(incoming).await {
        Ok(answer) => into_response(answer),
        Err(e) => {
            tracing::error!(error = %e, "storing a request");
            into_response(json_answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                "history_failed",
                "the request could not be stored",
            ))
        }
    }
}

enum Unread {
    TooLarge,
    Broken(String),
}

async fn read(body: Body, limit: usize) -> Result<bytes::Bytes, Unread> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(Unread::TooLarge),
        Err(e) => Err(Unread::Broken(e.to_string())),
    }
}

fn too_large(limit: usize) -> Response {
    let mut resp = into_response(json_answer(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        &format!("request body is larger than the limit of {limit} bytes (--max-body-bytes)"),
    ));
    // The rest of the body is left unread, so the connection cannot carry on.
    resp.headers_mut()
        .insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    resp
}

pub(crate) fn into_response(answer: Answer) -> Response {
    let mut resp = (answer.status, answer.body).into_response();
    let headers = resp.headers_mut();
    for (name, value) in answer.headers {
        headers.append(name, value);
    }
    resp
}
