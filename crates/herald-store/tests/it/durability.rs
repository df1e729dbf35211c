//! What outlives a restart, what a closed store does, and idempotency keys.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use herald_core::AttemptId;
use herald_core::model::{Attempt, AttemptErrorKind, DeliveryStatus, TriggerType};
use herald_core::signing::EndpointSecret;
use herald_store::{
    AttemptFilter, DeliveryState, LeaseResult, MessageFilter, NewApplication, NewEndpoint, NewMessage, Order, Outcome,
    RetryHold, SavedResponse, StoreError,
};

use crate::{
    AtMs, all_messages, app_with_endpoints, chans, claim, each_backend, et, event_type, held, ids, meta, msg, new_app,
    new_endpoint_with, new_msg, node, page, record_all, uid,
};

#[tokio::test]
async fn everything_survives_close_and_reopen() {
    each_backend(|b| async move {
        let s = &b.store;
        let app = s
            .create_app(NewApplication {
                uid: Some(uid("durable")),
                name: "Durable".into(),
                metadata: meta(&[("a", "b")]),
                throttle_rate: Some(3),
            })
            .await
            .unwrap();
        let secret = EndpointSecret::generate_asymmetric();
        let ep = s
            .create_endpoint(
                &app.id,
                NewEndpoint {
                    uid: Some(uid("ep-1")),
                    secret: secret.clone(),
                    ..new_endpoint_with("https://durable.example/hook", |s| {
                        s.filter_types = Some(vec![et("order.created")]);
                        s.channels = Some(chans(&["eu"]));
                    })
                },
            )
            .await
            .unwrap();
        let mut archived = event_type("old.event");
        archived.archived = true;
        s.create_event_type(event_type("order.created")).await.unwrap();
        s.create_event_type(archived).await.unwrap();

        // One delivery handed back for a retry with an attempt, one pending,
        // one still claimed by the (now stopping) node.
        let n1 = node("n1");
        let send = |event_id: &str, lease| NewMessage {
            event_id: Some(uid(event_id)),
            channels: Some(chans(&["eu"])),
            only_endpoint: None,
            lease,
            ..new_msg("durable", "order.created", &format!("{{\"id\":\"{event_id}\"}}"))
        };
        let retried = s.ingest(send("e1", None)).await.unwrap();
        let pending = s.ingest(send("e2", None)).await.unwrap();
        let claimed = s.ingest(send("e3", Some(n1.clone()))).await.unwrap();
        let jobs = s.claim_due(&n1, 1, usize::MAX).await.unwrap();
        assert_eq!(jobs[0].delivery_id, retried.deliveries[0].delivery_id);
        let retry_wait = Duration::from_secs(1);
        let att = Attempt {
            id: AttemptId::new(),
            msg_id: retried.message.id.clone(),
            endpoint_id: ep.id.clone(),
            app_id: app.id.clone(),
            url: ep.settings.url.as_str().to_owned(),
            response_status_code: 502,
            response: "bad gateway".into(),
            response_duration_ms: 31,
            status: DeliveryStatus::Fail,
            error_kind: Some(AttemptErrorKind::Status),
            trigger_type: TriggerType::Scheduled,
            attempt_number: 1,
            created_at: Utc::now(),
        };
        let recorded = Instant::now();
        let results = s
            .record_outcomes(
                &n1,
                vec![Outcome {
                    held: jobs[0].held(),
                    attempt: Some(att.clone()),
                    state: DeliveryState::Retry {
                        after: retry_wait,
                        hold: RetryHold::Release,
                    },
                }],
            )
            .await
            .unwrap();
        assert_eq!(results, vec![LeaseResult::Done]);
        s.save_response(
            "idem-1",
            SavedResponse {
                request_digest: None,
                status: 202,
                body: Bytes::from_static(b"{\"id\":\"msg_x\"}"),
            },
        )
        .await
        .unwrap();
        let next_due_before = s.next_due(&herald_store::NodeId::new("any")).await.unwrap();
        let counts_before = s.endpoint_counts(&app.id, &ep.id).await.unwrap();
        let messages_before = all_messages(s, &app.id, MessageFilter::default(), Order::Descending, 10).await;
        assert_eq!(messages_before.len(), 3);

        s.close().await;
        let s = b.reopen().await;

        assert_eq!(
            s.get_app("durable").await.unwrap().at_ms(),
            app.clone().at_ms(),
            "application after reopen"
        );
        assert_eq!(
            s.get_endpoint(&app.id, "ep-1").await.unwrap().at_ms(),
            ep.clone().at_ms(),
            "endpoint after reopen"
        );
        assert!(
            s.get_endpoint_secret(&app.id, &ep.id).await.unwrap() == secret,
            "secret after reopen"
        );
        assert!(!s.get_event_type("order.created").await.unwrap().archived);
        assert!(s.get_event_type("old.event").await.unwrap().archived);
        let messages_after = all_messages(&s, &app.id, MessageFilter::default(), Order::Descending, 10).await;
        assert_eq!(messages_after, messages_before, "messages after reopen");
        assert_eq!(s.get_message(&app.id, "e2").await.unwrap().id, pending.message.id);
        let attempts = s
            .list_attempts_by_msg(
                &app.id,
                &retried.message.id,
                AttemptFilter::default(),
                page(10, Order::Descending),
            )
            .await
            .unwrap();
        assert_eq!(
            attempts.data.into_iter().map(AtMs::at_ms).collect::<Vec<_>>(),
            vec![att.clone().at_ms()],
            "attempts after reopen"
        );
        assert_eq!(s.endpoint_counts(&app.id, &ep.id).await.unwrap(), counts_before);
        assert_eq!(
            s.next_due(&herald_store::NodeId::new("any")).await.unwrap(),
            next_due_before,
            "next_due after reopen"
        );
        let saved = s
            .saved_response("idem-1", Duration::from_secs(3600))
            .await
            .unwrap()
            .expect("saved response after reopen");
        assert_eq!(saved.status, 202);
        assert_eq!(saved.body, Bytes::from_static(b"{\"id\":\"msg_x\"}"));

        // Delivery state survived: the pending one is due now, the retry a
        // second after it was recorded, and the claimed one comes back only
        // once its node recovers its claims.
        let n2 = node("n2");
        let due_now = claim(&s, &n2).await;
        if recorded.elapsed() < retry_wait {
            assert_eq!(
                due_now.iter().map(|j| j.delivery_id).collect::<Vec<_>>(),
                vec![pending.deliveries[0].delivery_id],
                "due right after reopen"
            );
        }
        assert_eq!(s.recover(&n1.owner).await.unwrap(), 1, "n1's claim survived");
        let mut back = due_now;
        while back.len() < 3 && recorded.elapsed() < retry_wait + Duration::from_secs(5) {
            back.extend(claim(&s, &n2).await);
            crate::sleep_ms(10).await;
        }
        assert!(recorded.elapsed() >= retry_wait, "the retry came back early");
        back.sort_by_key(|j| j.delivery_id);
        let mut expected = vec![
            retried.deliveries[0].delivery_id,
            pending.deliveries[0].delivery_id,
            claimed.deliveries[0].delivery_id,
        ];
        expected.sort();
        assert_eq!(back.iter().map(|j| j.delivery_id).collect::<Vec<_>>(), expected);
        let retried_job = back
            .iter()
            .find(|j| j.delivery_id == retried.deliveries[0].delivery_id)
            .unwrap();
        assert_eq!(retried_job.attempts, 1);
        crate::assert_ms_eq(
            retried_job.first_attempt_at.expect("tried before the restart"),
            att.created_at,
            "first attempt's start after reopen",
        );

        // And the reopened store takes new writes that fan out as before.
        let more = s
            .ingest(NewMessage {
                channels: Some(chans(&["eu"])),
                ..new_msg("durable", "order.created", "{}")
            })
            .await
            .unwrap();
        assert_eq!(more.deliveries.len(), 1);
        assert_matches!(
            s.ingest(send("e1", None)).await,
            Err(StoreError::Conflict(_)),
            "eventId uniqueness after reopen"
        );
        s.close().await;
    })
    .await;
}

#[tokio::test]
async fn closed_store_refuses_writes() {
    each_backend(|b| async move {
        let s = &b.store;
        let a = s.create_app(new_app("A", None)).await.unwrap().id;
        s.close().await;
        assert_matches!(
            s.create_app(new_app("B", None)).await,
            Err(StoreError::Closed),
            "create_app after close"
        );
        assert_matches!(
            s.ingest(new_msg(a.as_str(), "x.y", "{}")).await,
            Err(StoreError::Closed),
            "ingest after close"
        );
        let n = node("n1");
        assert_matches!(
            s.claim_due(&n, 10, usize::MAX).await,
            Err(StoreError::Closed),
            "claim_due after close"
        );
        assert_matches!(s.renew(&n, vec![]).await, Err(StoreError::Closed), "renew after close");
        assert_matches!(
            s.release(&n, vec![]).await,
            Err(StoreError::Closed),
            "release after close"
        );
        assert_matches!(
            s.recover(&n.owner).await,
            Err(StoreError::Closed),
            "recover after close"
        );
        assert_matches!(
            s.record_outcomes(&n, vec![]).await,
            Err(StoreError::Closed),
            "record_outcomes after close"
        );
        // Closing twice is harmless.
        s.close().await;
    })
    .await;
}

/// `Store::close`: "later calls fail with `StoreError::Closed`" — reads too.
#[tokio::test]

async fn closed_store_refuses_reads() {
    each_backend(|b| async move {
        let s = &b.store;
        let a = s.create_app(new_app("A", Some("a"))).await.unwrap().id;
        s.close().await;
        assert_matches!(s.get_app("a").await, Err(StoreError::Closed), "get_app after close");
        assert_matches!(
            s.list_messages(&a, MessageFilter::default(), page(10, Order::Descending))
                .await,
            Err(StoreError::Closed),
            "list_messages after close"
        );
        assert_matches!(
            s.next_due(&herald_store::NodeId::new("any")).await,
            Err(StoreError::Closed),
            "next_due after close"
        );
    })
    .await;
}

#[tokio::test]
async fn saved_responses_round_trip() {
    each_backend(|b| async move {
        let s = &b.store;
        let hour = Duration::from_secs(3600);
        assert!(
            s.saved_response("missing", hour).await.unwrap().is_none(),
            "a key never saved"
        );
        let body = Bytes::from_static(b"{\"id\":\"app_1\",\"name\":\"\xc3\xa9\"}");
        s.save_response(
            "key-1",
            SavedResponse {
                request_digest: None,
                status: 201,
                body: body.clone(),
            },
        )
        .await
        .unwrap();
        let got = s.saved_response("key-1", hour).await.unwrap().unwrap();
        assert_eq!((got.status, got.body), (201, body));
        assert!(s.saved_response("key-2", hour).await.unwrap().is_none());
        assert!(
            s.saved_response("KEY-1", hour).await.unwrap().is_none(),
            "keys are case-sensitive"
        );

        // An empty body and an error status round-trip too.
        s.save_response(
            "key-2",
            SavedResponse {
                request_digest: None,
                status: 409,
                body: Bytes::new(),
            },
        )
        .await
        .unwrap();
        let got = s.saved_response("key-2", hour).await.unwrap().unwrap();
        assert_eq!((got.status, got.body.len()), (409, 0));

        // Older than max_age: not replayed.
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            s.saved_response("key-1", Duration::from_millis(5))
                .await
                .unwrap()
                .is_none(),
            "a response older than max_age was replayed"
        );
        assert!(s.saved_response("key-1", hour).await.unwrap().is_some());
    })
    .await;
}

#[tokio::test]
async fn claims_and_fences_survive_reopen() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, _) = app_with_endpoints(s, 1).await;
        for _ in 0..3 {
            s.ingest(msg(&a, None)).await.unwrap();
        }
        let (node_a, node_b) = (node("a"), node("b"));
        let a_jobs = s.claim_due(&node_a, 2, usize::MAX).await.unwrap();
        let b_jobs = claim(s, &node_b).await;
        let born = s.ingest(msg(&a, Some(node_a.clone()))).await.unwrap().deliveries;
        assert_eq!((a_jobs.len(), b_jobs.len(), born.len()), (2, 1, 1));
        s.close().await;
        let s = b.reopen().await;

        assert!(claim(&s, &node("c")).await.is_empty(), "claims lost on reopen");
        assert_eq!(s.next_due(&herald_store::NodeId::new("any")).await.unwrap(), None);
        // The fences held before the restart still match.
        assert_eq!(
            s.renew(&node_a, held(&a_jobs)).await.unwrap(),
            vec![LeaseResult::Done; 2]
        );
        assert_eq!(s.renew(&node_a, held(&born)).await.unwrap(), vec![LeaseResult::Done]);
        assert_eq!(s.renew(&node_b, held(&b_jobs)).await.unwrap(), vec![LeaseResult::Done]);

        // A restarts and recovers its own claims, and only those.
        assert_eq!(s.recover(&node_a.owner).await.unwrap(), 3);
        let c_jobs = claim(&s, &node("c")).await;
        let mut a_ids = ids(&a_jobs);
        a_ids.extend(born.iter().map(|d| d.delivery_id));
        assert_eq!(ids(&c_jobs), a_ids, "A's claims are free again, B's are not");
        let old: BTreeSet<(i64, i64)> = a_jobs.iter().chain(&born).map(|j| (j.delivery_id, j.fence)).collect();
        for job in &c_jobs {
            let (_, before) = old.iter().find(|(id, _)| *id == job.delivery_id).unwrap();
            assert!(job.fence > *before, "a claim after reopen has a larger fence");
        }
        assert_eq!(
            s.renew(&node_a, held(&a_jobs)).await.unwrap(),
            vec![LeaseResult::Lost; 2]
        );
        record_all(
            &s,
            &node_b,
            vec![crate::outcome(&b_jobs[0], None, DeliveryState::Succeeded)],
        )
        .await;
        s.close().await;
    })
    .await;
}
