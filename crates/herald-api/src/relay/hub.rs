//! Who is connected to which relay channel, what each is waiting for, and
//! what arrived while nobody was connected.
//!
//! - A request to a channel with a listener goes to it at once and its
//!   sender waits for the answer (up to `answer_timeout`).
//! - With no listener, it is queued in memory — at most `max_queued`
//!   requests and `max_queued_bytes` of bodies per channel — and its sender
//!   gets 202; the queue is handed to the next listener that connects. The
//!   queue lives on this node only and does not survive a restart.
//! - One listener per channel: a new one replaces the old, whose socket is
//!   closed with [`CLOSE_REPLACED`](herald_core::relay::CLOSE_REPLACED).
//! - At most `max_channels` channels are held in memory at once.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::ChannelKey;

#[derive(Debug, Clone)]
pub struct RelayLimits {
    pub max_queued: usize,
    pub max_queued_bytes: usize,
    pub max_channels: usize,
    pub answer_timeout: Duration,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            max_queued: 100,
            max_queued_bytes: 16 * 1024 * 1024,
            max_channels: 1000,
            answer_timeout: Duration::from_secs(30),
        }
    }
}

/// A listener's answer, as its frame gave it.
pub type Answer = herald_core::relay::RelayFrame;

/// Where a request went.
pub enum Dispatch {
    /// To the connected listener; the answer comes on this.
    Sent(oneshot::Receiver<Answer>),
    /// Kept until a listener connects.
    Queued,
    /// The channel's queue (or the relay's channel table) is full.
    Full,
}

pub struct RelayHub {
    pub(crate) key: ChannelKey,
    pub(crate) limits: RelayLimits,
    channels: Mutex<HashMap<String, Channel>>,
    next: AtomicU64,
}

#[derive(Default)]
struct Channel {
    listener: Option<Attached>,
    queue: VecDeque<(u64, String, usize)>,
    queued_bytes: usize,
}

struct Attached {
    generation: u64,
    frames: mpsc::Sender<String>,
    waiting: Waiting,
}

/// Requests sent to a listener whose answer someone is waiting for.
pub(crate) type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<Answer>>>>;

/// What a newly connected listener gets: its frames to send and the map to
/// answer into.
pub struct Attachment {
    pub generation: u64,
    pub frames: mpsc::Receiver<String>,
    pub waiting: Waiting,
}

impl RelayHub {
    pub fn new(key: ChannelKey, limits: RelayLimits) -> Self {
        Self {
            key,
            limits,
            channels: Mutex::default(),
            next: AtomicU64::new(1),
        }
    }

    /// A fresh id for a request frame.
    pub fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Channel>> {
        // Every change under the lock is a single insert or remove.
        self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands a request frame (`frame`, the JSON of request `id` whose body
    /// is `body_len` bytes; `queued_frame` is its form for the queue) to the
    /// channel's listener, or queues it.
    pub fn dispatch(&self, channel: &str, id: u64, frame: String, queued_frame: String, body_len: usize) -> Dispatch {
        let mut channels = self.lock();
        if !channels.contains_key(channel) && channels.len() >= self.limits.max_channels {
            return Dispatch::Full;
        }
        let state = channels.entry(channel.to_owned()).or_default();
        if let Some(listener) = &state.listener {
            let (tx, rx) = oneshot::channel();
            lock_waiting(&listener.waiting).insert(id, tx);
            match listener.frames.try_send(frame) {
                Ok(()) => return Dispatch::Sent(rx),
                // Connected but this far behind: refuse rather than queue
                // behind a listener that may never catch up.
                Err(mpsc::error::TrySendError::Full(_)) => {
                    lock_waiting(&listener.waiting).remove(&id);
                    return Dispatch::Full;
                }
                // Its socket is gone and the session has not detached yet.
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    lock_waiting(&listener.waiting).remove(&id);
                    state.listener = None;
                }
            }
        }
        if state.queue.len() >= self.limits.max_queued || state.queued_bytes + body_len > self.limits.max_queued_bytes {
            return Dispatch::Full;
        }
        state.queued_bytes += body_len;
        state.queue.push_back((id, queued_frame, body_len));
        Dispatch::Queued
    }

    /// Stops waiting for request `id` (its sender timed out or left).
    pub fn forget(&self, channel: &str, id: u64) {
        if let Some(listener) = self.lock().get(channel).and_then(|c| c.listener.as_ref()) {
            lock_waiting(&listener.waiting).remove(&id);
        }
    }

    /// Connects a listener to `channel`, replacing any other, and gives it
    /// what was queued.
    pub fn attach(&self, channel: &str) -> Attachment {
        let generation = self.next_id();
        let mut channels = self.lock();
        let state = channels.entry(channel.to_owned()).or_default();
        let (tx, rx) = mpsc::channel(self.limits.max_queued + 256);
        for (_, frame, _) in state.queue.drain(..) {
            // Room for the whole queue was made above.
            let _ = tx.try_send(frame);
        }
        state.queued_bytes = 0;
        let waiting = Waiting::default();
        // Dropping the old listener's sender ends its writer, which closes
        // its socket as replaced; its waiting senders get 502s.
        state.listener = Some(Attached {
            generation,
            frames: tx,
            waiting: waiting.clone(),
        });
        Attachment {
            generation,
            frames: rx,
            waiting,
        }
    }

    /// The listener `generation` left; the channel keeps queueing for the next.
    pub fn detach(&self, channel: &str, generation: u64) {
        let mut channels = self.lock();
        let Some(state) = channels.get_mut(channel) else { return };
        if state.listener.as_ref().is_some_and(|l| l.generation == generation) {
            state.listener = None;
        }
        if state.listener.is_none() && state.queue.is_empty() {
            channels.remove(channel);
        }
    }

    /// Requests queued for `channel` (for tests and logs).
    pub fn queued(&self, channel: &str) -> usize {
        self.lock().get(channel).map_or(0, |c| c.queue.len())
    }
}

pub(crate) fn lock_waiting(waiting: &Waiting) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Answer>>> {
    waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(max_queued: usize, max_queued_bytes: usize) -> RelayHub {
        RelayHub::new(
            ChannelKey::derive(b"k"),
            RelayLimits {
                max_queued,
                max_queued_bytes,
                max_channels: 2,
                answer_timeout: Duration::from_secs(1),
            },
        )
    }

    #[test]
    fn without_a_listener_requests_queue_within_bounds_and_go_to_the_next_listener() {
        let hub = hub(2, 10);
        assert!(matches!(
            hub.dispatch("c", 1, "f1".into(), "q1".into(), 4),
            Dispatch::Queued
        ));
        assert!(
            matches!(hub.dispatch("c", 2, "f2".into(), "q2".into(), 7), Dispatch::Full),
            "bytes"
        );
        assert!(matches!(
            hub.dispatch("c", 3, "f3".into(), "q3".into(), 6),
            Dispatch::Queued
        ));
        assert!(
            matches!(hub.dispatch("c", 4, "f4".into(), "q4".into(), 0), Dispatch::Full),
            "count"
        );
        let mut a = hub.attach("c");
        assert_eq!(a.frames.try_recv().unwrap(), "q1");
        assert_eq!(a.frames.try_recv().unwrap(), "q3");
        assert_eq!(hub.queued("c"), 0);
        let Dispatch::Sent(_rx) = hub.dispatch("c", 5, "f5".into(), "q5".into(), 1) else {
            panic!("a connected listener gets it at once")
        };
        assert_eq!(a.frames.try_recv().unwrap(), "f5");
        assert!(lock_waiting(&a.waiting).contains_key(&5));
    }

    #[test]
    fn a_listener_far_behind_is_not_dropped_and_a_closed_one_is() {
        let behind = RelayHub::new(
            ChannelKey::derive(b"k"),
            RelayLimits {
                max_queued: 0,
                ..RelayLimits::default()
            },
        );
        let a = behind.attach("c");
        // max_queued 0: the listener's buffer holds 256 frames.
        for id in 0..256 {
            assert!(matches!(
                behind.dispatch("c", id, "f".into(), "q".into(), 1),
                Dispatch::Sent(_)
            ));
        }
        assert!(matches!(
            behind.dispatch("c", 256, "f".into(), "q".into(), 1),
            Dispatch::Full
        ));
        assert!(!lock_waiting(&a.waiting).contains_key(&256));
        drop(a);
        let closed = hub(10, 100);
        let a = closed.attach("c");
        drop(a);
        assert!(
            matches!(closed.dispatch("c", 1, "f".into(), "q".into(), 1), Dispatch::Queued),
            "closed: queued"
        );
    }

    #[test]
    fn a_new_listener_replaces_the_old_and_the_channel_table_is_bounded() {
        let hub = hub(10, 100);
        let mut old = hub.attach("c");
        let _new = hub.attach("c");
        assert!(old.frames.try_recv().is_err(), "the old listener's frames end");
        hub.detach("c", old.generation);
        assert!(
            matches!(hub.dispatch("c", 1, "f".into(), "q".into(), 1), Dispatch::Sent(_)),
            "the new one stays"
        );
        assert!(matches!(
            hub.dispatch("d", 2, "f".into(), "q".into(), 1),
            Dispatch::Queued
        ));
        assert!(matches!(
            hub.dispatch("e", 3, "f".into(), "q".into(), 1),
            Dispatch::Full
        ));
    }
}
