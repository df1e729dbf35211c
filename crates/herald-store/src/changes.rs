//! Change events: what every node must hear about writes that change what
//! it may deliver. They come from the store, after the change is committed,
//! so no caller can forget to announce one.

use herald_core::{AppId, EndpointId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Settings, secret or state changed: cached delivery targets are stale.
    EndpointUpdated { app_id: AppId, endpoint_id: EndpointId },
    /// Deleted: its queued, in-flight and retrying deliveries stop.
    EndpointDeleted { app_id: AppId, endpoint_id: EndpointId },
    /// Deleted with all its endpoints.
    AppDeleted { app_id: AppId },
    /// Deliveries were left unclaimed and due for another node: born to an
    /// endpoint another node holds, or handed back. Every node's loader
    /// looks for due work.
    Due,
    /// Changes may have been missed (a shared database's notification
    /// connection was lost and has just come back): everything cached from
    /// the store is stale.
    Missed,
}

/// How many changes a slow subscriber may fall behind by before it is told
/// it lagged (and must then treat everything it caches as stale).
pub const CHANGE_BUFFER: usize = 4096;
