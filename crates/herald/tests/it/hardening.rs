//! What a hostile or careless client can do to the API: oversized bodies
//! written whole, slow and idle connections, too many connections, huge
//! lists, deep nesting, and hanging up mid-request. Raw TCP where the client
//! behaviour matters; every wait is bounded.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::harness::{Receiver, Server, ServerOptions, TOKEN, temp_dir};

const MIB: usize = 1024 * 1024;

fn with_args(args: &[&str]) -> ServerOptions {
    ServerOptions {
        extra_args: args.iter().map(|s| (*s).to_owned()).collect(),
        ..ServerOptions::default()
    }
}

async fn connect(server: &Server) -> TcpStream {
    TcpStream::connect(server.url.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// Status, headers and the JSON body of a raw HTTP/1.1 response.
fn parse_response(raw: &[u8]) -> (u16, String, Value) {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let (head, rest) = text.split_once("\r\n\r\n").expect("end of headers");
    let json = match (rest.find('{'), rest.rfind('}')) {
        (Some(a), Some(b)) => serde_json::from_str(&rest[a..=b]).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    (status, head.to_ascii_lowercase(), json)
}

/// Reads until the peer closes, within `within`; `None` if it stayed open.
async fn read_until_closed(conn: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// The server answers a new client promptly. A new connection each time:
/// a pooled one may be the very one the server's idle timeout is closing
/// as it is reused, which says nothing about the server.
async fn health_ok(server: &Server) {
    let started = Instant::now();
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let resp = timeout(Duration::from_secs(5), fresh.get(server.api("/health/")).send())
        .await
        .expect("health answered within 5 s")
        .expect("health request");
    assert_eq!(resp.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "health took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn oversized_body_written_whole_still_reads_the_413() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let app = server.create_app("big").await;
    let path = format!("/api/v1/app/{app}/msg/");
    let body = vec![b'x'; 2 * MIB];

    // Declared length: the whole body goes out before anything is read.
    let mut conn = connect(&server).await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: herald\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    timeout(Duration::from_secs(20), async {
        conn.write_all(head.as_bytes()).await?;
        conn.write_all(&body).await
    })
    .await
    .expect("the server reads the body in time")
    .expect("the whole body was written");
    let raw = read_until_closed(&mut conn, Duration::from_secs(20))
        .await
        .expect("closed");
    let (status, _, err) = parse_response(&raw);
    assert_eq!(status, 413);
    assert_eq!(err["code"], "payload_too_large", "{err}");

    // Chunked: over the limit inside the body reader, same outcome.
    let mut conn = connect(&server).await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: herald\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    timeout(Duration::from_secs(20), async {
        conn.write_all(head.as_bytes()).await?;
        for chunk in body.chunks(64 * 1024) {
            conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
            conn.write_all(chunk).await?;
            conn.write_all(b"\r\n").await?;
        }
        conn.write_all(b"0\r\n\r\n").await
    })
    .await
    .expect("the server reads the body in time")
    .expect("the whole chunked body was written");
    let raw = read_until_closed(&mut conn, Duration::from_secs(20))
        .await
        .expect("closed");
    let (status, _, err) = parse_response(&raw);
    assert_eq!(status, 413);
    assert_eq!(err["code"], "payload_too_large", "{err}");

    // Declared far beyond what is worth draining: answered at once, closing.
    let mut conn = connect(&server).await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: herald\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        64 * MIB
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let raw = read_until_closed(&mut conn, Duration::from_secs(10))
        .await
        .expect("closed");
    let (status, head, err) = parse_response(&raw);
    assert_eq!(status, 413);
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(err["code"], "payload_too_large");
    health_ok(&server).await;
}

#[tokio::test]
async fn stalled_headers_are_cut_off() {
    let dir = temp_dir();
    let server = Server::start_with(
        dir.path(),
        with_args(&["--header-read-timeout-secs", "1", "--idle-timeout-secs", "30"]),
    );
    let mut conn = connect(&server).await;
    conn.write_all(b"GET /api/v1/health/ HTTP/1.1\r\nhost: herald\r\nx-half")
        .await
        .unwrap();
    let started = Instant::now();
    health_ok(&server).await;
    assert!(
        read_until_closed(&mut conn, Duration::from_secs(5)).await.is_some(),
        "a half-sent head is not cut off"
    );
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(800), "closed after only {took:?}");
    health_ok(&server).await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let dir = temp_dir();
    let server = Server::start_with(
        dir.path(),
        with_args(&["--idle-timeout-secs", "1", "--header-read-timeout-secs", "10"]),
    );
    // Keep-alive after one answered request.
    let mut used = connect(&server).await;
    used.write_all(b"GET /api/v1/health/ HTTP/1.1\r\nhost: herald\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = timeout(Duration::from_secs(5), used.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // And one that never sent anything.
    let mut silent = connect(&server).await;
    let started = Instant::now();
    health_ok(&server).await;
    for conn in [&mut used, &mut silent] {
        let rest = read_until_closed(conn, Duration::from_secs(5)).await;
        assert!(rest.is_some(), "an idle connection stayed open");
    }
    assert!(started.elapsed() >= Duration::from_millis(800));
    health_ok(&server).await;
}

#[tokio::test]
async fn stalled_body_is_cut_off() {
    let dir = temp_dir();
    let server = Server::start_with(dir.path(), with_args(&["--body-read-timeout-secs", "1"]));
    let mut conn = connect(&server).await;
    let head = format!(
        "POST /api/v1/app/ HTTP/1.1\r\nhost: herald\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"name\": \"sl"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    health_ok(&server).await;
    let raw = read_until_closed(&mut conn, Duration::from_secs(5))
        .await
        .expect("a stalled body is cut off");
    assert!(started.elapsed() >= Duration::from_millis(800));
    let (status, head, err) = parse_response(&raw);
    assert_eq!(status, 408, "{err}");
    assert_eq!(err["code"], "request_timeout");
    assert!(head.contains("connection: close"), "{head}");
    health_ok(&server).await;
}

#[tokio::test]
async fn connection_cap_holds_newcomers_until_a_slot_frees() {
    let dir = temp_dir();
    let server = Server::start_with(
        dir.path(),
        with_args(&["--max-connections", "3", "--idle-timeout-secs", "30"]),
    );
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(&server).await);
    }
    // The kernel completes the handshake; the server does not take it yet.
    let mut fourth = connect(&server).await;
    fourth
        .write_all(b"GET /api/v1/health/ HTTP/1.1\r\nhost: herald\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    assert!(
        timeout(Duration::from_millis(1500), fourth.read(&mut buf))
            .await
            .is_err(),
        "a fourth connection was served beyond --max-connections 3"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.stderr().contains("connection cap reached") {
        assert!(
            Instant::now() < deadline,
            "the cap was not logged:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held.pop());
    let raw = read_until_closed(&mut fourth, Duration::from_secs(5))
        .await
        .expect("served once a slot freed");
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"), "{raw:?}");
    health_ok(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_filter_type_lists_cost_linear_time() {
    let dir = temp_dir();
    let server = Server::start_with(dir.path(), with_args(&["--max-payload-bytes", "4194304"]));
    let app = server.create_app("lists").await;
    // 100,000 names, each twice: 50,000 distinct.
    let names: Vec<String> = (0..100_000).map(|i| format!("t.{}", i % 50_000)).collect();
    let body = json!({"url": "https://example.com/hook", "filterTypes": names});

    let probe = {
        let (http, url) = (server.http.clone(), server.api("/health/"));
        tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            let end = Instant::now() + Duration::from_secs(3);
            while Instant::now() < end {
                let started = Instant::now();
                let resp = timeout(Duration::from_secs(10), http.get(&url).send()).await;
                assert!(matches!(&resp, Ok(Ok(r)) if r.status() == 200), "health failed");
                worst = worst.max(started.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            worst
        })
    };
    let started = Instant::now();
    let create = |body: Value| {
        let (http, url) = (server.http.clone(), server.api(&format!("/app/{app}/endpoint/")));
        async move {
            let resp = http.post(url).bearer_auth(TOKEN).json(&body).send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    // Two at once: with quadratic validation they held both workers. None
    // of the names is an event type, so both are refused, but only after
    // the whole list is parsed, deduplicated and looked up.
    let ((s1, e1), (s2, _)) = timeout(Duration::from_secs(60), async {
        tokio::join!(create(body.clone()), create(body))
    })
    .await
    .expect("both answered within 60 s");
    assert_eq!((s1, s2), (422, 422), "{e1}");
    assert!(
        e1["detail"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("50000 of the listed types"),
        "{e1}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    // Loose: other test processes share the two cores; the quadratic code
    // held both workers for well over ten seconds.
    let worst = probe.await.unwrap();
    assert!(worst < Duration::from_secs(2), "health took {worst:?} meanwhile");

    // With the types created, a long list with repeats is stored deduplicated.
    let distinct = 2_000;
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..distinct {
        let (http, url) = (server.http.clone(), server.api("/event-type/"));
        creates.spawn(async move {
            let body = json!({"name": format!("t.{i}"), "description": "x"});
            http.post(url)
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    while let Some(status) = creates.join_next().await {
        assert_eq!(status.unwrap(), 201);
    }
    let names: Vec<String> = (0..100_000).map(|i| format!("t.{}", i % distinct)).collect();
    let (status, ep) = create(json!({"url": "https://example.com/hook", "filterTypes": names})).await;
    assert_eq!(status, 201, "{ep}");
    let (status, got) = server
        .get(&format!("/app/{app}/endpoint/{}/", ep["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, 200);
    let mut got: Vec<String> = serde_json::from_value(got["filterTypes"].clone()).unwrap();
    let mut want: Vec<String> = (0..distinct).map(|i| format!("t.{i}")).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

/// A payload nested `depth` objects deep, as text.
fn nested(depth: usize) -> String {
    format!(
        "{}{{\"leaf\":\"x\"}}{}",
        r#"{"a":"#.repeat(depth - 1),
        "}".repeat(depth - 1)
    )
}

#[tokio::test]
async fn payload_depth_is_limited_and_the_limit_is_delivered_unchanged() {
    const MAX_PAYLOAD_DEPTH: usize = 64;
    let dir = temp_dir();
    let receiver = Receiver::start().await;
    let server = Server::start(dir.path());
    let app = server.create_app("deep").await;
    server
        .create_endpoint(&app, json!({"url": format!("{}/deep", receiver.url)}))
        .await;
    let post = |text: String| {
        let req = server
            .http
            .post(server.api(&format!("/app/{app}/msg/")))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(text);
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };

    let (status, err) = post(format!(
        r#"{{"eventType":"deep","payload":{}}}"#,
        nested(MAX_PAYLOAD_DEPTH + 1)
    ))
    .await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["detail"][0]["loc"], json!(["body", "payload"]));

    // 150,000 levels anywhere: a JSON error, never a crash.
    for text in [
        format!(r#"{{"eventType":"deep","payload":{}}}"#, "[".repeat(150_000)),
        format!(
            r#"{{"eventType":"deep","payload":{{}},"tags":{}}}"#,
            "[".repeat(150_000)
        ),
        "[".repeat(150_000),
    ] {
        let (status, err) = post(text).await;
        assert!(status == 422 || status == 400, "{status} {err}");
        assert!(err["code"].is_string(), "{err}");
    }

    let payload = nested(MAX_PAYLOAD_DEPTH);
    let (status, msg) = post(format!(r#"{{"eventType":"deep","payload":{payload}}}"#)).await;
    assert_eq!(status, 202, "{msg}");
    let got = receiver.wait_until(Duration::from_secs(10), |r| !r.is_empty()).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, payload.as_bytes(), "delivered unchanged");
    health_ok(&server).await;
}

#[tokio::test]
async fn idempotency_key_survives_a_client_that_hangs_up() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let app = server.create_app("hangup").await;
    let body = r#"{"eventType":"hangup","payload":{"n":1}}"#;

    let mut conn = connect(&server).await;
    let request = format!(
        "POST /api/v1/app/{app}/msg/ HTTP/1.1\r\nhost: herald\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\nidempotency-key: hangup-1\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    drop(conn);

    // A retry may meet the first still in progress (409) for a moment, but
    // must then get the first answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, msg) = loop {
        let resp = server
            .http
            .post(server.api(&format!("/app/{app}/msg/")))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .header("idempotency-key", "hangup-1")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let value: Value = resp.json().await.unwrap();
        if status != 409 || Instant::now() > deadline {
            break (status, value);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 202, "{msg}");
    let (status, list) = server.get(&format!("/app/{app}/msg/")).await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
}

/// At the file-descriptor limit `accept` fails: the server says so, backs
/// off, and serves again as soon as descriptors free up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_is_logged_and_survived() {
    let dir = temp_dir();
    let server = Server::start_with(
        dir.path(),
        ServerOptions {
            // A hard limit the server cannot raise, and a connection cap
            // above it, so it is the descriptors that run out.
            wrapper: vec!["prlimit".into(), "--nofile=128:128".into(), "--".into()],
            extra_args: vec!["--max-connections".into(), "1000".into()],
            ..ServerOptions::default()
        },
    );
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.stderr().contains("accepting a connection failed") && Instant::now() < deadline {
        // The kernel completes handshakes into the listen backlog whether or
        // not the server can accept them.
        for _ in 0..20 {
            if let Ok(Ok(c)) = timeout(Duration::from_secs(1), connect_raw(&server)).await {
                held.push(c);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        server.stderr().contains("accepting a connection failed"),
        "no accept failure was logged with {} connections open: {}",
        held.len(),
        server.stderr()
    );
    drop(held);
    // Freed descriptors: the server is back within its backoff.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = timeout(Duration::from_secs(2), server.http.get(server.api("/health/")).send())
            .await
            .is_ok_and(|r| r.is_ok_and(|r| r.status() == 200));
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not serve again after descriptors were freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn connect_raw(server: &Server) -> std::io::Result<TcpStream> {
    TcpStream::connect(server.url.trim_start_matches("http://")).await
}
