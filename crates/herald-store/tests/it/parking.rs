//! Parked claims: deliveries an open circuit holds outside memory. They stay
//! claimed by their owner, are due for nobody, come back one probe at a time
//! (`claim_parked`) or all at once (`unpark`), and return to the pool when
//! their hold lapses unrenewed or their owner recovers.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use herald_core::EndpointId;
use herald_store::{DeliveryJob, DeliveryState, LeaseResult, NodeId, RetryHold};

use crate::{
    LONG, app_with_endpoints, attempt, claim, claim_eventually, each_backend, held, ids, lease, msg, node, outcome,
    record_all, sleep_ms,
};

use LeaseResult::{Done, Finished, Lost};

const SOON: Duration = Duration::from_secs(3);

fn of(jobs: &[DeliveryJob], ep: &EndpointId) -> Vec<DeliveryJob> {
    jobs.iter().filter(|j| &j.endpoint_id == ep).cloned().collect()
}

/// Try again after `after`, keeping the claim (the engine holds the retry).
fn retry_held(after: Duration) -> DeliveryState {
    DeliveryState::Retry {
        after,
        hold: RetryHold::Keep,
    }
}

#[tokio::test]
async fn parked_deliveries_are_claimable_by_nobody_and_not_due() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        s.ingest(msg(&a, None)).await.unwrap();
        s.ingest(msg(&a, None)).await.unwrap();
        let n = node("a");
        let jobs = claim(s, &n).await;
        assert_eq!(jobs.len(), 2);
        assert_eq!(s.park(&n, LONG, held(&jobs)).await.unwrap(), vec![Done, Done]);

        assert!(claim(s, &n).await.is_empty(), "the owner claimed its parked work");
        assert!(
            claim(s, &node("b")).await.is_empty(),
            "another node claimed parked work"
        );
        assert_eq!(
            s.next_due(&NodeId::new("any")).await.unwrap(),
            None,
            "parked work counted as due"
        );

        // Work beside it is unaffected.
        let fresh = s.ingest(msg(&a, None)).await.unwrap();
        assert!(
            s.next_due(&NodeId::new("any")).await.unwrap().is_some(),
            "the fresh delivery is due"
        );
        let got = claim(s, &node("b")).await;
        assert_eq!(ids(&got), BTreeSet::from([fresh.deliveries[0].delivery_id]));
    })
    .await;
}

#[tokio::test]
async fn claim_parked_takes_the_callers_earliest_due_of_that_endpoint_under_a_new_fence() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, eps) = app_with_endpoints(s, 2).await;
        for _ in 0..4 {
            s.ingest(msg(&a, None)).await.unwrap();
        }
        let n = node("a");
        let jobs = claim(s, &n).await;
        assert_eq!(jobs.len(), 8);
        let (ep0, ep1) = (of(&jobs, &eps[0]), of(&jobs, &eps[1]));
        // Endpoint 0's retries fall due in the order 1, 2, 0; the last not
        // within the test. Endpoint 1's are due at once.
        let waits = [60, 20, 40, 3_600_000].map(Duration::from_millis);
        let mut outcomes: Vec<_> = ep0
            .iter()
            .zip(waits)
            .map(|(j, w)| outcome(j, None, retry_held(w)))
            .collect();
        outcomes.extend(ep1.iter().map(|j| outcome(j, None, retry_held(Duration::ZERO))));
        record_all(s, &n, outcomes).await;
        assert_eq!(s.park(&n, LONG, held(&jobs)).await.unwrap(), vec![Done; 8]);
        sleep_ms(100).await;

        let other = node("b");
        assert!(
            s.claim_parked(&other, eps[0].clone(), 10, usize::MAX)
                .await
                .unwrap()
                .is_empty(),
            "another node took the owner's parked work"
        );

        let probe = s.claim_parked(&n, eps[0].clone(), 1, usize::MAX).await.unwrap();
        assert_eq!(probe.len(), 1);
        assert_eq!(probe[0].delivery_id, ep0[1].delivery_id, "the earliest due comes first");
        assert!(probe[0].fence > ep0[1].fence, "a probe is a new claim with a new fence");
        let rest = s.claim_parked(&n, eps[0].clone(), 10, usize::MAX).await.unwrap();
        assert_eq!(
            rest.iter().map(|j| j.delivery_id).collect::<Vec<_>>(),
            vec![ep0[2].delivery_id, ep0[0].delivery_id],
            "the rest that are due, earliest first; the one not yet due stays"
        );

        // A probe is an ordinary claim: held under the new fence, lost under the old.
        assert_eq!(s.renew(&n, held(&probe)).await.unwrap(), vec![Done]);
        assert_eq!(s.renew(&n, vec![ep0[1].held()]).await.unwrap(), vec![Lost]);
        assert!(claim(s, &other).await.is_empty(), "probes and parked work stay held");
        assert_eq!(
            s.unpark(&n, vec![eps[0].clone()]).await.unwrap(),
            1,
            "only the delivery not yet due was still parked"
        );

        let ep1_probe = s.claim_parked(&n, eps[1].clone(), 10, usize::MAX).await.unwrap();
        assert_eq!(
            ids(&ep1_probe),
            ids(&ep1),
            "the other endpoint's parked work is its own"
        );
    })
    .await;
}

#[tokio::test]
async fn a_retry_recorded_as_parked_is_parked_by_that_write_and_a_late_renewal_keeps_its_hold() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, eps) = app_with_endpoints(s, 1).await;
        s.ingest(msg(&a, None)).await.unwrap();
        // A short lease: a renewal under it must not cut the parked hold.
        let n = lease("a", Duration::from_millis(300));
        let jobs = claim(s, &n).await;
        assert_eq!(jobs.len(), 1);
        let parked = DeliveryState::Retry {
            after: Duration::ZERO,
            hold: RetryHold::Park(LONG),
        };
        record_all(s, &n, vec![outcome(&jobs[0], Some(attempt(&jobs[0], 0, 1)), parked)]).await;
        // The renewer's snapshot predates the park; its write lands after.
        assert_eq!(s.renew(&n, held(&jobs)).await.unwrap(), vec![Done]);
        sleep_ms(600).await;

        assert!(
            claim(s, &node("b")).await.is_empty(),
            "the parked hold lapsed with the short lease"
        );
        assert!(claim(s, &n).await.is_empty(), "parked work counted as due");
        assert_eq!(
            s.next_due(&NodeId::new("any")).await.unwrap(),
            None,
            "parked work counted as due"
        );
        let probe = s.claim_parked(&n, eps[0].clone(), 1, usize::MAX).await.unwrap();
        assert_eq!(ids(&probe), ids(&jobs), "the parked retry comes back by claim_parked");
        assert_eq!(probe[0].attempts, 1, "the parking write recorded the attempt");
    })
    .await;
}

#[tokio::test]
async fn unpark_makes_parked_deliveries_claimable_at_once() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, eps) = app_with_endpoints(s, 2).await;
        s.ingest(msg(&a, None)).await.unwrap();
        let n = node("a");
        let jobs = claim(s, &n).await;
        assert_eq!(s.park(&n, LONG, held(&jobs)).await.unwrap(), vec![Done, Done]);

        let other = node("b");
        assert_eq!(
            s.unpark(&other, vec![eps[0].clone()]).await.unwrap(),
            0,
            "another node's unpark"
        );
        assert!(claim(s, &other).await.is_empty());

        assert_eq!(s.unpark(&n, vec![eps[0].clone()]).await.unwrap(), 1);
        let got = claim(s, &other).await;
        assert_eq!(ids(&got), ids(&of(&jobs, &eps[0])), "claimable at once, by anyone");
        assert!(
            claim(s, &other).await.is_empty(),
            "the other endpoint's delivery stays parked"
        );
        assert_eq!(
            s.park(&n, LONG, held(&of(&jobs, &eps[0]))).await.unwrap(),
            vec![Lost],
            "the owner's old claim is gone once unparked and claimed"
        );
    })
    .await;
}

#[tokio::test]
async fn an_unrenewed_park_hold_lapses_and_renew_parked_extends_it() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, eps) = app_with_endpoints(s, 2).await;
        s.ingest(msg(&a, None)).await.unwrap();
        let n = node("a");
        let jobs = claim(s, &n).await;
        let hold = Duration::from_millis(600);
        assert_eq!(s.park(&n, hold, held(&jobs)).await.unwrap(), vec![Done, Done]);
        let parked = Instant::now();
        sleep_ms(250).await;
        let other = node("b");
        assert_eq!(
            s.renew_parked(&other, hold, vec![eps[0].clone()]).await.unwrap(),
            0,
            "another node renews"
        );
        assert_eq!(s.renew_parked(&n, hold, vec![eps[0].clone()]).await.unwrap(), 1);
        let renewed = Instant::now();

        // Endpoint 1's hold lapses first; endpoint 0's was pushed back.
        let first = claim_eventually(s, &other, SOON).await;
        assert!(
            parked.elapsed() >= hold - Duration::from_millis(10),
            "claimed after {:?}, within the {hold:?} hold",
            parked.elapsed()
        );
        assert_eq!(ids(&first), ids(&of(&jobs, &eps[1])), "the unrenewed hold lapses alone");
        let second = claim_eventually(s, &other, SOON).await;
        assert!(
            renewed.elapsed() >= hold - Duration::from_millis(10),
            "claimed after {:?}, within the renewed {hold:?} hold",
            renewed.elapsed()
        );
        assert_eq!(ids(&second), ids(&of(&jobs, &eps[0])), "the renewed hold lapses later");
        assert!(
            second[0].fence > of(&jobs, &eps[0])[0].fence,
            "a new claim, a new fence"
        );
        assert_eq!(
            s.claim_parked(&n, eps[0].clone(), 10, usize::MAX).await.unwrap().len(),
            0,
            "the lapsed owner cannot probe work another node took"
        );
    })
    .await;
}

#[tokio::test]
async fn recover_releases_the_owners_parked_claims_too() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, eps) = app_with_endpoints(s, 1).await;
        s.ingest(msg(&a, None)).await.unwrap();
        let n = node("a");
        let jobs = claim(s, &n).await;
        assert_eq!(s.park(&n, LONG, held(&jobs)).await.unwrap(), vec![Done]);

        let other = node("b");
        assert_eq!(
            s.recover(&other.owner).await.unwrap(),
            0,
            "recover takes only the caller's own"
        );
        assert!(claim(s, &other).await.is_empty());

        assert_eq!(s.recover(&n.owner).await.unwrap(), 1);
        let got = claim(s, &other).await;
        assert_eq!(ids(&got), ids(&jobs), "recovered parked work is claimable at once");
        assert!(
            s.claim_parked(&n, eps[0].clone(), 10, usize::MAX)
                .await
                .unwrap()
                .is_empty(),
            "recovered work is no longer parked"
        );
    })
    .await;
}

#[tokio::test]
async fn park_with_a_stale_fence_or_another_owner_is_lost() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        s.ingest(msg(&a, None)).await.unwrap();
        let n = node("a");
        let first = claim(s, &n).await;
        assert_eq!(s.release(&n, held(&first)).await.unwrap(), vec![Done]);
        let second = claim(s, &n).await;
        assert_eq!(s.park(&n, LONG, held(&first)).await.unwrap(), vec![Lost], "old fence");
        assert_eq!(
            s.park(&node("b"), LONG, held(&second)).await.unwrap(),
            vec![Lost],
            "another owner"
        );
        assert_eq!(
            s.park(&n, LONG, held(&second)).await.unwrap(),
            vec![Done],
            "current fence"
        );
    })
    .await;
}

#[tokio::test]
async fn parking_a_delivery_of_a_deleted_endpoint_is_finished() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, eps) = app_with_endpoints(s, 2).await;
        s.ingest(msg(&a, None)).await.unwrap();
        let n = node("a");
        let jobs = claim(s, &n).await;
        let (gone, kept) = (of(&jobs, &eps[0]), of(&jobs, &eps[1]));
        s.delete_endpoint(&a, &eps[0]).await.unwrap();
        assert_eq!(
            s.park(&n, LONG, vec![gone[0].held(), kept[0].held()]).await.unwrap(),
            vec![Finished, Done],
            "one answer per delivery, in order"
        );
        assert!(
            s.claim_parked(&n, eps[0].clone(), 10, usize::MAX)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(s.unpark(&n, vec![eps[0].clone()]).await.unwrap(), 0);

        // Deleted while parked: nothing comes back for it either.
        s.delete_endpoint(&a, &eps[1]).await.unwrap();
        assert!(
            s.claim_parked(&n, eps[1].clone(), 10, usize::MAX)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(s.unpark(&n, vec![eps[1].clone()]).await.unwrap(), 0);
        assert!(claim(s, &node("b")).await.is_empty());
    })
    .await;
}

/// Taking parked work back reads payloads only up to the byte budget, so
/// a large backlog never comes back in one gigabyte-sized transaction.
#[tokio::test]
async fn claim_parked_stops_at_the_byte_budget() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, eps) = app_with_endpoints(s, 1).await;
        let n = node("a");
        let big = bytes::Bytes::from(format!(r#"{{"data":"{}"}}"#, "x".repeat(100 * 1024)));
        let mut parked = Vec::new();
        for _ in 0..3 {
            let mut m = msg(&a, Some(n.clone()));
            m.payload = big.clone();
            parked.extend(s.ingest(m).await.unwrap().deliveries);
        }
        assert_eq!(s.park(&n, LONG, held(&parked)).await.unwrap(), vec![Done, Done, Done]);
        let first = s.claim_parked(&n, eps[0].clone(), 10, 250 * 1024).await.unwrap();
        assert_eq!(first.len(), 2, "two 100 KiB payloads fit a 250 KiB budget");
        let rest = s.claim_parked(&n, eps[0].clone(), 10, 1).await.unwrap();
        assert_eq!(rest.len(), 1, "a budget below one payload still takes one");
    })
    .await;
}

#[tokio::test]
async fn probe_parked_hands_out_the_earliest_due_under_its_standing_claim() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, eps) = app_with_endpoints(s, 1).await;
        for _ in 0..3 {
            s.ingest(msg(&a, None)).await.unwrap();
        }
        // The engine's shape: a parked hold far longer than a lease.
        let n = lease("a", Duration::from_secs(30));
        let jobs = claim(s, &n).await;
        assert_eq!(jobs.len(), 3);
        // Due in the order 1, 0; job 2 not within the test.
        let waits = [400, 200, 3_600_000].map(Duration::from_millis);
        let parked: Vec<_> = jobs
            .iter()
            .zip(waits)
            .map(|(j, w)| {
                let state = DeliveryState::Retry {
                    after: w,
                    hold: RetryHold::Park(LONG),
                };
                outcome(j, Some(attempt(j, 0, 1)), state)
            })
            .collect();
        record_all(s, &n, parked).await;
        assert_eq!(
            s.probe_parked(&n, eps[0].clone()).await.unwrap().map(|j| j.delivery_id),
            None,
            "nothing is due yet"
        );
        sleep_ms(600).await;

        assert!(
            s.probe_parked(&node("b"), eps[0].clone()).await.unwrap().is_none(),
            "another node probed the owner's parked work"
        );
        let probe = s
            .probe_parked(&n, eps[0].clone())
            .await
            .unwrap()
            .expect("a due parked delivery");
        assert_eq!(probe.delivery_id, jobs[1].delivery_id, "the earliest due comes first");
        assert_eq!(probe.fence, jobs[1].fence, "handed out under its standing claim");
        assert_eq!(probe.attempts, 1);
        assert_eq!(probe.payload, jobs[1].payload);
        assert!(claim(s, &node("b")).await.is_empty(), "the probe is still held");
        assert_eq!(
            s.next_due(&NodeId::new("any")).await.unwrap(),
            None,
            "the probe became due for the pool"
        );

        // Its failed attempt parks it again, under the same claim.
        let again = DeliveryState::Retry {
            after: Duration::from_secs(3600),
            hold: RetryHold::Park(LONG),
        };
        record_all(s, &n, vec![outcome(&probe, Some(attempt(&probe, 0, 2)), again)]).await;
        let next = s.probe_parked(&n, eps[0].clone()).await.unwrap().expect("the next due");
        assert_eq!(next.delivery_id, jobs[0].delivery_id);
        record_all(
            s,
            &n,
            vec![outcome(&next, Some(attempt(&next, 200, 2)), DeliveryState::Succeeded)],
        )
        .await;
        assert!(
            s.probe_parked(&n, eps[0].clone()).await.unwrap().is_none(),
            "nothing else is due"
        );
        assert_eq!(
            s.unpark(&n, vec![eps[0].clone()]).await.unwrap(),
            2,
            "both retries stayed parked"
        );
    })
    .await;
}

#[tokio::test]
async fn probe_parked_claims_afresh_when_too_little_of_the_parked_claim_is_left() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, eps) = app_with_endpoints(s, 1).await;
        s.ingest(msg(&a, None)).await.unwrap();
        let n = node("a");
        let jobs = claim(s, &n).await;
        // A hold shorter than the lease: sending under it could outlive it.
        assert_eq!(
            s.park(&n, Duration::from_secs(5), held(&jobs)).await.unwrap(),
            vec![Done]
        );

        let probe = s
            .probe_parked(&n, eps[0].clone())
            .await
            .unwrap()
            .expect("the parked delivery");
        assert_eq!(probe.delivery_id, jobs[0].delivery_id);
        assert!(probe.fence > jobs[0].fence, "claimed afresh, under a new fence");
        assert_eq!(
            s.renew(&n, held(&jobs)).await.unwrap(),
            vec![Lost],
            "the old claim is gone"
        );
        assert_eq!(
            s.unpark(&n, vec![eps[0].clone()]).await.unwrap(),
            0,
            "a fresh claim is not parked"
        );
        assert_eq!(s.renew(&n, vec![probe.held()]).await.unwrap(), vec![Done]);
    })
    .await;
}

#[tokio::test]
async fn bulk_parking_renewing_and_releasing_cover_whole_backlogs_of_many_endpoints() {
    each_backend(|b| async move {
        let s = &b.store;
        // 3 parked endpoints × 3,500 = 10,500 rows: more than one write takes.
        let (a, eps) = app_with_endpoints(s, 4).await;
        let mut ingests = tokio::task::JoinSet::new();
        for _ in 0..3_500 {
            let (s, m) = (s.clone(), msg(&a, None));
            ingests.spawn(async move { s.ingest(m).await });
        }
        while let Some(r) = ingests.join_next().await {
            r.unwrap().unwrap();
        }
        let n = node("a");
        let parked = eps[..3].to_vec();
        assert_eq!(s.park_endpoints(&n, LONG, parked.clone()).await.unwrap(), 10_500);
        let other = node("b");
        let free = s.claim_due(&other, 20_000, usize::MAX).await.unwrap();
        assert_eq!(free.len(), 3_500, "only the unparked endpoint's work is due");
        assert!(free.iter().all(|j| j.endpoint_id == eps[3]));

        assert_eq!(s.renew_parked(&n, LONG * 2, parked.clone()).await.unwrap(), 10_500);
        assert_eq!(s.unpark(&n, vec![eps[0].clone(), eps[1].clone()]).await.unwrap(), 7_000);
        let released = s.claim_due(&other, 20_000, usize::MAX).await.unwrap();
        assert_eq!(released.len(), 7_000);
        assert!(
            released
                .iter()
                .all(|j| j.endpoint_id == eps[0] || j.endpoint_id == eps[1])
        );
        assert_eq!(s.unpark(&n, parked).await.unwrap(), 3_500, "the rest, once");
    })
    .await;
}
