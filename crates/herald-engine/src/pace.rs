//! An endpoint's `rateLimit`: at most that many requests a second, spaced
//! evenly rather than sent in bursts, so no one-second window holds more
//! than N request starts. A turn taken late moves the schedule later (the
//! rate comes out a little under N, never over).
//!
//! Pure arithmetic on a clock passed in, so it is tested with made-up
//! instants.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct Pace {
    per_sec: u32,
    interval: Duration,
    /// When the next request may start; `None` before the first.
    next: Option<Instant>,
}

impl Pace {
    /// `per_sec` is at least 1.
    pub fn new(per_sec: u32) -> Self {
        let per_sec = per_sec.max(1);
        Self {
            per_sec,
            interval: Duration::from_secs(1) / per_sec,
            next: None,
        }
    }

    pub fn per_sec(&self) -> u32 {
        self.per_sec
    }

    /// Takes the turn at `now`, or says when the next turn is. The next
    /// one is an interval after this one, however late this one came, so a
    /// pause earns no burst.
    pub fn take(&mut self, now: Instant) -> Result<(), Instant> {
        if let Some(at) = self.next
            && at > now
        {
            return Err(at);
        }
        self.next = Some(now + self.interval);
        Ok(())
    }

    /// When the next turn is, if it is still to come.
    pub fn next_turn(&self, now: Instant) -> Option<Instant> {
        self.next.filter(|&at| at > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn turns_are_spaced_by_the_interval() {
        let t0 = Instant::now();
        let mut p = Pace::new(10);
        assert_eq!(p.take(t0), Ok(()));
        assert_eq!(p.take(t0), Err(t0 + ms(100)), "the second waits an interval");
        assert_eq!(p.take(t0 + ms(99)), Err(t0 + ms(100)));
        assert_eq!(p.take(t0 + ms(100)), Ok(()));
        // 5 ms late: the next is an interval after this one, never sooner.
        assert_eq!(p.take(t0 + ms(205)), Ok(()));
        assert_eq!(p.take(t0 + ms(300)), Err(t0 + ms(305)));
    }

    #[test]
    fn a_pause_earns_no_burst() {
        let t0 = Instant::now();
        let mut p = Pace::new(10);
        p.take(t0).unwrap();
        assert_eq!(p.next_turn(t0 + ms(50)), Some(t0 + ms(100)));
        assert_eq!(p.next_turn(t0 + ms(100)), None, "due: nothing owed");
        assert_eq!(p.take(t0 + ms(5_000)), Ok(()));
        assert_eq!(
            p.take(t0 + ms(5_001)),
            Err(t0 + ms(5_100)),
            "one turn, then the interval again"
        );
        assert_eq!(p.next_turn(t0 + ms(6_000)), None);
    }

    #[test]
    fn over_a_minute_the_rate_is_kept() {
        // Asked every millisecond for 60 s at 20/s: 1,200 turns (the last
        // at 59.95 s), and never two within an interval.
        let t0 = Instant::now();
        let mut p = Pace::new(20);
        let turns: Vec<u64> = (0..60_000).filter(|&i| p.take(t0 + ms(i)).is_ok()).collect();
        assert_eq!(turns.len(), 1_200);
        assert!(turns.windows(2).all(|w| w[1] - w[0] == 50), "{:?}", &turns[..5]);
        assert_eq!(Pace::new(0).per_sec(), 1, "zero is read as one");
    }
}
