//! The one way Herald makes outbound requests. Every delivery goes through a
//! [`Transport`]: one pooled keep-alive client (HTTP/1.1 and h2), no proxy
//! from the environment, no redirects, and the SSRF guard applied both to
//! addresses that DNS returns and to IP literals in URLs (which skip DNS).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_core::model::{AttemptErrorKind, RESPONSE_BODY_LIMIT};
use herald_core::ssrf::PrivateTargets;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

/// How long a connection may take to establish, whatever the endpoint's timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("could not build the HTTP client: {0}")]
    Build(#[from] reqwest::Error),
}

/// A request the engine wants sent.
pub struct Outbound<'a> {
    pub url: &'a str,
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
}

pub struct Transport {
    client: reqwest::Client,
    policy: Arc<PrivateTargets>,
}

/// Raised by the resolver when every address of a host is off limits.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolves only to addresses that deliveries may not reach")]
struct Blocked(String);

/// Raised by the resolver when the name does not resolve.
#[derive(Debug, thiserror::Error)]
#[error("could not resolve {0}: {1}")]
struct DnsFailure(String, std::io::Error);

struct GuardedResolver {
    policy: Arc<PrivateTargets>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| DnsFailure(host.clone(), e))?
                .filter(|a| policy.permits(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(Blocked(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

impl Transport {
    pub fn new(policy: PrivateTargets, user_agent: &str, max_idle_per_host: usize) -> Result<Self, TransportError> {
        // reqwest is built without a bundled crypto provider; ring is ours.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(GuardedResolver { policy: policy.clone() })
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_max_idle_per_host(max_idle_per_host)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(user_agent)
            .build()?;
        Ok(Self { client, policy })
    }

    /// Sends one POST and reads at most [`RESPONSE_BODY_LIMIT`] bytes of the answer.
    pub async fn post(&self, req: Outbound<'_>) -> Reply {
        let started = Instant::now();
        let fail = |kind: AttemptErrorKind, text: String| Reply {
            status: 0,
            body: Bytes::from(text),
            duration: started.elapsed(),
            error: Some(kind),
            retry_after: None,
        };
        let url = match reqwest::Url::parse(req.url) {
            Ok(u) => u,
            Err(e) => return fail(AttemptErrorKind::Other, format!("invalid URL: {e}")),
        };
        // IP literals never reach the resolver, so they are checked here.
        if let Some(ip) = literal_ip(&url)
            && !self.policy.permits(ip)
        {
            return fail(
                AttemptErrorKind::Blocked,
                format!("{ip} is an address deliveries may not reach"),
            );
        }
        let sent = self
            .client
            .post(url)
            .headers(req.headers)
            .body(req.body)
            .timeout(req.timeout)
            .send()
            .await;
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let kind = classify(&e);
                return fail(kind, error_text(&e));
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        let mut error = None;
        // Read only what we keep; a larger body is abandoned with its connection.
        while body.len() < RESPONSE_BODY_LIMIT {
            match resp.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    if e.is_timeout() {
                        error = Some(AttemptErrorKind::Timeout);
                    }
                    break;
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

fn literal_ip(url: &reqwest::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

fn classify(e: &reqwest::Error) -> AttemptErrorKind {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<Blocked>() {
            return AttemptErrorKind::Blocked;
        }
        if err.is::<DnsFailure>() {
            return AttemptErrorKind::Dns;
        }
        if err.is::<rustls::Error>() {
            return AttemptErrorKind::Tls;
        }
        source = err.source();
    }
    if e.is_timeout() {
        AttemptErrorKind::Timeout
    } else if e.is_connect() {
        AttemptErrorKind::Connect
    } else {
        AttemptErrorKind::Other
    }
}

/// The error with its causes, which is what someone debugging an endpoint needs.
fn error_text(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        text.push_str(": ");
        text.push_str(&err.to_string());
        source = err.source();
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
