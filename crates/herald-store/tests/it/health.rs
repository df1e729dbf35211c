//! Failure streaks: started, counted, ended, carried across a reopen, and
//! reset when an endpoint is enabled again or deleted.

use crate::{app, changed, each_backend, endpoint, new_endpoint, tick};

#[tokio::test]
async fn a_streak_starts_counts_and_ends() {
    each_backend(|b| async move {
        let s = &b.store;
        let app_id = app(s, "A").await;
        let ep = endpoint(s, &app_id, new_endpoint("https://a.example/")).await;
        assert_eq!(
            s.failure_streak(&ep).await.unwrap(),
            None,
            "a new endpoint is not failing"
        );

        let first = s.endpoint_failed(&app_id, &ep, 0).await.unwrap().expect("a streak");
        assert_eq!(first.failed_messages, 0);
        tick().await;
        let later = s.endpoint_failed(&app_id, &ep, 2).await.unwrap().expect("a streak");
        assert_eq!(later.since, first.since, "a running streak keeps its start");
        assert_eq!(later.failed_messages, 2, "given-up deliveries add up");

        let targets = s.delivery_targets(vec![ep.clone()]).await.unwrap();
        assert_eq!(targets[0].streak, Some(later), "the engine's target carries the streak");

        let reopened = b.reopen().await;
        assert_eq!(
            reopened.failure_streak(&ep).await.unwrap(),
            Some(later),
            "the streak survives a reopen"
        );
        reopened.close().await;

        s.endpoint_succeeded(&ep).await.unwrap();
        assert_eq!(s.failure_streak(&ep).await.unwrap(), None, "a success ends it");
        tick().await;
        let again = s.endpoint_failed(&app_id, &ep, 1).await.unwrap().expect("a streak");
        assert!(again.since > first.since, "the next failure starts a new streak");
        assert_eq!(again.failed_messages, 1);
    })
    .await;
}

#[tokio::test]
async fn enabling_again_or_deleting_ends_the_streak() {
    each_backend(|b| async move {
        let s = &b.store;
        let app_id = app(s, "A").await;
        let ep = endpoint(s, &app_id, new_endpoint("https://a.example/")).await;
        s.endpoint_failed(&app_id, &ep, 3).await.unwrap();
        assert!(s.disable_endpoint(&app_id, &ep).await.unwrap());
        assert!(
            s.failure_streak(&ep).await.unwrap().is_some(),
            "a disabled endpoint keeps its streak"
        );

        let disabled = s.get_endpoint(&app_id, ep.as_str()).await.unwrap();
        let renamed = s
            .update_endpoint(changed(disabled, |set| set.description = "still off".into()))
            .await
            .unwrap();
        assert!(
            s.failure_streak(&ep).await.unwrap().is_some(),
            "an update that leaves it disabled keeps the streak"
        );
        s.update_endpoint(changed(renamed, |set| set.disabled = false))
            .await
            .unwrap();
        assert_eq!(
            s.failure_streak(&ep).await.unwrap(),
            None,
            "enabled again: a fresh start"
        );

        s.endpoint_failed(&app_id, &ep, 0).await.unwrap();
        s.delete_endpoint(&app_id, &ep).await.unwrap();
        assert_eq!(s.failure_streak(&ep).await.unwrap(), None, "deleted with its endpoint");
        assert_eq!(
            s.endpoint_failed(&app_id, &ep, 1).await.unwrap(),
            None,
            "a late failure of a deleted endpoint leaves nothing behind"
        );
        assert_eq!(s.failure_streak(&ep).await.unwrap(), None);
    })
    .await;
}
