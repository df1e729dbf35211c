//! Strict where Svix is strict: bad iterators, empty or malformed lists and
//! schemas, over-long fields, trailing data and arrays for objects are 422s;
//! every error is JSON (405, undecodable paths, unknown routes); lists and
//! URLs come back in Svix's order and form; idempotency keys mean one
//! request, whatever the query string, and refuse another body.

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Server, TOKEN, temp_dir};

/// A raw request (for bodies and paths reqwest would not send as given).
async fn raw(server: &Server, head: &str, body: &str) -> (u16, String, Value) {
    let mut conn = tokio::net::TcpStream::connect(server.url.trim_start_matches("http://"))
        .await
        .unwrap();
    let req = format!(
        "{head} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    conn.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (headers, body) = text.split_once("\r\n\r\n").unwrap();
    let status = headers[9..12].parse().unwrap();
    let value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{head}: not JSON: {text}"));
    (status, headers.to_ascii_lowercase(), value)
}

fn assert_422_at(status: u16, body: &Value, loc_last: &str) {
    assert_eq!(status, 422, "{body}");
    let locs: Vec<String> = body["detail"]
        .as_array()
        .unwrap_or_else(|| panic!("detail is a list: {body}"))
        .iter()
        .map(|d| {
            d["loc"]
                .as_array()
                .unwrap()
                .last()
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(locs.iter().any(|l| l == loc_last), "want loc {loc_last}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_is_a_422_naming_the_field() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let app = server.create_app("strict").await;
    let (ep, _) = server
        .create_endpoint(&app, json!({"url": "https://example.com/a"}))
        .await;

    for list in [
        "/app/".to_owned(),
        format!("/app/{app}/endpoint/"),
        format!("/app/{app}/msg/"),
        format!("/app/{app}/attempt/endpoint/{ep}/"),
        format!("/app/{app}/endpoint/{ep}/msg/"),
    ] {
        for bad in ["garbage", "msg_", "-", "app_0000000000000000000000000000"] {
            let (status, body) = server.get(&format!("{list}?iterator={bad}")).await;
            assert_eq!(status, 422, "{list}?iterator={bad}: {body}");
            assert_422_at(status, &body, "iterator");
        }
    }
    // Event types page by name: a name that cannot be one is the garbage.
    let (status, body) = server.get("/event-type/?iterator=not%20a%20name").await;
    assert_422_at(status, &body, "iterator");
    let endpoints = format!("/app/{app}/endpoint/");
    let (status, out) = server
        .post(
            &endpoints,
            json!({"url": "https://example.com/", "eventTypes": ["no.such"]}),
        )
        .await;
    assert_422_at(status, &out, "0");
    let (status, out) = server
        .post(
            &format!("/app/{app}/endpoint/{ep}/recover/"),
            json!({"since": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_422_at(status, &out, "since");
    // Ten replaced secrets may sign at once; an eleventh rotation must wait.
    let rotate = format!("/app/{app}/endpoint/{ep}/secret/rotate/");
    for _ in 0..10 {
        let (status, out) = server.post(&rotate, json!({})).await;
        assert_eq!(status, 200, "{out}");
    }
    let (status, out) = server.post(&rotate, json!({})).await;
    assert_eq!((status, out["code"].as_str()), (400, Some("bad_request")), "{out}");
    let (status, out) = server.post(&rotate, json!({"gracePeriodSeconds": 0})).await;
    assert_eq!(status, 200, "without a grace period it adds no signer: {out}");
    for (body, field) in [
        (json!({"url": "https://example.com/", "filterTypes": []}), "eventTypes"),
        (json!({"url": "https://example.com/", "eventTypes": []}), "eventTypes"),
        (json!({"url": "https://example.com/", "channels": []}), "channels"),
        (
            json!({"url": "https://example.com/", "description": "d".repeat(4097)}),
            "description",
        ),
    ] {
        let (status, out) = server.post(&endpoints, body).await;
        assert_422_at(status, &out, field);
    }
    let (status, out) = server.post("/app/", json!({"name": "n".repeat(257)})).await;
    assert_422_at(status, &out, "name");
    for schemas in [
        json!("x"),
        json!({"1": "not a schema"}),
        json!({"1": {"type": "wat"}}),
        json!({"1": {"required": "id"}}),
    ] {
        let (status, out) = server
            .post(
                "/event-type/",
                json!({"name": "s.t", "description": "d", "schemas": schemas}),
            )
            .await;
        assert_eq!(status, 422, "{schemas} accepted: {out}");
    }
    let (status, out) = server
        .post(
            "/event-type/",
            json!({"name": "s.t", "description": "d", "schemas": {"1": {"type": "object", "properties": {}, "examples": [{}]}}}),
        )
        .await;
    assert_eq!(status, 201, "a valid schema: {out}");
    for days in [4, 91] {
        let (status, out) = server
            .post(
                &format!("/app/{app}/msg/"),
                json!({"eventType": "a.b", "payload": {}, "payloadRetentionPeriod": days}),
            )
            .await;
        assert_422_at(status, &out, "payloadRetentionPeriod");
    }
    let stats = format!("/app/{app}/endpoint/{ep}/stats/");
    for query in [
        "since=2024-01-02T00:00:00Z&until=2024-01-01T00:00:00Z",
        "since=2024-01-01T00:00:00Z&until=2024-03-01T00:00:00Z",
        "since=not-a-date",
    ] {
        let (status, out) = server.get(&format!("{stats}?{query}")).await;
        assert_422_at(status, &out, "since");
    }
    let (status, _) = server
        .get(&format!(
            "{stats}?since=2024-01-01T00:00:00Z&until=2024-01-20T00:00:00Z"
        ))
        .await;
    assert_eq!(status, 200);

    // Bodies: an array for an object, and data after the object.
    let (status, _, out) = raw(&server, "POST /api/v1/app/", r#"[{"name": "x"}]"#).await;
    assert_eq!(status, 422, "{out}");
    let (status, _, out) = raw(&server, "POST /api/v1/app/", r#"{"name": "x"} {"name": "y"}"#).await;
    assert_eq!(status, 422, "{out}");
    let (status, _, out) = raw(&server, "POST /api/v1/app/", r#"{"name": "x"}garbage"#).await;
    assert_eq!(status, 422, "{out}");
    let (_, apps) = server.get("/app/").await;
    assert_eq!(apps["data"].as_array().unwrap().len(), 1, "nothing was created: {apps}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_json() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let (status, headers, out) = raw(&server, "DELETE /api/v1/app/", "").await;
    assert_eq!(
        (status, out["code"].as_str()),
        (405, Some("method_not_allowed")),
        "{out}"
    );
    assert!(headers.contains("content-type: application/json"), "{headers}");
    let (status, _, out) = raw(&server, "GET /api/v1/app/%FF%FE/", "").await;
    assert_eq!(status, 400, "{out}");
    assert!(out["code"].is_string() && out["detail"].is_string(), "{out}");
    let (status, _, out) = raw(&server, "GET /api/v1/no-such-route/", "").await;
    assert_eq!((status, out["code"].as_str()), (404, Some("not_found")), "{out}");
    let (status, _, out) = raw(&server, "PATCH /api/v1/health/", "").await;
    assert_eq!(status, 405, "{out}");
    let long = format!("GET /api/v1/app/{}/", "a".repeat(20_000));
    let (status, _, out) = raw(&server, &long, "").await;
    assert_eq!((status, out["code"].as_str()), (414, Some("uri_too_long")), "{out}");
    let many: String = (0..120).map(|i| format!("x-h{i}: v\r\n")).collect();
    let (status, _, out) = raw(&server, &format!("GET /api/v1/app/ HTTP/1.1\r\n{many}x-end: 1"), "").await;
    assert_eq!(status, 431, "{out}");
    assert!(out["detail"].is_string(), "{out}");
    // At the limit of 100 fields (`raw` adds five, plus x-end) the request
    // is served; one more is refused in JSON, not by hyper's empty 431.
    for (fields, want) in [(94, 200), (95, 431)] {
        let some: String = (0..fields).map(|i| format!("x-h{i}: v\r\n")).collect();
        let (status, _, out) = raw(&server, &format!("GET /api/v1/app/ HTTP/1.1\r\n{some}x-end: 1"), "").await;
        assert_eq!(status, want, "{} fields: {out}", fields + 6);
    }

    // Far past every limit, where hyper would answer with an empty body:
    // the connection answers in JSON, and the client, still writing, reads it.
    let huge_target = format!("GET /api/v1/app/{}/", "a".repeat(400_000));
    let (status, headers, out) = raw(&server, &huge_target, "").await;
    assert_eq!((status, out["code"].as_str()), (414, Some("uri_too_long")), "{out}");
    assert!(headers.contains("content-type: application/json"), "{headers}");
    let huge_field = format!("GET /api/v1/app/ HTTP/1.1\r\nx-big: {}", "v".repeat(400_000));
    let (status, _, out) = raw(&server, &huge_field, "").await;
    assert_eq!(
        (status, out["code"].as_str()),
        (431, Some("request_header_fields_too_large")),
        "{out}"
    );
    let thousand: String = (0..1000).map(|i| format!("x-h{i}: v\r\n")).collect();
    let (status, _, out) = raw(&server, &format!("GET /api/v1/app/ HTTP/1.1\r\n{thousand}x-end: 1"), "").await;
    assert_eq!(
        (status, out["code"].as_str()),
        (431, Some("request_header_fields_too_large")),
        "{out}"
    );
    // A body of many lines sent with its head is a body, not header lines.
    let lines = format!("{{\"eventType\": \"a.b\",{} \"payload\": {{}}}}", "\n".repeat(3000));
    let (status, _, out) = raw(&server, "POST /api/v1/app/no_such_app/msg/", &lines).await;
    assert_eq!(status, 404, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_urls_and_rate_limits_read_back_as_svix_does() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let app = server.create_app("order").await;
    let (first, _) = server
        .create_endpoint(&app, json!({"url": "https://example.com/1"}))
        .await;
    let (second, _) = server
        .create_endpoint(&app, json!({"url": "https://example.com/2"}))
        .await;
    let (_, list) = server.get(&format!("/app/{app}/endpoint/")).await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second.as_str(), first.as_str()], "newest first");
    let (_, list) = server.get(&format!("/app/{app}/endpoint/?order=ascending")).await;
    assert_eq!(list["data"][0]["id"], first.as_str());

    let (status, ep) = server
        .post(
            &format!("/app/{app}/endpoint/"),
            json!({"url": "HTTPS://Example.COM:443", "rateLimit": 7}),
        )
        .await;
    assert_eq!(status, 201, "{ep}");
    assert_eq!(ep["url"], "https://example.com/");
    assert_eq!(
        (ep["rateLimit"].as_u64(), ep["throttleRate"].as_u64()),
        (Some(7), Some(7))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_mean_one_request() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let app = server.create_app("keys").await;
    let post = |query: &'static str, key: &'static str, body: Value| {
        let (http, url) = (server.http.clone(), server.api(&format!("/app/{app}/msg/{query}")));
        async move {
            let resp = http
                .request(Method::POST, url)
                .bearer_auth(TOKEN)
                .header("idempotency-key", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let body = json!({"eventType": "a.b", "payload": {"n": 1}});
    let (s1, m1) = post("", "k1", body.clone()).await;
    let (s2, m2) = post("?with_content=false", "k1", body.clone()).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(m1["id"], m2["id"], "the query string is not part of the key");
    let (s3, out) = post("", "k1", json!({"eventType": "a.b", "payload": {"n": 2}})).await;
    assert_422_at(s3, &out, "idempotency-key");
    // An empty key is no key: two requests, two messages.
    let (_, e1) = post("", "", body.clone()).await;
    let (_, e2) = post("", "", body.clone()).await;
    assert_ne!(e1["id"], e2["id"]);
    let (_, list) = server.get(&format!("/app/{app}/msg/")).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 3, "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_served_without_a_token() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let resp = server.http.get(server.api("/openapi.json")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let doc: Value = resp.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    for path in [
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret/rotate",
        "/api/v1/app/{app_id}/msg/{msg_id}/endpoint/{endpoint_id}/resend",
        "/api/v1/auth/app-portal-access/{app_id}",
    ] {
        assert!(doc["paths"][path]["post"].is_object(), "{path} missing");
    }
    assert_eq!(
        doc["components"]["schemas"]["EndpointOut"]["properties"]["timeoutSecs"]["x-herald-extension"],
        true
    );
}
