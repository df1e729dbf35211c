//! App-scoped tokens on the wire: a token from `app-portal-access` reaches
//! its own application and nothing else. Every route Herald serves is walked
//! with another application's token and must answer 401, 403 or 404 with a
//! JSON error, never the other application's data; admin routes are 403.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Receiver, Server, stored_contains, temp_dir};

/// Sends `method path` (below `/api/v1`) with `token`; answers status, body text.
pub(crate) async fn call(
    server: &Server,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, String) {
    let mut req = server.http.request(method, server.api(path)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request");
    (resp.status().as_u16(), resp.text().await.expect("body"))
}

pub(crate) struct Seeded {
    pub app: String,
    pub uid: String,
    pub ep: String,
    pub msg: String,
    pub attempt: String,
    pub task: String,
}

/// An application with an endpoint, a delivered message, its attempt and a
/// background task: something behind every route.
pub(crate) async fn seed(server: &Server, receiver: &Receiver, uid: &str) -> Seeded {
    let (status, app) = server.post("/app/", json!({"name": uid, "uid": uid})).await;
    assert_eq!(status, 201, "{app}");
    let app = app["id"].as_str().unwrap().to_owned();
    let (ep, _) = server
        .create_endpoint(&app, json!({"url": format!("{}/{uid}", receiver.url)}))
        .await;
    let msg = server.send(&app, "a.b", json!({"secret": uid})).await;
    let attempts = server
        .wait_attempts(&app, &msg, Duration::from_secs(10), |a| !a.is_empty())
        .await;
    let attempt = attempts[0]["id"].as_str().unwrap().to_owned();
    let (_, message) = server.get(&format!("/app/{app}/msg/{msg}/")).await;
    let (status, task) = server
        .post(
            &format!("/app/{app}/endpoint/{ep}/recover/"),
            json!({"since": message["timestamp"]}),
        )
        .await;
    assert_eq!(status, 202, "{task}");
    Seeded {
        app,
        uid: uid.to_owned(),
        ep,
        msg,
        attempt,
        task: task["id"].as_str().unwrap().to_owned(),
    }
}

/// Every route Herald serves under `/api/v1`, aimed at `t`'s data.
fn routes(t: &Seeded) -> Vec<(Method, String, Option<Value>)> {
    let (a, e, m, at) = (&t.app, &t.ep, &t.msg, &t.attempt);
    let since = json!({"since": "2020-01-01T00:00:00Z"});
    let mut out = Vec::new();
    for app in [a, &t.uid] {
        out.extend([
            (Method::GET, format!("/app/{app}/"), None),
            (Method::PUT, format!("/app/{app}/"), Some(json!({"name": "x"}))),
            (Method::PATCH, format!("/app/{app}/"), Some(json!({"name": "x"}))),
            (Method::DELETE, format!("/app/{app}/"), None),
            (Method::GET, format!("/app/{app}/endpoint/"), None),
        ]);
    }
    out.extend([
        (
            Method::POST,
            format!("/app/{a}/endpoint/"),
            Some(json!({"url": "https://example.com/"})),
        ),
        (Method::GET, format!("/app/{a}/endpoint/{e}/"), None),
        (
            Method::PUT,
            format!("/app/{a}/endpoint/{e}/"),
            Some(json!({"url": "https://example.com/"})),
        ),
        (
            Method::PATCH,
            format!("/app/{a}/endpoint/{e}/"),
            Some(json!({"description": "x"})),
        ),
        (Method::DELETE, format!("/app/{a}/endpoint/{e}/"), None),
        (Method::GET, format!("/app/{a}/endpoint/{e}/secret/"), None),
        (
            Method::POST,
            format!("/app/{a}/endpoint/{e}/secret/rotate/"),
            Some(json!({})),
        ),
        (Method::GET, format!("/app/{a}/endpoint/{e}/headers/"), None),
        (
            Method::PUT,
            format!("/app/{a}/endpoint/{e}/headers/"),
            Some(json!({"headers": {}})),
        ),
        (
            Method::PATCH,
            format!("/app/{a}/endpoint/{e}/headers/"),
            Some(json!({"headers": {}})),
        ),
        (Method::GET, format!("/app/{a}/endpoint/{e}/stats/"), None),
        (
            Method::POST,
            format!("/app/{a}/endpoint/{e}/recover/"),
            Some(since.clone()),
        ),
        (
            Method::POST,
            format!("/app/{a}/endpoint/{e}/replay-missing/"),
            Some(since),
        ),
        (
            Method::POST,
            format!("/app/{a}/endpoint/{e}/send-example/"),
            Some(json!({"eventType": "webhook.test"})),
        ),
        (Method::GET, format!("/app/{a}/endpoint/{e}/msg/"), None),
        (Method::GET, format!("/app/{a}/msg/"), None),
        (
            Method::POST,
            format!("/app/{a}/msg/"),
            Some(json!({"eventType": "a.b", "payload": {}})),
        ),
        (Method::GET, format!("/app/{a}/msg/{m}/"), None),
        (Method::DELETE, format!("/app/{a}/msg/{m}/content/"), None),
        (Method::GET, format!("/app/{a}/msg/{m}/endpoint/"), None),
        (Method::GET, format!("/app/{a}/msg/{m}/attempt/{at}/"), None),
        (Method::DELETE, format!("/app/{a}/msg/{m}/attempt/{at}/content/"), None),
        (Method::POST, format!("/app/{a}/msg/{m}/endpoint/{e}/resend/"), None),
        (Method::GET, format!("/app/{a}/attempt/endpoint/{e}/"), None),
        (Method::GET, format!("/app/{a}/attempt/msg/{m}/"), None),
        (Method::POST, format!("/auth/app-portal-access/{a}/"), Some(json!({}))),
        (Method::POST, format!("/auth/app/{a}/expire-all/"), Some(json!({}))),
        (Method::GET, format!("/background-task/{}/", t.task), None),
        // Admin routes: not about any one application.
        (Method::GET, "/app/".to_owned(), None),
        (Method::POST, "/app/".to_owned(), Some(json!({"name": "x"}))),
        (Method::GET, "/background-task/".to_owned(), None),
        (
            Method::POST,
            "/event-type/".to_owned(),
            Some(json!({"name": "x.y", "description": "x"})),
        ),
        (
            Method::PUT,
            "/event-type/a.b/".to_owned(),
            Some(json!({"description": "x"})),
        ),
        (
            Method::PATCH,
            "/event-type/a.b/".to_owned(),
            Some(json!({"description": "x"})),
        ),
        (Method::DELETE, "/event-type/a.b/".to_owned(), None),
        (Method::GET, "/operational-webhook/endpoint/".to_owned(), None),
    ]);
    out
}

async fn portal_token(server: &Server, app: &str) -> String {
    let (status, access) = server.post(&format!("/auth/app-portal-access/{app}/"), json!({})).await;
    assert_eq!(status, 200, "{access}");
    assert!(access["url"].as_str().unwrap().contains("/portal/"), "{access}");
    access["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_apps_token_gets_401_403_or_404_on_every_route_never_data() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let receiver = Receiver::start().await;
    server
        .post("/event-type/", json!({"name": "a.b", "description": "ab"}))
        .await;
    let victim = seed(&server, &receiver, "victim").await;
    let other = seed(&server, &receiver, "intruder").await;
    let token = portal_token(&server, &other.app).await;

    for (method, path, body) in routes(&victim) {
        let (status, text) = call(&server, &token, method.clone(), &path, body).await;
        assert!(
            matches!(status, 401 | 403 | 404),
            "{method} {path} answered {status} to another app's token: {text}"
        );
        let error: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text}"));
        assert!(error["code"].is_string(), "{method} {path}: {text}");
        for secret in [
            victim.app.as_str(),
            &victim.ep,
            &victim.msg,
            &victim.attempt,
            "\"victim\"",
        ] {
            assert!(!text.contains(secret), "{method} {path} leaked {secret}: {text}");
        }
    }

    // And every operation of the server's own OpenAPI document, so a route
    // added later is walked too without anyone listing it here.
    let doc: Value = server
        .http
        .get(server.api("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut walked = 0;
    for (template, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let open = (method == "get" && template.starts_with("/api/v1/event-type"))
                || template.starts_with("/api/v1/health")
                || template == "/api/v1/auth/logout"
                || template == "/api/v1/auth/me"
                || template.starts_with("/api/v1/relay");
            if open {
                continue; // every token may (relay channels are not an application's; `me` is the caller's own); logout would end this one
            }
            let path = template
                .trim_start_matches("/api/v1")
                .replace("{app_id}", &victim.app)
                .replace("{endpoint_id}", &victim.ep)
                .replace("{msg_id}", &victim.msg)
                .replace("{attempt_id}", &victim.attempt)
                .replace("{task_id}", &victim.task)
                .replace("{event_type_name}", "a.b");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let body = (method != Method::GET && method != Method::DELETE).then(|| json!({}));
            let (status, text) = call(&server, &token, method.clone(), &path, body).await;
            assert!(
                matches!(status, 401 | 403 | 404),
                "{method} {template} answered {status} to another app's token: {text}"
            );
            for secret in [victim.app.as_str(), &victim.ep, &victim.msg, &victim.attempt] {
                assert!(!text.contains(secret), "{method} {template} leaked {secret}: {text}");
            }
            walked += 1;
        }
    }
    assert!(walked >= 40, "only {walked} operations walked");

    // Nothing of the victim's changed: same endpoint, same message, same secret.
    let (status, ep) = server
        .get(&format!("/app/{}/endpoint/{}/", victim.app, victim.ep))
        .await;
    assert_eq!((status, ep["description"].as_str()), (200, Some("")), "{ep}");
    let (status, msg) = server.get(&format!("/app/{}/msg/{}/", victim.app, victim.msg)).await;
    assert_eq!((status, &msg["payload"]), (200, &json!({"secret": "victim"})));
    let (_, list) = server.get(&format!("/app/{}/msg/", victim.app)).await;
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        1,
        "no message was added: {list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_token_works_on_its_own_app_until_logout_and_is_stored_hashed() {
    let dir = temp_dir();
    let mut server = Server::start(dir.path());
    let receiver = Receiver::start().await;
    let own = seed(&server, &receiver, "own").await;
    let token = portal_token(&server, &own.app).await;

    // Its own application, by id and by uid, and its data inside.
    for path in [
        format!("/app/{}/", own.app),
        format!("/app/{}/", own.uid),
        format!("/app/{}/endpoint/{}/", own.uid, own.ep),
        format!("/app/{}/msg/{}/", own.app, own.msg),
        format!("/app/{}/attempt/msg/{}/", own.app, own.msg),
        format!("/background-task/{}/", own.task),
        "/event-type/".to_owned(),
    ] {
        let (status, text) = call(&server, &token, Method::GET, &path, None).await;
        assert_eq!(status, 200, "GET {path}: {text}");
    }
    let (status, text) = call(
        &server,
        &token,
        Method::POST,
        &format!("/app/{}/msg/", own.app),
        Some(json!({"eventType": "a.b", "payload": {"by": "token"}})),
    )
    .await;
    assert_eq!(status, 202, "{text}");
    // A relay channel, as SPEC §1 allows an app-scoped token.
    let (status, text) = call(&server, &token, Method::POST, "/relay/", Some(json!({}))).await;
    assert_eq!(status, 201, "{text}");
    // But not the application itself, nor the admin's routes.
    for (method, path) in [
        (Method::DELETE, format!("/app/{}/", own.app)),
        (Method::GET, "/app/".to_owned()),
    ] {
        let (status, text) = call(&server, &token, method, &path, None).await;
        assert_eq!(status, 403, "{path}: {text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["code"], "forbidden");
    }

    // The database holds no token, only its digest.
    server.terminate(Duration::from_secs(10));
    assert!(
        !stored_contains(dir.path(), token.as_bytes()).await,
        "the token is stored in clear"
    );
    let server = Server::start(dir.path());

    let (status, _) = call(&server, &token, Method::GET, &format!("/app/{}/", own.app), None).await;
    assert_eq!(status, 200, "the token survives a restart");
    let (status, text) = call(&server, &token, Method::POST, "/auth/logout/", None).await;
    assert_eq!(status, 204, "{text}");
    let (status, text) = call(&server, &token, Method::GET, &format!("/app/{}/", own.app), None).await;
    assert_eq!(status, 401, "a logged-out token is refused: {text}");
    // The admin token is configuration, not a session.
    let (status, text) = server.post("/auth/logout/", json!({})).await;
    assert_eq!(status, 403, "{text}");
    let (status, _) = server.get("/app/").await;
    assert_eq!(status, 200, "the admin token still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_tokens_expire() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let app = server.create_app("short").await;
    let (status, access) = server
        .post(&format!("/auth/app-portal-access/{app}/"), json!({"expiry": 1}))
        .await;
    assert_eq!(status, 200, "{access}");
    let token = access["token"].as_str().unwrap();
    let (status, _) = call(&server, token, Method::GET, &format!("/app/{app}/"), None).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, text) = call(&server, token, Method::GET, &format!("/app/{app}/"), None).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("expired"), "{text}");
    let (status, text) = server
        .post(&format!("/auth/app-portal-access/{app}/"), json!({"expiry": 0}))
        .await;
    assert_eq!(status, 422, "{text}");
}
