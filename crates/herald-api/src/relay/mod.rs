//! The relay: a public URL for a developer's laptop. `POST /api/v1/relay/`
//! mints a channel; requests to `/relay/{channel}/…` are streamed over a
//! WebSocket to the `herald listen --relay` connected at
//! `GET /api/v1/relay/{channel}/listen`, and its answer goes back to the
//! sender. `channel_id` makes ids checkable without storage, `hub` holds
//! connections and queues, `session` runs one listener's socket.

mod channel_id;
mod hub;
mod session;

pub use channel_id::ChannelKey;
pub use hub::{Dispatch, RelayHub, RelayLimits};
pub(crate) use session::serve_listener;
