//! Deleting an endpoint or an application under a node's claim: its
//! deliveries are finished, and the holder's outcomes write nothing.

use std::time::Duration;

use herald_store::{AttemptFilter, DeliveryJob, DeliveryState, LeaseResult, Order};

use crate::{
    app_with_endpoints, attempt, claim, each_backend, endpoint, msg, new_endpoint, node, outcome, page, retry, sleep_ms,
};

#[tokio::test]
async fn deleting_an_endpoint_finishes_its_claimed_deliveries() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, eps) = app_with_endpoints(s, 2).await;
        let m1 = s.ingest(msg(&a, None)).await.unwrap().message.id;
        let n = node("n1");
        let jobs = claim(s, &n).await;
        let born = s.ingest(msg(&a, Some(n.clone()))).await.unwrap().deliveries;
        s.ingest(msg(&a, None)).await.unwrap(); // pending, unclaimed
        s.delete_endpoint(&a, &eps[0]).await.unwrap();

        let all: Vec<&DeliveryJob> = jobs.iter().chain(&born).collect();
        let outcomes = all
            .iter()
            .map(|j| outcome(j, Some(attempt(j, 200, 1)), DeliveryState::Succeeded))
            .collect();
        let results = s.record_outcomes(&n, outcomes).await.unwrap();
        let expected: Vec<LeaseResult> = all
            .iter()
            .map(|j| {
                if j.endpoint_id == eps[0] {
                    LeaseResult::Finished
                } else {
                    LeaseResult::Done
                }
            })
            .collect();
        assert_eq!(results, expected, "the deleted endpoint's deliveries are finished");

        let listed = |ep: usize| {
            let (s, a, ep) = (s.clone(), a.clone(), eps[ep].clone());
            async move {
                s.list_attempts_by_endpoint(&a, &ep, AttemptFilter::default(), page(10, Order::Descending))
                    .await
                    .unwrap()
                    .data
            }
        };
        assert!(listed(0).await.is_empty(), "no attempt recorded after the delete");
        assert_eq!(listed(1).await.len(), 2, "the other endpoint's attempts are recorded");
        let by_msg = s
            .list_attempts_by_msg(&a, &m1, AttemptFilter::default(), page(10, Order::Descending))
            .await
            .unwrap()
            .data;
        assert_eq!(by_msg.len(), 1);
        assert_eq!(by_msg[0].endpoint_id, eps[1]);

        let gone: Vec<_> = all
            .iter()
            .filter(|j| j.endpoint_id == eps[0])
            .map(|j| j.held())
            .collect();
        assert_eq!(s.renew(&n, gone.clone()).await.unwrap(), vec![LeaseResult::Finished; 2]);
        assert_eq!(s.release(&n, gone).await.unwrap(), vec![LeaseResult::Finished; 2]);
        let left = claim(s, &node("n2")).await;
        assert_eq!(left.len(), 1, "only the pending delivery to the surviving endpoint");
        assert_eq!(left[0].endpoint_id, eps[1]);
    })
    .await;
}

#[tokio::test]
async fn deleting_the_app_finishes_its_claimed_deliveries() {
    each_backend(|b| async move {
        let s = &b.store;
        let (doomed, doomed_eps) = app_with_endpoints(s, 1).await;
        let kept = crate::app(s, "Kept").await;
        let kept_ep = endpoint(s, &kept, new_endpoint("https://kept.example/")).await;
        let n = node("n1");
        let d1 = s.ingest(msg(&doomed, None)).await.unwrap();
        let k1 = s.ingest(msg(&kept, None)).await.unwrap();
        let jobs = claim(s, &n).await;
        let d2 = s.ingest(msg(&doomed, Some(n.clone()))).await.unwrap();
        s.delete_app(&doomed).await.unwrap();

        let doomed_job = jobs.iter().find(|j| j.app_id == doomed).unwrap();
        let kept_job = jobs.iter().find(|j| j.app_id == kept).unwrap();
        let born = &d2.deliveries[0];
        let results = s
            .record_outcomes(
                &n,
                vec![
                    outcome(doomed_job, Some(attempt(doomed_job, 200, 1)), DeliveryState::Succeeded),
                    outcome(kept_job, Some(attempt(kept_job, 200, 1)), DeliveryState::Succeeded),
                    outcome(born, Some(attempt(born, 500, 1)), retry(Duration::ZERO)),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            results,
            vec![LeaseResult::Finished, LeaseResult::Done, LeaseResult::Finished],
            "the deleted app's deliveries are finished"
        );
        for m in [&d1.message.id, &d2.message.id] {
            let listed = s
                .list_attempts_by_msg(&doomed, m, AttemptFilter::default(), page(10, Order::Descending))
                .await
                .unwrap();
            assert!(
                listed.data.is_empty(),
                "no attempt recorded for a deleted app's message"
            );
        }
        let listed = s
            .list_attempts_by_endpoint(
                &doomed,
                &doomed_eps[0],
                AttemptFilter::default(),
                page(10, Order::Descending),
            )
            .await
            .unwrap();
        assert!(
            listed.data.is_empty(),
            "no attempt recorded for a deleted app's endpoint"
        );
        let kept_attempts = s
            .list_attempts_by_endpoint(&kept, &kept_ep, AttemptFilter::default(), page(10, Order::Descending))
            .await
            .unwrap();
        assert_eq!(kept_attempts.data.len(), 1);
        assert_eq!(kept_attempts.data[0].msg_id, k1.message.id);
        assert_eq!(
            s.renew(&n, vec![doomed_job.held(), born.held()]).await.unwrap(),
            vec![LeaseResult::Finished; 2]
        );
        sleep_ms(10).await;
        assert!(
            claim(s, &node("n2")).await.is_empty(),
            "nothing of the deleted app comes back"
        );
    })
    .await;
}
