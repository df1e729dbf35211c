//! The accept loop: HTTP/1.1 and h2 on hyper-util, with the bounds
//! `axum::serve` lacks, so a client without a token cannot hold the server:
//!
//! - **header read timeout**: from the first byte of a request head to its
//!   end;
//! - **body read timeout**: from the head to the end of the body
//!   ([`TimedBody`]);
//! - **idle timeout**: a connection with no request in progress and nothing
//!   received for that long is closed;
//! - **connection cap**: a semaphore; at the cap the loop stops accepting
//!   (the kernel's backlog holds newcomers, served as soon as a slot frees,
//!   where accepting and closing would turn a burst into errors) and says so
//!   in the log, at most every [`CAP_LOG_EVERY`].
//!
//! A connection that answers 101 (a relay listener's WebSocket) leaves HTTP:
//! from then on none of these timeouts apply to it.
//!
//! hyper's own `header_read_timeout` is not used: it runs from the moment a
//! connection waits for its next request, so it would also close idle
//! keep-alive connections and the idle timeout could never be longer. Both
//! are enforced instead by [`TimedStream`] around the socket, with one
//! timer per connection.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use crate::body::TimedBody;
use crate::head::HeadMeter;

/// How long accepting pauses after an error such as EMFILE, doubling up to
/// [`ACCEPT_BACKOFF_MAX`]: the condition usually clears as connections close.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// At most one warning per this interval while the connection cap is hit.
pub const CAP_LOG_EVERY: Duration = Duration::from_secs(10);

/// Bounds on what one client may hold.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled; then stops
/// accepting, lets requests in progress finish, and returns once every
/// connection has closed.
pub async fn serve(listener: TcpListener, router: Router, limits: ConnectionLimits, shutdown: CancellationToken) {
    let max = limits.max_connections.clamp(1, u32::MAX as usize);
    let slots = Arc::new(Semaphore::new(max));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper refuses heads beyond its buffer or header count with an empty
    // 414/431 of its own; the socket wrapper (`head`) answers any head past
    // the router's limits in JSON before hyper parses it, so every refusal
    // is JSON. The header count stays hyper's default (`head` says why).
    builder.http1().max_buf_size(crate::head::HYPER_MAX_BUF);
    let builder = Arc::new(builder);
    let limits = Arc::new(limits);
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut cap_log = CapLog::default();
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                cap_log.hit(max);
                tokio::select! {
                    permit = slots.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = shutdown.cancelled() => break,
                }
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        match accepted {
            Ok((stream, _peer)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(
                    stream,
                    builder.clone(),
                    router.clone(),
                    limits.clone(),
                    shutdown.clone(),
                    permit,
                ));
            }
            // The peer gave up before we took it: nothing is wrong here.
            Err(e) if is_peer_error(&e) => {}
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "accepting a connection failed");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
    // New clients are refused from here on; the open connections finish
    // their requests and return their slots.
    drop(listener);
    let _ = slots.acquire_many(max as u32).await;
}

fn is_peer_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
    )
}

/// Rate-limits the warning that the connection cap was reached.
#[derive(Default)]
struct CapLog {
    last: Option<Instant>,
    hits: u64,
}

impl CapLog {
    fn hit(&mut self, max: usize) {
        self.hits += 1;
        if self.last.is_none_or(|t| t.elapsed() >= CAP_LOG_EVERY) {
            tracing::warn!(
                max_connections = max,
                times = self.hits,
                "connection cap reached; new connections wait until one closes (--max-connections)"
            );
            self.last = Some(Instant::now());
            self.hits = 0;
        }
    }
}

async fn connection(
    stream: TcpStream,
    builder: Arc<auto::Builder<TokioExecutor>>,
    router: Router,
    limits: Arc<ConnectionLimits>,
    shutdown: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(TimedStream::new(stream, activity.clone(), &limits));
    let service = ConnService {
        router,
        activity,
        body_read_timeout: limits.body_read_timeout,
    };
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// What the socket wrapper needs to know about the requests on its
/// connection: shared with the service, updated once per request.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Requests begun so far: a new one ends the "reading a head" phase.
    begun: AtomicU64,
    /// When the last request ended, in nanoseconds after `opened`.
    last_end: AtomicU64,
    /// The connection was handed to a WebSocket (101 answered): what it
    /// carries from then on is not HTTP, so no head or idle timeout applies;
    /// the socket's owner keeps it alive with pings.
    upgraded: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            begun: AtomicU64::new(0),
            last_end: AtomicU64::new(0),
            upgraded: AtomicBool::new(false),
        }
    }

    fn idle_since(&self) -> Instant {
        self.opened + Duration::from_nanos(self.last_end.load(Ordering::Relaxed))
    }
}

/// Marks a request in progress for as long as its response future lives.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.last_end
            .store(a.opened.elapsed().as_nanos() as u64, Ordering::Relaxed);
        a.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The router as a hyper service: counts requests in progress for the idle
/// and header timeouts and puts the body read timeout on each body.
struct ConnService {
    router: Router,
    activity: Arc<Activity>,
    body_read_timeout: Duration,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = Tracked<axum::routing::future::RouteFuture<Infallible>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.activity.in_flight.fetch_add(1, Ordering::Relaxed);
        self.activity.begun.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight(self.activity.clone());
        let timeout = self.body_read_timeout;
        let req = req.map(|body| Body::new(TimedBody::new(body, timeout)));
        let inner = tower_service::Service::call(&mut self.router.clone(), req);
        Tracked { inner, guard }
    }
}

pin_project_lite::pin_project! {
    /// A response future that holds its request's [`InFlight`] mark and
    /// marks the connection upgraded when it answers 101.
    struct Tracked<F> {
        #[pin]
        inner: F,
        guard: InFlight,
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let out = ready!(this.inner.poll(cx));
        if let Ok(resp) = &out
            && resp.status() == axum::http::StatusCode::SWITCHING_PROTOCOLS
        {
            this.guard.0.upgraded.store(true, Ordering::Relaxed);
        }
        Poll::Ready(out)
    }
}

/// The socket, failing its reads with `TimedOut` when a client takes too
/// long between requests (idle timeout) or within a request head (header
/// read timeout). While a request is in progress nothing is timed here: the
/// handler may take its time, and the body has its own timeout.
struct TimedStream {
    inner: TcpStream,
    activity: Arc<Activity>,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    /// When the head being read began (its first bytes), and which request
    /// count it belongs to.
    head_started: Option<(Instant, u64)>,
    /// The HTTP/1 head being read, metered against the hard limits.
    meter: HeadMeter,
    /// A head past them: answered, then drained until this deadline.
    refusing: Option<Refusing>,
    timer: Pin<Box<Sleep>>,
    timer_at: Instant,
}

/// The answer to a head too large, and how much of it is written and of the
/// rest of the request read and dropped.
struct Refusing {
    answer: Vec<u8>,
    written: usize,
    shut: bool,
    drained: usize,
    until: Instant,
}

impl TimedStream {
    fn new(inner: TcpStream, activity: Arc<Activity>, limits: &ConnectionLimits) -> Self {
        let timer_at = activity.opened + limits.idle_timeout;
        Self {
            inner,
            activity,
            header_read_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
            head_started: None,
            meter: HeadMeter::default(),
            refusing: None,
            timer: Box::pin(tokio::time::sleep_until(timer_at)),
            timer_at,
        }
    }

    /// The deadline for the next bytes, and what missing it means.
    fn deadline(&mut self) -> Option<(Instant, &'static str)> {
        if self.activity.in_flight.load(Ordering::Relaxed) > 0 || self.activity.upgraded.load(Ordering::Relaxed) {
            return None;
        }
        let begun = self.activity.begun.load(Ordering::Relaxed);
        match self.head_started {
            Some((at, n)) if n == begun => Some((at + self.header_read_timeout, "header read timeout")),
            _ => Some((self.activity.idle_since() + self.idle_timeout, "idle timeout")),
        }
    }
}

impl TimedStream {
    /// Writes the refusal, then reads and drops what the client still sends
    /// (within the drain bounds); the error at the end closes the connection.
    fn poll_refusing(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let refused = || {
            Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head too large",
            )))
        };
        let Some(r) = self.refusing.as_mut() else {
            return refused();
        };
        if self.timer_at != r.until {
            self.timer_at = r.until;
            self.timer.as_mut().reset(r.until);
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            return refused();
        }
        while r.written < r.answer.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &r.answer[r.written..]) {
                Poll::Ready(Ok(0)) => return refused(),
                Poll::Ready(Ok(n)) => r.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        // The answer is complete: end our side, so the client reads to its
        // end at once, and keep reading what it still sends.
        if !r.shut {
            match Pin::new(&mut self.inner).poll_shutdown(cx) {
                Poll::Ready(_) => r.shut = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        let mut scratch = [0u8; 8192];
        while r.drained < crate::head::DRAIN_BYTES {
            let mut rest = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut rest) {
                Poll::Ready(Ok(())) if rest.filled().is_empty() => return refused(),
                Poll::Ready(Ok(())) => r.drained += rest.filled().len(),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        refused()
    }
}

impl AsyncRead for TimedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.refusing.is_some() {
            return self.poll_refusing(cx);
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let a = &self.activity;
                let reading_head = a.in_flight.load(Ordering::Relaxed) == 0 && !a.upgraded.load(Ordering::Relaxed);
                if buf.filled().len() > before && reading_head {
                    let begun = self.activity.begun.load(Ordering::Relaxed);
                    if self.head_started.is_none_or(|(_, n)| n != begun) {
                        self.head_started = Some((Instant::now(), begun));
                        self.meter.reset();
                    }
                    if let Some(why) = self.meter.feed(&buf.filled()[before..]) {
                        // hyper never sees this head; the connection answers it.
                        buf.set_filled(before);
                        self.refusing = Some(Refusing {
                            answer: crate::head::refusal(why),
                            written: 0,
                            shut: false,
                            drained: 0,
                            until: Instant::now() + crate::head::DRAIN_TIME,
                        });
                        return self.poll_refusing(cx);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let deadline = self.deadline();
                let at = match deadline {
                    Some((at, _)) => at,
                    // A request is in progress, so nothing is timed; but
                    // hyper may not read again once it ends, so the timer
                    // stays armed within an idle timeout to look again then.
                    None if self.timer_at > Instant::now() => self.timer_at,
                    None => Instant::now() + self.idle_timeout,
                };
                if at != self.timer_at {
                    self.timer_at = at;
                    self.timer.as_mut().reset(at);
                }
                if self.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                match deadline {
                    Some((_, what)) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what))),
                    None => {
                        // Re-armed; this poll registers the wake-up.
                        self.timer_at = Instant::now() + self.idle_timeout;
                        let at = self.timer_at;
                        self.timer.as_mut().reset(at);
                        let _ = self.timer.as_mut().poll(cx);
                        Poll::Pending
                    }
                }
            }
            other => other,
        }
    }
}

impl AsyncWrite for TimedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
