//! One endpoint's lane: its queue, how many requests it may have in flight,
//! and its circuit breaker.
//!
//! - **Adaptive concurrency** (AIMD): a lane starts at a small limit, grows
//!   by one for each fast 2xx while it is using its whole limit, and halves
//!   (at most once per cool-down) on timeouts, refused connections and
//!   overload answers (429, 5xx). A slow or hanging endpoint so keeps few
//!   requests in flight, and a healthy one reaches the per-endpoint cap
//!   within tens of requests.
//! - **Circuit breaker**: after [`LaneConfig::open_after`] consecutive
//!   attempts that got no answer at all (connection refused, timeout, DNS,
//!   TLS), the circuit opens. An open lane sends one probe at a time, the
//!   first after [`LaneConfig::first_probe`] and then at doubling intervals
//!   up to [`LaneConfig::max_probe`]; the scheduler parks everything else
//!   in the store. Any HTTP answer (even a 5xx: the endpoint is reachable)
//!   closes it, and the scheduler releases what it parked.
//! - **Serial** (a `fifo` endpoint): one request at a time, in queue order,
//!   and a failed head blocks the lane until its retry goes out
//!   ([`Lane::await_retry`]). No adaptive limit and no circuit: the head on
//!   its own retry schedule is already the one probe, and nothing else
//!   goes out meanwhile.
//!
//! The lane never reads the clock: callers pass `now`, so the logic is
//! unit-tested with a fake one.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone)]
pub(crate) struct LaneConfig {
    /// The per-endpoint cap the adaptive limit never exceeds.
    pub max_in_flight: usize,
    /// Where the adaptive limit starts.
    pub initial_limit: usize,
    /// Consecutive unanswered attempts that open the circuit.
    pub open_after: u32,
    pub first_probe: Duration,
    pub max_probe: Duration,
    /// The least time between two halvings of the limit, so one burst of
    /// concurrent failures halves it once, not once per failure.
    pub decrease_cooldown: Duration,
}

/// How an attempt ended, as far as the lane's limits care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// 2xx; `fast` when it came well within the endpoint's timeout.
    Success { fast: bool },
    /// Answered, but overloaded: 429 or 5xx, or the connection broke mid-answer.
    Overloaded,
    /// Answered with another failure (4xx, 3xx): no reason to slow down.
    Rejected,
    /// No answer at all: refused, timed out, DNS or TLS failure.
    Unreachable,
    /// No request was made (the transformation failed, or the body could
    /// not be finished): neither the limit nor the circuit changes, except
    /// that a probe that sent nothing waits its same interval for the next
    /// one.
    NotSent,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Circuit {
    Closed {
        failures: u32,
    },
    Open {
        probe_at: Instant,
        backoff: Duration,
    },
    /// The one probe is in flight.
    Probing {
        backoff: Duration,
    },
}

/// What a finished attempt did to the circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    None,
    /// The circuit just opened: park the queue, keep one job to probe with.
    Opened,
    /// The circuit just closed: release what was parked.
    Closed,
}

#[derive(Debug)]
pub(crate) struct Lane<J> {
    queue: VecDeque<J>,
    in_flight: usize,
    limit: usize,
    last_decrease: Option<Instant>,
    circuit: Circuit,
    serial: bool,
    /// The endpoint's own cap on requests in flight (`maxInFlight`).
    cap: usize,
    /// A serial lane's failed head waits for its retry, outside the queue.
    awaiting_retry: bool,
}

impl<J> Lane<J> {
    pub fn new(cfg: &LaneConfig) -> Self {
        Self {
            queue: VecDeque::new(),
            in_flight: 0,
            limit: cfg.initial_limit.clamp(1, cfg.max_in_flight.max(1)),
            last_decrease: None,
            circuit: Circuit::Closed { failures: 0 },
            serial: false,
            cap: usize::MAX,
            awaiting_retry: false,
        }
    }

    pub fn push(&mut self, job: J) {
        self.queue.push_back(job);
    }

    /// The endpoint's own cap on requests in flight; `None` for none.
    pub fn set_cap(&mut self, cap: Option<u32>) {
        self.cap = cap.map_or(usize::MAX, |c| (c as usize).max(1));
    }

    pub fn is_serial(&self) -> bool {
        self.serial
    }

    /// Serial (a `fifo` endpoint) or not; a lane turning serial drops its
    /// circuit, which serial lanes do not have.
    pub fn set_serial(&mut self, cfg: &LaneConfig, serial: bool) {
        if serial == self.serial {
            return;
        }
        self.serial = serial;
        self.awaiting_retry = false;
        self.limit = if serial {
            1
        } else {
            cfg.initial_limit.clamp(1, cfg.max_in_flight.max(1))
        };
        if serial {
            self.circuit = Circuit::Closed { failures: 0 };
        }
    }

    /// A serial lane's head failed and will be retried: nothing else starts
    /// until [`Lane::retry_head`] puts it back in front.
    pub fn await_retry(&mut self) {
        self.awaiting_retry = self.serial;
    }

    pub fn is_awaiting_retry(&self) -> bool {
        self.awaiting_retry
    }

    /// The blocked head's retry is due: it goes first.
    pub fn retry_head(&mut self, job: J) {
        self.awaiting_retry = false;
        self.queue.push_front(job);
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    #[cfg(test)]
    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn drain(&mut self) -> impl Iterator<Item = J> + '_ {
        self.queue.drain(..)
    }

    pub fn is_open(&self) -> bool {
        !matches!(self.circuit, Circuit::Closed { .. })
    }

    /// When an open circuit's next probe may go out.
    pub fn probe_at(&self) -> Option<Instant> {
        match self.circuit {
            Circuit::Open { probe_at, .. } => Some(probe_at),
            _ => None,
        }
    }

    /// An open circuit's probe time came and nothing held was due to probe
    /// with: wait as a failed probe would, so an idle open circuit costs
    /// one look per interval, not a busy loop.
    pub fn probe_found_nothing(&mut self, cfg: &LaneConfig, now: Instant) {
        if let Circuit::Open { backoff, .. } = self.circuit {
            let backoff = (backoff * 2).min(cfg.max_probe);
            self.circuit = Circuit::Open {
                probe_at: now + backoff,
                backoff,
            };
        }
    }

    /// Nothing queued, nothing in flight, nothing to remember.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
            && self.in_flight == 0
            && !self.awaiting_retry
            && self.circuit == Circuit::Closed { failures: 0 }
    }

    /// Whether the lane would start a request now if a global slot were free.
    pub fn wants_slot(&self, now: Instant) -> bool {
        if self.queue.is_empty() || self.awaiting_retry {
            return false;
        }
        match self.circuit {
            Circuit::Closed { .. } => self.in_flight < self.limit.min(self.cap),
            Circuit::Open { probe_at, .. } => self.in_flight == 0 && now >= probe_at,
            Circuit::Probing { .. } => false,
        }
    }

    /// The job that goes next.
    pub fn front(&self) -> Option<&J> {
        self.queue.front()
    }

    /// Takes up to `max` jobs to send in one request (a batch), as
    /// [`Lane::start`] takes one: one slot, whatever their number.
    pub fn start_batch(&mut self, max: usize) -> Vec<J> {
        let n = max.min(self.queue.len());
        if n == 0 {
            return Vec::new();
        }
        let first = self.start();
        first.into_iter().chain(self.queue.drain(..n - 1)).collect()
    }

    /// Takes the next job to send; the caller checked [`Lane::wants_slot`].
    pub fn start(&mut self) -> Option<J> {
        let job = self.queue.pop_front()?;
        self.in_flight += 1;
        if let Circuit::Open { backoff, .. } = self.circuit {
            self.circuit = Circuit::Probing { backoff };
        }
        Some(job)
    }

    /// An attempt ended without an answer worth judging (canceled); a
    /// probe that was abandoned may be retried at once.
    pub fn abandoned(&mut self, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Circuit::Probing { backoff } = self.circuit {
            self.circuit = Circuit::Open { probe_at: now, backoff };
        }
    }

    pub fn finished(&mut self, cfg: &LaneConfig, now: Instant, answer: Answer) -> Transition {
        self.in_flight = self.in_flight.saturating_sub(1);
        if answer == Answer::NotSent {
            // A probe that sent nothing waits its same interval again, so
            // a body that cannot be built is not tried in a loop.
            if let Circuit::Probing { backoff } = self.circuit {
                self.circuit = Circuit::Open {
                    probe_at: now + backoff,
                    backoff,
                };
            }
            return Transition::None;
        }
        if self.serial {
            return Transition::None;
        }
        self.adapt(cfg, now, answer);
        let answered = answer != Answer::Unreachable;
        match self.circuit {
            Circuit::Closed { failures } if !answered => {
                let failures = failures + 1;
                if failures >= cfg.open_after {
                    self.circuit = Circuit::Open {
                        probe_at: now + cfg.first_probe,
                        backoff: cfg.first_probe,
                    };
                    return Transition::Opened;
                }
                self.circuit = Circuit::Closed { failures };
                Transition::None
            }
            Circuit::Closed { .. } => {
                self.circuit = Circuit::Closed { failures: 0 };
                Transition::None
            }
            Circuit::Probing { backoff } if !answered => {
                let backoff = (backoff * 2).min(cfg.max_probe);
                self.circuit = Circuit::Open {
                    probe_at: now + backoff,
                    backoff,
                };
                Transition::None
            }
            // A late answer to a request sent before the circuit opened
            // proves the endpoint reachable just as a probe's does.
            Circuit::Probing { .. } | Circuit::Open { .. } if answered => {
                self.circuit = Circuit::Closed { failures: 0 };
                Transition::Closed
            }
            Circuit::Open { .. } | Circuit::Probing { .. } => Transition::None,
        }
    }

    fn adapt(&mut self, cfg: &LaneConfig, now: Instant, answer: Answer) {
        match answer {
            // Grow only while the limit is what holds the lane back.
            Answer::Success { fast: true } if self.in_flight + 1 >= self.limit => {
                self.limit = (self.limit + 1).min(cfg.max_in_flight.max(1));
            }
            Answer::Overloaded | Answer::Unreachable => {
                let cooled = self
                    .last_decrease
                    .is_none_or(|at| now.duration_since(at) >= cfg.decrease_cooldown);
                if cooled && self.limit > 1 {
                    self.limit = (self.limit / 2).max(1);
                    self.last_decrease = Some(now);
                }
            }
            Answer::Success { .. } | Answer::Rejected | Answer::NotSent => {}
        }
    }
}

/// A lane's fair share of the global budget: the budget split evenly over
/// the lanes that hold or want slots and one more, so that while every
/// lane keeps to its share a lane that turns up next still finds its own
/// share free (requests in flight cannot be taken back). Never zero.
pub(crate) fn fair_share(max_in_flight: usize, active_lanes: usize) -> usize {
    (max_in_flight / (active_lanes + 1)).max(1)
}

#[cfg(test)]
#[path = "lane_tests.rs"]
mod tests;
