//! Endpoints: create, read, update, disable, delete, list.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use herald_core::AppId;
use herald_core::model::EndpointSettings;
use herald_core::signing::EndpointSecret;
use herald_core::validate::EndpointUrl;
use herald_store::{EncryptionKey, Order, StoreError};

use crate::{
    AtMs, app, changed, chans, each_backend, endpoint, et, meta, new_endpoint, new_endpoint_with, new_msg, page,
    page_at, tick, uid,
};

// ---------- endpoints ----------

#[tokio::test]
async fn endpoint_create_get_update_delete() {
    each_backend(|b| async move {
        let s = &b.store;
        let app_id = app(s, "A").await;
        let secret = EndpointSecret::generate_symmetric();
        let before = Utc::now();
        let created = s
            .create_endpoint(
                &app_id,
                herald_store::NewEndpoint {
                    uid: Some(uid("billing")),
                    settings: EndpointSettings {
                        url: EndpointUrl::parse("https://hooks.example.com/in?x=1").unwrap(),
                        description: "billing hooks".into(),
                        metadata: meta(&[("owner", "team-a")]),
                        disabled: false,
                        filter_types: Some(vec![et("invoice.paid"), et("invoice.failed")]),
                        channels: Some(chans(&["eu", "us"])),
                        throttle_rate: Some(10),
                        headers: BTreeMap::from([("X-Custom".to_owned(), "yes".to_owned())]),
                        timeout: Duration::from_millis(2500),
                        payload_template: Some(template(
                            r#"{"event": "{{msg.eventType}}", "data": "{{msg.payload}}"}"#,
                        )),
                        transformation: None,
                        retry: Some(herald_core::retry::RetryPolicy {
                            schedule: herald_core::retry::RetrySchedule::Delays(vec![
                                Duration::from_secs(60),
                                Duration::from_millis(1500),
                            ]),
                            jitter: false,
                        }),
                        body_signature: Some(herald_core::model::BodySignature {
                            header: "x-signature".into(),
                            standard_signature: false,
                        }),
                        disable_rule: Some(herald_core::health::DisableRule {
                            failing_for: None,
                            failed_messages: Some(3),
                        }),
                        fifo: true,
                        batch: None,
                        max_in_flight: Some(4),
                        basic_auth: None,
                        verify_token: None,
                        body_encoding: Default::default(),
                    },
                    secret: secret.clone(),
                },
            )
            .await
            .unwrap();
        let after = Utc::now();

        assert!(created.id.as_str().starts_with("ep_"), "id {}", created.id);
        assert_eq!(created.app_id, app_id);
        assert_eq!(created.uid, Some(uid("billing")));
        assert_eq!(created.settings.url.as_str(), "https://hooks.example.com/in?x=1");
        assert_eq!(created.settings.description, "billing hooks");
        assert_eq!(created.settings.metadata, meta(&[("owner", "team-a")]));
        assert!(!created.settings.disabled);
        assert_eq!(
            created.settings.filter_types,
            Some(vec![et("invoice.paid"), et("invoice.failed")])
        );
        assert_eq!(created.settings.channels, Some(chans(&["eu", "us"])));
        assert_eq!(created.settings.throttle_rate, Some(10));
        assert_eq!(created.settings.headers["X-Custom"], "yes");
        assert_eq!(created.settings.timeout, Duration::from_millis(2500));
        assert_eq!(
            created.settings.payload_template.as_ref().map(|t| t.source()),
            Some(r#"{"event": "{{msg.eventType}}", "data": "{{msg.payload}}"}"#)
        );
        crate::assert_between(created.created_at, before, after, "created_at");
        let targets = s.delivery_targets(vec![created.id.clone()]).await.unwrap();
        assert_eq!(
            targets[0].payload_template, created.settings.payload_template,
            "the engine sees the template"
        );
        assert_eq!(
            Some(&targets[0].retry),
            created.settings.retry.as_ref(),
            "and the retry policy"
        );
        assert_eq!(
            targets[0].body_signature, created.settings.body_signature,
            "and the signature style"
        );
        assert_eq!(
            Some(&targets[0].disable_rule),
            created.settings.disable_rule.as_ref(),
            "and the disable rule"
        );

        let by_id = s.get_endpoint(&app_id, created.id.as_str()).await.unwrap();
        assert_eq!(by_id.clone().at_ms(), created.clone().at_ms(), "get by id");
        let by_uid = s.get_endpoint(&app_id, "billing").await.unwrap();
        assert_eq!(by_uid, by_id, "get by uid");
        assert_matches!(
            s.get_endpoint(&app_id, "nope").await,
            Err(StoreError::NotFound(_)),
            "unknown endpoint uid"
        );

        tick().await;
        let updated = s
            .update_endpoint(herald_core::model::Endpoint {
                uid: Some(uid("billing-v2")),
                settings: EndpointSettings {
                    url: EndpointUrl::parse("http://other.example/hook").unwrap(),
                    description: "changed".into(),
                    metadata: Default::default(),
                    disabled: true,
                    filter_types: None,
                    channels: Some(chans(&["asia"])),
                    throttle_rate: None,
                    headers: BTreeMap::new(),
                    timeout: Duration::from_secs(30),
                    payload_template: Some(template(r#"["{{msg.id}}"]"#)),
                    transformation: None,
                    retry: None,
                    body_signature: None,
                    disable_rule: None,
                    fifo: false,
                    batch: Some(herald_core::model::BatchPolicy {
                        max_events: 10,
                        max_wait_ms: 0,
                    }),
                    max_in_flight: None,
                    basic_auth: None,
                    verify_token: None,
                    body_encoding: Default::default(),
                },
                ..by_id.clone()
            })
            .await
            .unwrap();
        assert!(updated.updated_at > created.updated_at, "updated_at moved");
        let got = s.get_endpoint(&app_id, created.id.as_str()).await.unwrap();
        assert_eq!(got.clone().at_ms(), updated.at_ms(), "read back after update");
        assert_eq!(got.uid, Some(uid("billing-v2")));
        assert_eq!(got.settings.url.as_str(), "http://other.example/hook");
        assert!(got.settings.disabled);
        assert_eq!(got.settings.filter_types, None);
        assert_eq!(got.settings.channels, Some(chans(&["asia"])));
        assert_eq!(got.settings.timeout, Duration::from_secs(30));
        assert_eq!(got.settings.payload_template, Some(template(r#"["{{msg.id}}"]"#)));
        let raw_again = s
            .update_endpoint(changed(got.clone(), |s| s.payload_template = None))
            .await
            .unwrap();
        assert_eq!(
            s.get_endpoint(&app_id, created.id.as_str())
                .await
                .unwrap()
                .settings
                .payload_template,
            None,
            "back to the raw payload"
        );
        let got = raw_again;
        crate::assert_ms_eq(got.created_at, created.created_at, "created_at kept");
        assert_matches!(
            s.get_endpoint(&app_id, "billing").await,
            Err(StoreError::NotFound(_)),
            "old uid after update"
        );
        // The secret is not touched by an update.
        assert_eq!(s.get_endpoint_secret(&app_id, &created.id).await.unwrap(), secret);

        // Updating a missing endpoint, or one through the wrong app.
        let other_app = app(s, "B").await;
        assert_matches!(
            s.update_endpoint(herald_core::model::Endpoint {
                app_id: other_app.clone(),
                ..got.clone()
            })
            .await,
            Err(StoreError::NotFound(_)),
            "update through another app"
        );
        assert_matches!(
            s.update_endpoint(herald_core::model::Endpoint {
                id: herald_core::EndpointId::new(),
                ..got.clone()
            })
            .await,
            Err(StoreError::NotFound(_)),
            "update of a missing endpoint"
        );

        // Deleting through the wrong app does nothing.
        assert_matches!(
            s.delete_endpoint(&other_app, &created.id).await,
            Err(StoreError::NotFound(_)),
            "delete through another app"
        );
        s.get_endpoint(&app_id, created.id.as_str()).await.unwrap();

        s.delete_endpoint(&app_id, &created.id).await.unwrap();
        assert_matches!(
            s.get_endpoint(&app_id, created.id.as_str()).await,
            Err(StoreError::NotFound(_)),
            "deleted endpoint"
        );
        assert_matches!(
            s.get_endpoint_secret(&app_id, &created.id).await,
            Err(StoreError::NotFound(_)),
            "secret of a deleted endpoint"
        );
        assert_matches!(
            s.delete_endpoint(&app_id, &created.id).await,
            Err(StoreError::NotFound(_)),
            "deleting twice"
        );
        assert!(
            s.delivery_targets(vec![created.id.clone()]).await.unwrap().is_empty(),
            "a deleted endpoint has no delivery target"
        );
    })
    .await;
}

#[tokio::test]
async fn endpoint_for_missing_app_is_not_found() {
    each_backend(|b| async move {
        let s = &b.store;
        assert_matches!(
            s.create_endpoint(&AppId::new(), new_endpoint("https://x.example/"))
                .await,
            Err(StoreError::NotFound(_)),
            "create under a missing app"
        );
        let a = app(s, "A").await;
        let ep = endpoint(s, &a, new_endpoint("https://x.example/")).await;
        assert_matches!(
            s.get_endpoint(&AppId::new(), ep.as_str()).await,
            Err(StoreError::NotFound(_)),
            "get under a missing app"
        );
    })
    .await;
}

#[tokio::test]
async fn endpoint_uid_is_unique_per_app_only() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, bb) = (app(s, "A").await, app(s, "B").await);
        let ep_a = s
            .create_endpoint(
                &a,
                herald_store::NewEndpoint {
                    uid: Some(uid("main")),
                    ..new_endpoint("https://a.example/")
                },
            )
            .await
            .unwrap();
        assert_matches!(
            s.create_endpoint(
                &a,
                herald_store::NewEndpoint {
                    uid: Some(uid("main")),
                    ..new_endpoint("https://a2.example/")
                },
            )
            .await,
            Err(StoreError::Conflict(_)),
            "second `main` in the same app"
        );
        let ep_b = s
            .create_endpoint(
                &bb,
                herald_store::NewEndpoint {
                    uid: Some(uid("main")),
                    ..new_endpoint("https://b.example/")
                },
            )
            .await
            .expect("the same uid in another app");
        assert_ne!(ep_a.id, ep_b.id);
        assert_eq!(s.get_endpoint(&a, "main").await.unwrap().id, ep_a.id);
        assert_eq!(s.get_endpoint(&bb, "main").await.unwrap().id, ep_b.id);
        // An endpoint is reachable only through its own application.
        assert_matches!(
            s.get_endpoint(&bb, ep_a.id.as_str()).await,
            Err(StoreError::NotFound(_)),
            "A's endpoint through B"
        );
        assert_matches!(
            s.get_endpoint_secret(&bb, &ep_a.id).await,
            Err(StoreError::NotFound(_)),
            "A's secret through B"
        );

        // Updating another endpoint of A onto the taken uid conflicts.
        let second = s
            .create_endpoint(&a, new_endpoint("https://a3.example/"))
            .await
            .unwrap();
        assert_matches!(
            s.update_endpoint(herald_core::model::Endpoint {
                uid: Some(uid("main")),
                ..second.clone()
            })
            .await,
            Err(StoreError::Conflict(_)),
            "update onto a taken uid"
        );
        assert_eq!(s.get_endpoint(&a, second.id.as_str()).await.unwrap().uid, None);
        // Endpoints without a uid do not collide with each other.
        s.create_endpoint(&a, new_endpoint("https://a4.example/"))
            .await
            .unwrap();
        // Once deleted, the uid is free again.
        s.delete_endpoint(&a, &ep_a.id).await.unwrap();
        s.create_endpoint(
            &a,
            herald_store::NewEndpoint {
                uid: Some(uid("main")),
                ..new_endpoint("https://a5.example/")
            },
        )
        .await
        .expect("reusing a deleted endpoint's uid");
    })
    .await;
}

#[tokio::test]
async fn endpoint_list_pages_within_one_app() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, other) = (app(s, "A").await, app(s, "B").await);
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(endpoint(s, &a, new_endpoint(&format!("https://{i}.example/"))).await);
            endpoint(s, &other, new_endpoint("https://other.example/")).await;
        }
        let ids_of = |p: &herald_store::Page<herald_core::model::Endpoint>| {
            p.data.iter().map(|e| e.id.clone()).collect::<Vec<_>>()
        };
        let p1 = s.list_endpoints(&a, page(2, Order::Ascending)).await.unwrap();
        assert_eq!(ids_of(&p1), ids[0..2]);
        assert!(!p1.done);
        let p2 = s
            .list_endpoints(&a, page_at(2, Order::Ascending, p1.iterator.as_deref().unwrap()))
            .await
            .unwrap();
        assert_eq!(ids_of(&p2), ids[2..4]);
        let p3 = s
            .list_endpoints(&a, page_at(2, Order::Ascending, p2.iterator.as_deref().unwrap()))
            .await
            .unwrap();
        assert_eq!(ids_of(&p3), ids[4..5]);
        assert!(p3.done);
        let back = s
            .list_endpoints(&a, page_at(2, Order::Ascending, p3.prev_iterator.as_deref().unwrap()))
            .await
            .unwrap();
        assert_eq!(ids_of(&back), ids[2..4]);
        let desc = s.list_endpoints(&a, page(10, Order::Descending)).await.unwrap();
        assert_eq!(ids_of(&desc), ids.iter().rev().cloned().collect::<Vec<_>>());
        assert!(desc.done);
        let none = s
            .list_endpoints(&AppId::new(), page(10, Order::Ascending))
            .await
            .unwrap();
        assert!(none.data.is_empty());
    })
    .await;
}

#[tokio::test]
async fn endpoint_secret_round_trips_exactly() {
    each_backend(|b| async move {
        let s = &b.store;
        let a = app(s, "A").await;
        let symmetric = EndpointSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let generated = EndpointSecret::generate_symmetric();
        let asymmetric = EndpointSecret::generate_asymmetric();
        // The longest symmetric key a user may set.
        let long = EndpointSecret::Symmetric(herald_core::signing::SymmetricKey::new((0..75u8).collect()).unwrap());
        let mut ids = Vec::new();
        for secret in [&symmetric, &generated, &asymmetric, &long] {
            let id = endpoint(
                s,
                &a,
                herald_store::NewEndpoint {
                    secret: secret.clone(),
                    ..new_endpoint("https://x.example/")
                },
            )
            .await;
            ids.push(id);
        }
        for (id, secret) in ids.iter().zip([&symmetric, &generated, &asymmetric, &long]) {
            let got = s.get_endpoint_secret(&a, id).await.unwrap();
            assert!(got == *secret, "secret of {id} differs from the one stored");
            assert_eq!(got.to_wire_string(), secret.to_wire_string());
        }

        // Delivery targets carry the same secret, with the endpoint's settings.
        let disabled = s
            .create_endpoint(
                &a,
                new_endpoint_with("https://disabled.example/", |s| {
                    s.disabled = true;
                    s.headers = BTreeMap::from([("X-A".to_owned(), "1".to_owned())]);
                    s.timeout = Duration::from_secs(3);
                }),
            )
            .await
            .unwrap();
        let targets = s
            .delivery_targets(vec![
                ids[2].clone(),
                herald_core::EndpointId::new(),
                disabled.id.clone(),
            ])
            .await
            .unwrap();
        assert_eq!(targets.len(), 2, "the unknown id is left out");
        let t = targets.iter().find(|t| t.endpoint_id == ids[2]).unwrap();
        assert_eq!(t.app_id, a);
        assert!(!t.disabled);
        assert!(t.secrets.first() == Some(&asymmetric), "target secret");
        let t = targets.iter().find(|t| t.endpoint_id == disabled.id).unwrap();
        assert!(t.disabled);
        assert_eq!(t.url.as_str(), "https://disabled.example/");
        assert_eq!(t.headers["X-A"], "1");
        assert_eq!(t.timeout, Duration::from_secs(3));
    })
    .await;
}

#[tokio::test]
async fn endpoint_secret_is_encrypted_at_rest() {
    each_backend(|b| async move {
        let s = &b.store;
        let a = app(s, "A").await;
        let secret = EndpointSecret::generate_symmetric();
        let raw_key = secret.to_storage_bytes()[1..].to_vec();
        assert_eq!(raw_key.len(), 24);
        let seed_secret = EndpointSecret::generate_asymmetric();
        let raw_seed = seed_secret.to_storage_bytes()[1..].to_vec();
        let ep = endpoint(
            s,
            &a,
            herald_store::NewEndpoint {
                secret: secret.clone(),
                ..new_endpoint("https://x.example/")
            },
        )
        .await;
        let ep2 = endpoint(
            s,
            &a,
            herald_store::NewEndpoint {
                secret: seed_secret.clone(),
                ..new_endpoint("https://y.example/")
            },
        )
        .await;

        let stored = b.raw_endpoint_secrets().await;
        assert_eq!(stored.len(), 2);
        for (id, raw) in [(&ep, &raw_key), (&ep2, &raw_seed)] {
            let (_, blob) = stored.iter().find(|(i, _)| i == id.as_str()).unwrap();
            assert!(
                !crate::contains(blob, raw),
                "the stored secret of {id} contains the raw key"
            );
            assert!(blob.len() > raw.len(), "an encrypted secret carries a nonce and a tag");
        }
        let wire = secret.to_wire_string();
        assert!(!b.files_contain(&raw_key).await, "raw key bytes found on disk");
        assert!(!b.files_contain(&raw_seed).await, "raw ed25519 seed found on disk");
        assert!(!b.files_contain(wire.as_bytes()).await, "whsec_ text found on disk");
        // Two endpoints with the same secret are sealed differently (fresh nonces).
        let twin = endpoint(
            s,
            &a,
            herald_store::NewEndpoint {
                secret: secret.clone(),
                ..new_endpoint("https://z.example/")
            },
        )
        .await;
        let stored = b.raw_endpoint_secrets().await;
        let blob_of = |id: &herald_core::EndpointId| stored.iter().find(|(i, _)| i == id.as_str()).unwrap().1.clone();
        assert_ne!(blob_of(&ep), blob_of(&twin), "same secret, same ciphertext");
        // And the store still reads it back.
        assert!(s.get_endpoint_secret(&a, &ep).await.unwrap() == secret);
    })
    .await;
}

#[tokio::test]
async fn endpoint_secret_needs_the_same_key() {
    each_backend(|b| async move {
        let a = app(&b.store, "A").await;
        let secret = EndpointSecret::generate_symmetric();
        let ep = endpoint(
            &b.store,
            &a,
            herald_store::NewEndpoint {
                secret: secret.clone(),
                ..new_endpoint("https://x.example/")
            },
        )
        .await;
        b.store.close().await;

        let wrong = b.reopen_with_key(EncryptionKey::generate()).await;
        assert_matches!(
            wrong.get_endpoint_secret(&a, &ep).await,
            Err(StoreError::Crypto(_)),
            "reading the secret with another key"
        );
        assert_matches!(
            wrong.delivery_targets(vec![ep.clone()]).await,
            Err(StoreError::Crypto(_)),
            "delivery target with another key"
        );
        // Everything that is not secret stays readable.
        assert_eq!(
            wrong.get_endpoint(&a, ep.as_str()).await.unwrap().settings.url.as_str(),
            "https://x.example/"
        );
        wrong.close().await;

        let right = b.reopen().await;
        assert!(right.get_endpoint_secret(&a, &ep).await.unwrap() == secret);
        right.close().await;
    })
    .await;
}

fn template(source: &str) -> herald_core::transform::PayloadTemplate {
    herald_core::transform::PayloadTemplate::parse(source).unwrap()
}

#[tokio::test]
async fn endpoint_disable_changes_only_disabled_and_is_announced() {
    each_backend(|b| async move {
        let s = &b.store;
        let a = app(s, "disable").await;
        let ep = endpoint(
            s,
            &a,
            new_endpoint_with("https://receiver.example/hook", |set| {
                set.description = "kept".into();
                set.throttle_rate = Some(7);
            }),
        )
        .await;
        let mut changes = s.changes();
        let before = s.get_endpoint(&a, ep.as_str()).await.unwrap();

        assert!(s.disable_endpoint(&a, &ep).await.unwrap(), "this call disabled it");
        let after = s.get_endpoint(&a, ep.as_str()).await.unwrap();
        assert!(after.settings.disabled);
        assert_eq!(
            changed(after.clone(), |set| set.disabled = false).settings,
            before.settings,
            "nothing else changed"
        );
        assert!(after.updated_at >= before.updated_at);
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), changes.recv())
                .await
                .expect("announced")
                .unwrap(),
            herald_store::Change::EndpointUpdated {
                app_id: a.clone(),
                endpoint_id: ep.clone()
            }
        );
        assert!(
            s.delivery_targets(vec![ep.clone()]).await.unwrap()[0].disabled,
            "the engine sees it disabled"
        );
        // Fan-out skips it from now on.
        let ingested = s.ingest(new_msg(a.as_str(), "a.b", "{}")).await.unwrap();
        assert!(ingested.deliveries.is_empty());

        assert!(!s.disable_endpoint(&a, &ep).await.unwrap(), "already disabled");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(changes.try_recv().is_err(), "and nothing announced");
        let other = app(s, "other").await;
        assert_matches!(
            s.disable_endpoint(&other, &ep).await,
            Err(StoreError::NotFound(_)),
            "another app's"
        );
    })
    .await;
}
