//! The outermost layer of every route: refuses heads past our limits in
//! JSON (414/431) before anything else runs, and rewrites an error that is
//! not JSON (one the framework wrote, such as a path whose percent-encoding
//! is not UTF-8) as our `{code, detail}`.
//!
//! Written as a plain tower service rather than `axum::middleware` layers,
//! because those box a future and clone the inner service for every
//! request; here only the rare error that needs rewriting is boxed.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::Request;
use axum::response::Response;

use crate::middleware::{head_refusal, json_errors, needs_rewrite};

/// The relay's public routes answer with what the developer's target
/// answered, passed back as it came, so their errors are not rewritten.
const RELAY_PUBLIC_PREFIX: &str = "/relay/";

#[derive(Clone, Copy, Default)]
pub struct FrameLayer;

impl<S> tower_layer::Layer<S> for FrameLayer {
    type Service = Frame<S>;

    fn layer(&self, inner: S) -> Frame<S> {
        Frame { inner }
    }
}

#[derive(Clone)]
pub struct Frame<S> {
    inner: S,
}

impl<S> tower_service::Service<Request> for Frame<S>
where
    S: tower_service::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = FrameFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if let Some(refusal) = head_refusal(&req) {
            return FrameFuture::Answered {
                response: Some(refusal),
            };
        }
        let rewrite = !req.uri().path().starts_with(RELAY_PUBLIC_PREFIX);
        FrameFuture::Inner {
            inner: self.inner.call(req),
            rewrite,
        }
    }
}

pin_project_lite::pin_project! {
    #[project = FrameProj]
    pub enum FrameFuture<F> {
        Answered { response: Option<Response> },
        Inner { #[pin] inner: F, rewrite: bool },
        Rewriting { rewrite: Pin<Box<dyn Future<Output = Response> + Send>> },
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for FrameFuture<F> {
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                FrameProj::Answered { response } => {
                    return Poll::Ready(Ok(response.take().expect("polled after completion")));
                }
                FrameProj::Inner { inner, rewrite } => {
                    let Ok(response) = ready!(inner.poll(cx));
                    if !*rewrite || !needs_rewrite(&response) {
                        return Poll::Ready(Ok(response));
                    }
                    self.set(FrameFuture::Rewriting {
                        rewrite: Box::pin(json_errors(response)),
                    });
                }
                FrameProj::Rewriting { rewrite } => return rewrite.as_mut().poll(cx).map(Ok),
            }
        }
    }
}
