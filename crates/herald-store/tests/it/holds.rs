//! Endpoint holds: one owner at a time, by the database's clock, and the
//! deliveries to a held endpoint left for its holder by everyone else's
//! ingest and claims.

use std::time::Duration;

use herald_store::Change;

use crate::{app_with_endpoints, claim, each_backend, ids, lease, msg, node, sleep_ms};

#[tokio::test]
async fn an_endpoint_is_held_by_one_owner_at_a_time() {
    each_backend(|b| async move {
        let s = &b.store;
        let (_, eps) = app_with_endpoints(s, 2).await;
        let (e1, e2) = (eps[0].clone(), eps[1].clone());
        let short_a = lease("a", Duration::from_millis(300));
        let b_node = node("b");

        assert_eq!(s.hold_endpoints(&short_a, vec![e1.clone()]).await.unwrap(), vec![true]);
        assert_eq!(
            s.hold_endpoints(&b_node, vec![e1.clone(), e2.clone()]).await.unwrap(),
            vec![false, true],
            "b takes the free endpoint only"
        );
        assert_eq!(
            s.hold_endpoints(&short_a, vec![e1.clone(), e1.clone()]).await.unwrap(),
            vec![true, true],
            "the holder renews, an endpoint named twice answered twice"
        );
        // Releasing what another owner holds changes nothing.
        s.release_endpoints(&b_node, vec![e1.clone()]).await.unwrap();
        assert_eq!(s.hold_endpoints(&b_node, vec![e1.clone()]).await.unwrap(), vec![false]);

        // a stops renewing: its hold lapses by the database's clock.
        sleep_ms(400).await;
        assert_eq!(
            s.hold_endpoints(&b_node, vec![e1.clone()]).await.unwrap(),
            vec![true],
            "a lapsed hold is taken over"
        );
        assert_eq!(s.hold_endpoints(&short_a, vec![e1.clone()]).await.unwrap(), vec![false]);

        s.release_endpoints(&b_node, vec![e1.clone(), e2.clone()])
            .await
            .unwrap();
        assert_eq!(
            s.hold_endpoints(&short_a, vec![e1.clone(), e2.clone()]).await.unwrap(),
            vec![true, true],
            "released holds are free"
        );
    })
    .await;
}

#[tokio::test]
async fn deliveries_to_a_held_endpoint_are_left_for_its_holder() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, eps) = app_with_endpoints(s, 2).await;
        let (held_ep, free_ep) = (eps[0].clone(), eps[1].clone());
        let (holder, other) = (node("holder"), node("other"));
        assert_eq!(
            s.hold_endpoints(&holder, vec![held_ep.clone()]).await.unwrap(),
            vec![true]
        );
        let mut feed = s.changes();

        let born = s.ingest(msg(&a, Some(other.clone()))).await.unwrap();
        assert_eq!(
            born.deliveries.len(),
            1,
            "only the free endpoint's is in the other node's hands"
        );
        assert_eq!(born.deliveries[0].endpoint_id, free_ep);
        let due = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if feed.recv().await.expect("the change feed") == Change::Due {
                    break;
                }
            }
        })
        .await;
        assert!(due.is_ok(), "no Change::Due announced for the holder");

        assert!(
            claim(s, &other).await.is_empty(),
            "another node claimed the held endpoint's delivery"
        );
        assert_eq!(
            s.next_due(&other.owner).await.unwrap(),
            None,
            "due for a node that must leave it"
        );
        assert!(
            s.next_due(&holder.owner).await.unwrap().is_some(),
            "not due for its holder"
        );
        let taken = claim(s, &holder).await;
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].endpoint_id, held_ep);
        assert_eq!(taken[0].msg_id, born.message.id);

        // The holder's own ingest is born claimed to it, as always.
        let own = s.ingest(msg(&a, Some(holder.clone()))).await.unwrap();
        assert_eq!(own.deliveries.len(), 2);

        // Released, the endpoint's next deliveries are anyone's again.
        s.release_endpoints(&holder, vec![held_ep.clone()]).await.unwrap();
        let free = s.ingest(msg(&a, None)).await.unwrap();
        let claimed = claim(s, &other).await;
        assert_eq!(claimed.len(), 2, "after the release, the other node claims both");
        assert!(ids(&claimed).contains(&free.deliveries[0].delivery_id));
    })
    .await;
}
