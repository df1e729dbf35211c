//! Owned, fenced leases: who may claim, renew, record and release what, and
//! for how long, by the database's clock.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use herald_store::{AttemptFilter, DeliveryCounts, DeliveryState, LeaseResult, NodeId, Order, RetryHold};

use crate::{
    app_with_endpoints, attempt, claim, claim_eventually, delivery_ids, each_backend, held, ids, lease, msg, node,
    outcome, page, record_all, retry, sleep_ms,
};

use LeaseResult::{Done, Finished, Lost};

const SOON: Duration = Duration::from_secs(3);

#[tokio::test]
async fn a_claim_is_owned_until_its_lease_lapses() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, eps) = app_with_endpoints(s, 1).await;
        let m = s.ingest(msg(&a, None)).await.unwrap().message.id;
        let ttl = Duration::from_millis(500);
        let node_a = lease("a", ttl);
        let node_b = node("b");
        let claimed = Instant::now();
        let a_jobs = claim(s, &node_a).await;
        assert_eq!(a_jobs.len(), 1);
        assert!(claim(s, &node_b).await.is_empty(), "B claimed what A holds");

        let b_jobs = claim_eventually(s, &node_b, SOON).await;
        assert!(
            claimed.elapsed() >= ttl - Duration::from_millis(10),
            "B claimed after {:?}, before A's {ttl:?} lease lapsed",
            claimed.elapsed()
        );
        assert_eq!(ids(&b_jobs), ids(&a_jobs), "B takes over the lapsed claim");
        assert!(b_jobs[0].fence > a_jobs[0].fence, "the new claim has a larger fence");

        // A's claim is gone: whatever A does now changes nothing.
        let a_held = held(&a_jobs);
        assert_eq!(s.renew(&node_a, a_held.clone()).await.unwrap(), vec![Lost], "A renews");
        let a_outcome = outcome(&a_jobs[0], Some(attempt(&a_jobs[0], 200, 1)), DeliveryState::Succeeded);
        assert_eq!(
            s.record_outcomes(&node_a, vec![a_outcome]).await.unwrap(),
            vec![Lost],
            "A records"
        );
        assert_eq!(s.release(&node_a, a_held).await.unwrap(), vec![Lost], "A releases");
        let attempts =
            |s: std::sync::Arc<dyn herald_store::Store>, a: herald_core::AppId, m: herald_core::MessageId| async move {
                s.list_attempts_by_msg(&a, &m, AttemptFilter::default(), page(10, Order::Descending))
                    .await
                    .unwrap()
                    .data
            };
        assert!(
            attempts(s.clone(), a.clone(), m.clone()).await.is_empty(),
            "A's outcome left an attempt"
        );
        assert_eq!(
            s.endpoint_counts(&a, &eps[0]).await.unwrap(),
            DeliveryCounts {
                pending: 1,
                ..Default::default()
            },
            "A's outcome changed the delivery"
        );

        // B's claim is intact: nobody else can claim, and B can record.
        assert!(
            claim(s, &node("c")).await.is_empty(),
            "B's claim was dropped by A's release"
        );
        let b_attempt = attempt(&b_jobs[0], 200, 1);
        record_all(
            s,
            &node_b,
            vec![outcome(&b_jobs[0], Some(b_attempt.clone()), DeliveryState::Succeeded)],
        )
        .await;
        let listed = attempts(s.clone(), a.clone(), m.clone()).await;
        assert_eq!(listed.iter().map(|x| &x.id).collect::<Vec<_>>(), vec![&b_attempt.id]);
    })
    .await;
}

#[tokio::test]
async fn a_stale_fence_is_lost_even_for_the_same_owner() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        s.ingest(msg(&a, None)).await.unwrap();
        let n = node("a");
        let first = claim(s, &n).await;
        assert_eq!(s.release(&n, held(&first)).await.unwrap(), vec![Done]);
        let second = claim(s, &n).await;
        assert_eq!(ids(&second), ids(&first));
        assert!(second[0].fence > first[0].fence, "every new claim grows the fence");

        assert_eq!(s.renew(&n, held(&first)).await.unwrap(), vec![Lost], "renew, old fence");
        let old = outcome(&first[0], Some(attempt(&first[0], 200, 1)), DeliveryState::Succeeded);
        assert_eq!(
            s.record_outcomes(&n, vec![old]).await.unwrap(),
            vec![Lost],
            "record, old fence"
        );
        assert_eq!(
            s.release(&n, held(&first)).await.unwrap(),
            vec![Lost],
            "release, old fence"
        );
        assert_eq!(
            s.renew(&n, held(&second)).await.unwrap(),
            vec![Done],
            "renew, current fence"
        );
        record_all(s, &n, vec![outcome(&second[0], None, DeliveryState::Succeeded)]).await;
    })
    .await;
}

#[tokio::test]
async fn renew_extends_a_live_claim() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 2).await;
        s.ingest(msg(&a, None)).await.unwrap();
        // Generous against a loaded machine: a renewal that itself took
        // longer than the TTL would fail the test for the wrong reason.
        let ttl = Duration::from_millis(1000);
        let node_a = lease("a", ttl);
        let jobs = claim(s, &node_a).await;
        assert_eq!(jobs.len(), 2);
        let node_b = node("b");
        // Renewed every 600 ms, the 1 s claim outlives its first TTL.
        for round in 0..3 {
            sleep_ms(600).await;
            if round < 2 {
                assert_eq!(
                    s.renew(&node_a, held(&jobs)).await.unwrap(),
                    vec![Done, Done],
                    "renewal {round}"
                );
            }
            assert!(
                claim(s, &node_b).await.is_empty(),
                "B claimed a renewed claim ({round})"
            );
        }
        // One answer per id, in the order asked.
        let reversed = held(&jobs).into_iter().rev().collect();
        assert_eq!(s.renew(&node_a, reversed).await.unwrap(), vec![Done, Done]);
        // A finished delivery cannot be renewed.
        record_all(s, &node_a, vec![outcome(&jobs[0], None, DeliveryState::Succeeded)]).await;
        assert_eq!(s.renew(&node_a, held(&jobs)).await.unwrap(), vec![Finished, Done]);

        // Left alone, the renewed claim lapses like any other.
        let taken = claim_eventually(s, &node_b, SOON).await;
        assert_eq!(ids(&taken), BTreeSet::from([jobs[1].delivery_id]));
    })
    .await;
}

/// Each call answers per delivery, in the order asked: here one the caller
/// holds, one it lost to another node, and one already finished.
#[tokio::test]
async fn results_are_per_id_and_in_order() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        let mut made = Vec::new();
        for _ in 0..3 {
            made.push(s.ingest(msg(&a, None)).await.unwrap());
        }
        let (node_a, node_b) = (node("a"), node("b"));
        let jobs = claim(s, &node_a).await;
        assert_eq!(jobs.len(), 3);
        let (h, l, f) = (&jobs[0], &jobs[1], &jobs[2]);
        // `l` goes to B; `f` is finished.
        assert_eq!(s.release(&node_a, vec![l.held()]).await.unwrap(), vec![Done]);
        let b_jobs = claim(s, &node_b).await;
        assert_eq!(ids(&b_jobs), BTreeSet::from([l.delivery_id]));
        record_all(s, &node_a, vec![outcome(f, None, DeliveryState::Succeeded)]).await;

        assert_eq!(
            s.renew(&node_a, vec![h.held(), l.held(), f.held()]).await.unwrap(),
            vec![Done, Lost, Finished],
            "renew"
        );
        assert_eq!(
            s.renew(&node_a, vec![f.held(), h.held(), l.held()]).await.unwrap(),
            vec![Finished, Done, Lost],
            "renew, reordered"
        );
        let keep = DeliveryState::Retry {
            after: Duration::ZERO,
            hold: RetryHold::Keep,
        };
        let results = s
            .record_outcomes(
                &node_a,
                vec![
                    outcome(h, Some(attempt(h, 500, 1)), keep),
                    outcome(l, Some(attempt(l, 200, 1)), DeliveryState::Succeeded),
                    outcome(f, Some(attempt(f, 200, 2)), DeliveryState::Succeeded),
                ],
            )
            .await
            .unwrap();
        assert_eq!(results, vec![Done, Lost, Finished], "record_outcomes");
        for (i, m) in made.iter().enumerate() {
            let listed = s
                .list_attempts_by_msg(&a, &m.message.id, AttemptFilter::default(), page(10, Order::Descending))
                .await
                .unwrap();
            let want = usize::from(i == 0);
            assert_eq!(
                listed.data.len(),
                want,
                "attempts of message {i}: only the held one's is written"
            );
        }
        assert_eq!(
            s.release(&node_a, vec![h.held(), l.held(), f.held()]).await.unwrap(),
            vec![Done, Lost, Finished],
            "release"
        );

        // Only the released one is free; B still holds its own and can record.
        let c_jobs = claim(s, &node("c")).await;
        assert_eq!(ids(&c_jobs), BTreeSet::from([h.delivery_id]));
        assert_eq!(c_jobs[0].attempts, 1);
        record_all(s, &node_b, vec![outcome(&b_jobs[0], None, DeliveryState::Succeeded)]).await;
    })
    .await;
}

#[tokio::test]
async fn recover_takes_back_only_the_callers_claims() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        for _ in 0..4 {
            s.ingest(msg(&a, None)).await.unwrap();
        }
        let (node_a, node_b) = (node("a"), node("b"));
        let a_jobs = s.claim_due(&node_a, 2, usize::MAX).await.unwrap();
        let b_jobs = s.claim_due(&node_b, 2, usize::MAX).await.unwrap();
        assert_eq!((a_jobs.len(), b_jobs.len()), (2, 2));
        let born = s.ingest(msg(&a, Some(node_a.clone()))).await.unwrap();
        let mut a_ids = ids(&a_jobs);
        a_ids.extend(delivery_ids(std::slice::from_ref(&born)));

        assert_eq!(
            s.recover(&node_a.owner).await.unwrap(),
            3,
            "A's two claims and one born claimed"
        );
        let c_jobs = claim(s, &node("c")).await;
        assert_eq!(ids(&c_jobs), a_ids, "A's deliveries are claimable at once, B's are not");
        assert_eq!(
            s.renew(&node_b, held(&b_jobs)).await.unwrap(),
            vec![Done, Done],
            "B still holds its own"
        );
        assert_eq!(
            s.renew(&node_a, held(&a_jobs)).await.unwrap(),
            vec![Lost, Lost],
            "A's are gone"
        );
        assert_eq!(s.recover(&node_a.owner).await.unwrap(), 0, "nothing left to recover");
        assert_eq!(s.recover(&node("nobody").owner).await.unwrap(), 0);
        record_all(
            s,
            &node_b,
            b_jobs
                .iter()
                .map(|j| outcome(j, None, DeliveryState::Succeeded))
                .collect(),
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn ingest_with_a_lease_is_born_claimed_by_its_owner() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 2).await;
        let (node_a, node_b) = (node("a"), node("b"));
        let born = s.ingest(msg(&a, Some(node_a.clone()))).await.unwrap();
        assert_eq!(born.deliveries.len(), 2);
        assert!(born.deliveries.iter().all(|d| d.fence >= 1), "born with a fence");
        assert!(
            claim(s, &node_b).await.is_empty(),
            "another node claimed born-claimed work"
        );
        assert!(claim(s, &node_a).await.is_empty(), "claimed again by its own node");
        assert_eq!(s.next_due(&NodeId::new("any")).await.unwrap(), None);
        assert_eq!(
            s.renew(&node_a, held(&born.deliveries)).await.unwrap(),
            vec![Done, Done]
        );
        assert_eq!(
            s.renew(&node_b, held(&born.deliveries)).await.unwrap(),
            vec![Lost, Lost],
            "another node renews"
        );
        record_all(
            s,
            &node_a,
            born.deliveries
                .iter()
                .map(|d| outcome(d, Some(attempt(d, 200, 1)), DeliveryState::Succeeded))
                .collect(),
        )
        .await;

        // Without a lease: claimable at once, by anyone.
        let free = s.ingest(msg(&a, None)).await.unwrap();
        assert_eq!(ids(&claim(s, &node_b).await), delivery_ids(&[free]));
    })
    .await;
}

#[tokio::test]
async fn retry_keeping_the_claim_holds_it_past_the_retry() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        let ttl = Duration::from_millis(1000);
        let node_a = lease("a", ttl);
        let ingested = s.ingest(msg(&a, Some(node_a.clone()))).await.unwrap();
        let job = &ingested.deliveries[0];
        let after = Duration::from_millis(200);
        let recorded = Instant::now();
        record_all(
            s,
            &node_a,
            vec![outcome(
                job,
                Some(attempt(job, 500, 1)),
                DeliveryState::Retry {
                    after,
                    hold: RetryHold::Keep,
                },
            )],
        )
        .await;
        assert_eq!(
            s.next_due(&NodeId::new("any")).await.unwrap(),
            None,
            "a retry its node holds is not due"
        );
        sleep_ms(500).await;
        assert!(claim(s, &node("b")).await.is_empty(), "the retry is due but still A's");
        // The holder goes on under the same fence.
        assert_eq!(s.renew(&node_a, vec![job.held()]).await.unwrap(), vec![Done]);
        let renewed = Instant::now();

        // Once the claim lapses (the TTL after the renewal), anyone may claim.
        let taken = claim_eventually(s, &node("b"), SOON).await;
        assert!(
            renewed.elapsed() >= ttl - Duration::from_millis(10),
            "claimed {:?} after the renewal, within A's {ttl:?} lease",
            renewed.elapsed()
        );
        assert!(recorded.elapsed() >= after + ttl);
        assert_eq!(ids(&taken), BTreeSet::from([job.delivery_id]));
        assert_eq!(taken[0].attempts, 1);
        assert!(taken[0].fence > job.fence);
    })
    .await;
}

#[tokio::test]
async fn retry_keeping_the_claim_lapses_a_ttl_after_the_retry() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        let ttl = Duration::from_millis(200);
        let node_a = lease("a", ttl);
        let job = s.ingest(msg(&a, Some(node_a.clone()))).await.unwrap().deliveries[0].clone();
        let after = Duration::from_millis(100);
        let recorded = Instant::now();
        let keep = DeliveryState::Retry {
            after,
            hold: RetryHold::Keep,
        };
        record_all(s, &node_a, vec![outcome(&job, None, keep)]).await;
        let taken = claim_eventually(s, &node("b"), SOON).await;
        assert!(
            recorded.elapsed() >= after + ttl - Duration::from_millis(10),
            "claimed {:?} after the retry was recorded: before its wait plus the TTL",
            recorded.elapsed()
        );
        assert_eq!(ids(&taken), BTreeSet::from([job.delivery_id]));
    })
    .await;
}

#[tokio::test]
async fn retry_without_keeping_the_claim_releases_it() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        let node_a = node("a");
        let job = s.ingest(msg(&a, Some(node_a.clone()))).await.unwrap().deliveries[0].clone();
        let after = Duration::from_millis(100);
        record_all(
            s,
            &node_a,
            vec![outcome(&job, Some(attempt(&job, 500, 1)), retry(after))],
        )
        .await;
        let next = s
            .next_due(&NodeId::new("any"))
            .await
            .unwrap()
            .expect("the released retry is pending");
        assert!(next <= after, "next_due {next:?} past the retry wait");
        assert_eq!(
            s.renew(&node_a, vec![job.held()]).await.unwrap(),
            vec![Lost],
            "A kept the claim"
        );

        let taken = claim_eventually(s, &node("b"), SOON).await;
        assert_eq!(ids(&taken), BTreeSet::from([job.delivery_id]));
        assert!(taken[0].fence > job.fence);
        let late = outcome(&job, Some(attempt(&job, 200, 2)), DeliveryState::Succeeded);
        assert_eq!(s.record_outcomes(&node_a, vec![late]).await.unwrap(), vec![Lost]);
    })
    .await;
}

/// The same delivery twice in one batch: the first outcome is recorded, the
/// second finds it finished and writes no second attempt.
#[tokio::test]
async fn a_delivery_recorded_twice_in_one_batch_is_recorded_once() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        let m = s.ingest(msg(&a, None)).await.unwrap().message.id;
        let n = node("a");
        let jobs = claim(s, &n).await;
        let twice = vec![
            outcome(&jobs[0], Some(attempt(&jobs[0], 200, 1)), DeliveryState::Succeeded),
            outcome(&jobs[0], Some(attempt(&jobs[0], 200, 1)), DeliveryState::Succeeded),
        ];
        assert_eq!(s.record_outcomes(&n, twice).await.unwrap(), vec![Done, Finished]);
        let listed = s
            .list_attempts_by_msg(&a, &m, AttemptFilter::default(), page(10, Order::Descending))
            .await
            .unwrap();
        assert_eq!(listed.data.len(), 1, "one attempt recorded");
    })
    .await;
}

/// A batch large enough to be written in several multi-row statements still
/// answers each outcome in order and writes an attempt only for those held.
#[tokio::test]
async fn a_large_batch_of_outcomes_answers_each_in_order() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        let mut made = Vec::new();
        for _ in 0..150 {
            made.push(s.ingest(msg(&a, None)).await.unwrap().message.id);
        }
        let (node_a, node_b) = (node("a"), node("b"));
        let mut jobs = s.claim_due(&node_a, 1000, usize::MAX).await.unwrap();
        assert_eq!(jobs.len(), 150);
        jobs.sort_by(|x, y| x.msg_id.as_str().cmp(y.msg_id.as_str()));
        made.sort_by(|x, y| x.as_str().cmp(y.as_str()));
        // Every tenth goes to B; every seventh (of the rest) is finished first.
        let lost = |i: usize| i.is_multiple_of(10);
        let finished = |i: usize| !lost(i) && i.is_multiple_of(7);
        let to_b: Vec<_> = (0..150).filter(|&i| lost(i)).map(|i| jobs[i].held()).collect();
        s.release(&node_a, to_b).await.unwrap();
        let b_jobs = s.claim_due(&node_b, 1000, usize::MAX).await.unwrap();
        assert_eq!(b_jobs.len(), 15);
        let early: Vec<_> = (0..150)
            .filter(|&i| finished(i))
            .map(|i| outcome(&jobs[i], None, DeliveryState::Succeeded))
            .collect();
        record_all(s, &node_a, early).await;

        let outcomes = (0..150)
            .map(|i| {
                let (code, state) = if i % 2 == 0 {
                    (200, DeliveryState::Succeeded)
                } else {
                    (500, DeliveryState::Failed)
                };
                outcome(&jobs[i], Some(attempt(&jobs[i], code, 1)), state)
            })
            .collect();
        let results = s.record_outcomes(&node_a, outcomes).await.unwrap();
        let want: Vec<_> = (0..150)
            .map(|i| {
                if lost(i) {
                    Lost
                } else if finished(i) {
                    Finished
                } else {
                    Done
                }
            })
            .collect();
        assert_eq!(results, want);
        for (i, m) in made.iter().enumerate() {
            let listed = s
                .list_attempts_by_msg(&a, m, AttemptFilter::default(), page(10, Order::Descending))
                .await
                .unwrap()
                .data;
            let written = usize::from(want[i] == Done);
            assert_eq!(listed.len(), written, "attempts of message {i} ({:?})", want[i]);
            if let Some(at) = listed.first() {
                assert_eq!(
                    at.response_status_code,
                    if i % 2 == 0 { 200 } else { 500 },
                    "message {i}"
                );
            }
        }
        assert!(
            s.claim_due(&node("c"), 1000, usize::MAX).await.unwrap().is_empty(),
            "nothing finished or held by B is claimable"
        );
        let b_outcomes = b_jobs
            .iter()
            .map(|j| outcome(j, None, DeliveryState::Succeeded))
            .collect();
        record_all(s, &node_b, b_outcomes).await;
    })
    .await;
}

/// "Earliest first" holds for lapsed claims too: among due deliveries whose
/// claims lapsed, the one due first is taken first, whenever its claim lapsed.
#[tokio::test]
async fn lapsed_claims_are_taken_earliest_due_first() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        for _ in 0..3 {
            s.ingest(msg(&a, None)).await.unwrap();
            crate::tick().await;
        }
        let jobs = claim(s, &lease("a", Duration::from_millis(50))).await;
        assert_eq!(jobs.len(), 3);
        // The earliest two are renewed for longer, so the last lapses first.
        let longer = lease("a", Duration::from_millis(150));
        assert_eq!(s.renew(&longer, held(&jobs[..2])).await.unwrap(), vec![Done, Done]);
        sleep_ms(300).await;

        let node_b = node("b");
        let mut order = Vec::new();
        for _ in 0..3 {
            order.extend(s.claim_due(&node_b, 1, usize::MAX).await.unwrap());
        }
        assert_eq!(
            order.iter().map(|j| j.delivery_id).collect::<Vec<_>>(),
            jobs.iter().map(|j| j.delivery_id).collect::<Vec<_>>(),
            "lapsed claims taken in due order"
        );
    })
    .await;
}

/// A lease TTL too large to add to the database's clock (a caller's
/// "forever") must neither take the store down nor wrap into the past.
#[tokio::test]
async fn a_lease_of_duration_max_holds_and_keeps_the_store_up() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        let forever = lease("a", Duration::MAX);
        let born = s
            .ingest(msg(&a, Some(forever.clone())))
            .await
            .unwrap_or_else(|e| panic!("ingest under a Duration::MAX lease: {e}"));
        assert!(claim(s, &node("b")).await.is_empty(), "a claim for ever lapsed");
        assert_eq!(s.renew(&forever, held(&born.deliveries)).await.unwrap(), vec![Done]);
        s.ingest(msg(&a, None)).await.expect("the store still takes writes");
        let jobs = s.claim_due(&forever, 10, usize::MAX).await.unwrap();
        assert_eq!(jobs.len(), 1, "the plain message is claimable");
        assert!(claim(s, &node("b")).await.is_empty(), "a claim for ever lapsed");
    })
    .await;
}

/// A retry wait too large to add to the database's clock must neither take
/// the store down nor make the retry due at once.
#[tokio::test]
async fn a_retry_wait_of_duration_max_is_never_due() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        s.ingest(msg(&a, None)).await.unwrap();
        let node_a = node("a");
        let jobs = claim(s, &node_a).await;
        let results = s
            .record_outcomes(&node_a, vec![outcome(&jobs[0], None, retry(Duration::MAX))])
            .await
            .unwrap_or_else(|e| panic!("a retry in Duration::MAX: {e}"));
        assert_eq!(results, vec![Done]);
        assert!(claim(s, &node("b")).await.is_empty(), "a retry for ever away came due");
        let next = s
            .next_due(&NodeId::new("any"))
            .await
            .unwrap()
            .expect("the retry is pending");
        assert!(next > Duration::from_secs(86_400 * 365), "next_due {next:?}");
        s.ingest(msg(&a, None)).await.expect("the store still takes writes");
    })
    .await;
}
