//! When an endpoint that keeps failing is disabled (SPEC §3, *Disabling*).
//!
//! An endpoint's *failure streak* starts with its first failed attempt
//! after a success (or since it was created or enabled) and ends with its
//! next success. The disable rule looks at the streak on every outcome: it
//! trips when the streak has lasted `failing_for`, or when
//! `failed_messages` deliveries in a row were given up. The streak is kept
//! by the store, so neither a restart nor another node starts it over.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The SPEC default: every delivery failed for 5 days.
pub const DEFAULT_FAILING_FOR: Duration = Duration::from_secs(5 * 24 * 3600);

/// An endpoint's disable rule.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DisableRule {
    /// Disable once the streak is this old; `None` never disables by time.
    pub failing_for: Option<Duration>,
    /// Disable once this many deliveries in a row were given up; `None`
    /// does not count them.
    pub failed_messages: Option<u32>,
}

impl Default for DisableRule {
    fn default() -> Self {
        Self {
            failing_for: Some(DEFAULT_FAILING_FOR),
            failed_messages: None,
        }
    }
}

/// An endpoint's current failure streak, as the store keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailureStreak {
    /// The first failed attempt of the streak.
    pub since: DateTime<Utc>,
    /// Deliveries given up during the streak.
    pub failed_messages: u32,
}

/// Why an endpoint was disabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisableReason {
    /// It answered `410 Gone`.
    Gone,
    /// Every attempt failed for the rule's duration.
    FailingFor(Duration),
    /// This many deliveries in a row were given up.
    FailedMessages(u32),
}

impl DisableRule {
    /// Whether `streak`, seen at `now`, disables the endpoint. `scale` maps
    /// the rule's duration to the clock's (the engine's `HERALD_TIME_SCALE`,
    /// the same that shortens retry waits); the identity in production.
    pub fn verdict(
        &self,
        streak: &FailureStreak,
        now: DateTime<Utc>,
        scale: impl Fn(Duration) -> Duration,
    ) -> Option<DisableReason> {
        if let Some(n) = self.failed_messages
            && streak.failed_messages >= n
        {
            return Some(DisableReason::FailedMessages(streak.failed_messages));
        }
        let limit = self.failing_for?;
        let scaled = scale(limit);
        let age = (now - streak.since).to_std().unwrap_or_default();
        (age >= scaled).then_some(DisableReason::FailingFor(limit))
    }

    /// Whether given-up deliveries need counting at all: only a rule that
    /// counts them needs the store to.
    pub fn counts_messages(&self) -> bool {
        self.failed_messages.is_some()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }

    fn same(d: Duration) -> Duration {
        d
    }

    fn hundredth(d: Duration) -> Duration {
        d / 100
    }

    fn streak(since: i64, failed_messages: u32) -> FailureStreak {
        FailureStreak {
            since: at(since),
            failed_messages,
        }
    }

    #[test]
    fn the_default_disables_after_five_days_of_failure() {
        let rule = DisableRule::default();
        let day = 24 * 3600;
        assert_eq!(rule.verdict(&streak(0, 1_000), at(5 * day - 1), same), None);
        assert_eq!(
            rule.verdict(&streak(0, 0), at(5 * day), same),
            Some(DisableReason::FailingFor(DEFAULT_FAILING_FOR))
        );
    }

    #[test]
    fn consecutive_failed_messages_disable_when_counted() {
        let rule = DisableRule {
            failing_for: None,
            failed_messages: Some(3),
        };
        assert_eq!(rule.verdict(&streak(0, 2), at(10 * 24 * 3600), same), None);
        assert_eq!(
            rule.verdict(&streak(0, 3), at(1), same),
            Some(DisableReason::FailedMessages(3))
        );
        assert!(rule.counts_messages());
        assert!(!DisableRule::default().counts_messages());
    }

    #[test]
    fn time_scale_shortens_the_duration() {
        let rule = DisableRule {
            failing_for: Some(Duration::from_secs(3600)),
            failed_messages: None,
        };
        assert_eq!(rule.verdict(&streak(0, 0), at(35), hundredth), None);
        assert_eq!(
            rule.verdict(&streak(0, 0), at(36), hundredth),
            Some(DisableReason::FailingFor(Duration::from_secs(3600)))
        );
    }

    #[test]
    fn a_clock_behind_the_streak_does_not_trip() {
        let rule = DisableRule::default();
        assert_eq!(rule.verdict(&streak(100, 0), at(0), same), None);
    }
}
