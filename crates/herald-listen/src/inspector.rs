//! The one path every request takes, whether it came to the listener's port
//! or through a relay channel: verify, store, forward, record the answer,
//! print its line, tell the page — and answer the sender.
//!
//! Without `--forward` the sender gets `--status` (default 200) at once.
//! With `--forward`, the sender gets the target's answer (status, headers,
//! body), or a 502 when the target could not be reached; giving `--status`
//! as well answers at once and forwards in the background.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use bytes::Bytes;
use tokio::sync::broadcast;

use crate::forward::{Answer, Forwarder};
use crate::history::{History, HistoryError};
use crate::record::{Incoming, Stored, Verification};
use crate::terminal::Terminal;
use crate::verifier::Verifier;

pub struct Inspector {
    pub(crate) history: History,
    verifier: Option<Verifier>,
    forwarder: Option<Forwarder>,
    /// `Some`: answer at once with it; `None`: answer with the target's answer.
    status: Option<StatusCode>,
    terminal: Terminal,
    /// Each new or updated request, as its JSON, for the page's live list.
    live: broadcast::Sender<Arc<str>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no stored request has id {0}")]
    NotFound(i64),
    #[error("there is no target to replay to: start herald listen with --forward URL")]
    NoTarget,
    #[error(transparent)]
    History(#[from] HistoryError),
}

impl Inspector {
    pub fn new(
        history: History,
        verifier: Option<Verifier>,
        forwarder: Option<Forwarder>,
        status: Option<StatusCode>,
        terminal: Terminal,
    ) -> Self {
        let (live, _) = broadcast::channel(256);
        Self {
            history,
            verifier,
            forwarder,
            status,
            terminal,
            live,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.live.subscribe()
    }

    pub fn forward_target(&self) -> Option<String> {
        self.forwarder.as_ref().map(|f| f.target().to_string())
    }

    pub fn terminal(&self) -> Terminal {
        self.terminal
    }

    pub fn verifies(&self) -> bool {
        self.verifier.is_some()
    }

    pub async fn handle(self: &Arc<Self>, request: Incoming) -> Result<Answer, HistoryError> {
        let verification = match &self.verifier {
            None => Verification::Unchecked,
            Some(verifier) => match verifier.verify(&header_map(&request), &request.body) {
                Ok(_) => Verification::Verified,
                Err(e) => Verification::Failed(e.to_string()),
            },
        };
        let stored = self.history.insert(request, verification, crate::now_rfc3339()).await?;
        self.publish(&stored);
        let Some(forwarder) = self.forwarder.clone() else {
            self.terminal.print(&stored, false);
            return Ok(plain(self.status.unwrap_or(StatusCode::OK)));
        };
        if let Some(status) = self.status {
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(e) = this.forward(&forwarder, stored, false).await {
                    tracing::error!(error = %e, "recording a forward");
                }
            });
            return Ok(plain(status));
        }
        let answer = self.forward(&forwarder, stored, false).await?;
        Ok(answer)
    }

    /// Sends a stored request to the target again, exactly as it arrived.
    pub async fn replay(self: &Arc<Self>, id: i64) -> Result<Stored, ReplayError> {
        let forwarder = self.forwarder.clone().ok_or(ReplayError::NoTarget)?;
        let stored = self.history.get(id).await?.ok_or(ReplayError::NotFound(id))?;
        self.forward(&forwarder, stored, true).await?;
        self.history.get(id).await?.ok_or(ReplayError::NotFound(id))
    }

    /// Forwards, records the result, prints the line and tells the page;
    /// the answer for the sender (502 JSON when none came).
    async fn forward(&self, forwarder: &Forwarder, mut stored: Stored, replay: bool) -> Result<Answer, HistoryError> {
        let (result, answer) = forwarder.send(&stored.request).await;
        self.history.set_forward(stored.id, result.clone(), replay).await?;
        let failure = result.error.clone();
        stored.forward = Some(result);
        stored.replays += u32::from(replay);
        self.terminal.print(&stored, replay);
        self.publish(&stored);
        Ok(answer.unwrap_or_else(|| {
            json_answer(
                StatusCode::BAD_GATEWAY,
                "forward_failed",
                &failure.unwrap_or_else(|| "no answer".into()),
            )
        }))
    }

    fn publish(&self, stored: &Stored) {
        match serde_json::to_string(&stored.to_json()) {
            // No page open means no receivers: nothing to do.
            Ok(json) => {
                let _ = self.live.send(json.into());
            }
            Err(e) => tracing::error!(error = %e, "serializing a request for the page"),
        }
    }
}

fn header_map(request: &Incoming) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(request.headers.len());
    for (name, value) in &request.headers {
        map.append(name.clone(), value.clone());
    }
    map
}

fn plain(status: StatusCode) -> Answer {
    Answer {
        status,
        headers: Vec::new(),
        body: Bytes::new(),
    }
}

/// A `{"code", "detail"}` answer, the shape of every error the listener sends.
pub(crate) fn json_answer(status: StatusCode, code: &str, detail: &str) -> Answer {
    let body = serde_json::json!({"code": code, "detail": detail}).to_string();
    Answer {
        status,
        headers: vec![(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body: body.into(),
    }
}
