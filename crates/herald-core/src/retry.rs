//! When a failed delivery is tried again.
//!
//! A schedule is pure arithmetic on attempt counts, so the engine, the API
//! (which shows the next attempt time) and tests agree on it. Jitter and
//! `Retry-After` are kept apart from the schedule: jitter needs randomness and
//! `Retry-After` needs the clock, both passed in so tests can pin them.

use std::time::Duration;

use chrono::{DateTime, Utc};

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// The default jitter fraction: each delay lands uniformly in [0.8 d, 1.2 d].
pub const DEFAULT_JITTER: f64 = 0.2;

/// When to try again after a failed attempt.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum RetrySchedule {
    /// An explicit list: entry `i` is the wait after the `i + 1`-th failure.
    Delays(Vec<Duration>),
    /// `initial`, then each wait `factor` times the previous, never above
    /// `max`. `attempts` is how many retries follow the first try, the same
    /// count as the length of a `Delays` list.
    Exponential {
        initial: Duration,
        factor: f64,
        max: Duration,
        attempts: u32,
    },
    /// Only the first try.
    None,
}

/// An endpoint's retry policy: when to try again, and whether each wait is
/// jittered (on by default: endpoints that failed together are not all
/// retried in the same instant; a provider that documents exact times turns
/// it off).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RetryPolicy {
    pub schedule: RetrySchedule,
    pub jitter: bool,
}

impl Default for RetryPolicy {
    /// The SPEC default: [`RetrySchedule::standard`], jittered.
    fn default() -> Self {
        Self {
            schedule: RetrySchedule::standard(),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `failed_attempts + 1` (see
    /// [`RetrySchedule::next_delay`]), jittered by [`DEFAULT_JITTER`] when
    /// the policy says so; `None` when the schedule is exhausted.
    pub fn next_wait(&self, failed_attempts: u32, rng: &mut impl rand::Rng) -> Option<Duration> {
        let step = self.schedule.next_delay(failed_attempts)?;
        Some(if self.jitter {
            jittered(step, DEFAULT_JITTER, rng)
        } else {
            step
        })
    }
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self::standard()
    }
}

impl RetrySchedule {
    /// The SPEC default after the immediate first try: 5 s, 5 min, 30 min,
    /// 2 h, 5 h, 10 h, 10 h (eight attempts in all, spanning about 27.5 hours).
    pub fn standard() -> Self {
        Self::Delays(vec![
            5 * SECOND,
            5 * MINUTE,
            30 * MINUTE,
            2 * HOUR,
            5 * HOUR,
            10 * HOUR,
            10 * HOUR,
        ])
    }

    /// Delay before attempt number `failed_attempts + 1`, given that
    /// `failed_attempts` attempts already failed. `None` when the schedule is
    /// exhausted. (Zero failures means the first attempt, which is immediate.)
    pub fn next_delay(&self, failed_attempts: u32) -> Option<Duration> {
        if failed_attempts == 0 {
            return Some(Duration::ZERO);
        }
        let retry = failed_attempts - 1;
        match self {
            Self::Delays(delays) => delays.get(usize::try_from(retry).ok()?).copied(),
            Self::Exponential { attempts, .. } if retry >= *attempts => None,
            Self::Exponential {
                initial, factor, max, ..
            } => Some(exponential_step(*initial, *factor, *max, retry)),
            Self::None => None,
        }
    }

    /// How many attempts the schedule allows, the first one included.
    pub fn total_attempts(&self) -> u32 {
        let retries = match self {
            Self::Delays(delays) => u32::try_from(delays.len()).unwrap_or(u32::MAX),
            Self::Exponential { attempts, .. } => *attempts,
            Self::None => 0,
        };
        retries.saturating_add(1)
    }

    /// The largest step; `Retry-After` is capped by this so an endpoint cannot
    /// park its deliveries for longer than the schedule itself would.
    pub fn max_step(&self) -> Duration {
        match self {
            Self::Delays(delays) => delays.iter().copied().max().unwrap_or(Duration::ZERO),
            Self::Exponential { attempts: 0, .. } | Self::None => Duration::ZERO,
            Self::Exponential {
                initial,
                factor,
                max,
                attempts,
            } => {
                // factor^k is monotonic in k, so the largest step is the first or the last.
                let first = exponential_step(*initial, *factor, *max, 0);
                let last = exponential_step(*initial, *factor, *max, attempts - 1);
                first.max(last)
            }
        }
    }
}

/// `initial * factor^retry`, capped by `max`. Nonsense inputs (a negative or
/// non-finite factor) fall back to a defined value rather than panicking: the
/// API validates schedules, but a bad stored one must not crash a worker.
fn exponential_step(initial: Duration, factor: f64, max: Duration, retry: u32) -> Duration {
    let secs = initial.as_secs_f64() * factor.powf(f64::from(retry));
    if secs.is_nan() || secs >= max.as_secs_f64() {
        max
    } else if secs <= 0.0 {
        Duration::ZERO
    } else {
        Duration::try_from_secs_f64(secs).unwrap_or(max).min(max)
    }
}

/// ±`fraction` jitter (e.g. [`DEFAULT_JITTER`] gives a uniform value in
/// [0.8 d, 1.2 d]) so endpoints that failed together are not all retried in
/// the same instant. `fraction` is clamped to [0, 1].
pub fn jittered(d: Duration, fraction: f64, rng: &mut impl rand::Rng) -> Duration {
    let (low, high) = jitter_bounds(d, fraction);
    if low >= high {
        return d;
    }
    // Drawing whole nanoseconds keeps the result exactly inside the bounds.
    let nanos = rng.random_range(low.as_nanos()..=high.as_nanos());
    from_nanos(nanos)
}

fn jitter_bounds(d: Duration, fraction: f64) -> (Duration, Duration) {
    let f = if fraction.is_nan() {
        0.0
    } else {
        fraction.clamp(0.0, 1.0)
    };
    let scale = |k: f64| Duration::try_from_secs_f64(d.as_secs_f64() * k).unwrap_or(Duration::MAX);
    (scale(1.0 - f), scale(1.0 + f))
}

fn from_nanos(nanos: u128) -> Duration {
    const PER_SEC: u128 = 1_000_000_000;
    let secs = u64::try_from(nanos / PER_SEC).unwrap_or(u64::MAX);
    // The remainder is below 10^9, so it fits a u32.
    let sub = u32::try_from(nanos % PER_SEC).unwrap_or(0);
    Duration::new(secs, sub)
}

/// The wait a `Retry-After` header asks for (delta-seconds or an HTTP-date,
/// the latter relative to `now`), capped by `cap`. A date in the past means no
/// wait. `None` when the value is neither form.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>, cap: Duration) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still a (very long) valid delay.
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(cap));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    let wait = (at.with_timezone(&Utc) - now).to_std().unwrap_or(Duration::ZERO);
    Some(wait.min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn standard_schedule() {
        let s = RetrySchedule::standard();
        assert_eq!(s, RetrySchedule::default());
        let expected = [5, 300, 1800, 7200, 18_000, 36_000, 36_000];
        assert_eq!(s.next_delay(0), Some(Duration::ZERO));
        for (i, want) in expected.iter().enumerate() {
            assert_eq!(s.next_delay(i as u32 + 1), Some(secs(*want)), "after failure {}", i + 1);
        }
        // The eighth attempt was the last.
        assert_eq!(s.next_delay(8), None);
        assert_eq!(s.next_delay(u32::MAX), None);
        assert_eq!(s.total_attempts(), 8);
        assert_eq!(s.max_step(), 10 * HOUR);
    }

    #[test]
    fn a_policy_jitters_only_when_asked() {
        let mut rng = StdRng::seed_from_u64(7);
        let exact = RetryPolicy {
            schedule: RetrySchedule::Delays(vec![secs(60), secs(120)]),
            jitter: false,
        };
        assert_eq!(exact.next_wait(1, &mut rng), Some(secs(60)));
        assert_eq!(exact.next_wait(2, &mut rng), Some(secs(120)));
        assert_eq!(exact.next_wait(3, &mut rng), None);
        let jittered = RetryPolicy {
            jitter: true,
            ..exact.clone()
        };
        let waits: Vec<Duration> = (0..50).filter_map(|_| jittered.next_wait(1, &mut rng)).collect();
        assert!(waits.iter().all(|w| (secs(48)..=secs(72)).contains(w)), "{waits:?}");
        assert!(waits.iter().any(|w| *w != secs(60)), "jitter moves the wait");
        assert_eq!(RetryPolicy::default().schedule, RetrySchedule::standard());
        assert!(RetryPolicy::default().jitter);
    }

    #[test]
    fn explicit_and_none_schedules() {
        // Alarm-platform style: +5 s, +30 s, +5 min.
        let s = RetrySchedule::Delays(vec![secs(5), secs(30), secs(300)]);
        assert_eq!(s.next_delay(1), Some(secs(5)));
        assert_eq!(s.next_delay(3), Some(secs(300)));
        assert_eq!(s.next_delay(4), None);
        assert_eq!(s.total_attempts(), 4);
        assert_eq!(s.max_step(), secs(300));

        let empty = RetrySchedule::Delays(vec![]);
        assert_eq!(empty.next_delay(1), None);
        assert_eq!(empty.total_attempts(), 1);
        assert_eq!(empty.max_step(), Duration::ZERO);

        assert_eq!(RetrySchedule::None.next_delay(1), None);
        assert_eq!(RetrySchedule::None.total_attempts(), 1);
        assert_eq!(RetrySchedule::None.max_step(), Duration::ZERO);
    }

    #[test]
    fn exponential_grows_caps_and_stops() {
        let s = RetrySchedule::Exponential {
            initial: secs(1),
            factor: 2.0,
            max: secs(10),
            attempts: 6,
        };
        let got: Vec<_> = (1..=7).map(|n| s.next_delay(n)).collect();
        assert_eq!(
            got,
            vec![
                Some(secs(1)),
                Some(secs(2)),
                Some(secs(4)),
                Some(secs(8)),
                Some(secs(10)),
                Some(secs(10)),
                None
            ]
        );
        assert_eq!(s.total_attempts(), 7);
        assert_eq!(s.max_step(), secs(10));

        let uncapped = RetrySchedule::Exponential {
            initial: secs(3),
            factor: 3.0,
            max: HOUR,
            attempts: 3,
        };
        assert_eq!(uncapped.max_step(), secs(27));
        assert_eq!(uncapped.next_delay(3), Some(secs(27)));

        let fractional = RetrySchedule::Exponential {
            initial: Duration::from_millis(500),
            factor: 1.5,
            max: MINUTE,
            attempts: 3,
        };
        assert_eq!(fractional.next_delay(3), Some(Duration::from_millis(1125)));

        let none = RetrySchedule::Exponential {
            initial: secs(1),
            factor: 2.0,
            max: secs(10),
            attempts: 0,
        };
        assert_eq!(none.next_delay(1), None);
        assert_eq!(none.total_attempts(), 1);
        assert_eq!(none.max_step(), Duration::ZERO);

        // Huge attempt counts and factors saturate at max instead of overflowing.
        let huge = RetrySchedule::Exponential {
            initial: secs(1),
            factor: 1e300,
            max: HOUR,
            attempts: u32::MAX,
        };
        assert_eq!(huge.next_delay(u32::MAX), Some(HOUR));
        assert_eq!(huge.max_step(), HOUR);
        assert_eq!(huge.total_attempts(), u32::MAX);
        let nan = RetrySchedule::Exponential {
            initial: secs(1),
            factor: f64::NAN,
            max: HOUR,
            attempts: 2,
        };
        assert_eq!(nan.next_delay(2), Some(HOUR));
    }

    #[test]
    fn schedules_serialize() {
        for s in [
            RetrySchedule::standard(),
            RetrySchedule::Exponential {
                initial: secs(1),
                factor: 2.0,
                max: secs(10),
                attempts: 6,
            },
            RetrySchedule::None,
        ] {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(serde_json::from_str::<RetrySchedule>(&json).unwrap(), s);
        }
    }

    #[test]
    fn jitter_edge_cases() {
        let mut rng = StdRng::seed_from_u64(7);
        assert_eq!(jittered(Duration::ZERO, 0.2, &mut rng), Duration::ZERO);
        assert_eq!(jittered(secs(5), 0.0, &mut rng), secs(5));
        assert_eq!(jittered(secs(5), f64::NAN, &mut rng), secs(5));
        let wide = jittered(secs(5), 7.0, &mut rng);
        assert!(wide <= secs(10));
        // Seeded: the same draws every time.
        let a: Vec<_> = (0..5)
            .map(|_| jittered(HOUR, 0.2, &mut StdRng::seed_from_u64(1)))
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let _ = jittered(Duration::MAX, 0.2, &mut rng);
    }

    #[test]
    fn jitter_spreads_values() {
        let mut rng = StdRng::seed_from_u64(42);
        let draws: Vec<_> = (0..1000)
            .map(|_| jittered(secs(100), DEFAULT_JITTER, &mut rng))
            .collect();
        assert!(draws.iter().any(|d| *d < secs(90)));
        assert!(draws.iter().any(|d| *d > secs(110)));
    }

    #[test]
    fn retry_after_forms() {
        let now = Utc.with_ymd_and_hms(2015, 10, 21, 7, 28, 0).unwrap();
        let cap = HOUR;
        assert_eq!(parse_retry_after("120", now, cap), Some(secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now, cap), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("86400", now, cap), Some(HOUR));
        assert_eq!(parse_retry_after("99999999999999999999999", now, cap), Some(HOUR));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now, cap),
            Some(secs(120))
        );
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 09:28:00 GMT", now, cap), Some(HOUR));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now, cap),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 09:29:00 +0200", now, cap),
            Some(secs(60))
        );
        for bad in ["", "-5", "1.5", "soon", "120s", "2015-10-21T07:30:00Z"] {
            assert_eq!(parse_retry_after(bad, now, cap), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn jitter_stays_in_bounds(
            nanos in 0u64..=(48 * 3600 * 1_000_000_000),
            fraction in 0.0f64..=1.0,
            seed in any::<u64>(),
        ) {
            let d = Duration::from_nanos(nanos);
            let mut rng = StdRng::seed_from_u64(seed);
            let j = jittered(d, fraction, &mut rng);
            let (low, high) = jitter_bounds(d, fraction);
            prop_assert!(low <= j && j <= high, "{low:?} <= {j:?} <= {high:?}");
            // And the bounds are what they claim, up to float rounding.
            let tolerance = 1e-9 * d.as_secs_f64() + 1e-9;
            prop_assert!(j.as_secs_f64() >= d.as_secs_f64() * (1.0 - fraction) - tolerance);
            prop_assert!(j.as_secs_f64() <= d.as_secs_f64() * (1.0 + fraction) + tolerance);
        }

        #[test]
        fn exponential_is_monotonic_and_capped(
            initial_ms in 1u64..100_000,
            factor in 1.0f64..10.0,
            max_s in 1u64..100_000,
            attempts in 0u32..40,
        ) {
            let max = secs(max_s);
            let s = RetrySchedule::Exponential { initial: Duration::from_millis(initial_ms), factor, max, attempts };
            let steps: Vec<_> = (1..=attempts).map(|n| s.next_delay(n).unwrap()).collect();
            prop_assert!(steps.windows(2).all(|w| w[0] <= w[1]));
            prop_assert!(steps.iter().all(|d| *d <= max));
            prop_assert_eq!(s.next_delay(attempts + 1), None);
            prop_assert_eq!(s.max_step(), steps.iter().copied().max().unwrap_or(Duration::ZERO));
            prop_assert_eq!(s.total_attempts(), attempts + 1);
        }
    }
}
