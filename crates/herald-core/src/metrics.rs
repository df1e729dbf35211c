//! A lock-free histogram for `/metrics`, cheap enough for the hot path.
//!
//! Observing costs a binary search over a dozen integer bounds and two
//! relaxed atomic additions: no lock, no allocation. Values are integers in
//! the unit the caller observes (microseconds for durations, messages for
//! batch sizes); `scale` says how many of them make one unit of the
//! exposed metric (1,000,000 µs in a second), so the exposition can print
//! seconds without the hot path touching a float.
//!
//! Buckets are kept apart (not cumulative) and summed when read, so every
//! snapshot is self-consistent whatever is observed meanwhile: cumulative
//! counts never decrease from one bound to the next, and the count is the
//! `+Inf` bucket. Only the sum may run a few observations ahead of the
//! buckets it is read with.

use std::sync::atomic::{AtomicU64, Ordering};

pub struct Histogram {
    /// Inclusive upper bounds, strictly ascending, in observed units.
    bounds: &'static [u64],
    /// One per bound, then one for values above the last bound.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
    scale: u64,
}

/// A histogram as read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// `(bound, observations <= bound)` per bound, ascending, in observed units.
    pub buckets: Vec<(u64, u64)>,
    /// Every observation (the `+Inf` bucket).
    pub count: u64,
    /// The sum of every observed value, in observed units.
    pub sum: u64,
    /// Observed units per exposed unit.
    pub scale: u64,
}

impl Histogram {
    /// A histogram over `bounds` (ascending, inclusive upper bounds) whose
    /// values are exposed divided by `scale`.
    ///
    /// # Panics
    /// If `bounds` is empty or not strictly ascending, or `scale` is zero:
    /// both are constants of the program, so this is a programming error.
    pub fn new(bounds: &'static [u64], scale: u64) -> Self {
        assert!(!bounds.is_empty(), "a histogram needs at least one bound");
        assert!(
            bounds.windows(2).all(|w| w[0] < w[1]),
            "histogram bounds must ascend strictly"
        );
        assert!(scale > 0, "a histogram's scale must be positive");
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            scale,
        }
    }

    /// Counts one value.
    #[inline]
    pub fn observe(&self, value: u64) {
        let i = self.bounds.partition_point(|&b| b < value);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut running = 0u64;
        let buckets = self
            .bounds
            .iter()
            .zip(self.counts.iter())
            .map(|(&bound, n)| {
                running += n.load(Ordering::Relaxed);
                (bound, running)
            })
            .collect();
        let above = self.counts[self.bounds.len()].load(Ordering::Relaxed);
        Snapshot {
            buckets,
            count: running + above,
            sum: self.sum.load(Ordering::Relaxed),
            scale: self.scale,
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram").field("snapshot", &self.snapshot()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BOUNDS: &[u64] = &[1, 2, 4, 8];

    #[test]
    fn a_value_on_a_bound_counts_in_that_bucket_and_above_the_last_only_in_the_count() {
        let h = Histogram::new(BOUNDS, 1);
        for v in [0, 1, 2, 3, 8, 9, 1000] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(1, 2), (2, 3), (4, 4), (8, 5)]);
        assert_eq!(s.count, 7);
        assert_eq!(s.sum, 1023);
    }

    #[test]
    fn an_empty_histogram_reads_all_zero() {
        let s = Histogram::new(BOUNDS, 1_000_000).snapshot();
        assert_eq!(s.buckets, vec![(1, 0), (2, 0), (4, 0), (8, 0)]);
        assert_eq!((s.count, s.sum, s.scale), (0, 0, 1_000_000));
    }

    #[test]
    #[should_panic(expected = "ascend")]
    fn bounds_out_of_order_are_refused() {
        Histogram::new(&[1, 1], 1);
    }

    #[test]
    fn observations_from_many_threads_are_all_counted() {
        let h = std::sync::Arc::new(Histogram::new(BOUNDS, 1));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        h.observe((i + t) % 10);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("an observing thread panicked");
        }
        let s = h.snapshot();
        assert_eq!(s.count, 40_000);
        // Each thread sees every residue 0..10 a thousand times.
        assert_eq!(s.sum, 4 * 1000 * 45);
        assert_eq!(s.buckets, vec![(1, 8000), (2, 12_000), (4, 20_000), (8, 36_000)]);
    }

    proptest! {
        #[test]
        fn snapshots_agree_with_counting_by_hand(values in proptest::collection::vec(0u64..20, 0..200)) {
            let h = Histogram::new(BOUNDS, 1);
            for &v in &values {
                h.observe(v);
            }
            let s = h.snapshot();
            prop_assert_eq!(s.count, values.len() as u64);
            prop_assert_eq!(s.sum, values.iter().sum::<u64>());
            for (bound, n) in &s.buckets {
                prop_assert_eq!(*n, values.iter().filter(|&&v| v <= *bound).count() as u64);
            }
            prop_assert!(s.buckets.windows(2).all(|w| w[0].1 <= w[1].1));
        }
    }
}
