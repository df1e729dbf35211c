//! The Svix tools' contracts: secret rotation with a grace period, resend,
//! recover, replay-missing, the history views and stats, expunging, tasks
//! and app-scoped tokens.

use std::time::Duration;

use chrono::Utc;
use herald_core::access::{Capability, TokenPermissions};
use herald_core::model::DeliveryStatus;
use herald_core::signing::EndpointSecret;
use herald_store::{
    DeliveryCounts, DeliveryState, MessageFilter, NewMessage, NodeId, Order, StoreError, TaskKind, TaskStatus,
    TimeRange,
};

use crate::{
    app, app_with_endpoints, attempt, claim, each_backend, endpoint, msg, new_endpoint_with, node, outcome, page,
    record_all,
};

#[tokio::test]
async fn rotation_keeps_the_old_secret_signing_until_its_grace_ends() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, eps) = app_with_endpoints(s, 1).await;
        let ep = &eps[0];
        let first = s.get_endpoint_secret(&a, ep).await.unwrap();
        let second = EndpointSecret::generate_symmetric();
        s.rotate_endpoint_secret(&a, ep, second.clone(), Duration::from_secs(3600))
            .await
            .unwrap();
        assert!(s.get_endpoint_secret(&a, ep).await.unwrap() == second);
        let t = s.delivery_targets(vec![ep.clone()]).await.unwrap().remove(0);
        assert!(t.secrets == vec![second.clone()], "the new secret is current");
        assert_eq!(t.retiring.len(), 1);
        assert!(t.retiring[0].secret == first, "the old one is retiring");
        let left = t.retiring[0].until - Utc::now();
        assert!(
            left > chrono::Duration::minutes(59) && left <= chrono::Duration::minutes(60),
            "{left}"
        );
        assert_eq!(t.signing_secrets(Utc::now()).len(), 2);
        assert_eq!(t.signing_secrets(t.retiring[0].until).len(), 1, "not at its end");

        // No grace: the replaced secret stops at once; the first keeps its time.
        let third = EndpointSecret::generate_symmetric();
        s.rotate_endpoint_secret(&a, ep, third.clone(), Duration::ZERO)
            .await
            .unwrap();
        let t = s.delivery_targets(vec![ep.clone()]).await.unwrap().remove(0);
        assert!(t.secrets == vec![third]);
        assert_eq!(t.retiring.len(), 1);
        assert!(t.retiring[0].secret == first);

        // A grace that ended is not loaded.
        s.rotate_endpoint_secret(&a, ep, EndpointSecret::generate_symmetric(), Duration::from_millis(1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t = s.delivery_targets(vec![ep.clone()]).await.unwrap().remove(0);
        assert_eq!(t.retiring.len(), 1, "only the first, still in its hour");

        let other = app(s, "Other").await;
        assert!(matches!(
            s.rotate_endpoint_secret(&other, ep, EndpointSecret::generate_symmetric(), Duration::ZERO)
                .await,
            Err(StoreError::NotFound(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn resend_recover_and_stats_follow_each_delivery() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, eps) = app_with_endpoints(s, 2).await;
        let (ep_a, ep_b) = (&eps[0], &eps[1]);
        let m1 = s.ingest(msg(&a, None)).await.unwrap().message.id;
        let m2 = s.ingest(msg(&a, None)).await.unwrap().message.id;
        let n = node("n1");
        let jobs = claim(s, &n).await;
        assert_eq!(jobs.len(), 4);
        let job =
            |m: &herald_core::MessageId, ep| jobs.iter().find(|j| &j.msg_id == m && &j.endpoint_id == ep).unwrap();
        // A: m1 succeeded, m2 failed for good. B: m1 retrying, m2 untried.
        record_all(
            s,
            &n,
            vec![
                outcome(
                    job(&m1, ep_a),
                    Some(attempt(job(&m1, ep_a), 200, 1)),
                    DeliveryState::Succeeded,
                ),
                outcome(
                    job(&m2, ep_a),
                    Some(attempt(job(&m2, ep_a), 500, 1)),
                    DeliveryState::Failed,
                ),
                outcome(
                    job(&m1, ep_b),
                    Some(attempt(job(&m1, ep_b), 500, 1)),
                    DeliveryState::Retry {
                        after: Duration::from_secs(3600),
                        hold: herald_store::RetryHold::Release,
                    },
                ),
            ],
        )
        .await;
        s.release(&n, vec![job(&m2, ep_b).held()]).await.unwrap();
        let all = TimeRange::default();
        assert_eq!(
            s.endpoint_stats(&a, ep_a, all).await.unwrap(),
            DeliveryCounts {
                success: 1,
                fail: 1,
                ..Default::default()
            }
        );
        assert_eq!(
            s.endpoint_stats(&a, ep_b, all).await.unwrap(),
            DeliveryCounts {
                pending: 1,
                sending: 1,
                ..Default::default()
            },
            "a pending delivery already tried is sending"
        );
        let future = TimeRange {
            since: Some(Utc::now() + chrono::Duration::hours(1)),
            until: None,
        };
        assert_eq!(
            s.endpoint_stats(&a, ep_a, future).await.unwrap(),
            DeliveryCounts::default()
        );

        // Recover brings back the failure only, once.
        let range = TimeRange {
            since: Some(Utc::now() - chrono::Duration::hours(1)),
            until: None,
        };
        assert_eq!(s.recover_failed(&a, ep_a, range).await.unwrap(), 1);
        assert_eq!(s.recover_failed(&a, ep_a, range).await.unwrap(), 0);
        let again = claim(s, &n).await;
        let mut due: Vec<_> = again
            .iter()
            .map(|j| (j.msg_id.clone(), j.endpoint_id.clone(), j.attempts, j.manual))
            .collect();
        due.sort();
        let mut want = vec![
            (m2.clone(), ep_a.clone(), 0, true),
            (m2.clone(), ep_b.clone(), 0, false),
        ];
        want.sort();
        assert_eq!(
            due, want,
            "the recovered delivery (attempts reset, its next attempt manual) and the untried one; \
             not the retry or the success"
        );
        s.release(&n, again.iter().map(|j| j.held()).collect()).await.unwrap();

        // Resend: a success starts over, a waiting retry becomes due now.
        s.resend(&a, &m1, ep_a).await.unwrap();
        s.resend(&a, &m1, ep_b).await.unwrap();
        let resent = claim(s, &n).await;
        let due: Vec<_> = resent
            .iter()
            .map(|j| (j.msg_id.clone(), j.endpoint_id.clone(), j.manual))
            .collect();
        for want in [
            (m1.clone(), ep_a.clone(), true),
            (m1.clone(), ep_b.clone(), true),
            (m2.clone(), ep_a.clone(), true),
        ] {
            assert!(due.contains(&want), "{want:?} not due: {due:?}");
        }
        // The manual attempt made, its retries are scheduled ones again.
        let retried = resent
            .iter()
            .find(|j| j.msg_id == m1 && &j.endpoint_id == ep_b)
            .unwrap();
        let retry_now = DeliveryState::Retry {
            after: Duration::ZERO,
            hold: herald_store::RetryHold::Release,
        };
        record_all(s, &n, vec![outcome(retried, Some(attempt(retried, 500, 2)), retry_now)]).await;
        let others: Vec<_> = resent
            .iter()
            .filter(|j| j.delivery_id != retried.delivery_id)
            .map(|j| j.held())
            .collect();
        s.release(&n, others).await.unwrap();
        let next = claim(s, &n).await;
        let again = next
            .iter()
            .find(|j| j.delivery_id == retried.delivery_id)
            .expect("the retry is due");
        assert!(!again.manual, "a retry after a manual attempt counted as manual");
        let other = app(s, "Other").await;
        assert!(matches!(
            s.resend(&other, &m1, ep_a).await,
            Err(StoreError::NotFound(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn replay_missing_creates_only_what_the_endpoint_never_got_and_subscribes_to() {
    each_backend(|b| async move {
        let s = &b.store;
        let a = app(s, "A").await;
        let old = endpoint(s, &a, new_endpoint_with("https://a.example.com/", |_| {})).await;
        let m1 = s.ingest(msg(&a, None)).await.unwrap().message.id;
        let other_type = s
            .ingest(NewMessage {
                event_type: crate::et("other.type"),
                ..msg(&a, None)
            })
            .await
            .unwrap()
            .message
            .id;
        let late = endpoint(
            s,
            &a,
            new_endpoint_with("https://b.example.com/", |set| {
                set.filter_types = Some(vec![crate::et("thing.happened")]);
            }),
        )
        .await;
        let range = TimeRange {
            since: Some(Utc::now() - chrono::Duration::hours(1)),
            until: None,
        };
        // One message per call: the cursor walks the range.
        let (n1, after) = s.replay_missing(&a, &late, range, None, 1).await.unwrap();
        let (n2, after) = s.replay_missing(&a, &late, range, after, 1).await.unwrap();
        let (n3, after) = s.replay_missing(&a, &late, range, after, 1).await.unwrap();
        assert_eq!((n1 + n2 + n3, after), (1, None), "only m1 (thing.happened) is replayed");
        assert_eq!(
            s.replay_missing(&a, &late, range, None, 100).await.unwrap(),
            (0, None),
            "not twice"
        );
        assert_eq!(
            s.replay_missing(&a, &old, range, None, 100).await.unwrap().0,
            0,
            "old had both"
        );
        let dests = s
            .list_attempted_destinations(&a, &m1, page(10, Order::Ascending))
            .await
            .unwrap();
        let mut ids: Vec<_> = dests.data.iter().map(|d| d.endpoint.id.clone()).collect();
        ids.sort();
        let mut want = vec![old.clone(), late.clone()];
        want.sort();
        assert_eq!(ids, want);
        assert!(
            dests
                .data
                .iter()
                .all(|d| d.status == DeliveryStatus::Pending && d.next_attempt.is_some())
        );
        let sent = s
            .list_attempted_messages(&a, &late, MessageFilter::default(), None, page(10, Order::Descending))
            .await
            .unwrap();
        assert_eq!(
            sent.data.iter().map(|m| m.message.id.clone()).collect::<Vec<_>>(),
            vec![m1.clone()]
        );
        let sent_old = s
            .list_attempted_messages(
                &a,
                &old,
                MessageFilter::default(),
                Some(DeliveryStatus::Pending),
                page(10, Order::Descending),
            )
            .await
            .unwrap();
        assert_eq!(
            sent_old.data.iter().map(|m| m.message.id.clone()).collect::<Vec<_>>(),
            vec![other_type, m1],
            "newest first"
        );
        let none = s
            .list_attempted_messages(
                &a,
                &old,
                MessageFilter::default(),
                Some(DeliveryStatus::Success),
                page(10, Order::Descending),
            )
            .await
            .unwrap();
        assert!(none.data.is_empty());
    })
    .await;
}

#[tokio::test]
async fn expunging_content_keeps_history_and_refuses_what_is_still_pending() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, eps) = app_with_endpoints(s, 1).await;
        let m = s.ingest(msg(&a, None)).await.unwrap().message.id;
        assert!(matches!(
            s.expunge_message_content(&a, &m).await,
            Err(StoreError::Refused(_))
        ));
        let n = node("n1");
        let jobs = claim(s, &n).await;
        let at = attempt(&jobs[0], 200, 1);
        record_all(
            s,
            &n,
            vec![outcome(&jobs[0], Some(at.clone()), DeliveryState::Succeeded)],
        )
        .await;
        assert_eq!(
            s.get_attempt(&a, &m, at.id.as_str()).await.unwrap().response,
            at.response
        );
        s.expunge_attempt_content(&a, &m, &at.id).await.unwrap();
        assert_eq!(s.get_attempt(&a, &m, at.id.as_str()).await.unwrap().response, "");
        s.expunge_message_content(&a, &m).await.unwrap();
        assert!(s.get_message(&a, m.as_str()).await.unwrap().payload.is_empty());
        assert!(
            matches!(s.resend(&a, &m, &eps[0]).await, Err(StoreError::Refused(_))),
            "nothing to send"
        );
        let other = app(s, "Other").await;
        assert!(matches!(
            s.get_attempt(&other, &m, at.id.as_str()).await,
            Err(StoreError::NotFound(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn tasks_and_tokens_round_trip() {
    let full = TokenPermissions::full;
    each_backend(|b| async move {
        let s = &b.store;
        let a = app(s, "A").await;
        let other = app(s, "B").await;
        // Two nodes share the store: A runs t1 (finished) and t2, B runs t3.
        let (node_a, node_b) = (NodeId::new("node-a"), NodeId::new("node-b"));
        let t1 = s.create_task(&a, TaskKind::EndpointRecover, &node_a).await.unwrap();
        let t2 = s.create_task(&other, TaskKind::EndpointReplay, &node_a).await.unwrap();
        let t3 = s.create_task(&a, TaskKind::EndpointReplay, &node_b).await.unwrap();
        assert_eq!(t1.status, TaskStatus::Running);
        let done = s
            .finish_task(&t1.id, TaskStatus::Finished, serde_json::json!({"messagesSent": 3}))
            .await
            .unwrap();
        assert_eq!(
            (done.status, &done.data),
            (TaskStatus::Finished, &serde_json::json!({"messagesSent": 3}))
        );
        assert_eq!(s.get_task(&t1.id).await.unwrap(), done);
        assert_eq!(
            s.list_tasks(Some(&a), page(10, Order::Descending)).await.unwrap().data,
            vec![t3.clone(), done.clone()]
        );
        assert_eq!(
            s.list_tasks(None, page(10, Order::Descending))
                .await
                .unwrap()
                .data
                .len(),
            3
        );
        // A restarts: it fails its own running task, and neither its
        // finished one nor the task B is still running.
        assert_eq!(s.fail_interrupted_tasks(&node_a).await.unwrap(), 1);
        let failed = s.get_task(&t2.id).await.unwrap();
        assert_eq!(
            (failed.status, &failed.data),
            (
                TaskStatus::Failed,
                &serde_json::json!({"error": "interrupted by a restart"})
            )
        );
        assert_eq!(s.get_task(&t1.id).await.unwrap(), done, "finished stays finished");
        assert_eq!(s.get_task(&t3.id).await.unwrap(), t3, "B's task is still running");
        assert_eq!(
            s.fail_interrupted_tasks(&node_a).await.unwrap(),
            0,
            "nothing left of A's"
        );
        // B's own start is what fails it.
        assert_eq!(s.fail_interrupted_tasks(&node_b).await.unwrap(), 1);
        assert_eq!(s.get_task(&t3.id).await.unwrap().status, TaskStatus::Failed);
        assert_eq!(
            s.get_task(&failed.id).await.unwrap(),
            failed,
            "A's failed task is left alone"
        );

        // A task running since before tasks named their node (no node) is
        // failed by whichever node starts: one node at most could run it.
        let legacy = s.create_task(&a, TaskKind::EndpointRecover, &node_a).await.unwrap();
        b.raw_execute(&format!(
            "UPDATE background_task SET node = NULL WHERE id = '{}'",
            legacy.id
        ))
        .await;
        assert_eq!(s.fail_interrupted_tasks(&node_b).await.unwrap(), 1);
        assert_eq!(s.get_task(&legacy.id).await.unwrap().status, TaskStatus::Failed);

        let digest = [7u8; 32];
        let expires = Some(Utc::now() + chrono::Duration::hours(1));
        let tok = s.create_token(&a, digest, expires, full()).await.unwrap();
        let found = s.token_by_digest(digest).await.unwrap().unwrap();
        assert_eq!((&found.id, &found.app_id), (&tok.id, &a));
        assert_eq!(found.permissions, full());
        // What a token may do is kept beside it, exactly: an empty list is
        // not "no list", and read-only is not lost.
        for (n, permissions) in [
            TokenPermissions {
                read_only: true,
                capabilities: None,
            },
            TokenPermissions {
                read_only: false,
                capabilities: Some([Capability::ViewBase, Capability::CreateAttempts].into()),
            },
            TokenPermissions {
                read_only: true,
                capabilities: Some(Default::default()),
            },
        ]
        .into_iter()
        .enumerate()
        {
            let d = [100 + n as u8; 32];
            let made = s.create_token(&a, d, None, permissions.clone()).await.unwrap();
            assert_eq!(made.permissions, permissions);
            assert_eq!(s.token_by_digest(d).await.unwrap().unwrap().permissions, permissions);
        }
        assert!(s.token_by_digest([8u8; 32]).await.unwrap().is_none());
        s.revoke_token(&tok.id).await.unwrap();
        assert!(s.token_by_digest(digest).await.unwrap().is_none());
        s.create_token(&a, [1u8; 32], None, full()).await.unwrap();
        s.create_token(&a, [2u8; 32], None, full()).await.unwrap();
        s.create_token(&other, [3u8; 32], None, full()).await.unwrap();
        assert_eq!(
            s.revoke_app_tokens(&a).await.unwrap(),
            5,
            "the three above and these two"
        );
        assert!(
            s.token_by_digest([3u8; 32]).await.unwrap().is_some(),
            "another app's token stays"
        );
        // Deleting an application takes its tokens and tasks with it.
        s.delete_app(&other).await.unwrap();
        assert!(s.token_by_digest([3u8; 32]).await.unwrap().is_none());
        assert!(matches!(s.get_task(&t2.id).await, Err(StoreError::NotFound(_))));
        assert!(matches!(
            s.create_token(&other, [4u8; 32], None, full()).await,
            Err(StoreError::NotFound(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn attempts_filter_by_their_message_tag() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, eps) = app_with_endpoints(s, 1).await;
        let tagged = s
            .ingest(NewMessage {
                tags: Some(vec!["vip".to_owned()]),
                ..msg(&a, None)
            })
            .await
            .unwrap()
            .message
            .id;
        s.ingest(msg(&a, None)).await.unwrap();
        let n = node("n1");
        let jobs = claim(s, &n).await;
        let outcomes = jobs
            .iter()
            .map(|j| outcome(j, Some(attempt(j, 200, 1)), DeliveryState::Succeeded))
            .collect();
        record_all(s, &n, outcomes).await;
        let filter = herald_store::AttemptFilter {
            tag: Some("vip".to_owned()),
            ..Default::default()
        };
        let got = s
            .list_attempts_by_endpoint(&a, &eps[0], filter, page(10, Order::Descending))
            .await
            .unwrap()
            .data;
        assert_eq!(got.iter().map(|a| a.msg_id.clone()).collect::<Vec<_>>(), vec![tagged]);
    })
    .await;
}

#[tokio::test]
async fn at_most_ten_replaced_secrets_sign_at_once() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, eps) = app_with_endpoints(s, 1).await;
        let hour = Duration::from_secs(3600);
        for _ in 0..herald_store::MAX_RETIRING_SECRETS {
            s.rotate_endpoint_secret(&a, &eps[0], EndpointSecret::generate_symmetric(), hour)
                .await
                .unwrap();
        }
        let before = s.get_endpoint_secret(&a, &eps[0]).await.unwrap();
        assert!(matches!(
            s.rotate_endpoint_secret(&a, &eps[0], EndpointSecret::generate_symmetric(), hour)
                .await,
            Err(StoreError::Refused(_))
        ));
        assert!(
            s.get_endpoint_secret(&a, &eps[0]).await.unwrap() == before,
            "a refused rotation changes nothing"
        );
        let last = EndpointSecret::generate_symmetric();
        s.rotate_endpoint_secret(&a, &eps[0], last.clone(), Duration::ZERO)
            .await
            .unwrap();
        let t = s.delivery_targets(vec![eps[0].clone()]).await.unwrap().remove(0);
        assert!(t.secrets == vec![last]);
        assert_eq!(t.retiring.len(), herald_store::MAX_RETIRING_SECRETS);
    })
    .await;
}
