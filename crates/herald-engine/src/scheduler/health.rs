//! Endpoint failure streaks and the disable rule (`herald_core::health`).
//!
//! The scheduler keeps the streaks of failing endpoints in memory, seeded
//! from the store when a target is loaded, and checks the rule on every
//! outcome. The store hears only the changes: a streak starting, a
//! delivery given up (when the rule counts them) and a streak ending, so a
//! healthy endpoint costs one hash lookup per success while any endpoint
//! fails, and nothing otherwise. The writes go through one task in order,
//! so a streak's end is never overtaken by its start; that task checks the
//! rule again on what the store answers, which counts other nodes' too.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use herald_core::health::{DisableReason, DisableRule, FailureStreak};
use herald_core::model::DeliveryTarget;
use herald_core::{AppId, EndpointId};
use herald_store::{Store, StoreError};
use tokio::sync::mpsc;

use crate::EndpointDisabled;
use crate::attempt::scaled;
use crate::ticket::Shared;

struct Streak {
    since: DateTime<Utc>,
    failed_messages: u32,
    /// A disable was asked for; it is not asked again.
    disabling: bool,
}

enum Write {
    Failed {
        app_id: AppId,
        endpoint_id: EndpointId,
        given_up: u32,
        rule: DisableRule,
    },
    Succeeded(EndpointId),
    Disable {
        app_id: AppId,
        endpoint_id: EndpointId,
        reason: DisableReason,
        failing_since: DateTime<Utc>,
    },
}

pub(crate) struct Health {
    streaks: HashMap<EndpointId, Streak>,
    writes: mpsc::UnboundedSender<Write>,
    time_scale: f64,
}

impl Health {
    /// Starts the task that writes streak changes to `store`.
    pub fn start(store: Arc<dyn Store>, shared: Arc<Shared>, time_scale: f64) -> Self {
        let (writes, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_changes(store, shared, rx, time_scale));
        Self {
            streaks: HashMap::new(),
            writes,
            time_scale,
        }
    }

    /// A target read from the store brings the streak the store has, so a
    /// restart carries it on.
    pub fn seed(&mut self, target: &DeliveryTarget) {
        if let Some(FailureStreak { since, failed_messages }) = target.streak {
            self.streaks.entry(target.endpoint_id.clone()).or_insert(Streak {
                since,
                failed_messages,
                disabling: false,
            });
        }
    }

    pub fn succeeded(&mut self, id: &EndpointId) {
        if !self.streaks.is_empty() && self.streaks.remove(id).is_some() {
            let _ = self.writes.send(Write::Succeeded(id.clone()));
        }
    }

    /// A failed attempt; `given_up` when its delivery is given up with it.
    pub fn failed(&mut self, target: &DeliveryTarget, given_up: bool) {
        let now = Utc::now();
        let rule = &target.disable_rule;
        let given_up = u32::from(given_up);
        let streak = match self.streaks.get_mut(&target.endpoint_id) {
            Some(s) => {
                s.failed_messages += given_up;
                if given_up > 0 && rule.counts_messages() {
                    write_failure(&self.writes, target, given_up);
                }
                s
            }
            None => {
                write_failure(&self.writes, target, given_up);
                self.streaks.entry(target.endpoint_id.clone()).or_insert(Streak {
                    since: now,
                    failed_messages: given_up,
                    disabling: false,
                })
            }
        };
        if streak.disabling {
            return;
        }
        let seen = FailureStreak {
            since: streak.since,
            failed_messages: streak.failed_messages,
        };
        if let Some(reason) = rule.verdict(&seen, now, |d| scaled(d, self.time_scale)) {
            streak.disabling = true;
            let _ = self.writes.send(Write::Disable {
                app_id: target.app_id.clone(),
                endpoint_id: target.endpoint_id.clone(),
                reason,
                failing_since: seen.since,
            });
        }
    }

    /// The endpoint answered `410 Gone`.
    pub fn gone(&mut self, target: &DeliveryTarget) {
        let failing_since = self
            .streaks
            .get_mut(&target.endpoint_id)
            .map(|s| {
                s.disabling = true;
                s.since
            })
            .unwrap_or_else(Utc::now);
        let _ = self.writes.send(Write::Disable {
            app_id: target.app_id.clone(),
            endpoint_id: target.endpoint_id.clone(),
            reason: DisableReason::Gone,
            failing_since,
        });
    }

    /// The endpoint is disabled or deleted: its outcomes are over. The
    /// store keeps a disabled endpoint's streak until it is enabled again.
    pub fn forget(&mut self, id: &EndpointId) {
        if !self.streaks.is_empty() {
            self.streaks.remove(id);
        }
    }
}

fn write_failure(writes: &mpsc::UnboundedSender<Write>, target: &DeliveryTarget, given_up: u32) {
    let _ = writes.send(Write::Failed {
        app_id: target.app_id.clone(),
        endpoint_id: target.endpoint_id.clone(),
        given_up,
        rule: target.disable_rule.clone(),
    });
}

async fn write_changes(
    store: Arc<dyn Store>,
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Write>,
    time_scale: f64,
) {
    while let Some(write) = rx.recv().await {
        match write {
            Write::Failed {
                app_id,
                endpoint_id,
                given_up,
                rule,
            } => match store.endpoint_failed(&app_id, &endpoint_id, given_up).await {
                Ok(Some(streak)) => {
                    if let Some(reason) = rule.verdict(&streak, Utc::now(), |d| scaled(d, time_scale)) {
                        disable(&*store, &shared, app_id, endpoint_id, reason, streak.since).await;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(endpoint_id = %endpoint_id, error = %e, "could not record a failure streak"),
            },
            Write::Succeeded(id) => {
                if let Err(e) = store.endpoint_succeeded(&id).await {
                    tracing::warn!(endpoint_id = %id, error = %e, "could not end a failure streak");
                }
            }
            Write::Disable {
                app_id,
                endpoint_id,
                reason,
                failing_since,
            } => disable(&*store, &shared, app_id, endpoint_id, reason, failing_since).await,
        }
    }
}

/// Disables the endpoint in the store. The store's change feed then brings
/// the disabled target back to the scheduler, which ends its other queued
/// work; listeners hear of it once, from the call that changed it.
async fn disable(
    store: &dyn Store,
    shared: &Shared,
    app_id: AppId,
    endpoint_id: EndpointId,
    reason: DisableReason,
    failing_since: DateTime<Utc>,
) {
    match store.disable_endpoint(&app_id, &endpoint_id).await {
        Ok(true) => {
            tracing::warn!(endpoint_id = %endpoint_id, ?reason, "endpoint disabled");
            let _ = shared.disabled.send(EndpointDisabled {
                app_id,
                endpoint_id,
                reason,
                failing_since,
            });
        }
        // Disabled already, or deleted since: nothing to do.
        Ok(false) | Err(StoreError::NotFound(_)) => {}
        Err(e) => tracing::warn!(endpoint_id = %endpoint_id, error = %e, "disabling an endpoint failed"),
    }
}
