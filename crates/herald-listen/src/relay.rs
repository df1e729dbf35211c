//! `herald listen --relay BASE_URL --token T --channel ID`: connects to the
//! server's relay channel over a WebSocket and handles each request that
//! arrives there like a local one (stored, verified, forwarded); the answer
//! goes back in a response frame, and the relay gives it to the sender.
//!
//! A lost connection is retried with backoff (0.5 s doubling to 10 s).
//! Being refused — a wrong token (401), an unknown channel (404) — or
//! replaced by another listener on the channel ends the listener with an
//! error: retrying would not help, and two listeners would fight.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, StatusCode};
use futures_util::{SinkExt as _, StreamExt as _};
use herald_core::relay::{CLOSE_REPLACED, RelayFrame, decode_body, encode_body};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

use crate::forward::Answer;
use crate::inspector::{Inspector, json_answer};
use crate::record::{Incoming, Source};

const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub base_url: String,
    pub token: String,
    pub channel: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("--relay {0:?} must be an http:// or https:// URL")]
    Url(String),
    #[error("the relay refused the listener: {status} {detail}")]
    Refused { status: u16, detail: String },
    #[error("another listener connected to relay channel {0}; this one stops")]
    Replaced(String),
}

impl RelayConfig {
    /// `ws(s)://host/api/v1/relay/{channel}/listen` for the base URL.
    pub fn socket_url(&self) -> Result<String, RelayError> {
        let base = self.base_url.trim_end_matches('/');
        let rest = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            return Err(RelayError::Url(self.base_url.clone()));
        };
        Ok(format!("{rest}/api/v1/relay/{}/listen", self.channel))
    }

    /// Where senders send, for the start-up line.
    pub fn public_url(&self) -> String {
        format!("{}/relay/{}", self.base_url.trim_end_matches('/'), self.channel)
    }
}

/// Stays connected to the channel until `shutdown`, or until refused.
pub async fn run(
    inspector: Arc<Inspector>,
    config: RelayConfig,
    shutdown: CancellationToken,
) -> Result<(), RelayError> {
    let url = config.socket_url()?;
    // wss:// goes through rustls; ring is the one provider in this build.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut backoff = BACKOFF_MIN;
    loop {
        let attempt = tokio::select! {
            attempt = connect(&url, &config.token) => attempt,
            () = shutdown.cancelled() => return Ok(()),
        };
        match attempt {
            Ok(socket) => {
                backoff = BACKOFF_MIN;
                println!("relay connected: {}", config.public_url());
                match session(socket, &inspector, &shutdown).await {
                    Ended::Shutdown => return Ok(()),
                    Ended::Replaced => return Err(RelayError::Replaced(config.channel.clone())),
                    Ended::Lost(why) => println!("relay connection lost ({why}); reconnecting"),
                }
            }
            Err(Connect::Refused { status, detail }) => return Err(RelayError::Refused { status, detail }),
            Err(Connect::Failed(why)) => {
                println!("relay unreachable ({why}); retrying in {} ms", backoff.as_millis());
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => return Ok(()),
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

enum Connect {
    Refused { status: u16, detail: String },
    Failed(String),
}

async fn connect(url: &str, token: &str) -> Result<Socket, Connect> {
    let mut request = url.into_client_request().map_err(|e| Connect::Failed(e.to_string()))?;
    let auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| Connect::Refused {
        status: 0,
        detail: "the token is not a valid header value".into(),
    })?;
    request.headers_mut().insert("authorization", auth);
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(resp)) if resp.status().is_client_error() => Err(Connect::Refused {
            status: resp.status().as_u16(),
            detail: resp
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
        }),
        Err(e) => Err(Connect::Failed(e.to_string())),
    }
}

enum Ended {
    Shutdown,
    Replaced,
    Lost(String),
}

async fn session(socket: Socket, inspector: &Arc<Inspector>, shutdown: &CancellationToken) -> Ended {
    let (mut sink, mut stream) = socket.split();
    // Answers come from tasks, one per request, so a slow target does not
    // hold up the requests behind it.
    let (answers_tx, mut answers) = mpsc::channel::<String>(64);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                let _ = sink.send(Message::Close(None)).await;
                return Ended::Shutdown;
            }
            Some(text) = answers.recv() => {
                if let Err(e) = sink.send(Message::Text(text.into())).await {
                    return Ended::Lost(e.to_string());
                }
            }
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let inspector = inspector.clone();
                    let tx = answers_tx.clone();
                    tokio::spawn(async move {
                        if let Some(answer) = handle_frame(&inspector, text.as_str()).await {
                            let _ = tx.send(answer).await;
                        }
                    });
                }
                Some(Ok(Message::Close(frame))) => {
                    if frame.is_some_and(|f| f.code == CloseCode::from(CLOSE_REPLACED)) {
                        return Ended::Replaced;
                    }
                    return Ended::Lost("closed by the server".into());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Ended::Lost(e.to_string()),
                None => return Ended::Lost("the connection ended".into()),
            }
        }
    }
}

/// A request frame, handled; the JSON of its response frame.
async fn handle_frame(inspector: &Arc<Inspector>, text: &str) -> Option<String> {
    let frame = match serde_json::from_str::<RelayFrame>(text) {
        Ok(frame) => frame,
        Err(e) => {
            tracing::warn!(error = %e, "the relay sent a frame that is not one");
            return None;
        }
    };
    let RelayFrame::Request {
        id,
        method,
        path,
        query,
        headers,
        body,
        ..
    } = frame
    else {
        tracing::warn!("the relay sent a response frame; ignored");
        return None;
    };
    let answer = match incoming(method, path, query, headers, &body) {
        Ok(request) => match inspector.handle(request).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::error!(error = %e, "storing a relayed request");
                json_answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "history_failed",
                    "the request could not be stored",
                )
            }
        },
        Err(what) => json_answer(StatusCode::BAD_GATEWAY, "relay_bad_request", what),
    };
    serde_json::to_string(&response_frame(id, answer)).ok()
}

fn incoming(
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: &str,
) -> Result<Incoming, &'static str> {
    let headers = headers
        .into_iter()
        .map(|(n, v)| {
            let name = HeaderName::from_bytes(n.as_bytes()).map_err(|_| "a header name is malformed")?;
            let value = HeaderValue::from_str(&v).map_err(|_| "a header value is malformed")?;
            Ok((name, value))
        })
        .collect::<Result<Vec<_>, &'static str>>()?;
    let body = decode_body(body).map_err(|_| "the body is not base64")?;
    Ok(Incoming {
        method,
        path,
        query,
        headers,
        body: body.into(),
        source: Source::Relay,
    })
}

fn response_frame(id: u64, answer: Answer) -> RelayFrame {
    let mut headers = Vec::with_capacity(answer.headers.len());
    for (name, value) in &answer.headers {
        let Ok(text) = std::str::from_utf8(value.as_bytes()) else {
            let detail = format!("the target's {name} header is not text; the relay carries text headers only");
            return response_frame(id, json_answer(StatusCode::BAD_GATEWAY, "relay_bad_answer", &detail));
        };
        headers.push((name.to_string(), text.to_owned()));
    }
    RelayFrame::Response {
        id,
        status: answer.status.as_u16(),
        headers,
        body: encode_body(&answer.body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_urls_follow_the_base_url_scheme() {
        let config = |base: &str| RelayConfig {
            base_url: base.into(),
            token: "t".into(),
            channel: "rly_x".into(),
        };
        assert_eq!(
            config("https://relay.example/").socket_url().unwrap(),
            "wss://relay.example/api/v1/relay/rly_x/listen"
        );
        assert_eq!(
            config("http://127.0.0.1:8071").socket_url().unwrap(),
            "ws://127.0.0.1:8071/api/v1/relay/rly_x/listen"
        );
        assert!(matches!(config("ftp://x").socket_url(), Err(RelayError::Url(_))));
        assert_eq!(config("http://h/").public_url(), "http://h/relay/rly_x");
    }
}
