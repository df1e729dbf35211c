//! Request heads too large for hyper, answered in JSON.
//!
//! The router refuses a target or headers over our limits with a JSON 414
//! or 431 (`middleware::head_refusal`), but only once hyper has parsed the
//! head, and hyper refuses a head past its own buffer or header count
//! itself, with an empty answer. So the socket wrapper meters each HTTP/1
//! head as it arrives ([`HeadMeter`]); one past [`HARD_HEAD_BYTES`] or
//! [`HARD_HEAD_LINES`] is answered here with [`refusal`] and then drained
//! for a bound before the connection closes, so that a client still
//! writing its head reads the answer instead of a reset.
//!
//! The line limit is the router's own header count, which is also hyper's
//! default: hyper parses into an inline array of 100 headers, and any
//! larger `max_headers` makes it allocate and fill one of that size on
//! the heap for every request. A head that arrives while the request
//! before it on the connection is still in progress (HTTP/1 pipelining) is
//! not metered, since its bytes cannot be told from that request's body;
//! past 100 fields it gets hyper's empty 431.

use std::time::Duration;

use crate::middleware::{MAX_HEAD_BYTES, MAX_HEADERS, MAX_URI_BYTES};

/// Bytes of one head past which the connection answers for itself.
pub const HARD_HEAD_BYTES: usize = 2 * (MAX_URI_BYTES + MAX_HEAD_BYTES);
/// Lines of one head (request line and header fields) past which the
/// connection answers for itself: one more field than the router accepts.
pub const HARD_HEAD_LINES: usize = MAX_HEADERS + 1;
/// hyper's buffer limit, kept above ours so that it never answers first.
pub const HYPER_MAX_BUF: usize = 2 * HARD_HEAD_BYTES;
/// hyper's default header count, which the server keeps (see above).
pub const HYPER_DEFAULT_MAX_HEADERS: usize = 100;
const _: () = assert!(MAX_HEADERS <= HYPER_DEFAULT_MAX_HEADERS);

/// How much of a refused head, and for how long, is read and dropped after
/// the answer.
pub const DRAIN_BYTES: usize = 4 * 1024 * 1024;
pub const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Why a head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TooLarge {
    /// The request line alone ran past the limit: 414.
    Target,
    /// The header fields did: 431.
    Headers,
}

/// Counts one HTTP/1 head's bytes and lines as it is read, until its blank
/// line.
#[derive(Debug, Default)]
pub struct HeadMeter {
    bytes: usize,
    lines: usize,
    /// Where the request line ended, once it has.
    first_line: Option<usize>,
    /// The head's blank line was seen: what follows is a body.
    ended: bool,
    /// The last bytes fed, for a blank line split between reads.
    tail: [u8; 3],
    /// The connection's first bytes, until there are enough to tell h2's
    /// preface; an h2 connection is not metered.
    start: [u8; H2_PREFACE.len()],
    start_len: usize,
    h2: bool,
}

const H2_PREFACE: &[u8; 16] = b"PRI * HTTP/2.0\r\n";

impl HeadMeter {
    /// A new head begins (a new request on the connection).
    pub fn reset(&mut self) {
        *self = Self {
            start: self.start,
            start_len: self.start_len,
            h2: self.h2,
            ..Self::default()
        };
    }

    /// Counts bytes read while a head was expected; says when the head is
    /// past the hard limits.
    pub fn feed(&mut self, data: &[u8]) -> Option<TooLarge> {
        if self.start_len < H2_PREFACE.len() {
            let n = data.len().min(H2_PREFACE.len() - self.start_len);
            self.start[self.start_len..self.start_len + n].copy_from_slice(&data[..n]);
            self.start_len += n;
            self.h2 = self.start_len == H2_PREFACE.len() && self.start == *H2_PREFACE;
        }
        if self.h2 || self.ended || data.is_empty() {
            return None;
        }
        // How much of `data` is head: up to its blank line, if it has one.
        let mut head_len = data.len();
        for (i, &b) in data.iter().enumerate() {
            if b == b'\n' {
                let prev = |back: usize| -> u8 {
                    if i >= back {
                        data[i - back]
                    } else {
                        self.tail[3 - (back - i)]
                    }
                };
                // "\r\n\r\n" or "\n\n": the head is complete.
                if prev(1) == b'\n' || (prev(1) == b'\r' && prev(2) == b'\n') {
                    self.ended = true;
                    head_len = i + 1;
                    break;
                }
                self.lines += 1;
                self.first_line.get_or_insert(self.bytes + i);
            }
        }
        self.bytes += head_len;
        let mut tail = [0u8; 3];
        let keep = data.len().min(3);
        tail[3 - keep..].copy_from_slice(&data[data.len() - keep..]);
        if keep < 3 {
            tail[..3 - keep].copy_from_slice(&self.tail[keep..]);
        }
        self.tail = tail;
        if self.bytes > HARD_HEAD_BYTES {
            // The request line alone over the target limit (and its method
            // and version) makes it a 414.
            let long_target = self.first_line.is_none_or(|end| end > MAX_URI_BYTES + 64);
            return Some(if long_target {
                TooLarge::Target
            } else {
                TooLarge::Headers
            });
        }
        // A complete head is judged too: it may have come in one read.
        (self.lines > HARD_HEAD_LINES).then_some(TooLarge::Headers)
    }
}

/// The whole HTTP/1.1 answer to a refused head: the JSON error the router
/// would give, and `connection: close`.
pub fn refusal(why: TooLarge) -> Vec<u8> {
    let (status, code, detail) = match why {
        TooLarge::Target => (
            "414 URI Too Long",
            "uri_too_long",
            format!("the request target is over {HARD_HEAD_BYTES} bytes; at most {MAX_URI_BYTES} are accepted"),
        ),
        TooLarge::Headers => (
            "431 Request Header Fields Too Large",
            "request_header_fields_too_large",
            format!("at most {MAX_HEADERS} header fields and {MAX_HEAD_BYTES} bytes of headers are accepted"),
        ),
    };
    let body = serde_json::json!({ "code": code, "detail": detail }).to_string();
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(m: &mut HeadMeter, data: &[u8], chunk: usize) -> Option<TooLarge> {
        data.chunks(chunk).find_map(|c| m.feed(c))
    }

    #[test]
    fn a_head_within_the_limits_passes_however_it_is_split_and_what_body_follows() {
        let mut head = b"POST /api/v1/app/a/msg/ HTTP/1.1\r\nhost: x\r\ncontent-length: 2000\r\n\r\n".to_vec();
        // A body of many short lines, read along with the head.
        head.extend(std::iter::repeat_n(b"\n".as_slice(), 1000).flatten());
        for chunk in [1, 2, 3, 7, 4096] {
            let mut m = HeadMeter::default();
            assert_eq!(feed_all(&mut m, &head, chunk), None, "chunks of {chunk}");
            assert!(m.ended, "chunks of {chunk}: the blank line was missed");
        }
    }

    #[test]
    fn too_many_lines_or_bytes_are_refused_as_headers_a_long_first_line_as_the_target() {
        let many: Vec<u8> = std::iter::once(b"GET / HTTP/1.1\r\n".to_vec())
            .chain((0..HARD_HEAD_LINES + 1).map(|i| format!("x-{i}: v\r\n").into_bytes()))
            .flatten()
            .collect();
        assert_eq!(feed_all(&mut HeadMeter::default(), &many, 100), Some(TooLarge::Headers));
        let whole = [many.as_slice(), b"\r\n"].concat();
        assert_eq!(
            HeadMeter::default().feed(&whole),
            Some(TooLarge::Headers),
            "a whole head in one read"
        );

        let big = format!("GET / HTTP/1.1\r\nx: {}\r\n", "v".repeat(HARD_HEAD_BYTES));
        assert_eq!(
            feed_all(&mut HeadMeter::default(), big.as_bytes(), 8192),
            Some(TooLarge::Headers)
        );

        let target = format!("GET /{} HTTP/1.1\r\n", "a".repeat(HARD_HEAD_BYTES));
        assert_eq!(
            feed_all(&mut HeadMeter::default(), target.as_bytes(), 8192),
            Some(TooLarge::Target)
        );
    }

    #[test]
    fn an_h2_connection_is_not_metered_and_a_reset_starts_a_new_head() {
        for split in [1, 5, 16, 24] {
            let mut m = HeadMeter::default();
            let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
            assert_eq!(m.feed(&preface[..split]), None);
            assert_eq!(m.feed(&preface[split..]), None);
            assert_eq!(
                m.feed(&vec![b'\n'; HARD_HEAD_BYTES * 2]),
                None,
                "h2 frames metered as a head"
            );
        }

        let mut m = HeadMeter::default();
        assert_eq!(m.feed(b"GET / HTTP/1.1\r\n\r\n"), None);
        m.reset();
        assert!(!m.ended);
        assert_eq!(m.feed(b"GET / HTTP/1.1\r\nx: 1"), None);
        assert_eq!(m.feed(b"\n"), None);
        assert!(!m.ended, "one newline after a field is not a blank line");
    }

    #[test]
    fn the_refusal_is_a_complete_json_answer() {
        for (why, status, code) in [
            (TooLarge::Target, "414", "uri_too_long"),
            (TooLarge::Headers, "431", "request_header_fields_too_large"),
        ] {
            let text = String::from_utf8(refusal(why)).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
            assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(v["code"], code);
        }
    }
}
