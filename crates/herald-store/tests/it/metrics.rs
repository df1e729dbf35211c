//! What a store reports for `/metrics`: the backlog (every pending
//! delivery, wherever it waits, and nothing that ended), messages per group
//! commit, and deliveries canceled by deletes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use herald_core::MessageId;
use herald_store::{DeliveryState, RetryHold, Store, StoreError};

use crate::{
    LONG, app_with_endpoints, attempt, claim, each_backend, held, lease, msg, new_msg, node, outcome, record_all, retry,
};

async fn backlog(s: &Arc<dyn Store>) -> u64 {
    s.backlog().await.unwrap()
}

#[tokio::test]
async fn the_backlog_counts_every_pending_delivery_wherever_it_waits_and_none_that_ended() {
    each_backend(|b| async move {
        let s = &b.store;
        assert_eq!(backlog(s).await, 0, "an empty store");
        let (a, eps) = app_with_endpoints(s, 3).await;

        // Unclaimed, and claimed at birth.
        s.ingest(msg(&a, None)).await.unwrap();
        s.ingest(msg(&a, None)).await.unwrap();
        s.ingest(msg(&a, Some(node("n1")))).await.unwrap();
        assert_eq!(backlog(s).await, 9, "three messages to three endpoints");

        // Claimed by a node: still pending.
        let n = node("n1");
        let jobs = claim(s, &n).await;
        assert_eq!(jobs.len(), 6);
        assert_eq!(backlog(s).await, 9, "claiming moves nothing out of the backlog");

        // Two end, four wait for a retry: released, kept in memory, parked
        // for an open circuit.
        let park = DeliveryState::Retry {
            after: Duration::from_secs(60),
            hold: RetryHold::Park(LONG),
        };
        let keep = DeliveryState::Retry {
            after: Duration::from_secs(60),
            hold: RetryHold::Keep,
        };
        record_all(
            s,
            &n,
            vec![
                outcome(&jobs[0], Some(attempt(&jobs[0], 200, 1)), DeliveryState::Succeeded),
                outcome(&jobs[1], Some(attempt(&jobs[1], 500, 1)), DeliveryState::Failed),
                outcome(
                    &jobs[2],
                    Some(attempt(&jobs[2], 500, 1)),
                    retry(Duration::from_secs(60)),
                ),
                outcome(&jobs[3], Some(attempt(&jobs[3], 500, 1)), keep),
                outcome(&jobs[4], Some(attempt(&jobs[4], 500, 1)), park),
            ],
        )
        .await;
        assert_eq!(backlog(s).await, 7, "a success and an exhausted delivery left it");

        // Parked by hand, and a whole endpoint's unclaimed backlog swept in.
        s.park(&n, LONG, held(&jobs[5..])).await.unwrap();
        s.park_endpoints(&lease("n2", LONG), LONG, eps.clone()).await.unwrap();
        assert_eq!(backlog(s).await, 7, "parking moves nothing out of the backlog");

        // A finished delivery sent again is pending again.
        s.resend(&a, &jobs[0].msg_id, &jobs[0].endpoint_id).await.unwrap();
        assert_eq!(backlog(s).await, 8, "a resend is pending again");

        // Deleting an endpoint cancels its pending deliveries.
        let counts = s.endpoint_counts(&a, &eps[0]).await.unwrap();
        let pending_to_ep0 = counts.pending + counts.sending;
        assert!(pending_to_ep0 > 0, "{counts:?}");
        s.delete_endpoint(&a, &eps[0]).await.unwrap();
        assert_eq!(backlog(s).await, 8 - pending_to_ep0);

        // Handing claims back changes nothing; deleting the app ends the rest.
        s.recover(&n.owner).await.unwrap();
        assert_eq!(backlog(s).await, 8 - pending_to_ep0);
        s.delete_app(&a).await.unwrap();
        assert_eq!(backlog(s).await, 0, "the application's deliveries went with it");
    })
    .await;
}

#[tokio::test]
async fn ingest_batches_count_every_committed_message_once_and_no_failed_one() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 2).await;
        let before = s.metrics().ingest_batch.snapshot();
        assert_eq!((before.count, before.sum), (0, 0), "a fresh store");

        // Many at once, so the writer may batch them; one alone.
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let (s, a) = (s.clone(), a.clone());
                tokio::spawn(async move { s.ingest(msg(&a, None)).await.map(|i| i.message.id) })
            })
            .collect();
        let mut ids: Vec<MessageId> = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap().unwrap());
        }
        s.ingest(msg(&a, None)).await.unwrap();
        // Refused before any write: no message, nothing counted.
        let unknown = s.ingest(new_msg("app_nobody", "thing.happened", "{}")).await;
        assert!(matches!(unknown, Err(StoreError::NotFound(_))), "{unknown:?}");

        let h = s.metrics().ingest_batch.snapshot();
        assert_eq!(h.sum, 101, "every committed message counted once: {h:?}");
        assert!((2..=101).contains(&h.count), "commits: {h:?}");
        assert!(
            h.buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "cumulative buckets: {h:?}"
        );
        assert_eq!(h.buckets.last().unwrap().1, h.count, "no batch exceeds the last bound");
        assert_eq!(ids.len(), 100);
    })
    .await;
}

#[tokio::test]
async fn deletes_count_the_pending_deliveries_they_cancel() {
    each_backend(|b| async move {
        let s = &b.store;
        let cancelled = |s: &Arc<dyn Store>| s.metrics().deliveries_cancelled.load(Ordering::Relaxed);
        let (a, eps) = app_with_endpoints(s, 2).await;
        s.ingest(msg(&a, None)).await.unwrap();
        // One delivery ends before the deletes: it is not canceled by them.
        let n = node("n1");
        let jobs = claim(s, &n).await;
        let to_ep0 = jobs.iter().find(|j| j.endpoint_id == eps[0]).unwrap();
        record_all(
            s,
            &n,
            vec![outcome(to_ep0, Some(attempt(to_ep0, 200, 1)), DeliveryState::Succeeded)],
        )
        .await;
        s.ingest(msg(&a, Some(node("n1")))).await.unwrap();
        s.ingest(msg(&a, None)).await.unwrap();
        assert_eq!(cancelled(s), 0);

        s.delete_endpoint(&a, &eps[0]).await.unwrap();
        assert_eq!(cancelled(s), 2, "two pending to the deleted endpoint, one had ended");
        s.delete_app(&a).await.unwrap();
        assert_eq!(cancelled(s), 5, "three pending to the other endpoint went with the app");
    })
    .await;
}
