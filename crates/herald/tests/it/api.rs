//! The Svix v1 API surface: shapes, status codes and error bodies.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Receiver, Server, TOKEN, temp_dir};

#[tokio::test]
async fn auth_is_required_except_for_health() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let http = crate::harness::client();

    let resp = http.get(server.api("/health/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    let resp = http.get(server.api("/app/")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "authentication_failed");
    assert!(body["detail"].as_str().unwrap().contains("bearer"), "{body}");

    let resp = http.get(server.api("/app/")).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["detail"], "invalid token");

    let resp = http.get(server.api("/app/")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn applications_crud_with_uid_and_errors() {
    let dir = temp_dir();
    let server = Server::start(dir.path());

    let (status, app) = server
        .post(
            "/app/",
            json!({"name": "Acme", "uid": "acme", "metadata": {"tier": "gold"}}),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("app_") && id.len() == 31, "{id}");
    assert_eq!(app["uid"], "acme");
    assert_eq!(app["metadata"], json!({"tier": "gold"}));
    assert!(app["createdAt"].as_str().unwrap().ends_with('Z'));

    // Same uid again: conflict; with get_if_exists: the existing one.
    let (status, err) = server.post("/app/", json!({"name": "Other", "uid": "acme"})).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["code"], "conflict");
    let (status, again) = server
        .post("/app/?get_if_exists=true", json!({"name": "Other", "uid": "acme"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["id"], id.as_str());

    // By id and by uid, with and without the trailing slash.
    let (status, by_uid) = server.get("/app/acme").await;
    assert_eq!(status, 200);
    assert_eq!(by_uid["id"], id.as_str());
    let (status, _) = server.get(&format!("/app/{id}/")).await;
    assert_eq!(status, 200);

    let (status, patched) = server
        .request(Method::PATCH, "/app/acme/", Some(json!({"name": "Acme Inc"})))
        .await;
    assert_eq!(status, 200);
    assert_eq!(patched["name"], "Acme Inc");
    assert_eq!(patched["uid"], "acme");
    assert_eq!(patched["metadata"], json!({"tier": "gold"}));

    let (status, put) = server
        .request(Method::PUT, "/app/new-one/", Some(json!({"name": "Upserted"})))
        .await;
    assert_eq!(status, 201, "{put}");
    assert_eq!(put["uid"], "new-one");
    assert_eq!(put["metadata"], json!({}));

    let (status, err) = server.get("/app/app_doesnotexist").await;
    assert_eq!(status, 404);
    assert_eq!(err["code"], "not_found");
    assert_eq!(err["detail"], "application not found");

    // Validation errors are 422 with a list of {loc, msg, type}.
    let (status, err) = server.post("/app/", json!({"uid": "x"})).await;
    assert_eq!(status, 422, "{err}");
    let detail = &err["detail"][0];
    assert_eq!(detail["loc"][0], "body");
    assert!(detail["msg"].as_str().unwrap().contains("name"), "{err}");
    let (status, err) = server.post("/app/", json!({"name": "x", "uid": "has space"})).await;
    assert_eq!(status, 422);
    assert_eq!(err["detail"][0]["loc"], json!(["body", "uid"]));
    let (status, err) = server.post("/app/", json!({"name": 7})).await;
    assert_eq!(status, 422);
    assert_eq!(err["detail"][0]["loc"], json!(["body", "name"]));

    let (status, _) = server.request(Method::DELETE, "/app/acme/", None).await;
    assert_eq!(status, 204);
    let (status, _) = server.get("/app/acme/").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn lists_page_with_iterators() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(server.create_app(&format!("app {i}")).await);
    }
    let (status, page1) = server.get("/app/?limit=2").await;
    assert_eq!(status, 200);
    assert_eq!(page1["done"], false);
    let got: Vec<&str> = page1["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[0].as_str(), ids[1].as_str()]);
    let it = page1["iterator"].as_str().unwrap();
    let (_, page2) = server.get(&format!("/app/?limit=2&iterator={it}")).await;
    let it2 = page2["iterator"].as_str().unwrap().to_owned();
    let (_, page3) = server.get(&format!("/app/?limit=2&iterator={it2}")).await;
    assert_eq!(page3["done"], true);
    assert_eq!(page3["data"].as_array().unwrap().len(), 1);
    assert_eq!(page3["data"][0]["id"], ids[4].as_str());
    // prevIterator walks back to the page before.
    let prev = page3["prevIterator"].as_str().unwrap();
    let (_, back) = server.get(&format!("/app/?limit=2&iterator={prev}")).await;
    let got: Vec<&str> = back["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[2].as_str(), ids[3].as_str()]);
    let (_, desc) = server.get("/app/?limit=1&order=descending").await;
    assert_eq!(desc["data"][0]["id"], ids[4].as_str());
    let (status, err) = server.get("/app/?limit=0").await;
    assert_eq!(status, 422, "{err}");
    let (status, _) = server.get("/app/?order=sideways").await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn endpoints_crud_and_secret() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let app = server.create_app("eps").await;
    server.create_event_types(&["a.b"]).await;

    let (status, ep) = server
        .post(
            &format!("/app/{app}/endpoint/"),
            json!({"url": "https://example.com/hook", "uid": "main", "eventTypes": ["a.b"], "channels": ["eu"]}),
        )
        .await;
    assert_eq!(status, 201, "{ep}");
    assert!(ep["id"].as_str().unwrap().starts_with("ep_"));
    assert_eq!(ep["description"], "");
    assert_eq!(ep["metadata"], json!({}));
    assert_eq!(ep["eventTypes"], json!(["a.b"]));
    assert_eq!(ep["filterTypes"], json!(["a.b"]));
    assert_eq!(ep["channels"], json!(["eu"]));
    assert_eq!(ep["disabled"], false);

    // Generated secrets are 24 bytes, emitted as padded standard base64.
    let (status, secret) = server.get(&format!("/app/{app}/endpoint/main/secret/")).await;
    assert_eq!(status, 200);
    let key = secret["key"].as_str().unwrap();
    let b64 = key.strip_prefix("whsec_").expect("whsec_ prefix");
    assert_eq!(b64.len(), 32, "{key}");
    use base64::Engine as _;
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(b64).unwrap().len(), 24);

    // A supplied secret is kept as given.
    let mine = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let (status, ep2) = server
        .post(
            &format!("/app/{app}/endpoint/"),
            json!({"url": "https://example.com/2", "secret": mine}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, s2) = server
        .get(&format!("/app/{app}/endpoint/{}/secret/", ep2["id"].as_str().unwrap()))
        .await;
    assert_eq!(s2["key"], mine);

    let (status, err) = server
        .post(&format!("/app/{app}/endpoint/"), json!({"url": "ftp://example.com"}))
        .await;
    assert_eq!(status, 422);
    assert_eq!(err["detail"][0]["loc"], json!(["body", "url"]));
    let (status, err) = server
        .post(
            &format!("/app/{app}/endpoint/"),
            json!({"url": "https://x.com", "secret": "whsec_short"}),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["detail"][0]["loc"], json!(["body", "secret"]));
    let (status, _) = server
        .post(
            &format!("/app/{app}/endpoint/"),
            json!({"url": "https://x.com", "uid": "main"}),
        )
        .await;
    assert_eq!(status, 409);
    for (headers, why) in [
        (json!({"webhook-id": "x"}), "reserved"),
        (json!({"Content-Type": "text/plain"}), "reserved"),
        (json!({"bad header": "x"}), "not a valid header name"),
        (json!({"x-ok": "line\nbreak"}), "not a valid header value"),
    ] {
        let (status, err) = server
            .post(
                &format!("/app/{app}/endpoint/"),
                json!({"url": "https://x.com", "headers": headers}),
            )
            .await;
        assert_eq!(status, 422, "{headers} was accepted");
        assert_eq!(err["detail"][0]["loc"][1], "headers", "{err}");
        let msg = err["detail"][0]["msg"].as_str().unwrap();
        assert!(
            msg.contains(why) || (why == "reserved" && msg.contains("cannot be overridden")),
            "{msg}"
        );
    }

    let (status, patched) = server
        .request(
            Method::PATCH,
            &format!("/app/{app}/endpoint/main/"),
            Some(json!({"disabled": true, "channels": null})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["disabled"], true);
    assert!(patched.get("channels").is_none());
    assert_eq!(patched["eventTypes"], json!(["a.b"]));

    let (status, list) = server.get(&format!("/app/{app}/endpoint/")).await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    assert!(list.get("iterator").is_some());

    let (status, _) = server
        .request(Method::DELETE, &format!("/app/{app}/endpoint/main/"), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = server.get(&format!("/app/{app}/endpoint/main/")).await;
    assert_eq!(status, 404);
    let (status, err) = server.get("/app/nope/endpoint/").await;
    assert_eq!(status, 404);
    assert_eq!(err["detail"], "application not found");
}

#[tokio::test]
async fn event_types_create_list_archive() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let (status, et) = server
        .post(
            "/event-type/",
            json!({"name": "invoice.paid", "description": "An invoice was paid", "schemas": {"1": {"type": "object"}}}),
        )
        .await;
    assert_eq!(status, 201, "{et}");
    assert_eq!(et["deprecated"], false);
    assert_eq!(et["archived"], false);
    let (status, _) = server
        .post("/event-type/", json!({"name": "invoice.paid", "description": "dup"}))
        .await;
    assert_eq!(status, 409);
    let (status, _) = server
        .post("/event-type/", json!({"name": "bad name", "description": "x"}))
        .await;
    assert_eq!(status, 422);

    let (_, list) = server.get("/event-type/?with_content=false").await;
    assert_eq!(list["data"][0]["name"], "invoice.paid");
    assert!(list["data"][0].get("schemas").is_none());
    let (_, one) = server.get("/event-type/invoice.paid/").await;
    assert_eq!(one["schemas"]["1"]["type"], "object");

    let (status, _) = server.request(Method::DELETE, "/event-type/invoice.paid/", None).await;
    assert_eq!(status, 204);
    let (_, list) = server.get("/event-type/").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
    let (_, list) = server.get("/event-type/?include_archived=true").await;
    assert_eq!(list["data"][0]["archived"], true);
    // Paths route with and without the trailing slash.
    let (_, bare) = server.get("/event-type?include_archived=true").await;
    assert_eq!(bare["data"], list["data"]);
}

#[tokio::test]
async fn messages_create_get_list_and_errors() {
    let dir = temp_dir();
    let server = Server::start_with(
        dir.path(),
        crate::harness::ServerOptions {
            extra_args: vec!["--max-payload-bytes".into(), "2048".into()],
            ..Default::default()
        },
    );
    let app = server.create_app("msgs").await;

    let (status, msg) = server
        .post(&format!("/app/{app}/msg/"), json!({"eventType": "user.created", "eventId": "evt-1", "payload": {"n": 1}, "channels": ["eu"], "tags": ["t1"]}))
        .await;
    assert_eq!(status, 202, "{msg}");
    let id = msg["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("msg_"));
    assert_eq!(msg["payload"], json!({"n": 1}));
    assert_eq!(msg["eventId"], "evt-1");
    assert_eq!(msg["channels"], json!(["eu"]));

    // with_content=false (what the SDK sends) gives an empty object, never null.
    let (_, lean) = server
        .post(
            &format!("/app/{app}/msg/?with_content=false"),
            json!({"eventType": "user.created", "payload": {"n": 2}}),
        )
        .await;
    assert_eq!(lean["payload"], json!({}));

    let (status, by_event_id) = server.get(&format!("/app/{app}/msg/evt-1/")).await;
    assert_eq!(status, 200);
    assert_eq!(by_event_id["id"], id.as_str());
    let (status, dup) = server
        .post(
            &format!("/app/{app}/msg/"),
            json!({"eventType": "user.created", "eventId": "evt-1", "payload": {}}),
        )
        .await;
    assert_eq!(status, 409, "{dup}");

    let (_, list) = server.get(&format!("/app/{app}/msg/?limit=10")).await;
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["id"], id.as_str(), "newest first");
    let (_, filtered) = server.get(&format!("/app/{app}/msg/?channel=eu")).await;
    assert_eq!(filtered["data"].as_array().unwrap().len(), 1);
    let (_, filtered) = server
        .get(&format!("/app/{app}/msg/?event_types=other.type,user.created"))
        .await;
    assert_eq!(filtered["data"].as_array().unwrap().len(), 2);
    let (_, filtered) = server.get(&format!("/app/{app}/msg/?event_types=other.type")).await;
    assert_eq!(filtered["data"].as_array().unwrap().len(), 0);

    let (status, err) = server
        .post(
            &format!("/app/{app}/msg/"),
            json!({"eventType": "x", "payload": [1, 2]}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(err["detail"][0]["loc"], json!(["body", "payload"]));
    let (status, err) = server.post(&format!("/app/{app}/msg/"), json!({"payload": {}})).await;
    assert_eq!(status, 422, "{err}");
    let (status, err) = server
        .post("/app/nope/msg/", json!({"eventType": "x", "payload": {}}))
        .await;
    assert_eq!(status, 404);
    assert_eq!(err["detail"], "application not found");

    let big = "x".repeat(4096);
    let (status, err) = server
        .post(
            &format!("/app/{app}/msg/"),
            json!({"eventType": "x", "payload": {"big": big}}),
        )
        .await;
    assert_eq!(status, 413, "{err}");
    assert_eq!(err["code"], "payload_too_large");
    assert!(err["detail"].as_str().unwrap().contains("2048"));

    // A body that does not declare its length is cut off at the limit too.
    let body = format!(r#"{{"eventType":"x","payload":{{"big":"{big}"}}}}"#);
    let (status, err) = chunked_post(&server, &format!("/api/v1/app/{app}/msg/"), &body).await;
    assert_eq!(status, 413, "{err}");
    assert_eq!(err["code"], "payload_too_large");
    let (status, _) = chunked_post(
        &server,
        &format!("/api/v1/app/{app}/msg/"),
        r#"{"eventType":"x","payload":{"small":true}}"#,
    )
    .await;
    assert_eq!(status, 202, "a small chunked body is accepted");

    // Malformed JSON is a 422 that says so, not a plain-text rejection.
    let resp = server
        .http
        .post(server.api(&format!("/app/{app}/msg/")))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["detail"][0]["type"], "value_error.jsondecode");

    let (status, err) = server.get("/no/such/route").await;
    assert_eq!(status, 404);
    assert_eq!(err["code"], "not_found");
}

#[tokio::test]
async fn idempotency_key_answers_once() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let receiver = Receiver::start().await;
    let app = server.create_app("idem").await;
    server
        .create_endpoint(&app, json!({"url": format!("{}/idem", receiver.url)}))
        .await;

    let post = || {
        server
            .http
            .post(server.api(&format!("/app/{app}/msg/")))
            .bearer_auth(TOKEN)
            .header("idempotency-key", "key-123")
            .json(&json!({"eventType": "a.b", "payload": {"once": true}}))
            .send()
    };
    let first: Value = post().await.unwrap().json().await.unwrap();
    let resp = post().await.unwrap();
    assert_eq!(resp.status(), 202);
    let second: Value = resp.json().await.unwrap();
    assert_eq!(first["id"], second["id"]);

    let (_, list) = server.get(&format!("/app/{app}/msg/")).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    receiver.wait_until(Duration::from_secs(10), |r| !r.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.requests().len(), 1);
}

/// A POST whose body is sent with `Transfer-Encoding: chunked` (no declared
/// length), over a raw connection; returns the status and the JSON body.
async fn chunked_post(server: &Server, path: &str, body: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = server.url.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.as_bytes().chunks(1000) {
        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
        framed.extend_from_slice(chunk);
        framed.extend_from_slice(b"\r\n");
        // The server may answer and close before reading everything.
        if conn.write_all(&framed).await.is_err() {
            break;
        }
    }
    let _ = conn.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = conn.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let (_, rest) = text.split_once("\r\n\r\n").expect("headers end");
    // The body may itself be chunked: take the JSON object inside it.
    let json = &rest[rest.find('{').unwrap_or(0)..=rest.rfind('}').unwrap_or(0)];
    (status, serde_json::from_str(json).unwrap_or(Value::Null))
}
