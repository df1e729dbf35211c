//! Receivers must expect duplicates: senders retry until they see a 2xx, so
//! a request whose answer was lost arrives again with the same `webhook-id`.
//! [`Deduplicator`] remembers the ids it has seen for a time to live, in
//! bounded memory: at capacity the oldest id is forgotten first, so the
//! bound is also how far back duplicates are caught under heavy traffic.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Ids seen within a TTL, at most `capacity` of them. Thread-safe; share it
/// behind an `Arc`.
#[derive(Debug)]
pub struct Deduplicator {
    ttl: Duration,
    capacity: usize,
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// id → the number of its entry in `order`.
    at: HashMap<String, u64>,
    /// Ids in the order they were first seen, oldest at the front, each
    /// numbered. An entry whose number is not `at`'s was forgotten (and
    /// maybe seen again since): stale.
    order: VecDeque<(Instant, u64, String)>,
    next: u64,
}

impl Deduplicator {
    /// Remembers each id for `ttl`, and at most `capacity` ids (at least 1).
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            seen: Mutex::new(Seen::default()),
        }
    }

    /// True the first time `id` is seen within the TTL: process the request.
    /// False for a duplicate: answer 2xx without processing it again.
    pub fn first_seen(&self, id: &str) -> bool {
        self.first_seen_at(id, Instant::now())
    }

    /// [`first_seen`](Self::first_seen) with the clock at `now`.
    pub fn first_seen_at(&self, id: &str, now: Instant) -> bool {
        let mut seen = self.lock();
        seen.expire(now, self.ttl);
        if seen.at.contains_key(id) {
            return false;
        }
        while seen.order.len() >= self.capacity {
            seen.pop_oldest();
        }
        let n = seen.next;
        seen.next += 1;
        seen.at.insert(id.to_owned(), n);
        seen.order.push_back((now, n, id.to_owned()));
        true
    }

    /// Forgets `id`, so its next delivery is processed: call it when handling
    /// a request failed and the sender's retry should go through.
    pub fn forget(&self, id: &str) {
        self.lock().at.remove(id);
    }

    /// Ids remembered now (expired ones may still count until the next call).
    pub fn len(&self) -> usize {
        self.lock().at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        // A panic while holding the lock leaves the maps consistent (every
        // change is a single insert or remove), so the data is still good.
        self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Seen {
    fn expire(&mut self, now: Instant, ttl: Duration) {
        while let Some((at, _, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < ttl {
                break;
            }
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, n, id)) = self.order.pop_front()
            && self.at.get(&id) == Some(&n)
        {
            self.at.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_within_the_ttl_is_a_duplicate_and_after_it_is_not() {
        let d = Deduplicator::new(Duration::from_secs(60), 100);
        let t0 = Instant::now();
        assert!(d.first_seen_at("msg_1", t0));
        assert!(!d.first_seen_at("msg_1", t0 + Duration::from_secs(59)));
        assert!(d.first_seen_at("msg_2", t0 + Duration::from_secs(59)));
        assert!(d.first_seen_at("msg_1", t0 + Duration::from_secs(60)), "expired");
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn memory_stays_within_capacity_oldest_forgotten_first() {
        let d = Deduplicator::new(Duration::from_secs(3600), 3);
        let t = Instant::now();
        for id in ["a", "b", "c", "d"] {
            assert!(d.first_seen_at(id, t));
        }
        assert_eq!(d.len(), 3);
        assert!(!d.first_seen_at("d", t));
        assert!(!d.first_seen_at("b", t));
        assert!(d.first_seen_at("a", t), "the oldest was dropped at capacity");
    }

    #[test]
    fn a_forgotten_id_goes_through_again_and_stale_entries_stay_bounded() {
        let d = Deduplicator::new(Duration::from_secs(3600), 2);
        let t = Instant::now();
        for i in 0..100u64 {
            // The same instant each time: entries are told apart by number.
            let at = t + Duration::from_millis(i % 2);
            assert!(d.first_seen_at("x", at));
            d.forget("x");
        }
        assert!(d.seen.lock().unwrap().order.len() <= 2);
        assert!(d.first_seen_at("x", t + Duration::from_secs(1)));
        assert!(!d.first_seen_at("x", t + Duration::from_secs(2)));
    }
}
