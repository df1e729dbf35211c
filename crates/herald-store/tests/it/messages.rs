//! Ingest: the message, its fan-out, group commit under load, and listing.

use std::collections::{BTreeSet, HashSet};

use bytes::Bytes;
use chrono::{Duration, Utc};
use herald_core::{AppId, EndpointId};
use herald_store::{AppRef, Ingested, MessageFilter, Order, StoreError};

use crate::{
    AtMs, all_messages, app, changed, chans, each_backend, endpoint, et, msg_ids, new_app, new_endpoint,
    new_endpoint_with, new_msg, page, page_at, tick, uid,
};

/// An event type, the message's channels, and the endpoints it must reach.
type FanOutCase = (&'static str, Option<&'static [&'static str]>, BTreeSet<EndpointId>);

fn targets(ingested: &Ingested) -> BTreeSet<EndpointId> {
    ingested.deliveries.iter().map(|d| d.endpoint_id.clone()).collect()
}

fn set(ids: &[&EndpointId]) -> BTreeSet<EndpointId> {
    ids.iter().map(|id| (*id).clone()).collect()
}

#[tokio::test]
async fn ingest_fans_out_to_subscribed_endpoints_only() {
    each_backend(|b| async move {
        let s = &b.store;
        let a = s.create_app(new_app("A", Some("shop"))).await.unwrap().id;
        let other = app(s, "Other").await;
        let ep = |filter: Option<&[&str]>, channels: Option<&[&str]>, disabled: bool| {
            new_endpoint_with("https://hooks.example/", |s| {
                s.filter_types = filter.map(|f| f.iter().map(|t| et(t)).collect());
                s.channels = channels.map(chans);
                s.disabled = disabled;
            })
        };
        let all = endpoint(s, &a, ep(None, None, false)).await;
        let empty = endpoint(s, &a, ep(Some(&[]), Some(&[]), false)).await;
        let paid = endpoint(s, &a, ep(Some(&["invoice.paid"]), None, false)).await;
        let user = endpoint(s, &a, ep(Some(&["user.created"]), None, false)).await;
        let eu = endpoint(s, &a, ep(None, Some(&["eu"]), false)).await;
        let paid_eu_us = endpoint(s, &a, ep(Some(&["invoice.paid"]), Some(&["eu", "us"]), false)).await;
        let _disabled = endpoint(s, &a, ep(None, None, true)).await;
        let _elsewhere = endpoint(s, &other, ep(None, None, false)).await;

        let cases: Vec<FanOutCase> = vec![
            ("invoice.paid", None, set(&[&all, &empty, &paid])),
            ("invoice.paid", Some(&["us"]), set(&[&all, &empty, &paid, &paid_eu_us])),
            ("user.created", Some(&["eu", "asia"]), set(&[&all, &empty, &user, &eu])),
            ("other.thing", Some(&["asia"]), set(&[&all, &empty])),
            (
                "invoice.paid",
                Some(&["eu"]),
                set(&[&all, &empty, &paid, &eu, &paid_eu_us]),
            ),
        ];
        let mut delivery_ids = HashSet::new();
        let mut expected_total = 0;
        for (i, (event, channels, want)) in cases.into_iter().enumerate() {
            let payload = format!("{{\"case\":{i}}}");
            let mut msg = new_msg("shop", event, &payload);
            msg.channels = channels.map(chans);
            msg.tags = Some(vec![format!("case-{i}")]);
            let before = Utc::now();
            let got = s.ingest(msg).await.unwrap();
            let after = Utc::now();
            assert_eq!(
                targets(&got),
                want,
                "case {i}: {event} on {channels:?} reached the wrong endpoints"
            );
            assert_eq!(got.deliveries.len(), want.len(), "case {i}: one delivery each");
            expected_total += want.len();

            let m = &got.message;
            assert!(m.id.as_str().starts_with("msg_"));
            assert_eq!(m.app_id, a, "the uid resolved to the app id");
            assert_eq!(m.event_type.as_str(), event);
            assert_eq!(m.channels, channels.map(chans));
            assert_eq!(m.tags, Some(vec![format!("case-{i}")]));
            assert_eq!(m.payload, payload.as_bytes());
            crate::assert_between(m.created_at, before, after, "message created_at");
            for d in &got.deliveries {
                assert!(delivery_ids.insert(d.delivery_id), "delivery ids are unique");
                assert_eq!(d.msg_id, m.id);
                assert_eq!(d.app_id, a);
                assert_eq!(d.event_type.as_str(), event);
                assert_eq!(d.payload, m.payload);
                assert_eq!(d.attempts, 0);
            }
            let stored = s.get_message(&a, m.id.as_str()).await.unwrap();
            assert_eq!(stored.at_ms(), m.clone().at_ms(), "case {i}: stored message");
        }

        // Exactly those deliveries exist: claiming everything finds no others.
        let claimed = crate::claim(s, &crate::node("n1")).await;
        assert_eq!(claimed.len(), expected_total, "deliveries in the store");
        let claimed_ids: HashSet<i64> = claimed.iter().map(|j| j.delivery_id).collect();
        assert_eq!(claimed_ids, delivery_ids);
    })
    .await;
}

#[tokio::test]
async fn fan_out_follows_endpoint_changes() {
    each_backend(|b| async move {
        let s = &b.store;
        let a = app(s, "A").await;
        let send = |event: &'static str, channels: Option<&'static [&'static str]>| {
            let s = s.clone();
            let a = a.clone();
            async move {
                let mut msg = new_msg(a.as_str(), event, "{}");
                msg.channels = channels.map(chans);
                targets(&s.ingest(msg).await.unwrap())
            }
        };

        assert_eq!(send("x.y", None).await, set(&[]), "an app with no endpoints");
        let first = s.create_endpoint(&a, new_endpoint("https://1.example/")).await.unwrap();
        assert_eq!(send("x.y", None).await, set(&[&first.id]), "after create");
        let second = s
            .create_endpoint(
                &a,
                new_endpoint_with("https://2.example/", |s| s.filter_types = Some(vec![et("x.y")])),
            )
            .await
            .unwrap();
        assert_eq!(send("x.y", None).await, set(&[&first.id, &second.id]));
        assert_eq!(send("z.z", None).await, set(&[&first.id]));

        let first = s.update_endpoint(changed(first, |s| s.disabled = true)).await.unwrap();
        assert_eq!(send("x.y", None).await, set(&[&second.id]), "after disabling");

        let second = s
            .update_endpoint(changed(second, |s| {
                s.filter_types = None;
                s.channels = Some(chans(&["c"]));
            }))
            .await
            .unwrap();
        assert_eq!(send("z.z", None).await, set(&[]), "channel filter, no channel");
        assert_eq!(
            send("z.z", Some(&["c"])).await,
            set(&[&second.id]),
            "channel filter, matching channel"
        );

        let first = s.update_endpoint(changed(first, |s| s.disabled = false)).await.unwrap();
        s.delete_endpoint(&a, &second.id).await.unwrap();
        assert_eq!(
            send("z.z", Some(&["c"])).await,
            set(&[&first.id]),
            "after re-enabling one and deleting the other"
        );
    })
    .await;
}

#[tokio::test]
async fn payload_is_stored_byte_for_byte() {
    each_backend(|b| async move {
        let s = &b.store;
        let a = app(s, "A").await;
        endpoint(s, &a, new_endpoint("https://x.example/")).await;
        let odd = "{ \"b\" :1,\n\t\"a\":[1, 2.50, 1e3, -0.0],\"s\":\"h\\u00e9llo \\\"q\\\"\",\
                   \"u\":\"日本語 🚀\",\"n\":12345678901234567890123456789, \"z\":{}  }\r\n";
        let big = format!("{{\"data\":\"{}\"}}", "0123456789abcdef".repeat(20_000));
        let mut ids = Vec::new();
        for payload in [odd, "{}", big.as_str()] {
            let got = s.ingest(new_msg(a.as_str(), "p.q", payload)).await.unwrap();
            assert_eq!(got.message.payload, payload.as_bytes());
            ids.push((got.message.id, payload));
        }
        for (id, payload) in &ids {
            let m = s.get_message(&a, id.as_str()).await.unwrap();
            assert!(
                m.payload == payload.as_bytes(),
                "get_message changed the payload of {id} ({} bytes stored, {} read)",
                payload.len(),
                m.payload.len()
            );
        }
        let listed = all_messages(s, &a, MessageFilter::default(), Order::Ascending, 50).await;
        assert_eq!(listed.len(), 3);
        for (m, (id, payload)) in listed.iter().zip(&ids) {
            assert_eq!(&m.id, id);
            assert!(m.payload == payload.as_bytes(), "listed payload of {id}");
        }
        let jobs = crate::claim(s, &crate::node("n1")).await;
        assert_eq!(jobs.len(), 3);
        for job in jobs {
            let (_, payload) = ids.iter().find(|(id, _)| *id == job.msg_id).unwrap();
            assert!(job.payload == payload.as_bytes(), "claimed payload");
        }
        // Not JSON-normalised on the way in either: raw bytes survive too.
        let raw = Bytes::from_static(b"{\"k\":\"\xc3\xa9\"}\x00\xff");
        let mut msg = new_msg(a.as_str(), "p.q", "");
        msg.payload = raw.clone();
        let got = s.ingest(msg).await.unwrap();
        assert_eq!(s.get_message(&a, got.message.id.as_str()).await.unwrap().payload, raw);
    })
    .await;
}

#[tokio::test]
async fn event_id_is_unique_per_app() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, other) = (app(s, "A").await, app(s, "B").await);
        endpoint(s, &a, new_endpoint("https://a.example/")).await;
        let with_id = |app: &AppId, payload: &str| {
            let mut m = new_msg(app.as_str(), "order.created", payload);
            m.event_id = Some(uid("evt-42"));
            m
        };
        let first = s.ingest(with_id(&a, "{\"v\":1}")).await.unwrap();
        assert_eq!(first.message.event_id, Some(uid("evt-42")));
        assert_matches!(
            s.ingest(with_id(&a, "{\"v\":2}")).await,
            Err(StoreError::Conflict(_)),
            "second message with eventId evt-42"
        );
        let elsewhere = s
            .ingest(with_id(&other, "{\"v\":3}"))
            .await
            .expect("the same eventId in another app");

        // The duplicate left neither a message nor a delivery behind.
        let listed = all_messages(s, &a, MessageFilter::default(), Order::Descending, 10).await;
        assert_eq!(msg_ids(&listed), vec![first.message.id.clone()]);
        let jobs = crate::claim(s, &crate::node("n1")).await;
        assert_eq!(jobs.len(), 1, "deliveries after the conflict");
        assert_eq!(jobs[0].msg_id, first.message.id);

        // Found by id and by eventId, only within its own app.
        let by_event = s.get_message(&a, "evt-42").await.unwrap();
        assert_eq!(by_event.id, first.message.id);
        assert_eq!(by_event.payload, "{\"v\":1}".as_bytes());
        assert_eq!(s.get_message(&other, "evt-42").await.unwrap().id, elsewhere.message.id);
        assert_matches!(
            s.get_message(&other, first.message.id.as_str()).await,
            Err(StoreError::NotFound(_)),
            "A's message through B"
        );
        assert_matches!(
            s.get_message(&a, "evt-none").await,
            Err(StoreError::NotFound(_)),
            "unknown eventId"
        );
        // Messages without an eventId never collide.
        s.ingest(new_msg(a.as_str(), "x.y", "{}")).await.unwrap();
        s.ingest(new_msg(a.as_str(), "x.y", "{}")).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn ingest_for_unknown_app_is_not_found() {
    each_backend(|b| async move {
        let s = &b.store;
        let a = s.create_app(new_app("A", Some("known"))).await.unwrap().id;
        assert_matches!(
            s.ingest(new_msg(AppId::new().as_str(), "x.y", "{}")).await,
            Err(StoreError::NotFound(_)),
            "unknown app id"
        );
        assert_matches!(
            s.ingest(new_msg("unknown-uid", "x.y", "{}")).await,
            Err(StoreError::NotFound(_)),
            "unknown app uid"
        );
        let by_uid = s
            .ingest(herald_store::NewMessage {
                app: AppRef("known".into()),
                ..new_msg("ignored", "x.y", "{}")
            })
            .await
            .unwrap();
        assert_eq!(by_uid.message.app_id, a);
        let listed = all_messages(s, &a, MessageFilter::default(), Order::Descending, 10).await;
        assert_eq!(listed.len(), 1, "only the message for the known app is stored");
    })
    .await;
}

#[tokio::test]
async fn list_messages_filters_and_orders() {
    each_backend(|b| async move {
        let s = &b.store;
        let (a, other) = (app(s, "A").await, app(s, "B").await);
        let put = |event: &'static str, channels: Option<&'static [&'static str]>, tag: Option<&'static str>| {
            let (s, a) = (s.clone(), a.clone());
            async move {
                let mut m = new_msg(a.as_str(), event, "{}");
                m.channels = channels.map(chans);
                m.tags = tag.map(|t| vec![t.to_owned()]);
                s.ingest(m).await.unwrap().message.id
            }
        };
        let m0 = put("invoice.paid", Some(&["eu"]), Some("t1")).await;
        let m1 = put("user.created", None, None).await;
        let m2 = put("invoice.failed", Some(&["us", "eu"]), Some("t2")).await;
        tick().await;
        let mid = Utc::now();
        tick().await;
        let m3 = put("invoice.paid", Some(&["us"]), None).await;
        let m4 = put("user.created", Some(&["asia"]), Some("t1")).await;
        s.ingest(herald_store::NewMessage {
            channels: Some(chans(&["eu"])),
            ..new_msg(other.as_str(), "invoice.paid", "{}")
        })
        .await
        .unwrap();

        let list = |filter: MessageFilter| {
            let (s, a) = (s.clone(), a.clone());
            async move { msg_ids(&all_messages(&s, &a, filter, Order::Descending, 2).await) }
        };
        assert_eq!(
            list(MessageFilter::default()).await,
            [&m4, &m3, &m2, &m1, &m0].map(Clone::clone),
            "newest first, only this app's"
        );
        let asc = all_messages(s, &a, MessageFilter::default(), Order::Ascending, 10).await;
        assert_eq!(msg_ids(&asc), [&m0, &m1, &m2, &m3, &m4].map(Clone::clone));

        let types = |t: &[&str]| MessageFilter {
            event_types: t.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        };
        assert_eq!(list(types(&["invoice.paid"])).await, [m3.clone(), m0.clone()]);
        assert_eq!(
            list(types(&["invoice.paid", "user.created"])).await,
            [&m4, &m3, &m1, &m0].map(Clone::clone)
        );
        assert_eq!(list(types(&["nothing.here"])).await, []);

        let channel = |c: &str| MessageFilter {
            channel: Some(c.to_owned()),
            ..Default::default()
        };
        assert_eq!(list(channel("eu")).await, [m2.clone(), m0.clone()]);
        assert_eq!(list(channel("us")).await, [m3.clone(), m2.clone()]);
        assert_eq!(list(channel("asia")).await, std::slice::from_ref(&m4));
        assert_eq!(list(channel("mars")).await, []);

        let tag = |t: &str| MessageFilter {
            tag: Some(t.to_owned()),
            ..Default::default()
        };
        assert_eq!(list(tag("t1")).await, [m4.clone(), m0.clone()]);
        assert_eq!(list(tag("t2")).await, std::slice::from_ref(&m2));

        let before = MessageFilter {
            before: Some(mid),
            ..Default::default()
        };
        assert_eq!(list(before).await, [&m2, &m1, &m0].map(Clone::clone), "before");
        let after = MessageFilter {
            after: Some(mid),
            ..Default::default()
        };
        assert_eq!(list(after).await, [m4.clone(), m3.clone()], "after");
        let window = MessageFilter {
            after: Some(mid - Duration::hours(1)),
            before: Some(mid + Duration::hours(1)),
            ..Default::default()
        };
        assert_eq!(list(window).await.len(), 5, "a window around everything");
        let empty_window = MessageFilter {
            after: Some(mid + Duration::hours(1)),
            ..Default::default()
        };
        assert_eq!(list(empty_window).await, []);
        let combined = MessageFilter {
            after: Some(mid),
            event_types: vec!["invoice.paid".into()],
            ..Default::default()
        };
        assert_eq!(
            list(combined).await,
            std::slice::from_ref(&m3),
            "type and time together"
        );

        // Page by page, with the iterators, newest first.
        let p1 = s
            .list_messages(&a, MessageFilter::default(), page(2, Order::Descending))
            .await
            .unwrap();
        assert_eq!(msg_ids(&p1.data), [m4.clone(), m3.clone()]);
        assert!(!p1.done);
        let p2 = s
            .list_messages(
                &a,
                MessageFilter::default(),
                page_at(2, Order::Descending, p1.iterator.as_deref().unwrap()),
            )
            .await
            .unwrap();
        assert_eq!(msg_ids(&p2.data), [m2.clone(), m1.clone()]);
        let back = s
            .list_messages(
                &a,
                MessageFilter::default(),
                page_at(2, Order::Descending, p2.prev_iterator.as_deref().unwrap()),
            )
            .await
            .unwrap();
        assert_eq!(msg_ids(&back.data), [m4.clone(), m3.clone()], "back to page one");
        // A filter and an iterator together.
        let filtered = s
            .list_messages(
                &a,
                types(&["invoice.paid", "user.created"]),
                page_at(2, Order::Descending, m3.as_str()),
            )
            .await
            .unwrap();
        assert_eq!(msg_ids(&filtered.data), [m1.clone(), m0.clone()]);
        assert!(filtered.done);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_ingests_all_commit() {
    const N: usize = 500;
    each_backend(|b| async move {
        let s = b.store.clone();
        let a = app(&s, "A").await;
        let ep = endpoint(&s, &a, new_endpoint("https://x.example/")).await;
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let (s, a) = (s.clone(), a.clone());
                tokio::spawn(async move {
                    let mut m = new_msg(a.as_str(), "load.test", &format!("{{\"n\":{i}}}"));
                    m.event_id = Some(uid(&format!("evt-{i}")));
                    (i, s.ingest(m).await)
                })
            })
            .collect();
        let mut ids = HashSet::new();
        let mut delivery_ids = HashSet::new();
        for t in tasks {
            let (i, result) = t.await.unwrap();
            let got = result.unwrap_or_else(|e| panic!("ingest {i} failed: {e}"));
            assert_eq!(got.deliveries.len(), 1, "ingest {i}: one delivery");
            assert_eq!(got.deliveries[0].endpoint_id, ep);
            assert!(delivery_ids.insert(got.deliveries[0].delivery_id));
            assert!(ids.insert(got.message.id), "message ids are unique");
        }
        assert_eq!(ids.len(), N);

        let listed = all_messages(&s, &a, MessageFilter::default(), Order::Descending, 250).await;
        assert_eq!(listed.len(), N, "messages listed after the burst");
        let listed_ids: HashSet<_> = listed.iter().map(|m| m.id.clone()).collect();
        assert_eq!(listed_ids, ids, "the listed messages are the ingested ones");
        assert!(
            listed.windows(2).all(|w| w[0].id > w[1].id),
            "newest first, without repeats"
        );
        for m in &listed {
            let n: usize = m.event_id.as_ref().unwrap().as_str()[4..].parse().unwrap();
            assert_eq!(m.payload, format!("{{\"n\":{n}}}").as_bytes(), "payload of evt-{n}");
        }
        let jobs = crate::claim(&s, &crate::node("n1")).await;
        let claimed: HashSet<i64> = jobs.iter().map(|j| j.delivery_id).collect();
        assert_eq!(claimed, delivery_ids, "every delivery was committed");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_ingests_do_not_sink_concurrent_ones() {
    each_backend(|b| async move {
        let s = b.store.clone();
        let a = app(&s, "A").await;
        endpoint(&s, &a, new_endpoint("https://x.example/")).await;
        enum Kind {
            Unique,
            Duplicate,
            NoApp,
        }
        let tasks: Vec<_> = (0..300)
            .map(|i| {
                let kind = match i % 3 {
                    0 => Kind::Unique,
                    1 => Kind::Duplicate,
                    _ => Kind::NoApp,
                };
                let (s, a) = (s.clone(), a.clone());
                tokio::spawn(async move {
                    let mut m = new_msg(a.as_str(), "x.y", "{}");
                    match kind {
                        Kind::Unique => m.event_id = Some(uid(&format!("u-{i}"))),
                        Kind::Duplicate => m.event_id = Some(uid("same")),
                        Kind::NoApp => m.app = AppRef(AppId::new().into_string()),
                    }
                    (kind, s.ingest(m).await)
                })
            })
            .collect();
        let (mut unique, mut dup_ok, mut dup_conflict, mut no_app) = (0, 0, 0, 0);
        for t in tasks {
            match t.await.unwrap() {
                (Kind::Unique, Ok(_)) => unique += 1,
                (Kind::Duplicate, Ok(_)) => dup_ok += 1,
                (Kind::Duplicate, Err(StoreError::Conflict(_))) => dup_conflict += 1,
                (Kind::NoApp, Err(StoreError::NotFound(_))) => no_app += 1,
                (_, other) => panic!("unexpected ingest result: {other:?}"),
            }
        }
        assert_eq!((unique, dup_ok, dup_conflict, no_app), (100, 1, 99, 100));
        let listed = all_messages(&s, &a, MessageFilter::default(), Order::Descending, 250).await;
        assert_eq!(listed.len(), 101, "the unique messages and one duplicate");
        let jobs = crate::claim(&s, &crate::node("n1")).await;
        assert_eq!(jobs.len(), 101, "one delivery per stored message");
    })
    .await;
}
