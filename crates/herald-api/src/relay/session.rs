//! One connected listener: frames from the hub go out on its socket, its
//! answers come back to whoever waits for them. A ping every
//! [`PING_EVERY`] keeps idle connections open through NATs and proxies.
//! When the socket ends, every sender still waiting gets a 502 (their
//! answer senders are dropped with the waiting map).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt as _, StreamExt as _};
use herald_core::relay::{CLOSE_REPLACED, RelayFrame};

use super::RelayHub;
use super::hub::lock_waiting;

const PING_EVERY: Duration = Duration::from_secs(20);

pub(crate) async fn serve_listener(hub: Arc<RelayHub>, channel: String, socket: WebSocket) {
    let mut attachment = hub.attach(&channel);
    tracing::info!(%channel, "relay listener connected");
    let (mut sink, mut stream) = socket.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            frame = attachment.frames.recv() => match frame {
                Some(text) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                None => {
                    // A newer listener took the channel.
                    let close = CloseFrame { code: CLOSE_REPLACED, reason: "another listener connected".into() };
                    let _ = sink.send(Message::Close(Some(close))).await;
                    break;
                }
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => answer(&attachment.waiting, text.as_str()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
        }
    }
    hub.detach(&channel, attachment.generation);
    tracing::info!(%channel, "relay listener disconnected");
}

fn answer(waiting: &super::hub::Waiting, text: &str) {
    match serde_json::from_str::<RelayFrame>(text) {
        Ok(frame @ RelayFrame::Response { id, .. }) => {
            // No one waiting: the sender left, or it was a queued request.
            if let Some(tx) = lock_waiting(waiting).remove(&id) {
                let _ = tx.send(frame);
            }
        }
        Ok(RelayFrame::Request { .. }) => tracing::warn!("a relay listener sent a request frame; ignored"),
        Err(e) => tracing::warn!(error = %e, "a relay listener sent a frame that is not one"),
    }
}
