//! Retention: old history goes in bounded batches, what is still to be
//! delivered stays, payload expiry blanks only the payload, and idempotency
//! keys past their age go.
//!
//! Ages are real time at a small scale: messages made, a pause, younger
//! ones made, then pruning with a maximum age between the two.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use herald_core::model::{Attempt, DeliveryStatus, TriggerType};
use herald_core::{AppId, AttemptId, MessageId};
use herald_store::{
    AttemptFilter, DEFAULT_PAYLOAD_RETENTION, DeliveryJob, DeliveryState, Lease, NewMessage, NodeId, Outcome,
    PruneCursor, SavedResponse, Store, StoreError,
};

use crate::{Backend, Order, app, each_backend, endpoint, new_endpoint, new_msg, page};

/// Old rows are older than this by the time pruning runs; young ones are not.
const MAX_AGE: Duration = Duration::from_millis(300);
/// The pause between making old rows and young ones.
const GAP: Duration = Duration::from_millis(600);

fn lease() -> Lease {
    Lease {
        owner: NodeId::new("retention-node"),
        ttl: Duration::from_secs(60),
    }
}

/// An application with one endpoint, so every message gets one delivery.
async fn app_with_endpoint(s: &Arc<dyn Store>) -> AppId {
    let a = app(s, "retention").await;
    endpoint(s, &a, new_endpoint("https://receiver.example/hook")).await;
    a
}

async fn send(s: &Arc<dyn Store>, msg: NewMessage) -> MessageId {
    s.ingest(msg).await.unwrap().message.id
}

fn success(job: &DeliveryJob) -> Outcome {
    Outcome {
        held: job.held(),
        attempt: Some(Attempt {
            id: AttemptId::new(),
            msg_id: job.msg_id.clone(),
            endpoint_id: job.endpoint_id.clone(),
            app_id: job.app_id.clone(),
            url: "https://receiver.example/hook".into(),
            response_status_code: 200,
            response: "ok".into(),
            response_duration_ms: 3,
            status: DeliveryStatus::Success,
            error_kind: None,
            trigger_type: TriggerType::Scheduled,
            attempt_number: 1,
            created_at: Utc::now(),
        }),
        state: DeliveryState::Succeeded,
    }
}

/// Claims every due delivery and records a successful attempt for each.
async fn deliver_all(s: &Arc<dyn Store>) -> usize {
    let jobs = s.claim_due(&lease(), 1000, usize::MAX).await.unwrap();
    let n = jobs.len();
    s.record_outcomes(&lease(), jobs.iter().map(success).collect())
        .await
        .unwrap();
    n
}

/// One batch of payload expiry with the real default (90 days), walking
/// from the oldest message; how many it expunged.
async fn expunge(s: &Arc<dyn Store>, batch: usize) -> u64 {
    s.expunge_payloads(DEFAULT_PAYLOAD_RETENTION, batch, PruneCursor::default())
        .await
        .unwrap()
        .payloads
}

async fn attempts_of(s: &Arc<dyn Store>, a: &AppId, m: &MessageId) -> usize {
    s.list_attempts_by_msg(a, m, AttemptFilter::default(), page(50, Order::Descending))
        .await
        .unwrap()
        .data
        .len()
}

#[tokio::test]
async fn retention_prunes_old_finished_messages_batch_by_batch() {
    each_backend(|b: Backend| async move {
        let s = b.store;
        let a = app_with_endpoint(&s).await;
        let mut old = Vec::new();
        for i in 0..5 {
            old.push(send(&s, new_msg(a.as_str(), "a.b", &format!(r#"{{"i":{i}}}"#))).await);
        }
        assert_eq!(deliver_all(&s).await, 5);
        tokio::time::sleep(GAP).await;
        let young = send(&s, new_msg(a.as_str(), "a.b", "{}")).await;
        assert_eq!(deliver_all(&s).await, 1);

        let mut cursor = PruneCursor::default();
        let (mut messages, mut attempts, mut batches) = (0, 0, 0);
        loop {
            let p = s.prune_messages(MAX_AGE, 2, cursor).await.unwrap();
            assert!(p.messages <= 2, "a batch of 2 pruned {}", p.messages);
            messages += p.messages;
            attempts += p.attempts;
            batches += 1;
            match p.next {
                Some(next) => cursor = next,
                None => break,
            }
            assert!(batches < 10, "the walk never ended");
        }
        assert_eq!((messages, attempts), (5, 5));
        assert!(batches >= 3, "5 messages in batches of 2 took {batches} batch(es)");
        for m in &old {
            assert!(matches!(
                s.get_message(&a, m.as_str()).await,
                Err(StoreError::NotFound(_))
            ));
            assert_eq!(attempts_of(&s, &a, m).await, 0, "attempts of a pruned message");
        }
        assert!(
            s.get_message(&a, young.as_str()).await.is_ok(),
            "the young message stays"
        );
        assert_eq!(attempts_of(&s, &a, &young).await, 1);

        let again = s.prune_messages(MAX_AGE, 100, PruneCursor::default()).await.unwrap();
        assert_eq!((again.messages, again.next), (0, None), "nothing more is due");
    })
    .await;
}

#[tokio::test]
async fn retention_keeps_a_message_with_a_pending_delivery() {
    each_backend(|b: Backend| async move {
        let s = b.store;
        let a = app_with_endpoint(&s).await;
        let done = send(&s, new_msg(a.as_str(), "a.b", r#"{"done":true}"#)).await;
        assert_eq!(deliver_all(&s).await, 1);
        // Never claimed: pending, however old it gets.
        let pending = send(&s, new_msg(a.as_str(), "a.b", r#"{"pending":true}"#)).await;
        tokio::time::sleep(GAP).await;

        let p = s.prune_messages(MAX_AGE, 100, PruneCursor::default()).await.unwrap();
        assert_eq!(p.messages, 1);
        assert!(matches!(
            s.get_message(&a, done.as_str()).await,
            Err(StoreError::NotFound(_))
        ));
        let kept = s.get_message(&a, pending.as_str()).await.unwrap();
        assert_eq!(&kept.payload[..], br#"{"pending":true}"#);
        let due = s.claim_due(&lease(), 10, usize::MAX).await.unwrap();
        assert_eq!(due.len(), 1, "its delivery is still there to send");
        assert_eq!(due[0].msg_id, pending);
        assert_eq!(&due[0].payload[..], br#"{"pending":true}"#);
    })
    .await;
}

#[tokio::test]
async fn retention_payload_expiry_blanks_only_the_payload() {
    each_backend(|b: Backend| async move {
        let s = b.store;
        let a = app_with_endpoint(&s).await;
        let short = |payload: &str| NewMessage {
            payload_retention: Some(MAX_AGE),
            ..new_msg(a.as_str(), "a.b", payload)
        };
        let expiring = send(&s, short(r#"{"secret":1}"#)).await;
        let default = send(&s, new_msg(a.as_str(), "a.b", r#"{"kept":1}"#)).await;
        assert_eq!(deliver_all(&s).await, 2);
        let pending = send(&s, short(r#"{"undelivered":1}"#)).await;
        let before = s.get_message(&a, expiring.as_str()).await.unwrap();
        tokio::time::sleep(GAP).await;

        assert_eq!(expunge(&s, 100).await, 1);
        let after = s.get_message(&a, expiring.as_str()).await.unwrap();
        assert!(after.payload.is_empty(), "the payload is expunged");
        assert_eq!(
            (&after.id, &after.event_type, after.created_at),
            (&before.id, &before.event_type, before.created_at),
            "the rest of the message stays"
        );
        assert_eq!(attempts_of(&s, &a, &expiring).await, 1, "its attempts stay");
        let kept = s.get_message(&a, default.as_str()).await.unwrap();
        assert_eq!(&kept.payload[..], br#"{"kept":1}"#, "the default retention is 90 days");
        let undelivered = s.get_message(&a, pending.as_str()).await.unwrap();
        assert_eq!(
            &undelivered.payload[..],
            br#"{"undelivered":1}"#,
            "pending keeps its payload"
        );
        assert_eq!(expunge(&s, 100).await, 0, "expunged once");

        // Once delivered, its payload goes too.
        assert_eq!(deliver_all(&s).await, 1);
        assert_eq!(expunge(&s, 100).await, 1);
        assert!(s.get_message(&a, pending.as_str()).await.unwrap().payload.is_empty());
    })
    .await;
}

#[tokio::test]
async fn retention_default_payload_expiry_walks_by_age() {
    each_backend(|b: Backend| async move {
        let s = b.store;
        let a = app_with_endpoint(&s).await;
        let mut old = Vec::new();
        for i in 0..5 {
            old.push(send(&s, new_msg(a.as_str(), "a.b", &format!(r#"{{"old":{i}}}"#))).await);
        }
        assert_eq!(deliver_all(&s).await, 5);
        let pending = send(&s, new_msg(a.as_str(), "a.b", r#"{"pending":1}"#)).await;
        let own_period = send(
            &s,
            NewMessage {
                payload_retention: Some(Duration::from_secs(3600)),
                ..new_msg(a.as_str(), "a.b", r#"{"own":1}"#)
            },
        )
        .await;
        tokio::time::sleep(GAP).await;
        let young = send(&s, new_msg(a.as_str(), "a.b", r#"{"young":1}"#)).await;
        let payload = |m: MessageId| {
            let s = s.clone();
            let a = a.clone();
            async move { s.get_message(&a, m.as_str()).await.unwrap().payload }
        };

        // Batches of 2 from the oldest: 2, 2, then the last old one; the
        // pending one is kept and said to be.
        let mut cursor = PruneCursor::default();
        let mut batches = Vec::new();
        let mut kept_pending = false;
        loop {
            let p = s.expunge_payloads(MAX_AGE, 2, cursor).await.unwrap();
            batches.push(p.payloads);
            kept_pending |= p.kept_pending;
            cursor = p.cursor;
            if !p.more {
                break;
            }
        }
        assert_eq!(batches.iter().sum::<u64>(), 5, "{batches:?}");
        assert!(batches.iter().all(|&n| n <= 2), "{batches:?}");
        assert!(kept_pending, "the pending message's payload is kept, and said to be");
        for m in old {
            assert!(
                payload(m).await.is_empty(),
                "an old payload with the default retention goes"
            );
        }
        assert_eq!(&payload(pending.clone()).await[..], br#"{"pending":1}"#);
        assert_eq!(
            &payload(own_period).await[..],
            br#"{"own":1}"#,
            "a message's own period wins over the default"
        );
        assert_eq!(&payload(young).await[..], br#"{"young":1}"#, "young payloads stay");

        // From where the walk ended, nothing is left; from the start, only
        // the pending one is still due, and once sent it goes.
        let p = s.expunge_payloads(MAX_AGE, 100, cursor).await.unwrap();
        assert_eq!((p.payloads, p.more), (0, false));
        assert_eq!(deliver_all(&s).await, 3);
        let p = s.expunge_payloads(MAX_AGE, 100, PruneCursor::default()).await.unwrap();
        assert_eq!(p.payloads, 1);
        assert!(payload(pending).await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn retention_prunes_idempotency_keys_past_their_age() {
    each_backend(|b: Backend| async move {
        let s = b.store;
        let saved = || SavedResponse {
            request_digest: None,
            status: 202,
            body: bytes::Bytes::from_static(b"{}"),
        };
        s.save_response("old-1", saved()).await.unwrap();
        s.save_response("old-2", saved()).await.unwrap();
        tokio::time::sleep(GAP).await;
        s.save_response("young", saved()).await.unwrap();

        assert_eq!(s.prune_idempotency(MAX_AGE, 1).await.unwrap(), 1, "one batch of 1");
        assert_eq!(s.prune_idempotency(MAX_AGE, 100).await.unwrap(), 1);
        assert_eq!(s.prune_idempotency(MAX_AGE, 100).await.unwrap(), 0);
        let day = Duration::from_secs(86_400);
        assert!(s.saved_response("old-1", day).await.unwrap().is_none());
        assert!(s.saved_response("old-2", day).await.unwrap().is_none());
        assert!(s.saved_response("young", day).await.unwrap().is_some());
    })
    .await;
}

#[tokio::test]
async fn retention_prunes_expired_tokens_only() {
    let full = herald_core::access::TokenPermissions::full;
    each_backend(|b: Backend| async move {
        let s = b.store;
        let a = crate::app(&s, "A").await;
        let past = Some(chrono::Utc::now() - chrono::Duration::seconds(5));
        let future = Some(chrono::Utc::now() + chrono::Duration::hours(1));
        let expired = [[1u8; 32], [2u8; 32]];
        for digest in expired {
            s.create_token(&a, digest, past, full()).await.unwrap();
        }
        s.create_token(&a, [3u8; 32], future, full()).await.unwrap();
        s.create_token(&a, [4u8; 32], None, full()).await.unwrap();

        assert_eq!(s.prune_expired_tokens(1).await.unwrap(), 1, "one batch of 1");
        assert_eq!(s.prune_expired_tokens(100).await.unwrap(), 1);
        assert_eq!(s.prune_expired_tokens(100).await.unwrap(), 0);
        for digest in expired {
            assert!(
                s.token_by_digest(digest).await.unwrap().is_none(),
                "an expired token kept"
            );
        }
        assert!(
            s.token_by_digest([3u8; 32]).await.unwrap().is_some(),
            "a live token pruned"
        );
        assert!(
            s.token_by_digest([4u8; 32]).await.unwrap().is_some(),
            "a token without expiry pruned"
        );
    })
    .await;
}
