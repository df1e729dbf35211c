//! Sending a captured request on to the developer's server (`--forward`):
//! the same method, the path and query appended to the target URL, every
//! header but the hop-by-hop ones, and the body byte for byte, so signatures
//! still verify there. No proxies, no redirects followed.

use std::time::{Duration, Instant};

use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use bytes::{Bytes, BytesMut};
use url::Url;

use crate::record::{FORWARD_BODY_SHOWN, ForwardResult, Incoming};

#[derive(Debug, thiserror::Error)]
pub enum ForwardSetupError {
    #[error("--forward {0:?} is not a URL: {1}")]
    Url(String, url::ParseError),
    #[error("--forward must be an http:// or https:// URL, not {0:?}")]
    Scheme(String),
    #[error("building the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The target's answer, to pass back to whoever sent the request.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

#[derive(Clone)]
pub struct Forwarder {
    client: reqwest::Client,
    target: Url,
    max_body: usize,
}

/// Headers that belong to one connection, not to the request; `host` and
/// `content-length` are set again for the new connection and body.
fn is_transport_header(name: &HeaderName) -> bool {
    [
        header::CONNECTION,
        header::HOST,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
}

impl Forwarder {
    /// `max_body` bounds the target's answer that is read.
    pub fn new(target: &str, timeout: Duration, max_body: usize) -> Result<Self, ForwardSetupError> {
        let url = Url::parse(target).map_err(|e| ForwardSetupError::Url(target.to_owned(), e))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ForwardSetupError::Scheme(target.to_owned()));
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .build()?;
        Ok(Self {
            client,
            target: url,
            max_body,
        })
    }

    pub fn target(&self) -> &Url {
        &self.target
    }

    /// The target's path with the request's path after it (a request to `/`
    /// goes to the target URL itself), and the request's query.
    pub fn url_for(&self, path: &str, query: &str) -> Url {
        let mut url = self.target.clone();
        if path != "/" {
            let joined = format!("{}{path}", self.target.path().trim_end_matches('/'));
            url.set_path(&joined);
        }
        match (self.target.query(), query.is_empty()) {
            (_, true) => {}
            (Some(own), false) => url.set_query(Some(&format!("{own}&{query}"))),
            (None, false) => url.set_query(Some(query)),
        }
        url
    }

    /// Sends `req` to the target: what it answered, for the record and (when
    /// an answer came) for the original sender.
    pub async fn send(&self, req: &Incoming) -> (ForwardResult, Option<Answer>) {
        let url = self.url_for(&req.path, &req.query);
        let at = crate::now_rfc3339();
        let started = Instant::now();
        let outcome = self.exchange(req, url.clone()).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        match outcome {
            Ok(answer) => {
                let shown = &answer.body[..answer.body.len().min(FORWARD_BODY_SHOWN)];
                let result = ForwardResult {
                    url: url.to_string(),
                    at,
                    duration_ms,
                    status: Some(answer.status.as_u16()),
                    headers: answer
                        .headers
                        .iter()
                        .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                        .collect(),
                    body: String::from_utf8_lossy(shown).into_owned(),
                    error: None,
                };
                (result, Some(answer))
            }
            Err(error) => {
                let result = ForwardResult {
                    url: url.to_string(),
                    at,
                    duration_ms,
                    status: None,
                    headers: Vec::new(),
                    body: String::new(),
                    error: Some(error),
                };
                (result, None)
            }
        }
    }

    async fn exchange(&self, req: &Incoming, url: Url) -> Result<Answer, String> {
        let method = Method::from_bytes(req.method.as_bytes()).map_err(|e| format!("method: {e}"))?;
        let mut builder = self.client.request(method, url);
        for (name, value) in req.headers.iter().filter(|(n, _)| !is_transport_header(n)) {
            builder = builder.header(name, value);
        }
        let mut resp = builder.body(req.body.clone()).send().await.map_err(|e| describe(&e))?;
        let status = resp.status();
        let headers = resp
            .headers()
            .iter()
            .filter(|(n, _)| !is_transport_header(n))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        let mut body = BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e))? {
            if body.len() + chunk.len() > self.max_body {
                return Err(format!("the target answered more than {} bytes", self.max_body));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            headers,
            body: body.freeze(),
        })
    }
}

/// reqwest's message with its causes: "error sending request" alone does
/// not tell a connection refused from a timeout.
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarder(target: &str) -> Forwarder {
        Forwarder::new(target, Duration::from_secs(1), 1024).unwrap()
    }

    #[test]
    fn paths_and_queries_join_the_target() {
        let f = forwarder("http://localhost:3000/hooks/");
        assert_eq!(f.url_for("/", "").as_str(), "http://localhost:3000/hooks/");
        assert_eq!(
            f.url_for("/stripe", "a=1").as_str(),
            "http://localhost:3000/hooks/stripe?a=1"
        );
        let f = forwarder("http://localhost:3000/in?k=v");
        assert_eq!(
            f.url_for("/x/y", "a=1").as_str(),
            "http://localhost:3000/in/x/y?k=v&a=1"
        );
    }

    #[test]
    fn a_bad_target_says_what_is_wrong() {
        assert!(matches!(
            Forwarder::new("localhost:3000", Duration::from_secs(1), 1),
            Err(ForwardSetupError::Scheme(_))
        ));
        assert!(matches!(
            Forwarder::new("not a url", Duration::from_secs(1), 1),
            Err(ForwardSetupError::Url(..))
        ));
    }
}
