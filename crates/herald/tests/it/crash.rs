//! Durability: what got a 2xx survives SIGKILL; SIGTERM drains cleanly.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::harness::{Receiver, Server, TOKEN, temp_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_while_posting_loses_nothing_accepted() {
    let dir = temp_dir();
    let receiver = Receiver::start().await;
    let mut server = Server::start(dir.path());
    let app = server.create_app("crash").await;
    server
        .create_endpoint(&app, json!({"url": format!("{}/a", receiver.url)}))
        .await;
    server
        .create_endpoint(&app, json!({"url": format!("{}/b", receiver.url)}))
        .await;

    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut producers = Vec::new();
    for worker in 0..6 {
        let (http, url, accepted) = (
            server.http.clone(),
            server.api(&format!("/app/{app}/msg/")),
            accepted.clone(),
        );
        producers.push(tokio::spawn(async move {
            // Bounded: stops at the first refused connection, or after 20k messages.
            for n in 0..20_000 {
                let sent = http
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .json(&json!({"eventType": "crash.test", "payload": {"worker": worker, "n": n}}))
                    .send()
                    .await;
                let Ok(resp) = sent else { return };
                if resp.status() != 202 {
                    return;
                }
                let Ok(body) = resp.json::<serde_json::Value>().await else {
                    return;
                };
                accepted.lock().unwrap().push(body["id"].as_str().unwrap().to_owned());
            }
        }));
    }
    // Kill once a good number of messages is in, while posting continues.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while accepted.lock().unwrap().len() < 400 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();
    for p in producers {
        p.await.unwrap();
    }
    let accepted: HashSet<String> = accepted.lock().unwrap().iter().cloned().collect();
    assert!(
        accepted.len() >= 400,
        "only {} messages were accepted before the kill",
        accepted.len()
    );

    // Restart on the same data: every accepted message reaches both endpoints.
    let server = Server::start(dir.path());
    let delivered = |path: &str| -> HashSet<String> {
        receiver
            .on_path(path)
            .iter()
            .map(|r| r.header("webhook-id").to_owned())
            .collect()
    };
    receiver
        .wait_until(Duration::from_secs(90), |_| {
            accepted.is_subset(&delivered("/a")) && accepted.is_subset(&delivered("/b"))
        })
        .await;
    for path in ["/a", "/b"] {
        let arrived = delivered(path);
        let missing: Vec<_> = accepted.difference(&arrived).collect();
        assert!(
            missing.is_empty(),
            "{} accepted messages never reached {path}: {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
    }
    // And the API still knows every one of them.
    let some = accepted.iter().next().unwrap();
    let (status, _) = server.get(&format!("/app/{app}/msg/{some}/")).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_work_and_resumes_the_rest() {
    let dir = temp_dir();
    let receiver = Receiver::start_with(Arc::new(|_, _| (200, Duration::from_millis(300), "ok".into()))).await;
    let mut server = Server::start_with(
        dir.path(),
        crate::harness::ServerOptions {
            extra_args: vec!["--max-in-flight-per-endpoint".into(), "4".into()],
            ..Default::default()
        },
    );
    let app = server.create_app("drain").await;
    server
        .create_endpoint(&app, json!({"url": format!("{}/slow", receiver.url)}))
        .await;
    let mut ids = HashSet::new();
    for n in 0..40 {
        ids.insert(server.send(&app, "drain.test", json!({"n": n})).await);
    }
    // Some requests are now in flight, most are queued behind the lane limit.
    receiver.wait_until(Duration::from_secs(10), |r| !r.is_empty()).await;
    let status = server.terminate(Duration::from_secs(20));
    assert!(status.success(), "herald exited with {status}: {}", server.stderr());
    let before_restart = receiver.requests().len();
    assert!(
        before_restart < 40,
        "everything was delivered before the stop; the test proves nothing"
    );

    let server = Server::start(dir.path());
    let got = receiver
        .wait_until(Duration::from_secs(60), |r| {
            let seen: HashSet<String> = r.iter().map(|x| x.header("webhook-id").to_owned()).collect();
            ids.is_subset(&seen)
        })
        .await;
    let seen: HashSet<String> = got.iter().map(|x| x.header("webhook-id").to_owned()).collect();
    assert!(
        ids.is_subset(&seen),
        "{} messages lost across SIGTERM",
        ids.difference(&seen).count()
    );
    // Requests that were in flight at SIGTERM completed and were recorded, so
    // they are not sent again.
    assert!(got.len() <= 40 + 4, "{} requests for 40 messages", got.len());
    drop(server);
}
