//! `retrySchedule`, Herald's endpoint extension for when failed deliveries
//! are tried again (SPEC §3): an explicit list of waits, exponential growth,
//! or no retries, each jittered by ±20 % unless `jitter` is false.

use std::time::Duration;

use herald_core::retry::{RetryPolicy, RetrySchedule};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};

/// The most retries a schedule may hold: beyond it a dead endpoint's
/// deliveries would stay pending for no purpose.
pub const MAX_RETRIES: usize = 50;
/// The longest single wait.
pub const MAX_WAIT: Duration = Duration::from_secs(7 * 24 * 3600);
/// The largest exponential factor.
const MAX_FACTOR: f64 = 100.0;

/// When failed deliveries to this endpoint are tried again. Absent or
/// `null`: the server's default (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h,
/// jittered).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = RetrySchedule)]
pub enum RetryScheduleDto {
    /// Waits in seconds: entry `i` is the wait after the `i + 1`-th failed
    /// attempt, so the list's length is the number of retries.
    #[serde(rename_all = "camelCase")]
    Delays {
        delays_secs: Vec<f64>,
        #[serde(default = "jitter_on")]
        jitter: bool,
    },
    /// `initialSecs` after the first failure, then each wait `factor` times
    /// the last, never above `maxSecs`; `attempts` retries in all.
    #[serde(rename_all = "camelCase")]
    Exponential {
        initial_secs: f64,
        factor: f64,
        max_secs: f64,
        attempts: u32,
        #[serde(default = "jitter_on")]
        jitter: bool,
    },
    /// Only the first try.
    None,
}

fn jitter_on() -> bool {
    true
}

impl From<&RetryPolicy> for RetryScheduleDto {
    fn from(p: &RetryPolicy) -> Self {
        match &p.schedule {
            RetrySchedule::Delays(delays) => Self::Delays {
                delays_secs: delays.iter().map(Duration::as_secs_f64).collect(),
                jitter: p.jitter,
            },
            RetrySchedule::Exponential {
                initial,
                factor,
                max,
                attempts,
            } => Self::Exponential {
                initial_secs: initial.as_secs_f64(),
                factor: *factor,
                max_secs: max.as_secs_f64(),
                attempts: *attempts,
                jitter: p.jitter,
            },
            RetrySchedule::None => Self::None,
        }
    }
}

impl RetryScheduleDto {
    /// The policy this asks for, or a 422 naming the field that is wrong.
    pub fn parse(self) -> ApiResult<RetryPolicy> {
        match self {
            Self::Delays { delays_secs, jitter } => {
                if delays_secs.is_empty() || delays_secs.len() > MAX_RETRIES {
                    return Err(out_of_range(
                        "delaysSecs",
                        format!("delaysSecs must hold 1 to {MAX_RETRIES} waits (use kind \"none\" for no retries)"),
                    ));
                }
                let delays = delays_secs
                    .into_iter()
                    .map(|s| wait(s, "delaysSecs"))
                    .collect::<ApiResult<Vec<_>>>()?;
                Ok(RetryPolicy {
                    schedule: RetrySchedule::Delays(delays),
                    jitter,
                })
            }
            Self::Exponential {
                initial_secs,
                factor,
                max_secs,
                attempts,
                jitter,
            } => {
                let initial = wait(initial_secs, "initialSecs")?;
                let max = wait(max_secs, "maxSecs")?;
                if max < initial {
                    return Err(out_of_range("maxSecs", "maxSecs must be at least initialSecs".into()));
                }
                if !(factor.is_finite() && (1.0..=MAX_FACTOR).contains(&factor)) {
                    return Err(out_of_range("factor", format!("factor must be from 1 to {MAX_FACTOR}")));
                }
                if attempts == 0 || attempts as usize > MAX_RETRIES {
                    return Err(out_of_range(
                        "attempts",
                        format!("attempts (retries after the first try) must be 1 to {MAX_RETRIES}"),
                    ));
                }
                Ok(RetryPolicy {
                    schedule: RetrySchedule::Exponential {
                        initial,
                        factor,
                        max,
                        attempts,
                    },
                    jitter,
                })
            }
            Self::None => Ok(RetryPolicy {
                schedule: RetrySchedule::None,
                jitter: false,
            }),
        }
    }
}

/// One wait: above 0 and at most [`MAX_WAIT`].
fn wait(secs: f64, field: &str) -> ApiResult<Duration> {
    if secs.is_finite() && secs > 0.0 && secs <= MAX_WAIT.as_secs_f64() {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(out_of_range(
            field,
            format!("{field} must be above 0 and at most {} seconds", MAX_WAIT.as_secs()),
        ))
    }
}

fn out_of_range(field: &str, msg: String) -> ApiError {
    ApiError::invalid_msg(
        &["body", "retrySchedule", field],
        "value_error.number.not_in_range",
        msg,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(v: serde_json::Value) -> ApiResult<RetryPolicy> {
        serde_json::from_value::<RetryScheduleDto>(v).expect("shape").parse()
    }

    #[test]
    fn each_kind_round_trips() {
        for v in [
            serde_json::json!({"kind": "delays", "delaysSecs": [60.0, 120.0], "jitter": false}),
            serde_json::json!({"kind": "exponential", "initialSecs": 1.0, "factor": 2.0, "maxSecs": 30.0, "attempts": 5, "jitter": true}),
            serde_json::json!({"kind": "none"}),
        ] {
            let policy = parsed(v.clone()).unwrap();
            assert_eq!(serde_json::to_value(RetryScheduleDto::from(&policy)).unwrap(), v);
        }
    }

    #[test]
    fn jitter_defaults_on() {
        let p = parsed(serde_json::json!({"kind": "delays", "delaysSecs": [5]})).unwrap();
        assert!(p.jitter);
        assert_eq!(p.schedule, RetrySchedule::Delays(vec![Duration::from_secs(5)]));
    }

    #[test]
    fn out_of_range_values_are_refused() {
        for v in [
            serde_json::json!({"kind": "delays", "delaysSecs": []}),
            serde_json::json!({"kind": "delays", "delaysSecs": [0]}),
            serde_json::json!({"kind": "delays", "delaysSecs": [-1]}),
            serde_json::json!({"kind": "delays", "delaysSecs": [604_801]}),
            serde_json::json!({"kind": "delays", "delaysSecs": vec![1; MAX_RETRIES + 1]}),
            serde_json::json!({"kind": "exponential", "initialSecs": 10, "factor": 2, "maxSecs": 5, "attempts": 3}),
            serde_json::json!({"kind": "exponential", "initialSecs": 1, "factor": 0.5, "maxSecs": 5, "attempts": 3}),
            serde_json::json!({"kind": "exponential", "initialSecs": 1, "factor": 2, "maxSecs": 5, "attempts": 0}),
        ] {
            assert!(parsed(v.clone()).is_err(), "{v}");
        }
    }
}
