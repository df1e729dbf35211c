//! Change events over `LISTEN/NOTIFY`: a change is announced with
//! `pg_notify` in the transaction that makes it, so every node hears it
//! when, and only if, it commits, and in commit order. Each node keeps one
//! connection listening, outside the pool, and turns notifications back
//! into the store's change feed (its own included: a node hears its own
//! changes the same way as everyone else's). When that connection is lost,
//! it reconnects with backoff and announces [`Change::Missed`], since
//! whatever was sent meanwhile is gone.

use std::time::Duration;

use futures_util::StreamExt;
use herald_core::{AppId, EndpointId};
use tokio::sync::broadcast;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

use crate::{Change, Result, StoreError};

/// The notification channel every node listens on.
pub(crate) const CHANNEL: &str = "herald_change";

/// Announces `change` to every node once the transaction `tx` commits.
pub(crate) async fn announce(tx: &impl deadpool_postgres::GenericClient, change: &Change) -> Result<()> {
    let payload = encode(change);
    tx.execute("SELECT pg_notify('herald_change', $1)", &[&payload]).await?;
    Ok(())
}

/// `kind app [endpoint]`, separated by spaces: ids never contain one.
fn encode(change: &Change) -> String {
    match change {
        Change::EndpointUpdated { app_id, endpoint_id } => format!("endpoint_updated {app_id} {endpoint_id}"),
        Change::EndpointDeleted { app_id, endpoint_id } => format!("endpoint_deleted {app_id} {endpoint_id}"),
        Change::AppDeleted { app_id } => format!("app_deleted {app_id}"),
        Change::Due => "due".to_owned(),
        Change::Missed => "missed".to_owned(),
    }
}

fn decode(payload: &str) -> Option<Change> {
    let mut parts = payload.split(' ');
    let kind = parts.next()?;
    let mut next_id = || parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
    let change = match kind {
        "endpoint_updated" => Change::EndpointUpdated {
            app_id: AppId::from_trusted(next_id()?),
            endpoint_id: EndpointId::from_trusted(next_id()?),
        },
        "endpoint_deleted" => Change::EndpointDeleted {
            app_id: AppId::from_trusted(next_id()?),
            endpoint_id: EndpointId::from_trusted(next_id()?),
        },
        "app_deleted" => Change::AppDeleted {
            app_id: AppId::from_trusted(next_id()?),
        },
        "due" => Change::Due,
        "missed" => Change::Missed,
        _ => return None,
    };
    Some(change)
}

/// The node's listening connection, running until stopped.
pub(crate) struct Listener {
    stop: CancellationToken,
}

impl Listener {
    /// Connects and starts listening before returning, so that no change
    /// committed after `open` returns can be missed.
    pub async fn spawn(config: tokio_postgres::Config, feed: broadcast::Sender<Change>) -> Result<Self> {
        let stop = CancellationToken::new();
        let first = listen(&config).await?;
        tokio::spawn(run(config, feed, first, stop.clone()));
        Ok(Self { stop })
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A connection that has run `LISTEN`: what it receives, and the client
/// that keeps it open (dropping the client would close the connection).
struct Notifications {
    _client: tokio_postgres::Client,
    messages: futures_util::stream::BoxStream<'static, std::result::Result<AsyncMessage, tokio_postgres::Error>>,
    /// What arrived while `LISTEN` was being answered.
    early: Vec<AsyncMessage>,
}

impl Notifications {
    /// The next message; `None` when the connection has ended.
    async fn next(&mut self) -> Option<std::result::Result<AsyncMessage, tokio_postgres::Error>> {
        if !self.early.is_empty() {
            return Some(Ok(self.early.remove(0)));
        }
        self.messages.next().await
    }
}

async fn listen(config: &tokio_postgres::Config) -> Result<Notifications> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx)).boxed();
    let mut early = Vec::new();
    {
        // The connection makes progress only while polled: poll it
        // alongside the LISTEN so that the command's answer can arrive.
        let sql = format!("LISTEN {CHANNEL}");
        let listening = client.batch_execute(&sql);
        tokio::pin!(listening);
        loop {
            tokio::select! {
                done = &mut listening => { done?; break; }
                m = messages.next() => match m {
                    Some(m) => early.push(m?),
                    None => return Err(StoreError::Unavailable("the listening connection closed".into())),
                },
            }
        }
    }
    Ok(Notifications {
        _client: client,
        messages,
        early,
    })
}

async fn run(
    config: tokio_postgres::Config,
    feed: broadcast::Sender<Change>,
    mut stream: Notifications,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        loop {
            let message = tokio::select! {
                m = stream.next() => m,
                _ = stop.cancelled() => return,
            };
            match message {
                Some(Ok(AsyncMessage::Notification(n))) => match decode(n.payload()) {
                    Some(change) => {
                        let _ = feed.send(change);
                    }
                    None => tracing::warn!(payload = n.payload(), "ignoring an unknown change notification"),
                },
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "the change listener's connection failed; reconnecting");
                    break;
                }
                None => {
                    tracing::warn!("the change listener's connection closed; reconnecting");
                    break;
                }
            }
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.cancelled() => return,
            }
            match listen(&config).await {
                Ok(s) => {
                    stream = s;
                    backoff = Duration::from_millis(100);
                    let _ = feed.send(Change::Missed);
                    tracing::info!("the change listener reconnected");
                    break;
                }
                Err(e) => {
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    tracing::warn!(error = %e, "the change listener cannot reconnect yet");
                }
            }
        }
    }
}
