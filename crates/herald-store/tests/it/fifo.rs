//! Ordered (`fifo`) endpoints: their deliveries are never born claimed and
//! never in `claim_due`; `claim_fifo` hands them out as a run in id order
//! from the oldest pending one, which a retry's wait or another holder's
//! claim holds up, across restarts.

use std::time::Duration;

use herald_store::{DeliveryJob, DeliveryState, LeaseResult, NodeId, RetryHold};

use crate::{
    LONG, app, attempt, changed, claim, each_backend, endpoint, lease, msg, new_endpoint, new_endpoint_with, node,
    outcome,
};

fn ids(jobs: &[DeliveryJob]) -> Vec<i64> {
    jobs.iter().map(|j| j.delivery_id).collect()
}

#[tokio::test]
async fn an_ordered_endpoints_deliveries_go_out_only_as_a_run_from_the_oldest() {
    each_backend(|b| async move {
        let s = &b.store;
        let a = app(s, "A").await;
        let ordered = endpoint(s, &a, new_endpoint_with("https://o.example/", |e| e.fifo = true)).await;
        let plain = endpoint(s, &a, new_endpoint("https://p.example/")).await;
        let n = node("a");
        for _ in 0..5 {
            let got = s.ingest(msg(&a, Some(n.clone()))).await.unwrap();
            assert_eq!(got.deliveries.len(), 1, "only the unordered endpoint's is born claimed");
            assert_eq!(got.deliveries[0].endpoint_id, plain);
            assert_eq!(got.fifo, vec![(a.clone(), ordered.clone())]);
        }
        assert!(
            claim(s, &node("b")).await.is_empty(),
            "claim_due handed out ordered work"
        );
        assert_eq!(
            s.next_due(&NodeId::new("any")).await.unwrap(),
            None,
            "ordered work counted as the loader's"
        );
        assert_eq!(s.backlog().await.unwrap(), 10);
        let due = s.fifo_due().await.unwrap();
        assert_eq!(due.ready, vec![(a.clone(), ordered.clone())]);

        let first = s.claim_fifo(&n, ordered.clone(), 3, usize::MAX).await.unwrap();
        assert_eq!(first.len(), 3);
        assert!(ids(&first).is_sorted(), "{:?}", ids(&first));
        assert!(s.fifo_due().await.unwrap().ready.is_empty(), "its head is held");
        assert!(
            s.claim_fifo(&node("b"), ordered.clone(), 10, usize::MAX)
                .await
                .unwrap()
                .is_empty(),
            "another holder claimed past a live claim on the head"
        );
        // The holder's next run skips what it holds.
        let rest = s.claim_fifo(&n, ordered.clone(), 10, usize::MAX).await.unwrap();
        assert_eq!(rest.len(), 2);
        assert!(ids(&rest)[0] > *ids(&first).last().unwrap());

        // The head fails and waits a minute for its retry, kept claimed; the
        // rest succeed. Then the node restarts: its claims are gone.
        let head = &first[0];
        let results = s
            .record_outcomes(
                &n,
                vec![outcome(
                    head,
                    Some(attempt(head, 500, 1)),
                    DeliveryState::Retry {
                        after: Duration::from_secs(60),
                        hold: RetryHold::Keep,
                    },
                )],
            )
            .await
            .unwrap();
        assert_eq!(results, vec![LeaseResult::Done]);
        s.recover(&n.owner).await.unwrap();
        assert!(
            s.claim_fifo(&n, ordered.clone(), 10, usize::MAX)
                .await
                .unwrap()
                .is_empty(),
            "messages 2-5 went out while message 1 waits for its retry"
        );
        let due = s.fifo_due().await.unwrap();
        assert!(due.ready.is_empty());
        let next = due.next.expect("the head's retry time");
        assert!(
            next > Duration::from_secs(50) && next <= Duration::from_secs(60),
            "{next:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_given_up_head_lets_the_next_go_and_turning_fifo_off_frees_the_rest() {
    each_backend(|b| async move {
        let s = &b.store;
        let a = app(s, "A").await;
        let ep = endpoint(s, &a, new_endpoint_with("https://o.example/", |e| e.fifo = true)).await;
        for _ in 0..3 {
            s.ingest(msg(&a, None)).await.unwrap();
        }
        let n = lease("a", LONG);
        let head = s.claim_fifo(&n, ep.clone(), 1, usize::MAX).await.unwrap();
        assert_eq!(head.len(), 1);
        s.record_outcomes(
            &n,
            vec![outcome(
                &head[0],
                Some(attempt(&head[0], 500, 1)),
                DeliveryState::Failed,
            )],
        )
        .await
        .unwrap();
        s.recover(&n.owner).await.unwrap();
        let next = s.claim_fifo(&node("b"), ep.clone(), 10, usize::MAX).await.unwrap();
        assert_eq!(next.len(), 2, "the given-up head no longer holds the order");
        assert!(next[0].delivery_id > head[0].delivery_id);
        s.recover(&node("b").owner).await.unwrap();

        // Turned off: the rest is ordinary due work.
        let current = s.get_endpoint(&a, ep.as_str()).await.unwrap();
        s.update_endpoint(changed(current, |e| e.fifo = false)).await.unwrap();
        assert!(s.fifo_due().await.unwrap().ready.is_empty());
        assert_eq!(claim(s, &node("c")).await.len(), 2);
    })
    .await;
}
