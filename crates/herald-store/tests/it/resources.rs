//! Applications and event types: create, read, update, delete, list
//! (endpoints are in `endpoints.rs`).

use chrono::Utc;
use herald_core::AppId;
use herald_core::model::Application;
use herald_store::{NewApplication, Order, StoreError};

use crate::{
    AtMs, app, each_backend, endpoint, event_type, meta, new_app, new_endpoint, new_msg, page, page_at, tick, uid,
};

// ---------- applications ----------

#[tokio::test]
async fn app_create_then_get_by_id_and_by_uid() {
    each_backend(|b| async move {
        let s = &b.store;
        let before = Utc::now();
        let created = s
            .create_app(NewApplication {
                uid: Some(uid("acme-prod")),
                name: "Acme".into(),
                metadata: meta(&[("tier", "gold"), ("region", "eu")]),
                throttle_rate: Some(25),
            })
            .await
            .unwrap();
        let after = Utc::now();

        assert!(created.id.as_str().starts_with("app_"), "id {}", created.id);
        assert_eq!(created.uid, Some(uid("acme-prod")));
        assert_eq!(created.name, "Acme");
        assert_eq!(created.metadata, meta(&[("region", "eu"), ("tier", "gold")]));
        assert_eq!(created.throttle_rate, Some(25));
        crate::assert_between(created.created_at, before, after, "created_at");
        assert_eq!(created.created_at, created.updated_at);

        let by_id = s.get_app(created.id.as_str()).await.unwrap();
        assert_eq!(by_id.clone().at_ms(), created.clone().at_ms(), "get by id");
        let by_uid = s.get_app("acme-prod").await.unwrap();
        assert_eq!(by_uid, by_id, "get by uid");

        // A second application without a uid: many may have none.
        let other = s.create_app(new_app("Other", None)).await.unwrap();
        let third = s.create_app(new_app("Third", None)).await.unwrap();
        assert_ne!(other.id, third.id);
        assert_eq!(s.get_app(other.id.as_str()).await.unwrap().uid, None);
    })
    .await;
}

#[tokio::test]
async fn app_get_missing_is_not_found() {
    each_backend(|b| async move {
        let s = &b.store;
        s.create_app(new_app("Present", Some("present"))).await.unwrap();
        assert_matches!(
            s.get_app(AppId::new().as_str()).await,
            Err(StoreError::NotFound(_)),
            "unknown id"
        );
        assert_matches!(s.get_app("absent").await, Err(StoreError::NotFound(_)), "unknown uid");
    })
    .await;
}

#[tokio::test]
async fn app_duplicate_uid_conflicts() {
    each_backend(|b| async move {
        let s = &b.store;
        let first = s.create_app(new_app("First", Some("dup"))).await.unwrap();
        assert_matches!(
            s.create_app(new_app("Second", Some("dup"))).await,
            Err(StoreError::Conflict(_)),
            "second app with uid `dup`"
        );
        // The failed create left nothing behind, and the first is intact.
        let listed = s.list_apps(page(50, Order::Ascending)).await.unwrap();
        assert_eq!(listed.data.len(), 1, "apps after the conflict");
        assert_eq!(s.get_app("dup").await.unwrap().id, first.id);
        assert_eq!(s.get_app("dup").await.unwrap().name, "First");
    })
    .await;
}

#[tokio::test]
async fn app_update_replaces_mutable_fields() {
    each_backend(|b| async move {
        let s = &b.store;
        let original = s.create_app(new_app("Before", Some("old-uid"))).await.unwrap();
        let taken = s.create_app(new_app("Taken", Some("taken"))).await.unwrap();
        tick().await;

        let updated = s
            .update_app(Application {
                uid: Some(uid("new-uid")),
                name: "After".into(),
                metadata: meta(&[("k", "v")]),
                throttle_rate: Some(7),
                ..original.clone()
            })
            .await
            .unwrap();
        assert_eq!(updated.id, original.id);
        assert!(
            updated.updated_at > original.updated_at,
            "updated_at {} should move past {}",
            updated.updated_at,
            original.updated_at
        );

        let got = s.get_app(original.id.as_str()).await.unwrap();
        assert_eq!(got.clone().at_ms(), updated.clone().at_ms());
        assert_eq!(got.name, "After");
        assert_eq!(got.uid, Some(uid("new-uid")));
        assert_eq!(got.metadata, meta(&[("k", "v")]));
        assert_eq!(got.throttle_rate, Some(7));
        crate::assert_ms_eq(got.created_at, original.created_at, "created_at kept");
        assert_eq!(s.get_app("new-uid").await.unwrap().id, original.id);
        assert_matches!(
            s.get_app("old-uid").await,
            Err(StoreError::NotFound(_)),
            "the old uid no longer resolves"
        );

        // Clearing optional fields.
        let cleared = s
            .update_app(Application {
                uid: None,
                throttle_rate: None,
                metadata: Default::default(),
                ..got.clone()
            })
            .await
            .unwrap();
        let got = s.get_app(original.id.as_str()).await.unwrap();
        assert_eq!(got.clone().at_ms(), cleared.at_ms());
        assert_eq!((&got.uid, got.throttle_rate), (&None, None));

        // Taking another application's uid.
        assert_matches!(
            s.update_app(Application {
                uid: Some(uid("taken")),
                ..got.clone()
            })
            .await,
            Err(StoreError::Conflict(_)),
            "update to a uid in use"
        );
        assert_eq!(s.get_app("taken").await.unwrap().id, taken.id);
        assert_eq!(s.get_app(original.id.as_str()).await.unwrap().uid, None);

        // Updating an application that does not exist.
        assert_matches!(
            s.update_app(Application {
                id: AppId::new(),
                uid: None,
                ..got
            })
            .await,
            Err(StoreError::NotFound(_)),
            "update of a missing app"
        );
    })
    .await;
}

#[tokio::test]
async fn app_delete_removes_it_with_its_resources() {
    each_backend(|b| async move {
        let s = &b.store;
        let doomed = s.create_app(new_app("Doomed", Some("doomed"))).await.unwrap();
        let kept = app(s, "Kept").await;
        let ep = endpoint(s, &doomed.id, new_endpoint("https://doomed.example/")).await;
        let kept_ep = endpoint(s, &kept, new_endpoint("https://kept.example/")).await;
        let msg = s.ingest(new_msg(doomed.id.as_str(), "a.b", "{}")).await.unwrap();
        let kept_msg = s.ingest(new_msg(kept.as_str(), "a.b", "{}")).await.unwrap();
        assert_eq!(msg.deliveries.len(), 1);

        s.delete_app(&doomed.id).await.unwrap();

        assert_matches!(
            s.get_app(doomed.id.as_str()).await,
            Err(StoreError::NotFound(_)),
            "deleted app by id"
        );
        assert_matches!(
            s.get_app("doomed").await,
            Err(StoreError::NotFound(_)),
            "deleted app by uid"
        );
        assert_matches!(
            s.get_endpoint(&doomed.id, ep.as_str()).await,
            Err(StoreError::NotFound(_)),
            "endpoint of a deleted app"
        );
        assert_matches!(
            s.get_message(&doomed.id, msg.message.id.as_str()).await,
            Err(StoreError::NotFound(_)),
            "message of a deleted app"
        );
        assert_matches!(
            s.ingest(new_msg(doomed.id.as_str(), "a.b", "{}")).await,
            Err(StoreError::NotFound(_)),
            "ingest into a deleted app"
        );
        assert_matches!(
            s.delete_app(&doomed.id).await,
            Err(StoreError::NotFound(_)),
            "deleting twice"
        );
        // Its pending deliveries are gone; the other app's are not.
        let claimed = crate::claim(s, &crate::node("n1")).await;
        assert_eq!(
            claimed.iter().map(|j| &j.endpoint_id).collect::<Vec<_>>(),
            vec![&kept_ep],
            "only the surviving app's delivery is claimable"
        );
        assert_eq!(claimed[0].msg_id, kept_msg.message.id);

        // The other application is untouched and the uid is free again.
        assert_eq!(s.get_app(kept.as_str()).await.unwrap().name, "Kept");
        s.get_endpoint(&kept, kept_ep.as_str()).await.unwrap();
        s.create_app(new_app("Reborn", Some("doomed"))).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn app_list_pages_forward_and_back() {
    each_backend(|b| async move {
        let s = &b.store;
        let empty = s.list_apps(page(10, Order::Ascending)).await.unwrap();
        assert!(empty.data.is_empty() && empty.done, "empty store: {empty:?}");

        let mut ids = Vec::new();
        for i in 0..7 {
            ids.push(app(s, &format!("app {i}")).await);
        }
        let names = |p: &herald_store::Page<Application>| p.data.iter().map(|a| a.id.clone()).collect::<Vec<_>>();

        // Everything in one page.
        let all = s.list_apps(page(50, Order::Ascending)).await.unwrap();
        assert_eq!(names(&all), ids, "ascending is oldest first");
        assert!(all.done);

        // Forward, three at a time.
        let p1 = s.list_apps(page(3, Order::Ascending)).await.unwrap();
        assert_eq!(names(&p1), ids[0..3]);
        assert!(!p1.done, "more pages follow the first");
        assert_eq!(p1.iterator.as_deref(), Some(ids[2].as_str()));
        let p2 = s
            .list_apps(page_at(3, Order::Ascending, p1.iterator.as_deref().unwrap()))
            .await
            .unwrap();
        assert_eq!(names(&p2), ids[3..6]);
        assert!(!p2.done);
        let p3 = s
            .list_apps(page_at(3, Order::Ascending, p2.iterator.as_deref().unwrap()))
            .await
            .unwrap();
        assert_eq!(names(&p3), ids[6..7]);
        assert!(p3.done, "the last page is done");

        // Exactly a page's worth left is still done.
        let p = s
            .list_apps(page_at(4, Order::Ascending, ids[2].as_str()))
            .await
            .unwrap();
        assert_eq!(names(&p), ids[3..7]);
        assert!(p.done, "a page that ends at the last item is done");

        // Back again with the `-` iterators.
        let prev = p3.prev_iterator.clone().unwrap();
        assert!(prev.starts_with('-'), "prev iterator {prev}");
        let back2 = s.list_apps(page_at(3, Order::Ascending, &prev)).await.unwrap();
        assert_eq!(names(&back2), ids[3..6], "one page back from the last");
        let back1 = s
            .list_apps(page_at(3, Order::Ascending, back2.prev_iterator.as_deref().unwrap()))
            .await
            .unwrap();
        assert_eq!(names(&back1), ids[0..3], "two pages back");
        // A backward page's forward iterator continues after it.
        let again = s
            .list_apps(page_at(3, Order::Ascending, back1.iterator.as_deref().unwrap()))
            .await
            .unwrap();
        assert_eq!(names(&again), ids[3..6]);
        // Back from the very first item there is nothing.
        let before_first = s
            .list_apps(page_at(3, Order::Ascending, p1.prev_iterator.as_deref().unwrap()))
            .await
            .unwrap();
        assert!(before_first.data.is_empty(), "{before_first:?}");
        // Walking back fewer than a page's worth still returns them in order.
        let short = s
            .list_apps(page_at(3, Order::Ascending, &format!("-{}", ids[2])))
            .await
            .unwrap();
        assert_eq!(names(&short), ids[0..2]);

        // Descending: newest first, the same walk mirrored.
        let rev: Vec<_> = ids.iter().rev().cloned().collect();
        let d1 = s.list_apps(page(3, Order::Descending)).await.unwrap();
        assert_eq!(names(&d1), rev[0..3], "descending is newest first");
        assert!(!d1.done);
        let d2 = s
            .list_apps(page_at(3, Order::Descending, d1.iterator.as_deref().unwrap()))
            .await
            .unwrap();
        assert_eq!(names(&d2), rev[3..6]);
        let d3 = s
            .list_apps(page_at(3, Order::Descending, d2.iterator.as_deref().unwrap()))
            .await
            .unwrap();
        assert_eq!(names(&d3), rev[6..7]);
        assert!(d3.done);
        let dback = s
            .list_apps(page_at(3, Order::Descending, d3.prev_iterator.as_deref().unwrap()))
            .await
            .unwrap();
        assert_eq!(names(&dback), rev[3..6], "descending, one page back");

        // Limit 1 walks one at a time.
        let one = s.list_apps(page(1, Order::Ascending)).await.unwrap();
        assert_eq!(names(&one), ids[0..1]);
        assert!(!one.done);
    })
    .await;
}

// ---------- event types ----------

#[tokio::test]
async fn event_type_create_get_and_duplicate() {
    each_backend(|b| async move {
        let s = &b.store;
        let mut full = event_type("invoice.paid");
        full.deprecated = true;
        full.schemas = Some(serde_json::json!({"1": {"type": "object", "title": "Invoice"}}));
        full.feature_flags = Some(vec!["beta".into()]);
        full.group_name = Some("billing".into());
        let created = s.create_event_type(full.clone()).await.unwrap();
        assert_eq!(created.clone().at_ms(), full.clone().at_ms());
        let got = s.get_event_type("invoice.paid").await.unwrap();
        assert_eq!(got.at_ms(), full.clone().at_ms());

        assert_matches!(
            s.create_event_type(event_type("invoice.paid")).await,
            Err(StoreError::Conflict(_)),
            "duplicate event type"
        );
        assert_eq!(
            s.get_event_type("invoice.paid").await.unwrap().group_name,
            Some("billing".into()),
            "the duplicate did not overwrite"
        );
        assert_matches!(
            s.get_event_type("invoice.unknown").await,
            Err(StoreError::NotFound(_)),
            "missing event type"
        );

        // Update.
        let updated = s
            .update_event_type(herald_core::model::EventType {
                description: "changed".into(),
                deprecated: false,
                schemas: None,
                updated_at: Utc::now(),
                ..full.clone()
            })
            .await
            .unwrap();
        let got = s.get_event_type("invoice.paid").await.unwrap();
        assert_eq!(got.clone().at_ms(), updated.at_ms());
        assert_eq!(got.description, "changed");
        assert_eq!(got.schemas, None);
        assert_matches!(
            s.update_event_type(event_type("never.created")).await,
            Err(StoreError::NotFound(_)),
            "update of a missing event type"
        );
    })
    .await;
}

#[tokio::test]
async fn event_type_archive_expunge_and_list() {
    each_backend(|b| async move {
        let s = &b.store;
        for name in ["c.three", "a.one", "b.two", "d.four"] {
            s.create_event_type(event_type(name)).await.unwrap();
        }
        let names = |p: herald_store::Page<herald_core::model::EventType>| {
            p.data.into_iter().map(|e| e.name.into_string()).collect::<Vec<_>>()
        };
        assert_eq!(
            names(s.list_event_types(page(50, Order::Ascending), false).await.unwrap()),
            ["a.one", "b.two", "c.three", "d.four"],
            "listed by name"
        );

        // Archive b.two: kept, marked, hidden unless asked for.
        s.delete_event_type("b.two", false).await.unwrap();
        assert!(s.get_event_type("b.two").await.unwrap().archived);
        assert_eq!(
            names(s.list_event_types(page(50, Order::Ascending), false).await.unwrap()),
            ["a.one", "c.three", "d.four"],
            "without archived"
        );
        assert_eq!(
            names(s.list_event_types(page(50, Order::Ascending), true).await.unwrap()),
            ["a.one", "b.two", "c.three", "d.four"],
            "with archived"
        );

        // Expunge c.three: gone for good.
        s.delete_event_type("c.three", true).await.unwrap();
        assert_matches!(
            s.get_event_type("c.three").await,
            Err(StoreError::NotFound(_)),
            "expunged event type"
        );
        assert_eq!(
            names(s.list_event_types(page(50, Order::Ascending), true).await.unwrap()),
            ["a.one", "b.two", "d.four"],
            "after expunge"
        );
        // An archived type can be expunged; the name can then be created again.
        s.delete_event_type("b.two", true).await.unwrap();
        s.create_event_type(event_type("b.two")).await.unwrap();
        assert!(!s.get_event_type("b.two").await.unwrap().archived);

        for expunge in [false, true] {
            assert_matches!(
                s.delete_event_type("no.such", expunge).await,
                Err(StoreError::NotFound(_)),
                "deleting a missing type (expunge: {expunge})"
            );
        }

        // Paging by name, both ways.
        let p1 = s.list_event_types(page(2, Order::Ascending), true).await.unwrap();
        assert!(!p1.done);
        let p1_iter = p1.iterator.clone().unwrap();
        assert_eq!(names(p1), ["a.one", "b.two"]);
        let p2 = s
            .list_event_types(page_at(2, Order::Ascending, &p1_iter), true)
            .await
            .unwrap();
        assert!(p2.done);
        assert_eq!(names(p2), ["d.four"]);
        let d = s.list_event_types(page(2, Order::Descending), true).await.unwrap();
        assert_eq!(names(d), ["d.four", "b.two"]);
    })
    .await;
}
