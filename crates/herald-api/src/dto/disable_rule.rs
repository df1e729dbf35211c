//! `disableRule`, Herald's endpoint extension for when an endpoint that
//! keeps failing is disabled (SPEC §3).

use std::time::Duration;

use herald_core::health::{DEFAULT_FAILING_FOR, DisableRule};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};

/// The longest failure a rule may wait for.
const MAX_FAILING_FOR_SECS: u64 = 365 * 24 * 3600;
/// The most given-up deliveries a rule may count to.
const MAX_FAILED_MESSAGES: u32 = 10_000;

/// When this endpoint is disabled: after failing without a success for
/// `failingForSecs`, or after `consecutiveFailedMessages` deliveries in a
/// row were given up, whichever comes first. Absent or `null`: the server's
/// default, 5 days of failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = DisableRule)]
pub struct DisableRuleDto {
    /// Seconds from the first failed attempt after a success; `0` never
    /// disables by time. Default 432000 (5 days).
    #[serde(default)]
    pub failing_for_secs: Option<u64>,
    /// Deliveries given up in a row (each after its whole retry schedule);
    /// absent does not count them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failed_messages: Option<u32>,
}

impl From<&DisableRule> for DisableRuleDto {
    fn from(r: &DisableRule) -> Self {
        Self {
            failing_for_secs: Some(r.failing_for.map_or(0, |d| d.as_secs())),
            consecutive_failed_messages: r.failed_messages,
        }
    }
}

impl DisableRuleDto {
    /// The rule asked for, or a 422 naming the field that is wrong.
    pub fn parse(self) -> ApiResult<DisableRule> {
        let invalid = |field: &str, msg: String| {
            ApiError::invalid_msg(&["body", "disableRule", field], "value_error.number.out_of_range", msg)
        };
        let failing_for = match self.failing_for_secs {
            None => Some(DEFAULT_FAILING_FOR),
            Some(0) => None,
            Some(secs) if secs > MAX_FAILING_FOR_SECS => {
                return Err(invalid(
                    "failingForSecs",
                    format!("failingForSecs must be at most {MAX_FAILING_FOR_SECS} (a year), or 0 for no time rule"),
                ));
            }
            Some(secs) => Some(Duration::from_secs(secs)),
        };
        if let Some(n) = self.consecutive_failed_messages
            && !(1..=MAX_FAILED_MESSAGES).contains(&n)
        {
            return Err(invalid(
                "consecutiveFailedMessages",
                format!("consecutiveFailedMessages must be 1 to {MAX_FAILED_MESSAGES}"),
            ));
        }
        Ok(DisableRule {
            failing_for,
            failed_messages: self.consecutive_failed_messages,
        })
    }
}
