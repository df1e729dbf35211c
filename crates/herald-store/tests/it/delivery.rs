//! The delivery engine's side: claims, outcomes, attempts and counts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use herald_core::model::{Attempt, AttemptErrorKind, DeliveryStatus, TriggerType};
use herald_core::{AppId, AttemptId, EndpointId};
use herald_store::{
    AttemptFilter, DeliveryCounts, DeliveryJob, DeliveryState, Ingested, NewMessage, Order, Outcome, Store,
};

use crate::{AtMs, app, chans, each_backend, endpoint, new_endpoint, new_msg, page, page_at, tick};

fn ids(jobs: &[DeliveryJob]) -> BTreeSet<i64> {
    jobs.iter().map(|j| j.delivery_id).collect()
}

fn delivery_ids(ingested: &[Ingested]) -> BTreeSet<i64> {
    ingested
        .iter()
        .flat_map(|i| i.deliveries.iter().map(|d| d.delivery_id))
        .collect()
}

/// Claims everything due by `due_by` (for ten minutes).
async fn claim(s: &Arc<dyn Store>, due_by: DateTime<Utc>) -> Vec<DeliveryJob> {
    s.claim_due(due_by, due_by + Duration::minutes(10), 10_000)
        .await
        .unwrap()
}

/// An application with `n` unfiltered endpoints.
async fn app_with_endpoints(s: &Arc<dyn Store>, n: usize) -> (AppId, Vec<EndpointId>) {
    let a = app(s, "A").await;
    let mut eps = Vec::new();
    for i in 0..n {
        eps.push(endpoint(s, &a, new_endpoint(&format!("https://{i}.example/hook"))).await);
    }
    (a, eps)
}

fn msg(a: &AppId, claim_until: Option<DateTime<Utc>>) -> NewMessage {
    NewMessage {
        claim_until,
        ..new_msg(a.as_str(), "thing.happened", "{\"k\":1}")
    }
}

/// What an attempt on `job` would record.
fn attempt(job: &DeliveryJob, code: u16, number: u32) -> Attempt {
    let success = (200..300).contains(&code);
    Attempt {
        id: AttemptId::new(),
        msg_id: job.msg_id.clone(),
        endpoint_id: job.endpoint_id.clone(),
        app_id: job.app_id.clone(),
        url: format!("https://{}.example/hook", job.endpoint_id),
        response_status_code: code,
        response: format!("response {code} to attempt {number}"),
        response_duration_ms: 10 + u64::from(number),
        status: if success {
            DeliveryStatus::Success
        } else {
            DeliveryStatus::Fail
        },
        error_kind: (!success).then_some(AttemptErrorKind::Status),
        trigger_type: TriggerType::Scheduled,
        attempt_number: number,
        created_at: Utc::now(),
    }
}

fn outcome(job: &DeliveryJob, attempt: Option<Attempt>, state: DeliveryState) -> Outcome {
    Outcome {
        delivery_id: job.delivery_id,
        attempt,
        state,
    }
}

fn retry(at: DateTime<Utc>) -> DeliveryState {
    DeliveryState::Retry {
        at,
        keep_claim_until: None,
    }
}

#[tokio::test]
async fn deliveries_claimed_at_ingest_are_not_claimable() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 2).await;
        let until = Utc::now() + Duration::minutes(10);
        let first = s.ingest(msg(&a, Some(until))).await.unwrap();
        let second = s.ingest(msg(&a, Some(until))).await.unwrap();
        assert_eq!(first.deliveries.len() + second.deliveries.len(), 4);

        assert!(
            claim(s, Utc::now()).await.is_empty(),
            "deliveries claimed at ingest were claimed again"
        );
        assert_eq!(s.next_due().await.unwrap(), None, "claimed deliveries are not due");

        // Handing the claims back makes them claimable, once.
        assert_eq!(s.release_claims(None).await.unwrap(), 4);
        let jobs = claim(s, Utc::now()).await;
        assert_eq!(ids(&jobs), delivery_ids(&[first, second]));
        assert!(claim(s, Utc::now()).await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn unclaimed_deliveries_are_claimed_exactly_once() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 2).await;
        assert_eq!(s.next_due().await.unwrap(), None, "nothing stored yet");
        let before = Utc::now();
        let first = s.ingest(msg(&a, None)).await.unwrap();
        let after_first = Utc::now();
        tick().await;
        let second = s.ingest(msg(&a, None)).await.unwrap();

        let next = s.next_due().await.unwrap().expect("a pending delivery is due");
        crate::assert_between(next, before, after_first, "next_due is the first message's");

        let jobs = claim(s, Utc::now()).await;
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
            crate::assert_ms_eq(job.due_at, made.due_at, "due_at");
        }
        // Earliest due first.
        assert!(
            jobs.windows(2).all(|w| w[0].due_at <= w[1].due_at),
            "claimed in due order"
        );

        assert!(claim(s, Utc::now()).await.is_empty(), "claimed twice");
        assert!(
            claim(s, Utc::now() + Duration::days(1)).await.is_empty(),
            "claimed twice, later"
        );
        assert_eq!(s.next_due().await.unwrap(), None, "all claimed");
    })
    .await;
}

#[tokio::test]
async fn claim_due_honours_due_by_and_limit() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        let start = Utc::now() - Duration::milliseconds(5);
        let mut made = Vec::new();
        let mut cut = start;
        for i in 0..5 {
            made.push(s.ingest(msg(&a, None)).await.unwrap().deliveries[0].delivery_id);
            tick().await;
            if i == 2 {
                cut = Utc::now();
                tick().await;
            }
        }
        assert!(claim(s, start).await.is_empty(), "nothing was due before ingest");

        // Only the first three are due by `cut`, oldest first, two at a time.
        let jobs = s.claim_due(cut, cut + Duration::minutes(1), 2).await.unwrap();
        assert_eq!(jobs.iter().map(|j| j.delivery_id).collect::<Vec<_>>(), made[0..2]);
        let jobs = s.claim_due(cut, cut + Duration::minutes(1), 2).await.unwrap();
        assert_eq!(jobs.iter().map(|j| j.delivery_id).collect::<Vec<_>>(), made[2..3]);
        assert!(
            s.claim_due(cut, cut + Duration::minutes(1), 2)
                .await
                .unwrap()
                .is_empty()
        );

        let next = s.next_due().await.unwrap().unwrap();
        assert!(next > cut, "next_due {next} is one of the later two, after {cut}");
        let jobs = claim(s, Utc::now()).await;
        assert_eq!(jobs.iter().map(|j| j.delivery_id).collect::<Vec<_>>(), made[3..5]);
    })
    .await;
}

#[tokio::test]
async fn release_claims_some_or_all() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        let mut made = Vec::new();
        for _ in 0..4 {
            made.push(s.ingest(msg(&a, None)).await.unwrap().deliveries[0].delivery_id);
        }
        assert_eq!(claim(s, Utc::now()).await.len(), 4);

        let released = s.release_claims(Some(vec![made[0], made[2]])).await.unwrap();
        assert_eq!(released, 2, "released count");
        let next = s.next_due().await.unwrap();
        assert!(next.is_some(), "released deliveries are due again");
        let jobs = claim(s, Utc::now()).await;
        assert_eq!(ids(&jobs), BTreeSet::from([made[0], made[2]]), "only the released ones");
        assert_eq!(
            s.release_claims(Some(vec![i64::MAX - 7])).await.unwrap(),
            0,
            "releasing an unknown delivery"
        );

        assert_eq!(s.release_claims(None).await.unwrap(), 4, "release all");
        assert_eq!(ids(&claim(s, Utc::now()).await), made.iter().copied().collect());
        assert_eq!(s.release_claims(Some(vec![])).await.unwrap(), 0);
        assert!(claim(s, Utc::now()).await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn retry_hands_the_delivery_back_for_later() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        let ingested = s.ingest(msg(&a, None)).await.unwrap();
        let jobs = claim(s, Utc::now()).await;
        assert_eq!(jobs.len(), 1);
        let job = &jobs[0];
        assert_eq!(job.first_attempt_at, None, "never tried yet");
        crate::assert_ms_eq(
            job.msg_created_at,
            ingested.message.created_at,
            "the message's creation time",
        );

        let now = Utc::now();
        let at = now + Duration::hours(1);
        let first = attempt(job, 503, 1);
        let first_started = first.created_at;
        s.record_outcomes(vec![outcome(job, Some(first), retry(at))])
            .await
            .unwrap();

        assert!(claim(s, now).await.is_empty(), "a retry due in an hour is not due now");
        let next = s.next_due().await.unwrap().expect("the retry is pending");
        crate::assert_ms_eq(next, at, "next_due is the retry time");

        let later = claim(s, now + Duration::hours(2)).await;
        assert_eq!(later.len(), 1, "the retry is claimable once due");
        let again = &later[0];
        assert_eq!(again.delivery_id, ingested.deliveries[0].delivery_id);
        assert_eq!(again.msg_id, ingested.message.id);
        assert_eq!(again.payload, ingested.message.payload);
        assert_eq!(again.attempts, 1, "one attempt made");
        crate::assert_ms_eq(again.due_at, at, "due_at of the retry");
        crate::assert_ms_eq(
            again.first_attempt_at.expect("tried once"),
            first_started,
            "the first attempt's start",
        );

        // A second failed attempt, then an outcome without a request.
        let at2 = now + Duration::hours(3);
        s.record_outcomes(vec![outcome(again, Some(attempt(again, 500, 2)), retry(at2))])
            .await
            .unwrap();
        let third = claim(s, now + Duration::hours(4)).await;
        assert_eq!(third[0].attempts, 2);
        crate::assert_ms_eq(
            third[0].first_attempt_at.expect("tried twice"),
            first_started,
            "later attempts keep the first one's start",
        );
        s.record_outcomes(vec![outcome(&third[0], None, retry(at2))])
            .await
            .unwrap();
        let fourth = claim(s, now + Duration::hours(4)).await;
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
async fn retry_keeping_the_claim_stays_with_its_claimer() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        let ingested = s
            .ingest(msg(&a, Some(Utc::now() + Duration::minutes(10))))
            .await
            .unwrap();
        let job = &ingested.deliveries[0];
        let now = Utc::now();
        s.record_outcomes(vec![outcome(
            job,
            Some(attempt(job, 500, 1)),
            DeliveryState::Retry {
                at: now + Duration::seconds(1),
                keep_claim_until: Some(now + Duration::minutes(10)),
            },
        )])
        .await
        .unwrap();
        assert!(
            claim(s, now + Duration::seconds(5)).await.is_empty(),
            "a retry still claimed by its node"
        );
        assert_eq!(s.next_due().await.unwrap(), None);

        assert_eq!(s.release_claims(Some(vec![job.delivery_id])).await.unwrap(), 1);
        let next = s.next_due().await.unwrap().expect("released retry is due");
        crate::assert_ms_eq(next, now + Duration::seconds(1), "next_due after release");
        let jobs = claim(s, now + Duration::seconds(5)).await;
        assert_eq!(ids(&jobs), BTreeSet::from([job.delivery_id]));
        assert_eq!(jobs[0].attempts, 1);
    })
    .await;
}

#[tokio::test]
async fn final_outcomes_are_never_claimed_again() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, eps) = app_with_endpoints(s, 3).await;
        s.ingest(msg(&a, Some(Utc::now() + Duration::minutes(10))))
            .await
            .unwrap();
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
        s.release_claims(None).await.unwrap();
        let jobs = claim(s, Utc::now()).await;
        let job_for = |ep: &EndpointId| jobs.iter().find(|j| &j.endpoint_id == ep).unwrap();
        let (ok, failed, retried) = (job_for(&eps[0]), job_for(&eps[1]), job_for(&eps[2]));
        let now = Utc::now();
        s.record_outcomes(vec![
            outcome(ok, Some(attempt(ok, 200, 1)), DeliveryState::Succeeded),
            // The endpoint went away: no request, no attempt.
            outcome(failed, None, DeliveryState::Failed),
            outcome(retried, Some(attempt(retried, 500, 1)), retry(now)),
        ])
        .await
        .unwrap();

        let later = claim(s, now + Duration::days(30)).await;
        assert_eq!(
            ids(&later),
            BTreeSet::from([retried.delivery_id]),
            "only the retry comes back"
        );
        assert!(claim(s, now + Duration::days(30)).await.is_empty());
        assert_eq!(s.next_due().await.unwrap(), None);

        let counts = |ep| {
            let s = s.clone();
            let a = a.clone();
            async move { s.endpoint_counts(&a, &ep).await.unwrap() }
        };
        assert_eq!(
            counts(eps[0].clone()).await,
            DeliveryCounts {
                success: 1,
                ..Default::default()
            }
        );
        assert_eq!(
            counts(eps[1].clone()).await,
            DeliveryCounts {
                fail: 1,
                ..Default::default()
            }
        );
        assert_eq!(
            counts(eps[2].clone()).await,
            DeliveryCounts {
                pending: 1,
                ..Default::default()
            }
        );
        let none = s
            .list_attempts_by_endpoint(&a, &eps[1], AttemptFilter::default(), page(10, Order::Descending))
            .await
            .unwrap();
        assert!(none.data.is_empty(), "a Failed outcome without attempt lists none");
    })
    .await;
}

#[tokio::test]
async fn attempts_round_trip_and_list_with_filters() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, eps) = app_with_endpoints(s, 2).await;
        let (ep_a, ep_b) = (&eps[0], &eps[1]);
        let m1 = s
            .ingest(NewMessage {
                channels: Some(chans(&["eu"])),
                ..msg(&a, None)
            })
            .await
            .unwrap()
            .message
            .id;
        let m2 = s
            .ingest(NewMessage {
                event_type: crate::et("user.created"),
                ..msg(&a, None)
            })
            .await
            .unwrap()
            .message
            .id;
        let jobs = claim(s, Utc::now()).await;
        let job = |m: &herald_core::MessageId, ep: &EndpointId| {
            jobs.iter()
                .find(|j| &j.msg_id == m && &j.endpoint_id == ep)
                .unwrap()
                .clone()
        };
        let (d1a, d1b, d2a, d2b) = (job(&m1, ep_a), job(&m1, ep_b), job(&m2, ep_a), job(&m2, ep_b));

        let later = Utc::now() + Duration::hours(1);
        // Batch one: a 5xx, a timeout (no response), a success.
        let at1 = attempt(&d1a, 500, 1);
        let at2 = Attempt {
            response_status_code: 0,
            response: "timed out after 15s".into(),
            error_kind: Some(AttemptErrorKind::Timeout),
            ..attempt(&d1b, 0, 1)
        };
        let at3 = attempt(&d2a, 200, 1);
        s.record_outcomes(vec![
            outcome(&d1a, Some(at1.clone()), retry(later)),
            outcome(&d1b, Some(at2.clone()), retry(later)),
            outcome(&d2a, Some(at3.clone()), DeliveryState::Succeeded),
        ])
        .await
        .unwrap();
        tick().await;
        let mid = Utc::now();
        tick().await;
        // Batch two: a manual resend answered with a redirect.
        let at4 = Attempt {
            trigger_type: TriggerType::Manual,
            response: String::new(),
            ..attempt(&d1a, 302, 2)
        };
        s.record_outcomes(vec![outcome(&d1a, Some(at4.clone()), retry(later))])
            .await
            .unwrap();
        tick().await;
        // Batch three: success at last, and a 404 that gives up.
        let at5 = Attempt {
            response: "é ✓ \u{0}".into(),
            ..attempt(&d1a, 204, 3)
        };
        let at6 = attempt(&d2b, 404, 1);
        s.record_outcomes(vec![
            outcome(&d1a, Some(at5.clone()), DeliveryState::Succeeded),
            outcome(&d2b, Some(at6.clone()), DeliveryState::Failed),
        ])
        .await
        .unwrap();

        let by_ep = |ep: &EndpointId, filter: AttemptFilter, order: Order| {
            let (s, a, ep) = (s.clone(), a.clone(), ep.clone());
            async move {
                s.list_attempts_by_endpoint(&a, &ep, filter, page(50, order))
                    .await
                    .unwrap()
                    .data
            }
        };
        let by_msg = |m: &herald_core::MessageId, filter: AttemptFilter| {
            let (s, a, m) = (s.clone(), a.clone(), m.clone());
            async move {
                s.list_attempts_by_msg(&a, &m, filter, page(50, Order::Descending))
                    .await
                    .unwrap()
                    .data
            }
        };
        let want = |list: &[&Attempt]| list.iter().map(|a| (*a).clone().at_ms()).collect::<Vec<_>>();
        let got = |list: Vec<Attempt>| list.into_iter().map(AtMs::at_ms).collect::<Vec<_>>();
        let id_list = |list: Vec<Attempt>| list.into_iter().map(|a| a.id).collect::<Vec<_>>();
        let id_want = |list: &[&Attempt]| list.iter().map(|a| a.id.clone()).collect::<Vec<_>>();

        // Every field round-trips, newest first.
        assert_eq!(
            got(by_ep(ep_a, AttemptFilter::default(), Order::Descending).await),
            want(&[&at5, &at4, &at3, &at1]),
            "attempts of endpoint A"
        );
        assert_eq!(
            got(by_ep(ep_b, AttemptFilter::default(), Order::Descending).await),
            want(&[&at6, &at2]),
            "attempts of endpoint B"
        );
        assert_eq!(
            got(by_ep(ep_a, AttemptFilter::default(), Order::Ascending).await),
            want(&[&at1, &at3, &at4, &at5]),
            "oldest first when asked"
        );
        assert_eq!(
            got(by_msg(&m1, AttemptFilter::default()).await),
            want(&[&at5, &at4, &at2, &at1]),
            "attempts of message 1"
        );
        assert_eq!(
            got(by_msg(&m2, AttemptFilter::default()).await),
            want(&[&at6, &at3]),
            "attempts of message 2"
        );

        // Status and status-code class.
        let status = |st| AttemptFilter {
            status: Some(st),
            ..Default::default()
        };
        assert_eq!(
            id_list(by_ep(ep_a, status(DeliveryStatus::Success), Order::Descending).await),
            id_want(&[&at5, &at3])
        );
        assert_eq!(
            id_list(by_ep(ep_a, status(DeliveryStatus::Fail), Order::Descending).await),
            id_want(&[&at4, &at1])
        );
        assert!(
            by_ep(ep_a, status(DeliveryStatus::Pending), Order::Descending)
                .await
                .is_empty()
        );
        let class = |c| AttemptFilter {
            status_code_class: Some(c),
            ..Default::default()
        };
        for (ep, c, expected) in [
            (ep_a, 500, id_want(&[&at1])),
            (ep_a, 300, id_want(&[&at4])),
            (ep_a, 200, id_want(&[&at5, &at3])),
            (ep_a, 0, id_want(&[])),
            (ep_a, 100, id_want(&[])),
            (ep_b, 0, id_want(&[&at2])),
            (ep_b, 400, id_want(&[&at6])),
            (ep_b, 500, id_want(&[])),
        ] {
            assert_eq!(
                id_list(by_ep(ep, class(c), Order::Descending).await),
                expected,
                "status code class {c} on {ep}"
            );
        }
        assert_eq!(
            id_list(by_msg(&m1, class(500)).await),
            id_want(&[&at1]),
            "class filter by message"
        );

        // Endpoint, event type, channel and time filters.
        assert_eq!(
            id_list(
                by_msg(
                    &m1,
                    AttemptFilter {
                        endpoint_id: Some(ep_b.to_string()),
                        ..Default::default()
                    }
                )
                .await
            ),
            id_want(&[&at2])
        );
        assert_eq!(
            id_list(
                by_ep(
                    ep_a,
                    AttemptFilter {
                        event_types: vec!["user.created".into()],
                        ..Default::default()
                    },
                    Order::Descending
                )
                .await
            ),
            id_want(&[&at3])
        );
        assert_eq!(
            id_list(
                by_ep(
                    ep_a,
                    AttemptFilter {
                        channel: Some("eu".into()),
                        ..Default::default()
                    },
                    Order::Descending
                )
                .await
            ),
            id_want(&[&at5, &at4, &at1])
        );
        assert_eq!(
            id_list(
                by_ep(
                    ep_a,
                    AttemptFilter {
                        after: Some(mid),
                        ..Default::default()
                    },
                    Order::Descending
                )
                .await
            ),
            id_want(&[&at5, &at4]),
            "after"
        );
        assert_eq!(
            id_list(
                by_ep(
                    ep_a,
                    AttemptFilter {
                        before: Some(mid),
                        status: Some(DeliveryStatus::Fail),
                        ..Default::default()
                    },
                    Order::Descending
                )
                .await
            ),
            id_want(&[&at1]),
            "before, failed only"
        );

        // Paging one at a time.
        let p1 = s
            .list_attempts_by_endpoint(&a, ep_a, AttemptFilter::default(), page(1, Order::Descending))
            .await
            .unwrap();
        assert_eq!(id_list(p1.data), id_want(&[&at5]));
        assert!(!p1.done);
        let p2 = s
            .list_attempts_by_endpoint(
                &a,
                ep_a,
                AttemptFilter::default(),
                page_at(3, Order::Descending, p1.iterator.as_deref().unwrap()),
            )
            .await
            .unwrap();
        assert_eq!(id_list(p2.data), id_want(&[&at4, &at3, &at1]));
        assert!(p2.done);

        // Attempts belong to their application.
        let other = app(s, "Other").await;
        assert!(
            s.list_attempts_by_endpoint(&other, ep_a, AttemptFilter::default(), page(10, Order::Descending))
                .await
                .unwrap()
                .data
                .is_empty()
        );
        assert!(
            s.list_attempts_by_msg(&other, &m1, AttemptFilter::default(), page(10, Order::Descending))
                .await
                .unwrap()
                .data
                .is_empty()
        );

        // Counts: A succeeded twice; B has one retry pending and one failure.
        assert_eq!(
            s.endpoint_counts(&a, ep_a).await.unwrap(),
            DeliveryCounts {
                success: 2,
                ..Default::default()
            }
        );
        assert_eq!(
            s.endpoint_counts(&a, ep_b).await.unwrap(),
            DeliveryCounts {
                pending: 1,
                fail: 1,
                ..Default::default()
            }
        );
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
        s.ingest(msg(&a, Some(Utc::now() + Duration::minutes(10))))
            .await
            .unwrap();
        s.delete_endpoint(&a, &eps[0]).await.unwrap();
        s.release_claims(None).await.unwrap();
        let jobs = claim(s, Utc::now()).await;
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

/// The trait's contract: `claim_due` takes deliveries "that no live claim
/// holds". A claim whose time has passed is not live, so the delivery must
/// come back without a restart.
#[tokio::test]

async fn lapsed_claims_can_be_claimed_again() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        let ingested = s
            .ingest(msg(&a, Some(Utc::now() - Duration::minutes(1))))
            .await
            .unwrap();
        tick().await;
        let jobs = s
            .claim_due(Utc::now(), Utc::now() + Duration::milliseconds(1), 10)
            .await
            .unwrap();
        assert_eq!(
            ids(&jobs),
            delivery_ids(&[ingested]),
            "a delivery whose ingest claim lapsed a minute ago"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(
            claim(s, Utc::now()).await.len(),
            1,
            "a delivery whose claim from claim_due lapsed"
        );
        assert!(s.next_due().await.unwrap().is_none(), "claimed for ten minutes now");
    })
    .await;
}
