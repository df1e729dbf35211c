//! The scheduler's cache of endpoint targets (what sending needs, read
//! from the store in batches off the scheduler's loop), and what a load
//! brings back: jobs waiting for it are pumped, and the endpoint's stored
//! failure streak seeds `health.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use herald_core::EndpointId;
use herald_core::model::DeliveryTarget;

use super::Scheduler;
use crate::attempt::Target;

/// Endpoint targets kept in memory; past this the cache starts over, which
/// costs one batched read per active endpoint.
const TARGET_CACHE_LIMIT: usize = 10_000;

pub(super) enum TargetEntry {
    Loading,
    Ready(Arc<Target>),
    /// Deleted: its jobs can never be delivered.
    Gone,
}

pub(super) type TargetsLoaded = (Vec<EndpointId>, Vec<DeliveryTarget>);

impl Scheduler {
    pub(super) fn load_targets(&mut self, ids: Vec<EndpointId>) {
        if ids.is_empty() {
            return;
        }
        if self.targets.len() + ids.len() > TARGET_CACHE_LIMIT {
            self.targets.retain(|_, t| matches!(t, TargetEntry::Loading));
        }
        for id in &ids {
            self.targets.insert(id.clone(), TargetEntry::Loading);
        }
        let store = self.store.clone();
        let tx = self.loaded_tx.clone();
        tokio::spawn(async move {
            let loaded = match store.delivery_targets(ids.clone()).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "could not load endpoint targets; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    Vec::new()
                }
            };
            let _ = tx.send((ids, loaded));
        });
    }

    pub(super) fn on_targets(&mut self, (asked, loaded): TargetsLoaded) {
        let mut found = HashMap::new();
        for t in loaded {
            found.insert(t.endpoint_id.clone(), t);
        }
        for id in asked {
            // A change while loading dropped the entry: load again when needed.
            if !matches!(self.targets.get(&id), Some(TargetEntry::Loading)) {
                self.targets.remove(&id);
            } else {
                let entry = match found.remove(&id) {
                    Some(spec) => {
                        self.health.seed(&spec);
                        TargetEntry::Ready(Arc::new(Target::new(spec)))
                    }
                    None => TargetEntry::Gone,
                };
                self.targets.insert(id.clone(), entry);
            }
            self.pump(&id);
        }
        self.serve_ready();
    }
}
