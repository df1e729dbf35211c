//! Reading request bodies within bounds of size and time.
//!
//! A body over the limit is answered 413, but only after the rest of it has
//! been read and thrown away (up to [`DRAIN_MAX_BYTES`] or [`DRAIN_MAX_TIME`]):
//! many clients (Python's `urllib`, for one) write the whole body before they
//! read anything, and closing on them turns our 413 into a broken pipe.
//! Beyond that bound the answer says `Connection: close` and the rest is left
//! unread. [`TimedBody`] bounds the time a client may take to send a body.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::time::{Instant, Sleep};

use crate::error::ApiError;

/// Most body bytes discarded after deciding on a 413, so the client reads
/// the answer; a few MiB cost little and cover a body a few times the
/// default limit.
pub const DRAIN_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Longest time spent discarding such a body.
pub const DRAIN_MAX_TIME: Duration = Duration::from_secs(5);

/// The request body did not arrive within the body read timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimeout(pub Duration);

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body that fails with [`BodyTimeout`] once its deadline passes.
/// The timer is only created when a read has to wait, so a body that came
/// with its headers costs no timer at all.
pub struct TimedBody<B> {
    inner: B,
    timeout: Duration,
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B> TimedBody<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            deadline: Instant::now() + timeout,
            sleep: None,
        }
    }
}

impl<B> HttpBody for TimedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let deadline = this.deadline;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                ready!(sleep.as_mut().poll(cx));
                Poll::Ready(Some(Err(Box::new(BodyTimeout(this.timeout)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Reads and discards what is left of `body`, at most `budget` bytes and
/// [`DRAIN_MAX_TIME`]. True when the body ended within that bound, so the
/// connection can carry on; false when it must be closed.
pub async fn drain(mut body: Body, budget: usize) -> bool {
    let discard = async {
        let mut left = budget;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            if let Some(data) = frame.data_ref() {
                if data.len() > left {
                    return false;
                }
                left -= data.len();
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_MAX_TIME, discard).await.unwrap_or(false)
}

/// Passes `req` through unless its `Content-Length` is over `limit`; then
/// the body is read away first (so a client still writing it sees the
/// answer; one that waits for `100 Continue` has sent nothing to drain) and
/// the answer is a 413, closing the connection when the rest is unread.
pub async fn refuse_declared_too_large(
    req: axum::extract::Request,
    limit: usize,
) -> Result<axum::extract::Request, ApiError> {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let Some(declared) = declared.filter(|n| *n > limit) else {
        return Ok(req);
    };
    let waits = req.headers().contains_key(axum::http::header::EXPECT);
    let drained = !waits && declared <= DRAIN_MAX_BYTES && drain(req.into_body(), declared).await;
    Err(ApiError::too_large(limit).closing_if(!drained))
}

/// The whole body, at most `limit` bytes. Over the limit, the rest is
/// drained and the answer is a 413; a body that stalls past the body read
/// timeout is a 408. Both close the connection when the rest is unread.
pub async fn read_limited(mut body: Body, limit: usize) -> Result<Bytes, ApiError> {
    // Most bodies arrive as one frame, which is kept without a copy.
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| read_error(e.into_inner()))?;
        let Ok(data) = frame.into_data() else { continue };
        len += data.len();
        if len > limit {
            let drained = drain(body, DRAIN_MAX_BYTES).await;
            return Err(ApiError::too_large(limit).closing_if(!drained));
        }
        match &first {
            None if rest.is_empty() => first = Some(data),
            _ => {
                if let Some(f) = first.take() {
                    rest.extend_from_slice(&f);
                }
                rest.extend_from_slice(&data);
            }
        }
    }
    Ok(match first {
        Some(only) => only,
        None => rest.freeze(),
    })
}

fn read_error(e: BoxError) -> ApiError {
    if let Some(timeout) = e.downcast_ref::<BodyTimeout>() {
        ApiError::request_timeout(timeout).closing_if(true)
    } else {
        ApiError::bad_request(format!("could not read the request body: {e}")).closing_if(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_within_the_limit_and_refuses_beyond() {
        let ok = read_limited(Body::from("hello"), 5).await.unwrap();
        assert_eq!(ok, "hello");
        let err = read_limited(Body::from("hello!"), 5).await.unwrap_err();
        assert!(err.to_string().contains("limit of 5 bytes"), "{err}");
    }

    #[tokio::test]
    async fn drain_stops_at_its_budget() {
        assert!(drain(Body::from(vec![0u8; 100]), 100).await);
        assert!(!drain(Body::from(vec![0u8; 101]), 100).await);
    }
}
