//! An endpoint's `rateLimit`: at most that many requests a second, spaced
//! evenly rather than sent in bursts.
//!
//! Turns keep to a grid one interval apart, so a turn the timer delivers a
//! little late (tokio's timer rounds up to its millisecond ticks) does not
//! push every later one back: over a minute the rate is N, not N less the
//! lateness. A turn later than half an interval moves the grid (a pause
//! earns no burst: the next comes at least half an interval after it). And
//! a window of the last starts makes it exact: any N consecutive starts
//! span at least a second, so no one-second window holds more than N (for
//! rates above [`WINDOW`], any `WINDOW` consecutive starts span at least
//! `WINDOW / N` seconds).
//!
//! Pure arithmetic on a clock passed in, so it is tested with made-up
//! instants.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// The most starts remembered per endpoint.
const WINDOW: usize = 4096;

#[derive(Debug)]
pub(crate) struct Pace {
    per_sec: u32,
    interval: Duration,
    /// The grid point of the next turn; `None` before the first.
    next: Option<Instant>,
    /// The latest starts (at most `size`), oldest first.
    starts: VecDeque<Instant>,
    /// How long `size` consecutive starts must span at least.
    span: Duration,
    size: usize,
}

impl Pace {
    /// `per_sec` is at least 1.
    pub fn new(per_sec: u32) -> Self {
        let per_sec = per_sec.max(1);
        let size = (per_sec as usize).min(WINDOW);
        Self {
            per_sec,
            interval: Duration::from_secs(1) / per_sec,
            next: None,
            starts: VecDeque::with_capacity(size),
            span: Duration::from_secs(1).mul_f64(size as f64 / f64::from(per_sec)),
            size,
        }
    }

    pub fn per_sec(&self) -> u32 {
        self.per_sec
    }

    /// Takes the turn at `now`, or says when the next turn is.
    pub fn take(&mut self, now: Instant) -> Result<(), Instant> {
        let at = self.earliest();
        if let Some(at) = at
            && at > now
        {
            return Err(at);
        }
        let grid = self.next.unwrap_or(now);
        // Late by under half an interval: the grid holds; later: it moves.
        let from = if now.saturating_duration_since(grid) <= self.interval / 2 {
            grid
        } else {
            now - self.interval / 2
        };
        self.next = Some(from + self.interval);
        if self.starts.len() == self.size {
            self.starts.pop_front();
        }
        self.starts.push_back(now);
        Ok(())
    }

    /// When the next turn may be: its grid point, and no sooner than the
    /// window allows.
    fn earliest(&self) -> Option<Instant> {
        let window = (self.starts.len() == self.size)
            .then(|| self.starts.front().map(|&first| first + self.span))
            .flatten();
        match (self.next, window) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// When the next turn is, if it is still to come.
    pub fn next_turn(&self, now: Instant) -> Option<Instant> {
        self.earliest().filter(|&at| at > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn turns_keep_to_a_grid_one_interval_apart() {
        let t0 = Instant::now();
        let mut p = Pace::new(10);
        assert_eq!(p.take(t0), Ok(()));
        assert_eq!(p.take(t0), Err(t0 + ms(100)), "the second waits an interval");
        assert_eq!(p.take(t0 + ms(99)), Err(t0 + ms(100)));
        // 1 ms late, as tokio's timer delivers: the grid holds.
        assert_eq!(p.take(t0 + ms(101)), Ok(()));
        assert_eq!(p.take(t0 + ms(150)), Err(t0 + ms(200)));
        assert_eq!(p.take(t0 + ms(201)), Ok(()));
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
            Err(t0 + ms(5_050)),
            "one turn, then half an interval at least"
        );
        assert_eq!(p.take(t0 + ms(5_050)), Ok(()));
        assert_eq!(p.take(t0 + ms(5_051)), Err(t0 + ms(5_150)), "then the grid");
    }

    #[test]
    fn over_a_minute_late_timers_keep_the_rate_and_no_second_holds_more() {
        // Asked again 1 ms after each turn is due (a timer's lateness), at
        // 100/s for 60 s: 6,000 turns, where moving the schedule by the
        // lateness would give 5,454.
        let t0 = Instant::now();
        let mut p = Pace::new(100);
        let mut turns = Vec::new();
        let mut now = t0;
        while now < t0 + Duration::from_secs(60) {
            match p.take(now) {
                Ok(()) => {
                    turns.push(now);
                    now += ms(1);
                }
                Err(at) => now = at + ms(1),
            }
        }
        assert!((5_990..=6_000).contains(&turns.len()), "{}", turns.len());
        for w in turns.windows(101) {
            assert!(w[100] - w[0] >= Duration::from_secs(1), "101 starts within a second");
        }
        assert_eq!(Pace::new(0).per_sec(), 1, "zero is read as one");
    }

    #[test]
    fn the_window_holds_even_when_asked_at_every_instant() {
        let t0 = Instant::now();
        let mut p = Pace::new(20);
        let turns: Vec<u64> = (0..60_000).filter(|&i| p.take(t0 + ms(i)).is_ok()).collect();
        assert_eq!(turns.len(), 1_200);
        assert!(turns.windows(2).all(|w| w[1] - w[0] >= 25), "{:?}", &turns[..5]);
        assert!(turns.windows(21).all(|w| w[20] - w[0] >= 1_000));
    }
}
