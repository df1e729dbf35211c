//! The change feed: endpoint and application changes, announced once they
//! commit, and never for a write that failed.

use std::time::Duration;

use herald_core::{AppId, EndpointId};
use herald_store::{Change, StoreError};
use tokio::sync::broadcast;

use crate::{app, each_backend, endpoint, new_endpoint};

/// The next change, waiting a little (a shared database may announce late).
async fn next(rx: &mut broadcast::Receiver<Change>) -> Change {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("no change announced within 5 s")
        .expect("the change feed closed or lagged")
}

#[tokio::test]
async fn endpoint_and_app_changes_are_announced_in_order() {
    each_backend(|b| async move {
        let s = &b.store;
        let a = app(s, "A").await;
        let ep1 = endpoint(s, &a, new_endpoint("https://1.example/")).await;
        let ep2 = endpoint(s, &a, new_endpoint("https://2.example/")).await;
        let mut rx = s.changes();

        let mut ep = s.get_endpoint(&a, ep1.as_str()).await.unwrap();
        ep.settings.description = "changed".into();
        s.update_endpoint(ep).await.unwrap();
        s.delete_endpoint(&a, &ep2).await.unwrap();
        s.delete_app(&a).await.unwrap();

        assert_eq!(
            next(&mut rx).await,
            Change::EndpointUpdated {
                app_id: a.clone(),
                endpoint_id: ep1.clone()
            }
        );
        assert_eq!(
            next(&mut rx).await,
            Change::EndpointDeleted {
                app_id: a.clone(),
                endpoint_id: ep2.clone()
            }
        );
        assert_eq!(next(&mut rx).await, Change::AppDeleted { app_id: a.clone() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Empty),
            "nothing more was announced"
        );
    })
    .await;
}

#[tokio::test]
async fn failed_writes_announce_nothing() {
    each_backend(|b| async move {
        let s = &b.store;
        let a = app(s, "A").await;
        let ep_id = endpoint(s, &a, new_endpoint("https://1.example/")).await;
        let real = s.get_endpoint(&a, ep_id.as_str()).await.unwrap();
        let mut rx = s.changes();

        let mut missing = real.clone();
        missing.id = EndpointId::new();
        assert_matches!(
            s.update_endpoint(missing.clone()).await,
            Err(StoreError::NotFound(_)),
            "updating a missing endpoint"
        );
        let mut elsewhere = real.clone();
        elsewhere.app_id = AppId::new();
        assert_matches!(
            s.update_endpoint(elsewhere).await,
            Err(StoreError::NotFound(_)),
            "updating an endpoint through another app"
        );
        assert_matches!(
            s.delete_endpoint(&a, &missing.id).await,
            Err(StoreError::NotFound(_)),
            "deleting a missing endpoint"
        );
        assert_matches!(
            s.delete_app(&AppId::new()).await,
            Err(StoreError::NotFound(_)),
            "deleting a missing app"
        );

        // The first change heard is the first write that succeeded.
        s.delete_endpoint(&a, &ep_id).await.unwrap();
        assert_eq!(
            next(&mut rx).await,
            Change::EndpointDeleted {
                app_id: a.clone(),
                endpoint_id: ep_id.clone()
            },
            "a failed write was announced"
        );
    })
    .await;
}

#[tokio::test]
async fn every_subscriber_hears_every_change() {
    each_backend(|b| async move {
        let s = &b.store;
        let a = app(s, "A").await;
        let ep = endpoint(s, &a, new_endpoint("https://1.example/")).await;
        let (mut rx1, mut rx2) = (s.changes(), s.changes());
        s.delete_endpoint(&a, &ep).await.unwrap();
        let want = Change::EndpointDeleted {
            app_id: a.clone(),
            endpoint_id: ep.clone(),
        };
        assert_eq!(next(&mut rx1).await, want);
        assert_eq!(next(&mut rx2).await, want);
        // A subscriber hears only what commits after it subscribed.
        let mut late = s.changes();
        s.delete_app(&a).await.unwrap();
        assert_eq!(next(&mut late).await, Change::AppDeleted { app_id: a.clone() });
    })
    .await;
}
