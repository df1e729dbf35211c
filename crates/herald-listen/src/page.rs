//! The web page at `/_herald/`, embedded in the binary (no CDN, no build
//! step): `index.html`, `app.js` and `style.css` from `page/`.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::AppState;

const INDEX: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/style.css");

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/_herald", get(|| async { Redirect::permanent("/_herald/") }))
        .route("/_herald/", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route(
            "/_herald/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/_herald/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
