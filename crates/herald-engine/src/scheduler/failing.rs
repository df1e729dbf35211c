//! Which endpoints are failing, for `herald_endpoints_failing`.
//!
//! An endpoint is failing while its latest attempt from this node failed
//! (any answer but a 2xx, or none) and that attempt is less than a day old
//! (a day divided by `HERALD_TIME_SCALE`, like the retry schedule whose
//! longest step, 10 h, it outlasts). It stops failing when an attempt to it
//! succeeds, when it is deleted, when its work is found disabled, or a day
//! after its last failed attempt: an endpoint nobody sends to any more
//! (disabled, or its deliveries given up) drops out by itself.
//!
//! The scheduler owns this set, so it needs no lock; the hot path pays for
//! it only when something fails, or when a success comes for an endpoint
//! while some endpoint is failing (one hash lookup).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use herald_core::EndpointId;
use tokio::time::Instant;

use crate::ticket::Shared;

/// How long a failed attempt keeps its endpoint counted, unscaled.
pub(crate) const FAILING_FOR: Duration = Duration::from_secs(24 * 3600);

pub(crate) struct Failing {
    /// Failing endpoints and the time of their latest failed attempt.
    last_failure: HashMap<EndpointId, Instant>,
    window: Duration,
    shared: Arc<Shared>,
}

impl Failing {
    pub fn new(shared: Arc<Shared>, window: Duration) -> Self {
        Self {
            last_failure: HashMap::new(),
            window,
            shared,
        }
    }

    pub fn failed(&mut self, id: &EndpointId, now: Instant) {
        match self.last_failure.get_mut(id) {
            Some(at) => *at = now,
            None => {
                self.last_failure.insert(id.clone(), now);
                self.publish();
            }
        }
    }

    pub fn succeeded(&mut self, id: &EndpointId) {
        self.forget(id);
    }

    /// The endpoint is gone or disabled: it is not failing, it is off.
    pub fn forget(&mut self, id: &EndpointId) {
        if !self.last_failure.is_empty() && self.last_failure.remove(id).is_some() {
            self.publish();
        }
    }

    /// Drops endpoints whose latest failure is older than the window.
    pub fn expire(&mut self, now: Instant) {
        let before = self.last_failure.len();
        let window = self.window;
        self.last_failure
            .retain(|_, at| now.saturating_duration_since(*at) < window);
        if self.last_failure.len() != before {
            self.publish();
        }
    }

    fn publish(&self) {
        self.shared
            .stats
            .endpoints_failing
            .store(self.last_failure.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge(f: &Failing) -> usize {
        f.shared.stats.endpoints_failing.load(Ordering::Relaxed)
    }

    #[test]
    fn an_endpoint_fails_until_it_succeeds_is_forgotten_or_its_last_failure_is_a_window_old() {
        let window = Duration::from_secs(100);
        let mut f = Failing::new(Arc::new(Shared::new(10, 10)), window);
        let (a, b, c) = (EndpointId::new(), EndpointId::new(), EndpointId::new());
        let t0 = Instant::now();
        f.succeeded(&a);
        assert_eq!(gauge(&f), 0, "a success alone is not a failure");

        f.failed(&a, t0);
        f.failed(&a, t0);
        f.failed(&b, t0);
        f.failed(&c, t0);
        assert_eq!(gauge(&f), 3, "each endpoint counts once however often it fails");

        f.succeeded(&a);
        assert_eq!(gauge(&f), 2, "a success ends the streak");
        f.forget(&b);
        assert_eq!(gauge(&f), 1, "a deleted endpoint is not failing");
        f.forget(&b);
        assert_eq!(gauge(&f), 1);

        // c failed again later: the window runs from its latest failure.
        f.failed(&c, t0 + Duration::from_secs(60));
        f.expire(t0 + Duration::from_secs(120));
        assert_eq!(gauge(&f), 1, "c's latest failure is 60 s old");
        f.expire(t0 + Duration::from_secs(160));
        assert_eq!(gauge(&f), 0, "c's latest failure is a window old");

        f.failed(&a, t0 + Duration::from_secs(200));
        assert_eq!(gauge(&f), 1, "failing again after a success counts again");
    }
}
