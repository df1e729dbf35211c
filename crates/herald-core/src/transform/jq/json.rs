//! Between JSON and jaq's values: the program's input built from the
//! delivery context, and its output written as compact JSON within the
//! body limit.
//!
//! The output is always valid JSON, as jq 1.7 writes it: `nan` becomes
//! `null` and the infinities the largest finite doubles. What JSON cannot
//! hold at all (jaq's byte strings, non-string object keys) is an error,
//! not a silent change.

use jaq_json::{Map, Num, Val};

use super::{TransformError, TransformInput};
use crate::transform::template::rfc3339;

/// Deeper output than this is refused (the API accepts payloads nested at
/// most 64 levels; a program that nests far deeper is almost surely
/// runaway).
pub(super) const MAX_OUTPUT_DEPTH: usize = 512;

fn string(s: &str) -> Val {
    Val::utf8_str(s.to_owned().into_bytes())
}

fn object<'k>(entries: impl IntoIterator<Item = (&'k str, Val)>) -> Val {
    Val::obj(entries.into_iter().map(|(k, v)| (string(k), v)).collect::<Map>())
}

/// `{msg, attempt, endpoint}` for one attempt (module doc of `jq`).
pub(super) fn input(input: &TransformInput<'_>) -> Result<Val, String> {
    let d = &input.delivery;
    let e = &input.endpoint;
    let payload = jaq_json::read::parse_single(d.payload).map_err(|e| e.to_string())?;
    let metadata = Val::obj(e.metadata.iter().map(|(k, v)| (string(k), string(v))).collect::<Map>());
    Ok(object([
        (
            "msg",
            object([
                ("id", string(d.msg_id)),
                ("eventType", string(d.event_type)),
                ("timestamp", string(&rfc3339(d.msg_created_at))),
                ("payload", payload),
            ]),
        ),
        (
            "attempt",
            object([
                ("number", Val::Num(Num::from_integral(d.attempt_number))),
                ("timestamp", Val::Num(Num::from_integral(d.attempt_timestamp))),
                ("firstSentAt", string(&rfc3339(d.first_sent_at))),
            ]),
        ),
        (
            "endpoint",
            object([
                ("id", string(e.id)),
                ("uid", e.uid.map_or(Val::Null, string)),
                ("url", string(e.url)),
                ("metadata", metadata),
            ]),
        ),
    ]))
}

/// `value` as compact JSON, at most `limit` bytes of it.
pub(super) fn output(value: &Val, limit: usize) -> Result<Vec<u8>, TransformError> {
    let mut w = Writer { out: Vec::new(), limit };
    w.value(value, 0)?;
    Ok(w.out)
}

struct Writer {
    out: Vec<u8>,
    limit: usize,
}

impl Writer {
    fn push(&mut self, bytes: &[u8]) -> Result<(), TransformError> {
        if self.out.len() + bytes.len() > self.limit {
            return Err(TransformError::TooLarge(self.limit));
        }
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    fn value(&mut self, v: &Val, depth: usize) -> Result<(), TransformError> {
        if depth > MAX_OUTPUT_DEPTH {
            return Err(TransformError::NotJson(format!(
                "nested deeper than {MAX_OUTPUT_DEPTH} levels"
            )));
        }
        match v {
            Val::Null => self.push(b"null"),
            Val::Bool(true) => self.push(b"true"),
            Val::Bool(false) => self.push(b"false"),
            Val::Num(n) => self.number(n),
            Val::TStr(s) => self.string(s),
            Val::BStr(_) => Err(TransformError::NotJson("a byte string".to_owned())),
            Val::Arr(items) => {
                self.push(b"[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.push(b",")?;
                    }
                    self.value(item, depth + 1)?;
                }
                self.push(b"]")
            }
            Val::Obj(entries) => {
                self.push(b"{")?;
                for (i, (k, item)) in entries.iter().enumerate() {
                    if i > 0 {
                        self.push(b",")?;
                    }
                    let Val::TStr(key) = k else {
                        return Err(TransformError::NotJson(format!("the object key {k}")));
                    };
                    self.string(key)?;
                    self.push(b":")?;
                    self.value(item, depth + 1)?;
                }
                self.push(b"}")
            }
        }
    }

    fn number(&mut self, n: &Num) -> Result<(), TransformError> {
        let text = match n {
            Num::Float(x) if x.is_nan() => "null".to_owned(),
            Num::Float(x) if x.is_infinite() => {
                let max = if *x > 0.0 { f64::MAX } else { f64::MIN };
                serde_json::Number::from_f64(max).map_or_else(|| "null".to_owned(), |n| n.to_string())
            }
            Num::Float(x) => serde_json::Number::from_f64(*x).map_or_else(|| "null".to_owned(), |n| n.to_string()),
            // Integers, big ones too, and decimals kept as the payload
            // wrote them: already JSON.
            other => other.to_string(),
        };
        self.push(text.as_bytes())
    }

    /// A JSON string; bytes that are not UTF-8 become U+FFFD, as jq does.
    fn string(&mut self, bytes: &[u8]) -> Result<(), TransformError> {
        let text = String::from_utf8_lossy(bytes);
        // Escaping takes at most six bytes per byte, plus the quotes: check
        // the cheap bound first so a huge string is refused before it is
        // copied.
        if self.out.len() + bytes.len() + 2 > self.limit {
            return Err(TransformError::TooLarge(self.limit));
        }
        let escaped = serde_json::to_string(text.as_ref()).map_err(|e| TransformError::NotJson(e.to_string()))?;
        self.push(escaped.as_bytes())
    }
}
