//! The embedded files: the two HTML pages (`pages/`) and the assets they
//! load (`assets/`), each included at compile time, so the binary needs
//! nothing at run time and the build needs no npm. The assets are served
//! under a bundle id, a digest of all of them, which each page names: a
//! page always loads the assets of its own build, and those can be cached
//! for good.
//!
//! A new file under `assets/` is one line in [`ASSETS`]; a test fails when
//! a file there is missing from it.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// One file under `assets/`, by its path there.
struct Embedded {
    path: &'static str,
    body: &'static [u8],
}

macro_rules! embed {
    ($($path:literal),* $(,)?) => {
        &[$(Embedded { path: $path, body: include_bytes!(concat!("../assets/", $path)) }),*]
    };
}

const ASSETS: &[Embedded] = embed![
    "style.css",
    "portal.js",
    "dashboard.js",
    "lib/api.js",
    "lib/chart.js",
    "lib/dom.js",
    "lib/format.js",
    "lib/frame.js",
    "lib/metrics.js",
    "lib/permissions.js",
    "lib/router.js",
    "lib/session.js",
    "screens/app-shell.js",
    "screens/apps.js",
    "screens/attempts.js",
    "screens/endpoint.js",
    "screens/endpoint-fields.js",
    "screens/endpoint-health.js",
    "screens/endpoints.js",
    "screens/event-types.js",
    "screens/messages.js",
    "screens/message.js",
    "screens/operational.js",
    "screens/server-health.js",
    "screens/test-event.js",
];

const PORTAL_HTML: &str = include_str!("../pages/portal.html");
const DASHBOARD_HTML: &str = include_str!("../pages/dashboard.html");
/// Where a page names its bundle id.
const BUNDLE_MARK: &str = "{{bundle}}";

#[derive(Clone, Copy)]
pub(crate) enum Page {
    Portal,
    Dashboard,
}

pub(crate) struct Asset {
    pub content_type: &'static str,
    pub body: &'static [u8],
    pub etag: String,
}

/// The files with their digests, worked out once per process.
pub(crate) struct Bundle {
    id: String,
    assets: Vec<(&'static str, Asset)>,
    pages: [(String, String); 2],
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("html") => "text/html; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn etag(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    format!("\"{}\"", hex(&d[..12]))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Bundle {
    pub fn get() -> &'static Bundle {
        static BUNDLE: OnceLock<Bundle> = OnceLock::new();
        BUNDLE.get_or_init(Bundle::build)
    }

    fn build() -> Bundle {
        let mut all = Sha256::new();
        for a in ASSETS {
            all.update(a.path.as_bytes());
            all.update([0]);
            all.update((a.body.len() as u64).to_le_bytes());
            all.update(a.body);
        }
        let id = hex(&all.finalize()[..8]);
        let assets = ASSETS
            .iter()
            .map(|a| {
                (
                    a.path,
                    Asset {
                        content_type: content_type(a.path),
                        body: a.body,
                        etag: etag(a.body),
                    },
                )
            })
            .collect();
        let page = |html: &str| {
            let html = html.replace(BUNDLE_MARK, &id);
            let tag = etag(html.as_bytes());
            (html, tag)
        };
        Bundle {
            pages: [page(PORTAL_HTML), page(DASHBOARD_HTML)],
            id,
            assets,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn asset(&self, path: &str) -> Option<&Asset> {
        self.assets.iter().find(|(p, _)| *p == path).map(|(_, a)| a)
    }

    /// A page's HTML, naming this bundle, and its ETag.
    pub fn page(&self, which: Page) -> (&str, &str) {
        let (html, tag) = match which {
            Page::Portal => &self.pages[0],
            Page::Dashboard => &self.pages[1],
        };
        (html, tag)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::{Path, PathBuf};

    use super::*;

    fn files_under(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files_under(&path, root, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/"));
            }
        }
    }

    #[test]
    fn every_file_under_assets_is_embedded_once() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets");
        let mut on_disk = Vec::new();
        files_under(&root, &root, &mut on_disk);
        on_disk.sort();
        let mut listed: Vec<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
        listed.sort();
        assert_eq!(listed, on_disk, "ASSETS must list exactly the files under assets/");
        for a in ASSETS {
            assert_ne!(content_type(a.path), "application/octet-stream", "{}", a.path);
        }
    }

    #[test]
    fn pages_name_their_bundle_and_nothing_inline() {
        let b = Bundle::get();
        for which in [Page::Portal, Page::Dashboard] {
            let (html, tag) = b.page(which);
            assert!(html.contains(&format!("assets/{}/", b.id())), "{html}");
            assert!(!html.contains(BUNDLE_MARK));
            assert!(tag.starts_with('"'));
            // The CSP forbids inline code: a page must not rely on any.
            for inline in ["<script>", "style=", "onclick", "<style"] {
                assert!(!html.contains(inline), "{inline} in a page");
            }
        }
    }
}
