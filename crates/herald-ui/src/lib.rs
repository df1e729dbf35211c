//! Herald's two web pages, served by the one binary with every asset
//! embedded at compile time (no CDN, no Node.js, no build step):
//!
//! - the **customer portal** at `/portal/`, opened with the url that
//!   `POST /api/v1/auth/app-portal-access/{app}/` returns (`#key=appsk_…`);
//!   it may be framed by the origins `--portal-frame-ancestors` names;
//! - the **operator dashboard** at `/ui/`, which asks for the admin token
//!   and may not be framed at all.
//!
//! Both are plain HTML, CSS and JavaScript modules under `assets/` sharing
//! one set of per-application screens; they call only the public
//! `/api/v1` routes the Svix SDKs use (and `GET /metrics`), with the token
//! as a bearer header. This crate serves files and security headers; it
//! knows nothing of the API.

mod assets;
mod headers;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

pub use headers::{FrameAncestors, FrameAncestorsError};

use crate::assets::{Bundle, Page};

/// What the pages' headers depend on.
#[derive(Debug, Clone, Default)]
pub struct UiConfig {
    /// Who may put the portal in a frame (CSP `frame-ancestors`).
    pub portal_frame_ancestors: FrameAncestors,
}

/// `/portal/`, `/ui/` and their assets. The assets of both pages are the
/// same files, served under each page's own prefix, so a proxy that hides
/// `/ui/` from the internet leaves the portal whole.
pub fn router<S: Clone + Send + Sync + 'static>(config: &UiConfig) -> Router<S> {
    let portal_csp = headers::content_security_policy(config.portal_frame_ancestors.as_str());
    let dashboard_csp = headers::content_security_policy("'none'");
    Router::new()
        .route("/portal", get(|| async { Redirect::permanent("/portal/") }))
        .route(
            "/portal/",
            get(move |req: HeaderMap| {
                let csp = portal_csp.clone();
                async move { page(Page::Portal, &req, &csp, false) }
            }),
        )
        .route("/portal/assets/{bundle}/{*path}", get(asset))
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route(
            "/ui/",
            get(move |req: HeaderMap| {
                let csp = dashboard_csp.clone();
                async move { page(Page::Dashboard, &req, &csp, true) }
            }),
        )
        .route("/ui/assets/{bundle}/{*path}", get(asset))
}

/// Whether the request's `If-None-Match` names this ETag.
fn not_modified(req: &HeaderMap, etag: &str) -> bool {
    req.get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == etag
        })
}

/// An HTML page: revalidated on every load (`no-cache` with an ETag), so a
/// new build's assets are picked up at once; its assets are immutable.
fn page(which: Page, req: &HeaderMap, csp: &str, deny_framing: bool) -> Response {
    let bundle = Bundle::get();
    let (html, etag) = bundle.page(which);
    let mut resp = if not_modified(req, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html.to_owned()).into_response()
    };
    let h = resp.headers_mut();
    headers::set_common(h);
    headers::set(h, header::CACHE_CONTROL, "no-cache");
    headers::set(h, header::ETAG, etag);
    headers::set(h, header::CONTENT_SECURITY_POLICY, csp);
    if deny_framing {
        // For browsers that predate `frame-ancestors`.
        headers::set(h, header::X_FRAME_OPTIONS, "DENY");
    }
    resp
}

/// One embedded file under `assets/{bundle}/`: the bundle id is a digest of
/// every asset, so these names never change meaning and are cached for a
/// year; another build's id is a 404, not a stale file.
async fn asset(Path((bundle_id, path)): Path<(String, String)>, req: HeaderMap) -> Response {
    let bundle = Bundle::get();
    let found = (bundle_id == bundle.id()).then(|| bundle.asset(&path)).flatten();
    let Some(asset) = found else {
        return (StatusCode::NOT_FOUND, format!("no asset {path} in bundle {bundle_id}")).into_response();
    };
    let mut resp = if not_modified(&req, &asset.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let h = resp.headers_mut();
    headers::set_common(h);
    headers::set(h, header::CACHE_CONTROL, "public, max-age=31536000, immutable");
    headers::set(h, header::ETAG, &asset.etag);
    resp
}
