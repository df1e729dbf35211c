//! `batch`, Herald's endpoint extension for several messages per request
//! (SPEC §3).

use herald_core::model::BatchPolicy;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};

/// The most messages one request may carry.
pub const MAX_BATCH_EVENTS: u32 = 1000;
/// The longest a message may wait for its batch to fill.
pub const MAX_BATCH_WAIT_MS: u64 = 60_000;

/// Up to `maxEvents` messages in one POST whose body is the JSON array of
/// their bodies, signed as one; the oldest waits at most `maxWaitMs` for
/// the batch to fill. Each message's attempt is recorded with the batch's
/// answer; the request's `webhook-id` is `batch_` and a digest of the
/// messages' ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Batch)]
pub struct BatchDto {
    /// 1 to 1000.
    pub max_events: u32,
    /// 0 to 60000; 0 sends whatever is queued at once.
    #[serde(default)]
    pub max_wait_ms: u64,
}

impl From<&BatchPolicy> for BatchDto {
    fn from(b: &BatchPolicy) -> Self {
        Self {
            max_events: b.max_events,
            max_wait_ms: b.max_wait_ms,
        }
    }
}

impl BatchDto {
    /// The policy asked for, or a 422 naming the field that is wrong.
    pub fn parse(self) -> ApiResult<BatchPolicy> {
        let invalid = |field: &str, msg: String| {
            ApiError::invalid_msg(&["body", "batch", field], "value_error.number.out_of_range", msg)
        };
        if !(1..=MAX_BATCH_EVENTS).contains(&self.max_events) {
            return Err(invalid("maxEvents", format!("must be from 1 to {MAX_BATCH_EVENTS}")));
        }
        if self.max_wait_ms > MAX_BATCH_WAIT_MS {
            return Err(invalid("maxWaitMs", format!("must be from 0 to {MAX_BATCH_WAIT_MS}")));
        }
        Ok(BatchPolicy {
            max_events: self.max_events,
            max_wait_ms: self.max_wait_ms,
        })
    }
}

/// `fifo` and `batch` together are refused: an ordered endpoint sends one
/// message at a time.
pub fn check_fifo_and_batch(fifo: bool, batch: Option<&BatchPolicy>) -> ApiResult<()> {
    if fifo && batch.is_some() {
        return Err(ApiError::invalid_msg(
            &["body", "batch"],
            "value_error",
            "an endpoint cannot be both fifo and batching: fifo sends one message at a time",
        ));
    }
    Ok(())
}
