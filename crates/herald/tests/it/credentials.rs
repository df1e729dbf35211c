//! Credentials and body encodings on the wire (SPEC §4, §6): HTTP Basic
//! (Chaster), a verify token inside the body (Chative), GitHub's
//! form-encoded body, each signed over the bytes that arrived, and never
//! shown back by the API.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::{Received, Receiver, Server, temp_dir};

const WAIT: Duration = Duration::from_secs(15);

fn basic_pair(req: &Received) -> String {
    let value = req.header("authorization");
    let encoded = value
        .strip_prefix("Basic ")
        .unwrap_or_else(|| panic!("not Basic: {value:?}"));
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
    String::from_utf8(bytes).unwrap()
}

fn verify_standard(secret: &str, req: &Received) {
    herald_verify::Webhook::new(secret)
        .unwrap()
        .verify(&req.headers, &req.body)
        .expect("the Standard Webhooks signature verifies over the bytes received");
}

#[tokio::test]
async fn basic_auth_arrives_as_the_authorization_header_until_removed() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let receiver = Receiver::start().await;
    let app = server.create_app("chaster").await;
    // A password may hold ':' (only the username may not) and any UTF-8.
    let password = "s3cr3t:with colon é";
    let (ep, secret) = server
        .create_endpoint(
            &app,
            json!({"url": format!("{}/basic", receiver.url),
                   "basicAuth": {"username": "chaster-ext", "password": password}}),
        )
        .await;
    server.send(&app, "lock.created", json!({"n": 1})).await;
    let got = receiver.wait_until(WAIT, |r| !r.is_empty()).await;
    assert_eq!(basic_pair(&got[0]), format!("chaster-ext:{password}"));
    verify_standard(&secret, &got[0]);

    // A PATCH of another field keeps them (they round-trip through the store).
    let path = format!("/app/{app}/endpoint/{ep}/");
    let (status, out) = server
        .request(reqwest::Method::PATCH, &path, Some(json!({"description": "x"})))
        .await;
    assert_eq!(status, 200, "{out}");
    server.send(&app, "lock.created", json!({"n": 2})).await;
    let got = receiver.wait_until(WAIT, |r| r.len() >= 2).await;
    assert_eq!(basic_pair(&got[1]), format!("chaster-ext:{password}"));

    // `null` removes them.
    let (status, out) = server
        .request(reqwest::Method::PATCH, &path, Some(json!({"basicAuth": null})))
        .await;
    assert_eq!(status, 200, "{out}");
    assert!(out.get("basicAuth").is_none(), "{out}");
    server.send(&app, "lock.created", json!({"n": 3})).await;
    let got = receiver.wait_until(WAIT, |r| r.len() >= 3).await;
    assert!(
        got[2].headers.get("authorization").is_none(),
        "no credentials after null"
    );
}

/// The chat-CRM envelope of SPEC §6 built by a template, the token set at
/// `/infoWebhook/verifyToken` after it, and signed with the token in.
#[tokio::test]
async fn the_verify_token_goes_into_the_body_before_signing() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let receiver = Receiver::start().await;
    let app = server.create_app("chative").await;
    let template = json!({"_id": "{{msg.id}}", "event": "{{msg.eventType}}", "items": ["{{msg.payload}}"]});
    let token = "vt-5f2a9c0d17e84b";
    let (_, secret) = server
        .create_endpoint(
            &app,
            json!({"url": format!("{}/crm", receiver.url), "payloadTemplate": template,
                   "verifyToken": {"pointer": "/infoWebhook/verifyToken", "token": token}}),
        )
        .await;
    // And the raw payload gets it too, beside what was posted.
    let (_, raw_secret) = server
        .create_endpoint(
            &app,
            json!({"url": format!("{}/raw", receiver.url),
                   "verifyToken": {"pointer": "/infoWebhook/verifyToken", "token": token}}),
        )
        .await;
    let msg = server
        .send(
            &app,
            "contact.created",
            json!({"name": "Ada", "infoWebhook": {"kept": true}}),
        )
        .await;

    let got = receiver.wait_until(WAIT, |r| r.len() >= 2).await;
    let crm = got.iter().find(|r| r.path == "/crm").expect("the templated delivery");
    let body: Value = serde_json::from_slice(&crm.body).unwrap();
    assert_eq!(body["infoWebhook"]["verifyToken"], token, "{body}");
    assert_eq!(body["_id"], msg.as_str());
    assert_eq!(body["items"][0]["name"], "Ada");
    verify_standard(&secret, crm);

    let raw = got.iter().find(|r| r.path == "/raw").expect("the raw delivery");
    let body: Value = serde_json::from_slice(&raw.body).unwrap();
    assert_eq!(
        body,
        json!({"name": "Ada", "infoWebhook": {"kept": true, "verifyToken": token}})
    );
    verify_standard(&raw_secret, raw);
}

/// A body with something other than an object where the pointer needs
/// one is not sent without the token: the attempt fails, kind `body`.
#[tokio::test]
async fn a_body_that_cannot_take_the_token_is_not_sent() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let receiver = Receiver::start().await;
    let app = server.create_app("chative-bad").await;
    server
        .create_endpoint(
            &app,
            json!({"url": format!("{}/bad", receiver.url),
                   "verifyToken": {"pointer": "/items/token", "token": "t"}}),
        )
        .await;
    let msg = server.send(&app, "contact.created", json!({"items": [1, 2]})).await;
    let attempts = server.wait_attempts(&app, &msg, WAIT, |a| !a.is_empty()).await;
    let first = attempts.first().expect("an attempt is recorded");
    assert_eq!(first["errorKind"], "body", "{first}");
    assert_eq!(first["responseStatusCode"], 0, "{first}");
    let response = first["response"].as_str().unwrap();
    assert!(
        response.contains("'/items'") && response.contains("an array") && response.contains("nothing was sent"),
        "{response}"
    );
    assert!(receiver.requests().is_empty(), "nothing reached the receiver");
}

#[tokio::test]
async fn form_encoding_sends_payload_and_signs_the_bytes_sent() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let receiver = Receiver::start().await;
    let app = server.create_app("github-style").await;
    let (_, secret) = server
        .create_endpoint(
            &app,
            json!({"url": format!("{}/form", receiver.url), "bodyEncoding": "form", "bodySignature": {},
                   "verifyToken": {"pointer": "/hook/token", "token": "a b&c=d"}}),
        )
        .await;
    let payload = json!({"text": "héllo & goodbye = 100% +1", "n": [1, 2]});
    server.send(&app, "push", payload.clone()).await;

    let got = receiver.wait_until(WAIT, |r| !r.is_empty()).await;
    let req = &got[0];
    assert_eq!(req.header("content-type"), "application/x-www-form-urlencoded");
    assert!(req.body.starts_with(b"payload="), "{:?}", req.body);
    let pairs: Vec<(String, String)> = form_urlencoded::parse(&req.body).into_owned().collect();
    assert_eq!(pairs.len(), 1, "{pairs:?}");
    assert_eq!(pairs[0].0, "payload");
    let mut want = payload;
    want["hook"] = json!({"token": "a b&c=d"});
    assert_eq!(serde_json::from_str::<Value>(&pairs[0].1).unwrap(), want);

    herald_verify::BodySignature::from_whsec(&secret)
        .unwrap()
        .verify(&req.headers, &req.body)
        .expect("the sha256= body signature verifies over the bytes received");
    verify_standard(&secret, req);
}

/// Neither the password nor the token comes back from any endpoint route,
/// and the headers route hides sensitive values as Svix does.
#[tokio::test]
async fn credentials_are_never_returned() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let app = server.create_app("no-leaks").await;
    let (password, token) = ("pw-never-shown-91d3", "vt-never-shown-4c7a");
    let body = json!({"url": "http://127.0.0.1:9/hook", "headers": {"X-Auth-Token": "hdr-never-shown", "X-Plain": "ok"},
                      "basicAuth": {"username": "u", "password": password},
                      "verifyToken": {"pointer": "/v", "token": token}});
    let (status, created) = server.post(&format!("/app/{app}/endpoint/"), body.clone()).await;
    assert_eq!(status, 201, "{created}");
    let ep = created["id"].as_str().unwrap().to_owned();
    let path = format!("/app/{app}/endpoint/{ep}/");
    let (_, got) = server.get(&path).await;
    let (_, listed) = server.get(&format!("/app/{app}/endpoint/")).await;
    let (_, put) = server.request(reqwest::Method::PUT, &path, Some(body)).await;
    let (_, patched) = server
        .request(reqwest::Method::PATCH, &path, Some(json!({"description": "d"})))
        .await;
    let (_, headers) = server.get(&format!("/app/{app}/endpoint/{ep}/headers/")).await;
    for (what, v) in [
        ("create", &created),
        ("get", &got),
        ("list", &listed),
        ("put", &put),
        ("patch", &patched),
        ("headers", &headers),
    ] {
        let text = v.to_string();
        for secret in [password, token, "hdr-never-shown"] {
            assert!(!text.contains(secret), "{what} shows {secret}: {text}");
        }
    }
    assert_eq!(got["basicAuth"], json!({"username": "u"}));
    assert_eq!(got["verifyToken"], json!({"pointer": "/v"}));
    assert_eq!(got["bodyEncoding"], "json");
    assert_eq!(
        headers,
        json!({"headers": {"x-plain": "ok"}, "sensitive": ["x-auth-token"]})
    );
}

#[tokio::test]
async fn bad_credentials_are_422s_naming_the_field() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let app = server.create_app("bad-creds").await;
    let url = "http://127.0.0.1:9/hook";
    let cases = [
        (
            json!({"basicAuth": {"username": "a:b", "password": "p"}}),
            json!(["body", "basicAuth", "username"]),
        ),
        (
            json!({"basicAuth": {"username": "", "password": "p"}}),
            json!(["body", "basicAuth", "username"]),
        ),
        (
            json!({"basicAuth": {"username": "u".repeat(257), "password": "p"}}),
            json!(["body", "basicAuth", "username"]),
        ),
        (
            json!({"basicAuth": {"username": "u", "password": "p\r\nX-Evil: 1"}}),
            json!(["body", "basicAuth", "password"]),
        ),
        (
            json!({"basicAuth": {"username": "u", "password": "p".repeat(1025)}}),
            json!(["body", "basicAuth", "password"]),
        ),
        (json!({"basicAuth": {"username": "u"}}), json!(["body", "basicAuth"])),
        (
            json!({"basicAuth": {"username": "u", "password": "p", "realm": "x"}}),
            json!(["body", "basicAuth"]),
        ),
        (
            json!({"basicAuth": {"username": "u", "password": "p"}, "headers": {"Authorization": "Bearer x"}}),
            json!(["body", "basicAuth"]),
        ),
        (
            json!({"verifyToken": {"pointer": "infoWebhook/verifyToken", "token": "t"}}),
            json!(["body", "verifyToken", "pointer"]),
        ),
        (
            json!({"verifyToken": {"pointer": "", "token": "t"}}),
            json!(["body", "verifyToken", "pointer"]),
        ),
        (
            json!({"verifyToken": {"pointer": "/a~2", "token": "t"}}),
            json!(["body", "verifyToken", "pointer"]),
        ),
        (
            json!({"verifyToken": {"pointer": "/a", "token": ""}}),
            json!(["body", "verifyToken", "token"]),
        ),
        (
            json!({"verifyToken": {"pointer": "/a", "token": "t", "extra": 1}}),
            json!(["body", "verifyToken"]),
        ),
        (json!({"bodyEncoding": "xml"}), json!(["body", "bodyEncoding"])),
    ];
    for (extra, loc) in cases {
        let mut body = extra.clone();
        body["url"] = json!(url);
        let (status, err) = server.post(&format!("/app/{app}/endpoint/"), body).await;
        assert_eq!(status, 422, "{extra}: {err}");
        let got = &err["detail"][0]["loc"];
        let wanted = loc.as_array().unwrap();
        assert_eq!(&got.as_array().unwrap()[..wanted.len()], &wanted[..], "{extra}: {err}");
    }

    // Authorization beside basicAuth is refused however it comes.
    let (ep, _) = server
        .create_endpoint(&app, json!({"url": url, "headers": {"authorization": "Bearer x"}}))
        .await;
    let path = format!("/app/{app}/endpoint/{ep}/");
    let (status, err) = server
        .request(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"basicAuth": {"username": "u", "password": "p"}})),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["detail"][0]["loc"], json!(["body", "basicAuth"]), "{err}");
    let (ep, _) = server
        .create_endpoint(
            &app,
            json!({"url": url, "basicAuth": {"username": "u", "password": "p"}}),
        )
        .await;
    for method in [reqwest::Method::PUT, reqwest::Method::PATCH] {
        let (status, err) = server
            .request(
                method.clone(),
                &format!("/app/{app}/endpoint/{ep}/headers/"),
                Some(json!({"headers": {"Authorization": "Bearer x"}})),
            )
            .await;
        assert_eq!(status, 422, "{method}: {err}");
        assert_eq!(
            err["detail"][0]["loc"],
            json!(["body", "headers", "authorization"]),
            "{err}"
        );
    }
}
