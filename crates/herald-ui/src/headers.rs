//! The security headers of the pages: a strict Content-Security-Policy (no
//! inline script or style, nothing from another origin, no `<base>`, no form
//! posts), `frame-ancestors` per page, and the usual hardening. No page sets
//! a cookie: the token lives in the tab's `sessionStorage` and travels as a
//! bearer header, so blocked third-party cookies cannot break a framed
//! portal and there is no ambient credential for CSRF or clickjacking.

use std::fmt;

use axum::http::{HeaderMap, HeaderName, HeaderValue};

/// Everything but `frame-ancestors`, which the page decides.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                      connect-src 'self'; base-uri 'none'; form-action 'none'";

pub(crate) fn content_security_policy(frame_ancestors: &str) -> String {
    format!("{POLICY}; frame-ancestors {frame_ancestors}")
}

/// Sets a header whose value is ours; a value that is not a valid header
/// (a bug, since every value is checked or constant) leaves it out.
pub(crate) fn set(h: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

pub(crate) fn set_common(h: &mut HeaderMap) {
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    // The token is in the url's fragment, which is never sent as a referrer;
    // the rest of the address says which application, which it need not.
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
}

/// The sources allowed to frame the portal: `--portal-frame-ancestors`,
/// checked once at start so that no value can add a directive of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameAncestors(String);

/// Default: any origin. The portal holds no ambient credential (no cookie;
/// a framed portal without `#key=` is logged out), so framing it grants
/// nothing its url does not already carry; set the platform's own origins
/// to narrow it.
impl Default for FrameAncestors {
    fn default() -> Self {
        Self("*".to_owned())
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct FrameAncestorsError(String);

impl fmt::Display for FrameAncestorsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FrameAncestorsError {}

impl FrameAncestors {
    /// A space- or comma-separated list of CSP sources: `*`, `'self'`,
    /// `'none'` (alone), or origins such as `https://app.example.com`,
    /// `https://*.example.com` or `http://127.0.0.1:3000`.
    pub fn parse(text: &str) -> Result<Self, FrameAncestorsError> {
        let sources: Vec<&str> = text
            .split(|c: char| c.is_ascii_whitespace() || c == ',')
            .filter(|s| !s.is_empty())
            .collect();
        if sources.is_empty() {
            return Err(FrameAncestorsError(
                "give at least one source ('none' to forbid framing)".into(),
            ));
        }
        for s in &sources {
            let keyword = matches!(*s, "*" | "'self'" | "'none'");
            let origin =
                s.chars().all(|c| c.is_ascii_alphanumeric() || "-._~:/*%[]".contains(c)) && !s.starts_with(':');
            if !(keyword || origin) {
                return Err(FrameAncestorsError(format!(
                    "'{s}' is not a frame-ancestors source: use *, 'self', 'none' or an origin such as https://app.example.com"
                )));
            }
        }
        if sources.len() > 1 && sources.contains(&"'none'") {
            return Err(FrameAncestorsError("'none' must stand alone".into()));
        }
        Ok(Self(sources.join(" ")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sources_are_normalised_and_nothing_else_gets_through() {
        assert_eq!(FrameAncestors::default().as_str(), "*");
        assert_eq!(
            FrameAncestors::parse(" https://a.example.com,'self'  http://127.0.0.1:3000 ")
                .unwrap()
                .as_str(),
            "https://a.example.com 'self' http://127.0.0.1:3000"
        );
        assert_eq!(FrameAncestors::parse("'none'").unwrap().as_str(), "'none'");
        assert!(FrameAncestors::parse("https://*.example.com").is_ok());
        // Line breaks separate sources like any space: no header can follow.
        assert_eq!(
            FrameAncestors::parse("https://a.example.com\r\n'self'")
                .unwrap()
                .as_str(),
            "https://a.example.com 'self'"
        );
        for bad in [
            "",
            "  ",
            "https://a.example.com; script-src *",
            "'unsafe-inline'",
            "'none' 'self'",
            "\"https://a\"",
        ] {
            assert!(FrameAncestors::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_policy_allows_only_this_origin_and_no_inline_code() {
        let csp = content_security_policy("'none'");
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self';"));
        assert!(!csp.contains("unsafe"), "{csp}");
        assert!(csp.ends_with("frame-ancestors 'none'"), "{csp}");
    }
}
