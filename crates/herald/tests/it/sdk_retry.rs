//! SDK retries never duplicate: the official Python SDK talks to Herald
//! through a proxy that lets the first request through but drops its
//! answer (the connection closes as if the network failed). The SDK retries
//! with the same `idempotency-key`, and Herald must answer that retry with
//! the first message, not a second one.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{Server, TOKEN, temp_dir};

/// A TCP proxy to `upstream`. On the first `drop_first` connections the
/// request goes through, the upstream's answer is read and thrown away, and
/// the client's connection is closed; later connections are relayed whole.
async fn lossy_proxy(upstream: String, drop_first: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let n = count.fetch_add(1, Ordering::SeqCst);
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let mut server = TcpStream::connect(&upstream).await.unwrap();
                if n < drop_first {
                    let mut buf = vec![0u8; 64 * 1024];
                    let got = client.read(&mut buf).await.unwrap_or(0);
                    server.write_all(&buf[..got]).await.unwrap();
                    // Wait for the answer, so the request surely ran, then lose it.
                    let _ = server.read(&mut buf).await;
                    drop(client);
                } else {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_answer_retried_by_the_sdk_creates_one_message() {
    let Some(python) = crate::signing::python() else {
        eprintln!("skipped: HERALD_TEST_PYTHON is not set (run scripts/test)");
        return;
    };
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let app = server.create_app("retries").await;
    let (proxy, connections) = lossy_proxy(server.url.trim_start_matches("http://").to_owned(), 1).await;

    // One SDK call; the SDK's client keeps one connection, so the first
    // connection carries exactly the first POST.
    let script = r#"
import sys
from svix import Svix, SvixOptions
from svix.api import MessageIn
server, token, app = sys.argv[1:4]
svx = Svix(token, SvixOptions(server_url=server))
msg = svx.message.create(app, MessageIn(event_type="a.b", payload={"once": True}))
print(msg.id)
"#;
    let (url, app_id) = (proxy.clone(), app.clone());
    let out =
        tokio::task::spawn_blocking(move || Command::new(python).args(["-c", script, &url, TOKEN, &app_id]).output())
            .await
            .unwrap()
            .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success(),
        "the SDK call failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        connections.load(Ordering::SeqCst) >= 2,
        "the SDK retried on a new connection"
    );

    let (status, list) = server.get(&format!("/app/{app}/msg/")).await;
    assert_eq!(status, 200);
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "exactly one message despite the retry: {list}");
    assert_eq!(
        data[0]["id"],
        stdout.as_str(),
        "the retry got the first message's answer"
    );
    assert_eq!(data[0]["payload"], json!({"once": true}));
    // Give a late duplicate time to show up before the test ends.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, list) = server.get(&format!("/app/{app}/msg/")).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}
