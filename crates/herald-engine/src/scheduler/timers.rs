//! The scheduler's timers: retries held in memory and circuit probes, in a
//! heap ordered by due time (ties by arrival), so nothing polls.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use herald_core::EndpointId;
use tokio::time::Instant;

use crate::ticket::Job;

pub(super) enum Wake {
    /// A retry held in memory is due.
    Retry(Job),
    /// An open circuit may probe.
    Probe(EndpointId),
    /// A rate-limited lane's next turn.
    Pace(EndpointId),
    /// A batching lane's oldest job has waited its longest.
    Batch(EndpointId),
}

impl Wake {
    fn endpoint(&self) -> &EndpointId {
        match self {
            Self::Retry(job) => &job.job.endpoint_id,
            Self::Probe(id) | Self::Pace(id) | Self::Batch(id) => id,
        }
    }
}

struct Timed {
    at: Instant,
    seq: u64,
    wake: Wake,
}

impl PartialEq for Timed {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Timed {}
impl PartialOrd for Timed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<Timed>>,
    seq: u64,
}

impl Timers {
    pub fn next_at(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(t)| t.at)
    }

    pub fn schedule(&mut self, wake: Wake, at: Instant) {
        self.seq += 1;
        self.heap.push(Reverse(Timed {
            at,
            seq: self.seq,
            wake,
        }));
    }

    /// The next wake due by `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<Wake> {
        if self.next_at()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse(t)| t.wake)
    }

    /// Drops every wake for an endpoint (deleted), returning its retries.
    pub fn remove_endpoint(&mut self, id: &EndpointId) -> Vec<Job> {
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.heap)
            .into_iter()
            .partition(|Reverse(t)| t.wake.endpoint() == id);
        self.heap = kept.into_iter().collect();
        retries(gone.into_iter().map(|Reverse(t)| t.wake))
    }

    /// The endpoints of an application with retries waiting here.
    pub fn endpoints_of_app(&self, app_id: &herald_core::AppId) -> Vec<EndpointId> {
        self.heap
            .iter()
            .filter_map(|Reverse(t)| match &t.wake {
                Wake::Retry(job) if &job.job.app_id == app_id => Some(job.job.endpoint_id.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every retry still waiting (shutdown).
    pub fn drain_retries(&mut self) -> Vec<Job> {
        retries(std::mem::take(&mut self.heap).into_iter().map(|Reverse(t)| t.wake))
    }
}

fn retries(wakes: impl Iterator<Item = Wake>) -> Vec<Job> {
    wakes
        .filter_map(|w| match w {
            Wake::Retry(job) => Some(job),
            Wake::Probe(_) | Wake::Pace(_) | Wake::Batch(_) => None,
        })
        .collect()
}
