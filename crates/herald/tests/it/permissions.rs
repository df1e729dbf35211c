//! `readOnly` and `capabilities` from `AppPortalAccessIn`, enforced by the
//! server: every route that changes something in an application is called
//! with tokens of each kind, in their own application, and answers 403
//! JSON exactly when the token's permissions leave it out; a refused call
//! changes nothing. The list below is the rule written as a table, and it
//! is checked against the server's OpenAPI document, so a mutating route
//! added later without a row here fails this test.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::access::{Seeded, call, seed};
use crate::harness::{Receiver, Server, temp_dir};

/// What a route needs, as the table of the test (not the server's code).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Need {
    ViewSecret,
    RotateSecret,
    ManageEndpoint,
    /// A PATCH of the payload template alone.
    Template,
    CreateAttempts,
    /// What no capability names: only a token made without restrictions.
    Unrestricted,
}

/// Every route in an application that is not a plain read, with the
/// OpenAPI template it belongs to and what it needs.
fn routes(t: &Seeded) -> Vec<(Method, &'static str, String, Option<Value>, Need)> {
    let (a, e, m, at) = (&t.app, &t.ep, &t.msg, &t.attempt);
    let recent = json!({"since": (chrono_now_minus_minutes(30))});
    use Need::*;
    vec![
        (
            Method::GET,
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret",
            format!("/app/{a}/endpoint/{e}/secret/"),
            None,
            ViewSecret,
        ),
        (
            Method::POST,
            "/api/v1/app/{app_id}/endpoint",
            format!("/app/{a}/endpoint/"),
            Some(json!({"url": "https://example.com/new"})),
            ManageEndpoint,
        ),
        (
            Method::PUT,
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}",
            format!("/app/{a}/endpoint/{e}/"),
            Some(json!({"url": "https://example.com/put"})),
            ManageEndpoint,
        ),
        (
            Method::PATCH,
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}",
            format!("/app/{a}/endpoint/{e}/"),
            Some(json!({"description": "changed"})),
            ManageEndpoint,
        ),
        (
            Method::PATCH,
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}",
            format!("/app/{a}/endpoint/{e}/"),
            Some(json!({"payloadTemplate": {"id": "{{msg.id}}"}})),
            Template,
        ),
        (
            Method::PATCH,
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}",
            format!("/app/{a}/endpoint/{e}/"),
            Some(json!({"payloadTemplate": null, "transformation": "{id: .msg.id}"})),
            Template,
        ),
        (
            Method::PUT,
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers",
            format!("/app/{a}/endpoint/{e}/headers/"),
            Some(json!({"headers": {"x-a": "1"}})),
            ManageEndpoint,
        ),
        (
            Method::PATCH,
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers",
            format!("/app/{a}/endpoint/{e}/headers/"),
            Some(json!({"headers": {"x-b": "2"}})),
            ManageEndpoint,
        ),
        (
            Method::POST,
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret/rotate",
            format!("/app/{a}/endpoint/{e}/secret/rotate/"),
            Some(json!({})),
            RotateSecret,
        ),
        (
            Method::POST,
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}/recover",
            format!("/app/{a}/endpoint/{e}/recover/"),
            Some(recent.clone()),
            CreateAttempts,
        ),
        (
            Method::POST,
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}/replay-missing",
            format!("/app/{a}/endpoint/{e}/replay-missing/"),
            Some(recent),
            CreateAttempts,
        ),
        (
            Method::POST,
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}/send-example",
            format!("/app/{a}/endpoint/{e}/send-example/"),
            Some(json!({"eventType": "webhook.test"})),
            CreateAttempts,
        ),
        (
            Method::POST,
            "/api/v1/app/{app_id}/msg/{msg_id}/endpoint/{endpoint_id}/resend",
            format!("/app/{a}/msg/{m}/endpoint/{e}/resend/"),
            None,
            CreateAttempts,
        ),
        (
            Method::POST,
            "/api/v1/app/{app_id}/msg",
            format!("/app/{a}/msg/"),
            Some(json!({"eventType": "a.b", "payload": {"by": "token"}})),
            Unrestricted,
        ),
        (
            Method::DELETE,
            "/api/v1/app/{app_id}/msg/{msg_id}/content",
            format!("/app/{a}/msg/{m}/content/"),
            None,
            Unrestricted,
        ),
        (
            Method::DELETE,
            "/api/v1/app/{app_id}/msg/{msg_id}/attempt/{attempt_id}/content",
            format!("/app/{a}/msg/{m}/attempt/{at}/content/"),
            None,
            Unrestricted,
        ),
        // Last: it takes the endpoint the rows above use.
        (
            Method::DELETE,
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}",
            format!("/app/{a}/endpoint/{e}/"),
            None,
            ManageEndpoint,
        ),
    ]
}

fn chrono_now_minus_minutes(m: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(m)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Whether a token made with `read_only` and `caps` may do `need`: the
/// rule of Svix's capability descriptions, `ViewBase` implied.
fn may(read_only: bool, caps: Option<&[&str]>, need: Need) -> bool {
    let has = |c: &str| caps.is_none_or(|list| list.contains(&c));
    let any = |cs: &[&str]| cs.iter().any(|c| has(c));
    match need {
        Need::ViewSecret => any(&["ViewEndpointSecret", "ManageEndpointSecret", "ManageEndpoint"]),
        _ if read_only => false,
        Need::RotateSecret => any(&["ManageEndpointSecret", "ManageEndpoint"]),
        Need::ManageEndpoint => has("ManageEndpoint"),
        Need::Template => any(&["ManageTransformations", "ManageEndpoint"]),
        Need::CreateAttempts => has("CreateAttempts"),
        Need::Unrestricted => caps.is_none(),
    }
}

async fn token(server: &Server, app: &str, body: Value) -> String {
    let (status, access) = server.post(&format!("/auth/app-portal-access/{app}/"), body).await;
    assert_eq!(status, 200, "{access}");
    access["token"].as_str().unwrap().to_owned()
}

/// The kinds of token walked: (readOnly, capabilities).
const KINDS: &[(bool, Option<&[&str]>)] = &[
    (true, None),
    (false, Some(&["ViewBase"])),
    (false, Some(&["ViewBase", "ViewEndpointSecret"])),
    (false, Some(&["ViewBase", "ManageEndpointSecret"])),
    (false, Some(&["ViewBase", "ManageTransformations"])),
    (false, Some(&["ViewBase", "CreateAttempts"])),
    (false, Some(&["ViewBase", "ManageEndpoint"])),
    (
        true,
        Some(&["ViewBase", "ManageEndpoint", "CreateAttempts", "ManageEndpointSecret"]),
    ),
    (false, None),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutating_route_honours_read_only_and_capabilities() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let receiver = Receiver::start().await;
    server
        .post("/event-type/", json!({"name": "a.b", "description": "ab"}))
        .await;

    // The table covers every non-read route of an application in the
    // server's own document.
    let doc: Value = server
        .http
        .get(server.api("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut served = BTreeSet::new();
    for (template, ops) in doc["paths"].as_object().unwrap() {
        if !template.starts_with("/api/v1/app/{app_id}/") {
            continue;
        }
        for method in ops.as_object().unwrap().keys() {
            if method != "get" || template.ends_with("/secret") {
                served.insert((method.to_uppercase(), template.clone()));
            }
        }
    }
    let probe = seed(&server, &receiver, "probe").await;
    let listed: BTreeSet<(String, String)> = routes(&probe)
        .into_iter()
        .map(|(m, t, ..)| (m.to_string(), t.to_owned()))
        .collect();
    assert_eq!(listed, served, "every changing route has a row in the table");

    for (i, (read_only, caps)) in KINDS.iter().enumerate() {
        let t = seed(&server, &receiver, &format!("kind{i}")).await;
        let mut body = json!({"readOnly": read_only});
        if let Some(caps) = caps {
            body["capabilities"] = json!(caps);
        }
        let tok = token(&server, &t.app, body).await;
        let (status, me) = call(&server, &tok, Method::GET, "/auth/me/", None).await;
        assert_eq!(status, 200, "{me}");
        let me: Value = serde_json::from_str(&me).unwrap();
        assert_eq!(me["readOnly"], json!(read_only), "{me}");
        assert_eq!(me["appId"], json!(t.app));
        assert!(
            me["capabilities"].as_array().unwrap().contains(&json!("ViewBase")),
            "{me}"
        );
        assert_eq!(me["unrestricted"], json!(!read_only && caps.is_none()));

        for (method, template, path, body, need) in routes(&t) {
            let allowed = may(*read_only, *caps, need);
            let (status, text) = call(&server, &tok, method.clone(), &path, body.clone()).await;
            let what = format!("{method} {template} ({need:?}) with readOnly={read_only} capabilities={caps:?}");
            if allowed {
                assert!(!matches!(status, 401 | 403), "{what} was refused: {status} {text}");
                assert!(status < 500, "{what}: {status} {text}");
            } else {
                assert_eq!(status, 403, "{what} was let through: {text}");
                let error: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: not JSON: {text}"));
                assert_eq!(error["code"], "forbidden", "{what}: {text}");
            }
        }

        // Reading stays open to every kind, and so does logging out.
        let (status, text) = call(&server, &tok, Method::GET, &format!("/app/{}/msg/", t.app), None).await;
        assert_eq!(status, 200, "{text}");
        let (status, text) = call(&server, &tok, Method::POST, "/auth/logout/", None).await;
        assert_eq!(status, 204, "a {read_only}/{caps:?} token logs out: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_change_changes_nothing_and_unknown_capabilities_are_422() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let receiver = Receiver::start().await;
    let t = seed(&server, &receiver, "victim").await;
    let (_, secret_before) = server.get(&format!("/app/{}/endpoint/{}/secret/", t.app, t.ep)).await;
    let tok = token(&server, &t.app, json!({"readOnly": true})).await;
    for (method, template, path, body, _) in routes(&t) {
        if method == Method::GET {
            continue;
        }
        let (status, text) = call(&server, &tok, method.clone(), &path, body).await;
        assert_eq!(status, 403, "{method} {template}: {text}");
    }
    let (status, ep) = server.get(&format!("/app/{}/endpoint/{}/", t.app, t.ep)).await;
    assert_eq!(status, 200, "the endpoint is still there: {ep}");
    assert_eq!(ep["description"], "", "{ep}");
    assert!(ep.get("payloadTemplate").is_none(), "{ep}");
    assert!(ep.get("transformation").is_none(), "{ep}");
    let (_, secret_after) = server.get(&format!("/app/{}/endpoint/{}/secret/", t.app, t.ep)).await;
    assert_eq!(secret_before, secret_after, "the secret was not rotated");
    let (_, headers) = server.get(&format!("/app/{}/endpoint/{}/headers/", t.app, t.ep)).await;
    assert_eq!(headers["headers"], json!({}));
    let (_, msgs) = server.get(&format!("/app/{}/msg/", t.app)).await;
    assert_eq!(msgs["data"].as_array().unwrap().len(), 1, "no message was sent: {msgs}");
    let (_, attempts) = server.get(&format!("/app/{}/attempt/msg/{}/", t.app, t.msg)).await;
    assert_eq!(
        attempts["data"].as_array().unwrap().len(),
        1,
        "nothing was resent: {attempts}"
    );

    // A template-only token may not slip other fields into its PATCH.
    let tok = token(
        &server,
        &t.app,
        json!({"capabilities": ["ViewBase", "ManageTransformations"]}),
    )
    .await;
    let (status, text) = call(
        &server,
        &tok,
        Method::PATCH,
        &format!("/app/{}/endpoint/{}/", t.app, t.ep),
        Some(json!({"payloadTemplate": {"a": "{{msg.id}}"}, "url": "https://evil.example.com/"})),
    )
    .await;
    assert_eq!(status, 403, "{text}");
    let (status, text) = call(
        &server,
        &tok,
        Method::PATCH,
        &format!("/app/{}/endpoint/{}/", t.app, t.ep),
        Some(json!({"transformation": ".", "url": "https://evil.example.com/"})),
    )
    .await;
    assert_eq!(status, 403, "{text}");
    let (_, ep) = server.get(&format!("/app/{}/endpoint/{}/", t.app, t.ep)).await;
    assert!(ep["url"].as_str().unwrap().starts_with(&receiver.url), "{ep}");

    let (status, text) = server
        .post(
            &format!("/auth/app-portal-access/{}/", t.app),
            json!({"capabilities": ["ViewBase", "DoAnything"]}),
        )
        .await;
    assert_eq!(status, 422, "{text}");
    assert_eq!(text["detail"][0]["loc"], json!(["body", "capabilities", "1"]), "{text}");
}
