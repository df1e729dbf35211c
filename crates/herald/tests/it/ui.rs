//! How the portal and the dashboard are served, on the wire: every asset
//! from the binary, the right content types, revalidated pages and
//! immutable assets, a strict CSP with `frame-ancestors` per page (the
//! portal's from `--portal-frame-ancestors`, `HERALD_PORTAL_FRAME_ANCESTORS`),
//! and no cookie anywhere.

use std::process::Command;

use crate::harness::{Server, ServerOptions, temp_dir};

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The asset paths a page loads (`assets/{bundle}/…`).
fn assets_of(html: &str) -> Vec<String> {
    html.split('"')
        .filter(|s| s.starts_with("assets/"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn pages_and_assets_are_served_from_the_binary_with_strict_headers() {
    let dir = temp_dir();
    let server = Server::start_with(
        dir.path(),
        ServerOptions {
            env: vec![(
                "HERALD_PORTAL_FRAME_ANCESTORS".into(),
                "https://app.example.com, 'self'".into(),
            )],
            ..Default::default()
        },
    );
    let http = &server.http;
    for (page, ancestors) in [("/portal/", "https://app.example.com 'self'"), ("/ui/", "'none'")] {
        let resp = http.get(format!("{}{page}", server.url)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{page}");
        assert_eq!(header(&resp, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&resp, "cache-control"), "no-cache");
        assert_eq!(header(&resp, "x-content-type-options"), "nosniff");
        assert_eq!(header(&resp, "referrer-policy"), "no-referrer");
        assert!(resp.headers().get("set-cookie").is_none(), "{page} sets a cookie");
        let csp = header(&resp, "content-security-policy").to_owned();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self';"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
        assert!(csp.ends_with(&format!("frame-ancestors {ancestors}")), "{page}: {csp}");
        assert_eq!(
            header(&resp, "x-frame-options"),
            if page == "/ui/" { "DENY" } else { "" },
            "{page}"
        );
        let etag = header(&resp, "etag").to_owned();
        let html = resp.text().await.unwrap();
        assert!(
            !html.contains("<script>") && !html.contains("http"),
            "no inline script, nothing from elsewhere"
        );

        let again = http
            .get(format!("{}{page}", server.url))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{page} revalidates");

        let assets = assets_of(&html);
        assert_eq!(assets.len(), 2, "a stylesheet and a module: {html}");
        for asset in assets {
            let resp = http.get(format!("{}{page}{asset}", server.url)).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{asset}");
            let want = if asset.ends_with(".js") {
                "text/javascript; charset=utf-8"
            } else {
                "text/css; charset=utf-8"
            };
            assert_eq!(header(&resp, "content-type"), want);
            assert_eq!(header(&resp, "cache-control"), "public, max-age=31536000, immutable");
            assert!(resp.headers().get("set-cookie").is_none());
            // Modules import each other relatively, inside the same bundle.
            let text = resp.text().await.unwrap();
            assert!(!text.contains("https://"), "{asset} loads something from elsewhere");
        }
    }
    // A module imported by the entry point, and one of another build.
    let html = http
        .get(format!("{}/portal/", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let bundle = assets_of(&html)[0].split('/').nth(1).unwrap().to_owned();
    let resp = http
        .get(format!("{}/ui/assets/{bundle}/screens/app-shell.js", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = http
        .get(format!("{}/portal/assets/0000000000000000/portal.js", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(header(&resp, "content-type").starts_with("application/json"));
    let resp = http
        .get(format!("{}/portal/assets/{bundle}/../../Cargo.toml", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "only embedded files are served");

    // `/portal` without its slash is sent on (browsers keep the fragment).
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/portal", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 308);
    assert_eq!(header(&resp, "location"), "/portal/");
}

#[tokio::test]
async fn the_portal_may_be_framed_anywhere_by_default_and_a_bad_setting_stops_the_start() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let resp = server.http.get(format!("{}/portal/", server.url)).send().await.unwrap();
    assert!(header(&resp, "content-security-policy").ends_with("frame-ancestors *"));
    drop(server);

    for bad in [
        "https://a.example.com; script-src *",
        "'unsafe-inline'",
        "'none' 'self'",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["serve", "--listen", "127.0.0.1:0", "--admin-token", "t", "--data-dir"])
            .arg(dir.path().join("bad"))
            .args(["--portal-frame-ancestors", bad])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--portal-frame-ancestors"), "{bad}: {stderr}");
    }
}
