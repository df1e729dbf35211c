//! One line per request on stdout, useful without the page:
//!
//! ```text
//! 14:03:07  POST   /hooks/stripe?x=1   verified      → 200 in 12 ms
//! 14:03:09  POST   /hooks/stripe       UNVERIFIED (no signature in the webhook-signature header matches)  → could not connect
//! ```
//!
//! Colours only when stdout is a terminal and `NO_COLOR` is not set.

use std::io::{IsTerminal, Write};

use crate::record::{ForwardResult, Source, Stored, Verification};

#[derive(Debug, Clone, Copy)]
pub struct Terminal {
    colour: bool,
}

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

impl Terminal {
    pub fn detect() -> Self {
        Self {
            colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    /// Prints one request's line; `replay` marks a line for a replay.
    pub fn print(&self, stored: &Stored, replay: bool) {
        let line = self.line(stored, replay);
        let mut out = std::io::stdout().lock();
        // A closed stdout (piped into `head`) must not stop the listener.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    /// The line for a request refused before it was stored (over the body cap).
    pub fn print_refused(&self, method: &str, target: &str, status: u16, reason: &str) {
        let line = self.refused_line(&crate::now_rfc3339(), method, target, status, reason);
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    fn refused_line(&self, received_at: &str, method: &str, target: &str, status: u16, reason: &str) -> String {
        let time = received_at.get(11..19).unwrap_or(received_at);
        format!(
            "{time}  {}  {target}  {}",
            self.paint(BOLD, &format!("{method:<6}")),
            self.paint(RED, &format!("refused {status}: {reason}"))
        )
    }

    pub(crate) fn line(&self, stored: &Stored, replay: bool) -> String {
        let r = &stored.request;
        // received_at is RFC 3339 (`2026-12-02T14:03:07.123Z`): show the clock.
        let time = stored.received_at.get(11..19).unwrap_or(&stored.received_at);
        let target = if r.query.is_empty() {
            r.path.clone()
        } else {
            format!("{}?{}", r.path, r.query)
        };
        let verification = match &stored.verification {
            Verification::Unchecked => self.paint(DIM, "unchecked"),
            Verification::Verified => self.paint(GREEN, "verified"),
            Verification::Failed(reason) => format!("{} ({reason})", self.paint(RED, "UNVERIFIED")),
        };
        let forward = match &stored.forward {
            None => String::new(),
            Some(f) => format!("  → {}", self.forward(f)),
        };
        let mut tag = String::new();
        if replay {
            tag.push_str(&self.paint(YELLOW, "replay "));
        }
        if r.source == Source::Relay {
            tag.push_str(&self.paint(DIM, "relay "));
        }
        format!(
            "{time}  {tag}{}  {target}  {verification}{forward}",
            self.paint(BOLD, &format!("{:<6}", r.method))
        )
    }

    fn forward(&self, f: &ForwardResult) -> String {
        match (f.status, &f.error) {
            (Some(status), _) => {
                let colour = match status {
                    200..=299 => GREEN,
                    300..=499 => YELLOW,
                    _ => RED,
                };
                format!("{} in {} ms", self.paint(colour, &status.to_string()), f.duration_ms)
            }
            (None, Some(error)) => self.paint(RED, error),
            (None, None) => self.paint(RED, "no answer"),
        }
    }

    fn paint(&self, colour: &str, text: &str) -> String {
        if self.colour {
            format!("{colour}{text}{RESET}")
        } else {
            text.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Incoming;

    fn stored(verification: Verification, forward: Option<ForwardResult>) -> Stored {
        Stored {
            id: 1,
            received_at: "2026-12-02T14:03:07.123Z".into(),
            request: Incoming {
                method: "POST".into(),
                path: "/hooks".into(),
                query: "x=1".into(),
                headers: vec![],
                body: bytes::Bytes::new(),
                source: Source::Local,
            },
            verification,
            forward,
            replays: 0,
        }
    }

    #[test]
    fn a_line_has_time_method_path_verification_and_forward() {
        let plain = Terminal { colour: false };
        let forward = ForwardResult {
            url: "http://t/hooks".into(),
            at: "t".into(),
            duration_ms: 12,
            status: Some(200),
            headers: vec![],
            body: String::new(),
            error: None,
        };
        let line = plain.line(&stored(Verification::Verified, Some(forward)), false);
        assert_eq!(line, "14:03:07  POST    /hooks?x=1  verified  → 200 in 12 ms");
        let line = plain.line(&stored(Verification::Failed("bad".into()), None), true);
        assert_eq!(line, "14:03:07  replay POST    /hooks?x=1  UNVERIFIED (bad)");
        assert!(!line.contains('\x1b'), "no colours off a terminal");
        let refused = plain.refused_line("2026-12-02T14:03:08.000Z", "PUT", "/big", 413, "body over 100 bytes");
        assert_eq!(refused, "14:03:08  PUT     /big  refused 413: body over 100 bytes");
        let coloured = Terminal { colour: true }.line(&stored(Verification::Verified, None), false);
        assert!(coloured.contains(GREEN));
    }
}
