//! Endpoint failure streaks, for the disable rule
//! (`herald_core::health`): kept by the store so that a restart or another
//! node carries a streak on instead of starting it over.

use herald_core::health::FailureStreak;
use herald_core::{AppId, EndpointId};

use crate::Result;

#[async_trait::async_trait]
pub trait HealthStore: Send + Sync {
    /// An attempt to the endpoint failed and `given_up` of its deliveries
    /// were given up with it (0 for a failure that is retried). Starts the
    /// streak, at the database's clock, if none is running, and adds
    /// `given_up` to it. The streak after; `None` if the endpoint is gone.
    async fn endpoint_failed(&self, app_id: &AppId, id: &EndpointId, given_up: u32) -> Result<Option<FailureStreak>>;
    /// An attempt to the endpoint succeeded: its streak, if any, ends.
    async fn endpoint_succeeded(&self, id: &EndpointId) -> Result<()>;
    /// The endpoint's streak now, if it is failing.
    async fn failure_streak(&self, id: &EndpointId) -> Result<Option<FailureStreak>>;
}
