//! Shutdown: start nothing new, let requests in flight finish within the
//! grace period, and hand every claim on unsent work back to the store.

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Scheduler;
use super::holds::Hold;
use crate::Event;
use crate::recorder::Record;
use crate::ticket::Job;

impl Scheduler {
    /// Shutdown: start nothing new, let requests in flight finish within the
    /// grace period, and hand every claim on unsent work back to the store.
    pub(super) async fn stop(mut self, mut events: mpsc::UnboundedReceiver<Event>) {
        self.stopping = true;
        let deadline = Instant::now() + self.cfg.shutdown_grace;
        while self.in_flight > 0 {
            tokio::select! {
                Some(done) = self.done_rx.recv() => self.on_done(done),
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(in_flight = self.in_flight, "stopping with requests still in flight; they will be retried");
                    break;
                }
            }
        }
        events.close();
        let mut unsent: Vec<Job> = Vec::new();
        while let Ok(event) = events.try_recv() {
            if let Event::Jobs(jobs) | Event::Claimed { jobs, .. } | Event::FifoClaimed { jobs, .. } = event {
                unsent.extend(jobs);
            }
        }
        for ls in self.lanes.values_mut() {
            unsent.extend(ls.lane.drain());
        }
        unsent.extend(self.timers.drain_retries());
        if !unsent.is_empty() {
            tracing::info!(deliveries = unsent.len(), "returning unsent deliveries to the store");
            let released = unsent.into_iter().map(|j| (self.held_of(&j), j)).collect();
            let _ = self.records.send(Record::Release(released));
        }
        // Parked work goes back too, so another node need not wait for the hold to lapse.
        for (id, ls) in &self.lanes {
            if ls.parked {
                let _ = self.records.send(Record::Unpark(id.clone()));
            }
        }
        // Endpoint holds go too, so another node need not wait for them to lapse.
        let held: Vec<_> = self
            .holds
            .iter()
            .filter(|(_, h)| **h == Hold::Held)
            .map(|(id, _)| id.clone())
            .collect();
        if !held.is_empty()
            && let Err(e) = self.store.release_endpoints(&self.cfg.lease(), held).await
        {
            tracing::warn!(error = %e, "could not release endpoint holds; they lapse by themselves");
        }
        // Dropping `self.records` lets the recorder finish once it has written everything.
    }
}
