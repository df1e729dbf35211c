//! What a delivery held in memory costs, counted by the thing that costs it.
//!
//! Every job in memory carries a [`Ticket`]; the deliveries of one message
//! share one [`Charge`] for its payload (they share its bytes too). Both
//! give their share back when dropped, wherever that happens (sent and
//! recorded, parked, handed back, canceled by a delete), so the resident
//! counts can neither leak nor be given back twice, and the loader is woken
//! as soon as memory that was full has room again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use herald_store::DeliveryJob;
use tokio::sync::{Notify, broadcast};

use crate::Stats;

/// Exhausted deliveries a slow listener may fall behind by before it
/// misses some (it is told how many).
const EXHAUSTED_BUFFER: usize = 1024;

/// Counters shared by ingest, the dispatcher, the loader and the recorder.
pub(crate) struct Shared {
    resident: AtomicUsize,
    resident_bytes: AtomicUsize,
    max_resident: usize,
    max_resident_bytes: usize,
    /// Wakes the loader: work was handed back to the store, or room was freed.
    pub wake_loader: Notify,
    pub stats: Stats,
    /// Attempts that exhausted, began failing or recovered a delivery, for
    /// whoever listens (operational webhooks); nothing is kept for no one.
    pub attempt_events: broadcast::Sender<crate::AttemptEvent>,
    /// Endpoints the engine disabled itself (`410 Gone`, the disable rule).
    pub disabled: broadcast::Sender<crate::EndpointDisabled>,
}

impl Shared {
    pub fn new(max_resident: usize, max_resident_bytes: usize) -> Self {
        Self {
            resident: AtomicUsize::new(0),
            resident_bytes: AtomicUsize::new(0),
            max_resident: max_resident.max(1),
            max_resident_bytes: max_resident_bytes.max(1),
            wake_loader: Notify::new(),
            stats: Stats::default(),
            attempt_events: broadcast::channel(EXHAUSTED_BUFFER).0,
            disabled: broadcast::channel(EXHAUSTED_BUFFER).0,
        }
    }

    pub fn resident(&self) -> usize {
        self.resident.load(Ordering::Relaxed)
    }

    pub fn resident_bytes(&self) -> usize {
        self.resident_bytes.load(Ordering::Relaxed)
    }

    /// Room for `jobs` more deliveries whose payloads add `bytes`.
    pub fn has_room(&self, jobs: usize, bytes: usize) -> bool {
        self.resident() + jobs <= self.max_resident && self.resident_bytes() + bytes <= self.max_resident_bytes
    }

    /// How many deliveries, and how many payload bytes, may still come in.
    pub fn room(&self) -> (usize, usize) {
        (
            self.max_resident.saturating_sub(self.resident()),
            self.max_resident_bytes.saturating_sub(self.resident_bytes()),
        )
    }

    /// Tickets for deliveries now held in memory; deliveries of one message
    /// share one charge for its payload.
    pub fn admit(self: &Arc<Self>, jobs: Vec<DeliveryJob>) -> Vec<Job> {
        let mut charges: HashMap<herald_core::MessageId, Arc<Charge>> = HashMap::new();
        jobs.into_iter()
            .map(|job| {
                let charge = match charges.get(&job.msg_id) {
                    Some(c) => c.clone(),
                    None => {
                        let c = Arc::new(Charge::new(self.clone(), job.payload.len()));
                        charges.insert(job.msg_id.clone(), c.clone());
                        c
                    }
                };
                self.resident.fetch_add(1, Ordering::Relaxed);
                Job {
                    job,
                    queued_at: tokio::time::Instant::now(),
                    _ticket: Ticket {
                        shared: self.clone(),
                        _charge: charge,
                    },
                }
            })
            .collect()
    }
}

/// A delivery held in memory, with what it costs.
pub(crate) struct Job {
    pub job: DeliveryJob,
    /// When it joined its lane's queue, for a batch's longest wait.
    pub queued_at: tokio::time::Instant,
    /// Gives the job's share of memory back when it leaves.
    pub _ticket: Ticket,
}

pub(crate) struct Ticket {
    shared: Arc<Shared>,
    _charge: Arc<Charge>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let before = self.shared.resident.fetch_sub(1, Ordering::Relaxed);
        if before >= self.shared.max_resident {
            self.shared.wake_loader.notify_one();
        }
    }
}

pub(crate) struct Charge {
    shared: Arc<Shared>,
    bytes: usize,
}

impl Charge {
    fn new(shared: Arc<Shared>, bytes: usize) -> Self {
        shared.resident_bytes.fetch_add(bytes, Ordering::Relaxed);
        Self { shared, bytes }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        let before = self.shared.resident_bytes.fetch_sub(self.bytes, Ordering::Relaxed);
        if before >= self.shared.max_resident_bytes {
            self.shared.wake_loader.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bytes::Bytes;
    use chrono::Utc;
    use herald_core::validate::EventTypeName;
    use herald_core::{AppId, EndpointId, MessageId};

    fn job(msg: &MessageId, payload: &Bytes) -> DeliveryJob {
        DeliveryJob {
            delivery_id: 1,
            fence: 1,
            msg_id: msg.clone(),
            app_id: AppId::new(),
            endpoint_id: EndpointId::new(),
            event_type: EventTypeName::parse("a.b").unwrap(),
            payload: payload.clone(),
            attempts: 0,
            msg_created_at: Utc::now(),
            first_attempt_at: None,
            manual: false,
        }
    }

    #[test]
    fn a_payload_shared_by_a_fan_out_is_counted_once_and_everything_is_given_back() {
        let shared = Arc::new(Shared::new(10, 1000));
        let (m1, m2) = (MessageId::new(), MessageId::new());
        let (p1, p2) = (Bytes::from(vec![0u8; 300]), Bytes::from(vec![0u8; 200]));
        let jobs = shared.admit(vec![job(&m1, &p1), job(&m1, &p1), job(&m1, &p1), job(&m2, &p2)]);
        assert_eq!((shared.resident(), shared.resident_bytes()), (4, 500));
        assert!(shared.has_room(6, 500));
        assert!(!shared.has_room(7, 0));
        assert!(!shared.has_room(1, 501));
        let mut jobs = jobs.into_iter();
        drop(jobs.next());
        assert_eq!(
            (shared.resident(), shared.resident_bytes()),
            (3, 500),
            "m1 still has two"
        );
        drop(jobs.next());
        drop(jobs.next());
        assert_eq!((shared.resident(), shared.resident_bytes()), (1, 200));
        drop(jobs);
        assert_eq!((shared.resident(), shared.resident_bytes()), (0, 0));
    }
}
