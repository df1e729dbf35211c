//! The one way Herald makes outbound requests. Every delivery goes through a
//! [`Transport`]: one pooled keep-alive client (HTTP/1.1 and h2), no proxy
//! from the environment, no redirects, and the SSRF guard applied both to
//! addresses that DNS returns and to IP literals in URLs (which skip DNS).
//!
//! It is hyper-util's pooled client with a rustls connector rather than
//! reqwest: on this path reqwest adds redirect and retry layers Herald turns
//! off anyway, re-parses the URL and moves large futures, which measured
//! about 6 µs of CPU per request (a third more than the client underneath).
//! See `docs/adr/0002-transport-on-hyper-util.md`.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_core::model::{AttemptErrorKind, RESPONSE_BODY_LIMIT};
use herald_core::ssrf::PrivateTargets;
use http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT};
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// How long a connection may take to establish, whatever the endpoint's timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle pooled connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("could not set up TLS certificate verification: {0}")]
    Tls(std::io::Error),
    #[error("the user agent {0:?} is not a valid header value")]
    UserAgent(String),
}

/// A request the engine wants sent.
pub struct Outbound<'a> {
    pub uri: &'a Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub timeout: Duration,
}

/// What came back, or why nothing did.
#[derive(Debug, Clone)]
pub struct Reply {
    /// 0 when no response arrived.
    pub status: u16,
    /// The first [`RESPONSE_BODY_LIMIT`] bytes of the body, or the error text.
    pub body: Bytes,
    pub duration: Duration,
    pub error: Option<AttemptErrorKind>,
    pub retry_after: Option<String>,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        self.error.is_none() && (200..300).contains(&self.status)
    }

    /// No response: why, in the words someone debugging the endpoint needs.
    pub fn failed(kind: AttemptErrorKind, text: String, duration: Duration) -> Self {
        Self {
            status: 0,
            body: Bytes::from(text),
            duration,
            error: Some(kind),
            retry_after: None,
        }
    }
}

/// An endpoint URL in the form the client sends: parsed and normalized
/// (punycode host, percent-encoded path) once per endpoint, not per attempt.
pub fn wire_uri(url: &str) -> Result<Uri, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
    Uri::try_from(parsed.as_str()).map_err(|e| format!("invalid URL: {e}"))
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector<GuardedResolver>>;

pub struct Transport {
    client: Client<Connector, Full<Bytes>>,
    policy: Arc<PrivateTargets>,
    require_https: bool,
    user_agent: HeaderValue,
}

/// Why the resolver gave no address.
#[derive(Debug, thiserror::Error)]
enum ResolveError {
    /// Every address of the host is off limits.
    #[error("{0} resolves only to addresses that deliveries may not reach")]
    Blocked(String),
    #[error("could not resolve {0}: {1}")]
    Dns(String, std::io::Error),
}

/// DNS through the system resolver, keeping only addresses the policy permits.
#[derive(Clone)]
struct GuardedResolver {
    policy: Arc<PrivateTargets>,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = ResolveError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ResolveError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ResolveError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| ResolveError::Dns(host.clone(), e))?
                .filter(|a| policy.permits(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(ResolveError::Blocked(host));
            }
            Ok(addrs.into_iter())
        })
    }
}

impl Transport {
    pub fn new(policy: PrivateTargets, user_agent: &str, max_idle_per_host: usize) -> Result<Self, TransportError> {
        let policy = Arc::new(policy);
        let mut http = HttpConnector::new_with_resolver(GuardedResolver { policy: policy.clone() });
        // The TLS layer above decides the scheme; this one only connects.
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_platform_verifier(rustls::crypto::ring::default_provider())
            .map_err(TransportError::Tls)?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .build(https);
        Ok(Self {
            client,
            policy,
            require_https: false,
            user_agent: HeaderValue::from_str(user_agent)
                .map_err(|_| TransportError::UserAgent(user_agent.to_owned()))?,
        })
    }

    /// Refuses every `http://` URL from now on (`--require-https`).
    pub fn require_https(mut self, on: bool) -> Self {
        self.require_https = on;
        self
    }

    /// Sends one POST and reads at most [`RESPONSE_BODY_LIMIT`] bytes of the
    /// answer, all within `req.timeout`.
    pub async fn post(&self, req: Outbound<'_>) -> Reply {
        let started = Instant::now();
        let fail = |kind: AttemptErrorKind, text: String| Reply::failed(kind, text, started.elapsed());
        // Also checked when an endpoint is saved; this covers endpoints
        // saved before the server required it.
        if self.require_https && req.uri.scheme() != Some(&http::uri::Scheme::HTTPS) {
            return fail(
                AttemptErrorKind::Blocked,
                "this server requires https:// endpoint URLs".to_owned(),
            );
        }
        // IP literals never reach the resolver, so they are checked here.
        if let Some(ip) = literal_ip(req.uri)
            && !self.policy.permits(ip)
        {
            return fail(
                AttemptErrorKind::Blocked,
                format!("{ip} is an address deliveries may not reach"),
            );
        }
        let mut request = match Request::post(req.uri.clone()).body(Full::new(req.body)) {
            Ok(r) => r,
            Err(e) => return fail(AttemptErrorKind::Other, format!("could not build the request: {e}")),
        };
        *request.headers_mut() = req.headers;
        request
            .headers_mut()
            .entry(USER_AGENT)
            .or_insert_with(|| self.user_agent.clone());

        let deadline = tokio::time::Instant::now() + req.timeout;
        let resp = match tokio::time::timeout_at(deadline, self.client.request(request)).await {
            Err(_) => return fail(AttemptErrorKind::Timeout, timeout_text(req.timeout)),
            Ok(Err(e)) => return fail(classify(&e), error_text(&e)),
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut incoming = resp.into_body();
        let mut body = Vec::new();
        let mut error = None;
        // Read only what we keep; a larger body is abandoned with its connection.
        while body.len() < RESPONSE_BODY_LIMIT {
            match tokio::time::timeout_at(deadline, incoming.frame()).await {
                Err(_) => {
                    error = Some(AttemptErrorKind::Timeout);
                    break;
                }
                Ok(None) => break,
                Ok(Some(Err(_))) => {
                    error = Some(AttemptErrorKind::Other);
                    break;
                }
                Ok(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        body.extend_from_slice(data);
                    }
                }
            }
        }
        body.truncate(RESPONSE_BODY_LIMIT);
        let error = error.or(if (200..300).contains(&status) {
            None
        } else {
            Some(AttemptErrorKind::Status)
        });
        Reply {
            status,
            body: Bytes::from(body),
            duration: started.elapsed(),
            error,
            retry_after,
        }
    }
}

fn timeout_text(timeout: Duration) -> String {
    format!("no response within {:.1} s", timeout.as_secs_f64())
}

fn literal_ip(uri: &Uri) -> Option<IpAddr> {
    let host = uri.host()?;
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// Walks an error's causes, including errors wrapped inside `io::Error`
/// (whose `source()` skips the wrapped error itself).
fn causes<'a>(e: &'a (dyn std::error::Error + 'static)) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    let mut next = Some(e);
    std::iter::from_fn(move || {
        let current = next?;
        next = match current.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => current.source(),
        };
        Some(current)
    })
}

fn classify(e: &hyper_util::client::legacy::Error) -> AttemptErrorKind {
    for err in causes(e) {
        match err.downcast_ref::<ResolveError>() {
            Some(ResolveError::Blocked(_)) => return AttemptErrorKind::Blocked,
            Some(ResolveError::Dns(..)) => return AttemptErrorKind::Dns,
            None => {}
        }
        if err.is::<rustls::Error>() {
            return AttemptErrorKind::Tls;
        }
    }
    if e.is_connect() {
        AttemptErrorKind::Connect
    } else {
        AttemptErrorKind::Other
    }
}

/// The error with its causes, which is what someone debugging an endpoint needs.
fn error_text(e: &hyper_util::client::legacy::Error) -> String {
    let mut text = String::new();
    for err in causes(e) {
        let part = err.to_string();
        // Wrappers often repeat their cause's text.
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// Builds a header map from static names and computed values, skipping any
/// value that is not a valid header (user-supplied custom headers).
pub fn header_map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            map.insert(n, v);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn transport(policy: PrivateTargets) -> Transport {
        Transport::new(policy, "Herald/test", 4).unwrap()
    }

    fn outbound(uri: &Uri) -> Outbound<'_> {
        Outbound {
            uri,
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"{}"),
            timeout: Duration::from_secs(5),
        }
    }

    /// A loopback port with nothing listening on it.
    async fn closed_port() -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    }

    #[test]
    fn urls_are_normalized_for_the_wire() {
        assert_eq!(
            wire_uri("http://Bücher.example/a b?x=1").unwrap().to_string(),
            "http://xn--bcher-kva.example/a%20b?x=1"
        );
        assert_eq!(
            literal_ip(&wire_uri("http://[::ffff:127.0.0.1]:80/").unwrap()),
            Some("::ffff:7f00:1".parse().unwrap())
        );
        assert!(wire_uri("not a url").is_err());
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let uri = wire_uri(&format!("http://127.0.0.1:{}/", closed_port().await)).unwrap();
        let reply = transport(PrivateTargets::AllowAll).post(outbound(&uri)).await;
        assert_eq!(reply.error, Some(AttemptErrorKind::Connect), "{reply:?}");
        assert_eq!(reply.status, 0);
    }

    #[tokio::test]
    async fn names_that_resolve_only_to_private_addresses_are_blocked() {
        let uri = wire_uri(&format!("http://localhost:{}/", closed_port().await)).unwrap();
        let reply = transport(PrivateTargets::Deny).post(outbound(&uri)).await;
        assert_eq!(reply.error, Some(AttemptErrorKind::Blocked), "{reply:?}");
        let text = String::from_utf8_lossy(&reply.body).into_owned();
        assert!(text.contains("localhost"), "{text}");
    }

    /// TLS spoken to a plain-HTTP server fails the handshake.
    #[tokio::test]
    async fn a_failed_handshake_is_a_tls_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
        });
        let uri = wire_uri(&format!("https://127.0.0.1:{port}/")).unwrap();
        let reply = transport(PrivateTargets::AllowAll).post(outbound(&uri)).await;
        assert_eq!(reply.error, Some(AttemptErrorKind::Tls), "{reply:?}");
    }
}
