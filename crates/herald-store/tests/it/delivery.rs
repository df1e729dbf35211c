//! The delivery engine's side: claiming due work (order, limit, byte
//! budget), retries, final outcomes, `next_due`, and what deleting an
//! endpoint or an application does to deliveries in flight.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_store::{
    AttemptFilter, DeliveryCounts, DeliveryJob, DeliveryState, LeaseResult, NewMessage, Order, RetryHold,
};

use crate::{
    app_with_endpoints, attempt, claim, claim_eventually, delivery_ids, each_backend, ids, lease, msg, node, outcome,
    page, record_all, retry, sleep_ms, tick,
};

const KIB: usize = 1024;

fn ordered(jobs: &[DeliveryJob]) -> Vec<i64> {
    jobs.iter().map(|j| j.delivery_id).collect()
}

#[tokio::test]
async fn deliveries_claimed_at_ingest_are_not_claimable() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 2).await;
        let first = s.ingest(msg(&a, Some(node("n1")))).await.unwrap();
        let second = s.ingest(msg(&a, Some(node("n1")))).await.unwrap();
        assert_eq!(first.deliveries.len() + second.deliveries.len(), 4);

        let other = node("n2");
        assert!(
            claim(s, &other).await.is_empty(),
            "deliveries claimed at ingest were claimed again"
        );
        assert_eq!(
            s.next_due(&herald_store::NodeId::new("any")).await.unwrap(),
            None,
            "claimed deliveries are not due"
        );

        // Handing the claims back makes them claimable, once.
        assert_eq!(s.recover(&node("n1").owner).await.unwrap(), 4);
        let jobs = claim(s, &other).await;
        assert_eq!(ids(&jobs), delivery_ids(&[first, second]));
        assert!(claim(s, &other).await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn unclaimed_deliveries_are_claimed_exactly_once() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 2).await;
        assert_eq!(
            s.next_due(&herald_store::NodeId::new("any")).await.unwrap(),
            None,
            "nothing stored yet"
        );
        let first = s.ingest(msg(&a, None)).await.unwrap();
        tick().await;
        let second = s.ingest(msg(&a, None)).await.unwrap();
        assert!(
            s.next_due(&herald_store::NodeId::new("any")).await.unwrap().is_some(),
            "a pending delivery is due"
        );

        let n = node("n1");
        let jobs = claim(s, &n).await;
        assert_eq!(jobs.len(), 4);
        let ingested: BTreeMap<i64, &DeliveryJob> = first
            .deliveries
            .iter()
            .chain(&second.deliveries)
            .map(|d| (d.delivery_id, d))
            .collect();
        for job in &jobs {
            let made = ingested
                .get(&job.delivery_id)
                .unwrap_or_else(|| panic!("claimed unknown delivery {}", job.delivery_id));
            assert_eq!(job.msg_id, made.msg_id);
            assert_eq!(job.app_id, a);
            assert_eq!(job.endpoint_id, made.endpoint_id);
            assert_eq!(job.event_type, made.event_type);
            assert_eq!(job.payload, made.payload);
            assert_eq!(job.attempts, 0);
            assert_eq!(job.first_attempt_at, None);
            assert!(job.fence >= 1, "a claim has a fence");
        }
        // Earliest due first: the first message's deliveries come first.
        let first_ids: BTreeSet<i64> = delivery_ids(std::slice::from_ref(&first));
        assert_eq!(ids(&jobs[..2]), first_ids, "claimed in due order");

        assert!(claim(s, &n).await.is_empty(), "claimed twice by the same node");
        assert!(claim(s, &node("n2")).await.is_empty(), "claimed twice by another node");
        assert_eq!(
            s.next_due(&herald_store::NodeId::new("any")).await.unwrap(),
            None,
            "all claimed"
        );
    })
    .await;
}

#[tokio::test]
async fn claim_due_honours_limit_in_due_order() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        let mut made = Vec::new();
        for _ in 0..5 {
            made.push(s.ingest(msg(&a, None)).await.unwrap().deliveries[0].delivery_id);
            tick().await;
        }
        let n = node("n1");
        let take = |limit| {
            let (s, n) = (s.clone(), n.clone());
            async move { ordered(&s.claim_due(&n, limit, usize::MAX).await.unwrap()) }
        };
        assert_eq!(take(2).await, made[0..2], "oldest first, two at a time");
        assert_eq!(take(2).await, made[2..4]);
        assert_eq!(take(2).await, made[4..5]);
        assert!(take(2).await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn release_hands_back_only_the_given_claims() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        let mut made = Vec::new();
        for _ in 0..4 {
            made.push(s.ingest(msg(&a, None)).await.unwrap().deliveries[0].delivery_id);
        }
        let n = node("n1");
        let jobs = claim(s, &n).await;
        assert_eq!(jobs.len(), 4);
        let by_id = |id: i64| jobs.iter().find(|j| j.delivery_id == id).unwrap().held();

        let some = vec![by_id(made[0]), by_id(made[2])];
        assert_eq!(
            s.release(&n, some.clone()).await.unwrap(),
            vec![LeaseResult::Done; 2],
            "releasing two held claims"
        );
        assert!(
            s.next_due(&herald_store::NodeId::new("any")).await.unwrap().is_some(),
            "released deliveries are due again"
        );
        assert_eq!(
            s.release(&n, some).await.unwrap(),
            vec![LeaseResult::Lost; 2],
            "releasing the same claims twice"
        );
        let again = claim(s, &node("n2")).await;
        assert_eq!(
            ids(&again),
            BTreeSet::from([made[0], made[2]]),
            "only the released ones"
        );
        assert_eq!(s.release(&n, vec![]).await.unwrap(), vec![], "releasing nothing");

        // The other two are still n1's; releasing them makes them claimable.
        let rest = vec![by_id(made[1]), by_id(made[3])];
        assert_eq!(s.release(&n, rest).await.unwrap(), vec![LeaseResult::Done; 2]);
        assert_eq!(ids(&claim(s, &n).await), BTreeSet::from([made[1], made[3]]));
        assert!(claim(s, &n).await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn releasing_an_unknown_delivery_answers_finished() {
    each_backend(|b| async move {
        let s = &b.store;
        let unknown = herald_store::Held {
            id: i64::MAX - 7,
            fence: 1,
        };
        let n = node("n1");
        assert_eq!(s.release(&n, vec![unknown]).await.unwrap(), vec![LeaseResult::Finished]);
        assert_eq!(s.renew(&n, vec![unknown]).await.unwrap(), vec![LeaseResult::Finished]);
    })
    .await;
}

#[tokio::test]
async fn retry_hands_the_delivery_back_for_later() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        let ingested = s.ingest(msg(&a, None)).await.unwrap();
        let n = node("n1");
        let jobs = claim(s, &n).await;
        assert_eq!(jobs.len(), 1);
        let job = &jobs[0];
        assert_eq!(job.first_attempt_at, None, "never tried yet");
        crate::assert_ms_eq(
            job.msg_created_at,
            ingested.message.created_at,
            "the message's creation time",
        );

        let first = attempt(job, 503, 1);
        let first_started = first.created_at;
        let wait = Duration::from_millis(250);
        let recorded = Instant::now();
        record_all(s, &n, vec![outcome(job, Some(first), retry(wait))]).await;

        assert!(claim(s, &n).await.is_empty(), "a retry due later is not due now");
        let next = s
            .next_due(&herald_store::NodeId::new("any"))
            .await
            .unwrap()
            .expect("the retry is pending");
        assert!(next <= wait, "next_due {next:?} is at most the retry wait");
        assert!(next >= wait / 2, "next_due {next:?} is close to the retry wait");

        let later = claim_eventually(s, &n, Duration::from_secs(3)).await;
        assert!(
            recorded.elapsed() >= wait - Duration::from_millis(10),
            "claimed after {:?}, before the retry was due",
            recorded.elapsed()
        );
        assert_eq!(later.len(), 1, "the retry is claimable once due");
        let again = &later[0];
        assert_eq!(again.delivery_id, ingested.deliveries[0].delivery_id);
        assert_eq!(again.msg_id, ingested.message.id);
        assert_eq!(again.payload, ingested.message.payload);
        assert_eq!(again.attempts, 1, "one attempt made");
        assert!(again.fence > job.fence, "a new claim, a new fence");
        crate::assert_ms_eq(
            again.first_attempt_at.expect("tried once"),
            first_started,
            "the first attempt's start",
        );

        // A second failed attempt, then an outcome without a request.
        let short = Duration::from_millis(50);
        record_all(s, &n, vec![outcome(again, Some(attempt(again, 500, 2)), retry(short))]).await;
        let third = claim_eventually(s, &n, Duration::from_secs(3)).await;
        assert_eq!(third.len(), 1);
        assert_eq!(third[0].attempts, 2);
        crate::assert_ms_eq(
            third[0].first_attempt_at.expect("tried twice"),
            first_started,
            "later attempts keep the first one's start",
        );
        record_all(s, &n, vec![outcome(&third[0], None, retry(Duration::ZERO))]).await;
        let fourth = claim_eventually(s, &n, Duration::from_secs(3)).await;
        assert_eq!(fourth.len(), 1);
        assert_eq!(fourth[0].attempts, 2, "no request, no attempt counted");
        let attempts = s
            .list_attempts_by_msg(
                &a,
                &ingested.message.id,
                AttemptFilter::default(),
                page(10, Order::Descending),
            )
            .await
            .unwrap();
        assert_eq!(attempts.data.len(), 2, "only real requests are listed");
    })
    .await;
}

#[tokio::test]
async fn final_outcomes_are_never_claimed_again() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, eps) = app_with_endpoints(s, 3).await;
        let n = node("n1");
        let jobs = s.ingest(msg(&a, Some(n.clone()))).await.unwrap().deliveries;
        // Pending and claimed: counted as pending.
        for ep in &eps {
            assert_eq!(
                s.endpoint_counts(&a, ep).await.unwrap(),
                DeliveryCounts {
                    pending: 1,
                    ..Default::default()
                },
                "counts before any outcome"
            );
        }
        let job_for = |ep| jobs.iter().find(|j| &j.endpoint_id == ep).unwrap();
        let (ok, failed, retried) = (job_for(&eps[0]), job_for(&eps[1]), job_for(&eps[2]));
        record_all(
            s,
            &n,
            vec![
                outcome(ok, Some(attempt(ok, 200, 1)), DeliveryState::Succeeded),
                // The endpoint went away: no request, no attempt.
                outcome(failed, None, DeliveryState::Failed),
                outcome(retried, Some(attempt(retried, 500, 1)), retry(Duration::ZERO)),
            ],
        )
        .await;

        let later = claim_eventually(s, &node("n2"), Duration::from_secs(3)).await;
        assert_eq!(
            ids(&later),
            BTreeSet::from([retried.delivery_id]),
            "only the retry comes back"
        );
        sleep_ms(20).await;
        assert!(claim(s, &node("n3")).await.is_empty());
        assert_eq!(s.next_due(&herald_store::NodeId::new("any")).await.unwrap(), None);

        let counts = |ep: usize| {
            let (s, a, ep) = (s.clone(), a.clone(), eps[ep].clone());
            async move { s.endpoint_counts(&a, &ep).await.unwrap() }
        };
        let only = |f: fn(&mut DeliveryCounts)| {
            let mut c = DeliveryCounts::default();
            f(&mut c);
            c
        };
        assert_eq!(counts(0).await, only(|c| c.success = 1));
        assert_eq!(counts(1).await, only(|c| c.fail = 1));
        assert_eq!(counts(2).await, only(|c| c.pending = 1));
        let none = s
            .list_attempts_by_endpoint(&a, &eps[1], AttemptFilter::default(), page(10, Order::Descending))
            .await
            .unwrap();
        assert!(none.data.is_empty(), "a Failed outcome without attempt lists none");
    })
    .await;
}

#[tokio::test]
async fn deleted_endpoints_get_no_more_deliveries() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, eps) = app_with_endpoints(s, 3).await;
        // Pending in the store, and claimed by a node at ingest.
        s.ingest(msg(&a, None)).await.unwrap();
        s.ingest(msg(&a, Some(node("n1")))).await.unwrap();
        s.delete_endpoint(&a, &eps[0]).await.unwrap();
        s.recover(&node("n1").owner).await.unwrap();
        let jobs = claim(s, &node("n2")).await;
        assert_eq!(jobs.len(), 4, "two messages to the two remaining endpoints");
        assert!(
            jobs.iter().all(|j| j.endpoint_id != eps[0]),
            "a deleted endpoint's delivery was claimed"
        );
        assert_eq!(
            s.endpoint_counts(&a, &eps[1]).await.unwrap(),
            DeliveryCounts {
                pending: 2,
                ..Default::default()
            }
        );
    })
    .await;
}

/// `claim_due` takes deliveries "that no live claim holds": a claim whose
/// TTL has passed is not live, so the delivery comes back without a restart.
#[tokio::test]
async fn lapsed_claims_can_be_claimed_again() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        let ingested = s
            .ingest(msg(&a, Some(lease("n1", Duration::from_millis(50)))))
            .await
            .unwrap();
        let short = lease("n2", Duration::from_millis(50));
        let jobs = claim_eventually(s, &short, Duration::from_secs(3)).await;
        assert_eq!(
            ids(&jobs),
            delivery_ids(std::slice::from_ref(&ingested)),
            "a delivery whose ingest claim lapsed"
        );
        assert!(jobs[0].fence > ingested.deliveries[0].fence);
        let again = claim_eventually(s, &node("n3"), Duration::from_secs(3)).await;
        assert_eq!(ids(&again), ids(&jobs), "a delivery whose claim from claim_due lapsed");
        assert!(again[0].fence > jobs[0].fence);
        assert!(
            s.next_due(&herald_store::NodeId::new("any")).await.unwrap().is_none(),
            "claimed for ten minutes now"
        );
    })
    .await;
}

// ---------- the byte budget ----------

fn big(a: &herald_core::AppId, fill: u8) -> NewMessage {
    NewMessage {
        payload: Bytes::from(vec![fill; 100 * KIB]),
        ..msg(a, None)
    }
}

#[tokio::test]
async fn claim_due_stops_at_the_byte_budget() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        let mut made = Vec::new();
        for i in 0..3 {
            made.push(s.ingest(big(&a, b'a' + i)).await.unwrap().deliveries[0].delivery_id);
        }
        let n = node("n1");
        let jobs = s.claim_due(&n, 10, 250 * KIB).await.unwrap();
        assert_eq!(
            ordered(&jobs),
            made[0..2],
            "two 100 KiB payloads fit in 250 KiB, three do not"
        );
        for (i, job) in jobs.iter().enumerate() {
            assert_eq!(job.payload.len(), 100 * KIB);
            assert!(job.payload.iter().all(|&c| c == b'a' + i as u8), "payload {i} intact");
        }
        let rest = s.claim_due(&n, 10, 250 * KIB).await.unwrap();
        assert_eq!(ordered(&rest), made[2..3], "the third waits for the next round");
    })
    .await;
}

#[tokio::test]
async fn fan_out_deliveries_count_their_shared_payload_once() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 3).await;
        let mut msgs = Vec::new();
        for i in 0..3 {
            msgs.push(s.ingest(big(&a, b'a' + i)).await.unwrap());
        }
        let jobs = s.claim_due(&node("n1"), 100, 250 * KIB).await.unwrap();
        assert_eq!(
            ids(&jobs),
            delivery_ids(&msgs[0..2]),
            "two messages' payloads fit, with three deliveries each"
        );
        for job in &jobs {
            let m = msgs.iter().find(|m| m.message.id == job.msg_id).unwrap();
            assert_eq!(
                job.payload, m.message.payload,
                "each delivery carries its message's payload"
            );
        }
        let rest = s.claim_due(&node("n1"), 100, 250 * KIB).await.unwrap();
        assert_eq!(ids(&rest), delivery_ids(&msgs[2..3]));
    })
    .await;
}

#[tokio::test]
async fn a_budget_smaller_than_one_payload_still_claims_one() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        for i in 0..2 {
            s.ingest(big(&a, b'a' + i)).await.unwrap();
        }
        let n = node("n1");
        for round in 0..2 {
            let jobs = s.claim_due(&n, 10, KIB).await.unwrap();
            assert_eq!(jobs.len(), 1, "round {round}: one delivery however small the budget");
            assert_eq!(jobs[0].payload.len(), 100 * KIB);
        }
        assert!(s.claim_due(&n, 10, KIB).await.unwrap().is_empty());
    })
    .await;
}

// ---------- next_due ----------

#[tokio::test]
async fn next_due_is_zero_for_overdue_work() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        s.ingest(msg(&a, None)).await.unwrap();
        sleep_ms(20).await;
        assert_eq!(
            s.next_due(&herald_store::NodeId::new("any")).await.unwrap(),
            Some(Duration::ZERO),
            "overdue work"
        );
    })
    .await;
}

#[tokio::test]
async fn next_due_counts_down_to_a_future_retry() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        s.ingest(msg(&a, None)).await.unwrap();
        let n = node("n1");
        let jobs = claim(s, &n).await;
        let wait = Duration::from_secs(5);
        record_all(
            s,
            &n,
            vec![outcome(&jobs[0], Some(attempt(&jobs[0], 500, 1)), retry(wait))],
        )
        .await;
        let next = s
            .next_due(&herald_store::NodeId::new("any"))
            .await
            .unwrap()
            .expect("a retry is pending");
        assert!(
            next <= wait && next >= wait - Duration::from_millis(500),
            "next_due {next:?} should be close to the retry wait {wait:?}"
        );
        sleep_ms(100).await;
        let later = s.next_due(&herald_store::NodeId::new("any")).await.unwrap().unwrap();
        assert!(later < next, "next_due counts down: {later:?} after {next:?}");
    })
    .await;
}

#[tokio::test]
async fn next_due_is_none_when_all_is_claimed_or_finished() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        for _ in 0..3 {
            s.ingest(msg(&a, None)).await.unwrap();
        }
        let n = node("n1");
        let one = s.claim_due(&n, 1, usize::MAX).await.unwrap();
        assert!(
            s.next_due(&herald_store::NodeId::new("any")).await.unwrap().is_some(),
            "two still unclaimed"
        );
        let two = claim(s, &n).await;
        assert_eq!(
            s.next_due(&herald_store::NodeId::new("any")).await.unwrap(),
            None,
            "all claimed"
        );

        let kept = DeliveryState::Retry {
            after: Duration::ZERO,
            hold: RetryHold::Keep,
        };
        record_all(
            s,
            &n,
            vec![
                outcome(&one[0], Some(attempt(&one[0], 200, 1)), DeliveryState::Succeeded),
                outcome(&two[0], Some(attempt(&two[0], 410, 1)), DeliveryState::Failed),
                outcome(&two[1], Some(attempt(&two[1], 500, 1)), kept),
            ],
        )
        .await;
        assert_eq!(
            s.next_due(&herald_store::NodeId::new("any")).await.unwrap(),
            None,
            "finished, and a retry its node still holds"
        );
    })
    .await;
}
