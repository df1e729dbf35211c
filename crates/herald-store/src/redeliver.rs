//! Sending again what was sent, or never sent: resend one message to one
//! endpoint, recover what failed, replay what an endpoint never got. Each
//! leaves deliveries pending, unclaimed and due now, so whichever node
//! claims due work next sends them; none touches a delivery a node holds.

use herald_core::{AppId, EndpointId, MessageId};

use crate::{Result, TimeRange};

#[async_trait::async_trait]
pub trait RedeliveryStore: Send + Sync {
    /// Makes the message due again for the endpoint now: a finished
    /// delivery starts over (attempt count back to zero), an unclaimed
    /// pending one is due at once, a held one is left to its holder, and a
    /// message the endpoint never got gets a delivery. A message whose
    /// payload was expunged cannot be sent ([`crate::StoreError::Refused`]).
    async fn resend(&self, app_id: &AppId, msg_id: &MessageId, endpoint_id: &EndpointId) -> Result<()>;
    /// Failed deliveries to the endpoint, of messages created in `range`
    /// whose payload is still kept, start over; answers how many.
    async fn recover_failed(&self, app_id: &AppId, endpoint_id: &EndpointId, range: TimeRange) -> Result<u64>;
    /// Messages created in `range` that the endpoint subscribes to now but
    /// has no delivery of (it was created, enabled or re-filtered after
    /// them) get one, up to `limit` messages from `after` on (exclusive),
    /// oldest first. Answers how many were created and the last message
    /// looked at, from which the next call goes on (`None`: the range is done).
    async fn replay_missing(
        &self,
        app_id: &AppId,
        endpoint_id: &EndpointId,
        range: TimeRange,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<(u64, Option<MessageId>)>;
}
