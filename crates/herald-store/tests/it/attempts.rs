//! Attempts: what `record_outcomes` stores, read back through the listing
//! filters, pages and counts.

use std::time::Duration;

use chrono::Utc;
use herald_core::EndpointId;
use herald_core::model::{Attempt, AttemptErrorKind, DeliveryStatus, TriggerType};
use herald_store::{AttemptFilter, DeliveryCounts, DeliveryState, NewMessage, Order, RetryHold};

use crate::{
    AtMs, app, app_with_endpoints, attempt, chans, claim, each_backend, msg, node, outcome, page, page_at, record_all,
    tick,
};

/// A failed attempt whose retry is far off; the node keeps holding the
/// delivery, as the engine does while it waits in memory.
fn retry_held() -> DeliveryState {
    DeliveryState::Retry {
        after: Duration::from_secs(3600),
        hold: RetryHold::Keep,
    }
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
        let n = node("n1");
        let jobs = claim(s, &n).await;
        let job = |m: &herald_core::MessageId, ep: &EndpointId| {
            jobs.iter()
                .find(|j| &j.msg_id == m && &j.endpoint_id == ep)
                .unwrap()
                .clone()
        };
        let (d1a, d1b, d2a, d2b) = (job(&m1, ep_a), job(&m1, ep_b), job(&m2, ep_a), job(&m2, ep_b));

        // Batch one: a 5xx, a timeout (no response), a success.
        let at1 = attempt(&d1a, 500, 1);
        let at2 = Attempt {
            response_status_code: 0,
            response: "timed out after 15s".into(),
            error_kind: Some(AttemptErrorKind::Timeout),
            ..attempt(&d1b, 0, 1)
        };
        let at3 = attempt(&d2a, 200, 1);
        record_all(
            s,
            &n,
            vec![
                outcome(&d1a, Some(at1.clone()), retry_held()),
                outcome(&d1b, Some(at2.clone()), retry_held()),
                outcome(&d2a, Some(at3.clone()), DeliveryState::Succeeded),
            ],
        )
        .await;
        tick().await;
        let mid = Utc::now();
        tick().await;
        // Batch two: a manual resend answered with a redirect.
        let at4 = Attempt {
            trigger_type: TriggerType::Manual,
            response: String::new(),
            ..attempt(&d1a, 302, 2)
        };
        record_all(s, &n, vec![outcome(&d1a, Some(at4.clone()), retry_held())]).await;
        tick().await;
        // Batch three: success at last, and a 404 that gives up.
        let at5 = Attempt {
            response: "é ✓ \u{0}".into(),
            ..attempt(&d1a, 204, 3)
        };
        let at6 = attempt(&d2b, 404, 1);
        record_all(
            s,
            &n,
            vec![
                outcome(&d1a, Some(at5.clone()), DeliveryState::Succeeded),
                outcome(&d2b, Some(at6.clone()), DeliveryState::Failed),
            ],
        )
        .await;

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
